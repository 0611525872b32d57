//! Bad input through the public API and the internal services: the right status code, a message
//! naming the field, the value and the limit, and never a panic or a hang. And a stopped service
//! is UNAVAILABLE, named.

use oneword_e2e::{tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use oneword_proto::tokenizer::v1 as tok;
use tonic::Code;

fn request() -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: "Hello".into(),
        max_new_tokens: Some(4),
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// Sends `r` and checks the code and that the message mentions each of `words`.
async fn expect(cluster: &Cluster, r: pb::GenerateRequest, code: Code, words: &[&str]) {
    let status = cluster
        .gateway()
        .await
        .generate(r.clone())
        .await
        .expect_err("the request should fail");
    assert_eq!(status.code(), code, "{r:?}: {}", status.message());
    for word in words {
        assert!(
            status.message().contains(word),
            "{:?} does not mention {word:?}",
            status.message()
        );
    }
    // The streaming call validates the same way, before any chunk.
    let streamed = cluster.gateway().await.generate_stream(r).await;
    if let Err(status) = streamed {
        assert_eq!(status.code(), code);
    } else {
        let mut stream = streamed.unwrap().into_inner();
        let first = stream.message().await.expect_err("the stream should fail");
        assert_eq!(first.code(), code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_field_is_invalid_argument_with_field_value_and_range() {
    let cluster = Cluster::start(tiny_model()).await;
    let c = &cluster;
    let invalid = Code::InvalidArgument;
    expect(
        c,
        pb::GenerateRequest {
            prompt: String::new(),
            ..request()
        },
        invalid,
        &["`prompt`", "empty"],
    )
    .await;
    // "hello" then n - 1 times " hello": n tokens.
    let words = |n: usize| format!("hello{}", " hello".repeat(n - 1));
    expect(
        c,
        pb::GenerateRequest {
            prompt: words(1100),
            ..request()
        },
        invalid,
        &["1100 tokens", "1024"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            prompt: words(1000),
            max_new_tokens: Some(100),
            ..request()
        },
        invalid,
        &["1000 tokens", "100", "1024"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            max_new_tokens: Some(0),
            ..request()
        },
        invalid,
        &["`max_new_tokens`", "got 0"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            max_new_tokens: Some(u32::MAX),
            ..request()
        },
        invalid,
        &["`max_new_tokens`", "4294967295"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            temperature: Some(-0.5),
            ..request()
        },
        invalid,
        &["`temperature`", "-0.5"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            temperature: Some(f32::NAN),
            ..request()
        },
        invalid,
        &["`temperature`", "NaN"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            temperature: Some(f32::INFINITY),
            ..request()
        },
        invalid,
        &["`temperature`", "inf"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            top_p: Some(0.0),
            ..request()
        },
        invalid,
        &["`top_p`", "(0, 1]"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            top_p: Some(1.5),
            ..request()
        },
        invalid,
        &["`top_p`", "1.5"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            top_k: Some(0),
            ..request()
        },
        invalid,
        &["`top_k`", "0"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            n: Some(0),
            ..request()
        },
        invalid,
        &["`n`", "1..=16"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            n: Some(1000),
            ..request()
        },
        invalid,
        &["`n`", "1000"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            stop: vec!["a".into(); 20],
            ..request()
        },
        invalid,
        &["`stop`", "20", "8"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            stop: vec!["ok".into(), String::new()],
            ..request()
        },
        invalid,
        &["`stop[1]`", "empty"],
    )
    .await;
    expect(
        c,
        pb::GenerateRequest {
            logprobs: Some(1000),
            ..request()
        },
        invalid,
        &["`logprobs`", "1000"],
    )
    .await;
    let unknown_id = [(50300u32, 1.0f32)].into_iter().collect();
    expect(
        c,
        pb::GenerateRequest {
            logit_bias: unknown_id,
            ..request()
        },
        invalid,
        &["`logit_bias`", "50300", "50257"],
    )
    .await;

    // Nothing was left behind by the failed requests.
    cluster.decoder_idle().await;

    let table = |top_n| pb::NextTokensRequest {
        prompt: "Hi".into(),
        top_n: Some(top_n),
        ..Default::default()
    };
    let status = cluster
        .gateway()
        .await
        .next_tokens(table(0))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message().contains("`top_n`")),
        (invalid, true)
    );
    let status = cluster
        .gateway()
        .await
        .next_tokens(table(5000))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message().contains("5000")),
        (invalid, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_services_check_their_input_too() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut tokenizer = cluster.tokenizer().await;
    let status = tokenizer
        .decode(tok::DecodeRequest {
            ids: vec![15496, 50300],
            skip_special_tokens: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("50300"), "{}", status.message());
    let status = tokenizer
        .encode(tok::EncodeRequest {
            texts: vec![b"ok".to_vec(), vec![0x66, 0xff, 0x6f]],
            allow_special: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("texts[1]"),
        "{}",
        status.message()
    );

    // A decoder step naming a session nobody created.
    let mut decoder = cluster.decoder().await;
    let step = oneword_proto::decoder::v1::SessionStep {
        session_id: "nobody".into(),
        input: Some(oneword_proto::decoder::v1::session_step::Input::Embeddings(
            oneword_proto::tensor::f32_to_wire(&[0.0; 64], &[1, 64]),
        )),
        ..Default::default()
    };
    let status = decoder
        .step(oneword_proto::decoder::v1::StepRequest { steps: vec![step] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nobody"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_decoder_is_unavailable_by_name() {
    let mut cluster = Cluster::start(tiny_model()).await;
    // One request first, so the gateway has cached the model and talks to the decoder per step.
    cluster.gateway().await.generate(request()).await.unwrap();
    cluster.decoder.stop().await;
    let status = cluster
        .gateway()
        .await
        .generate(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(status.message().contains("decoder"), "{}", status.message());
    // Tokenizing does not need the decoder and still works.
    let tokens = cluster
        .gateway()
        .await
        .tokenize(pb::TokenizeRequest {
            text: "Hello world".into(),
            allow_special: false,
        })
        .await;
    assert_eq!(
        tokens.unwrap().into_inner().encoding.unwrap().ids,
        vec![15496, 995]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_its_services_says_which_one_is_missing() {
    let config = oneword_gateway::Config::for_services(
        "http://127.0.0.1:1".into(),
        "http://127.0.0.1:1".into(),
        "http://127.0.0.1:1".into(),
    );
    let listener = oneword_runtime::Listeners::loopback(true).await.unwrap();
    let address = format!("http://{}", listener.grpc.local_addr().unwrap());
    let server = tokio::spawn(oneword_gateway::run(
        config,
        listener,
        std::future::pending(),
    ));
    let mut client = loop {
        match pb::gateway_client::GatewayClient::connect(address.clone()).await {
            Ok(client) => break client,
            Err(_) => tokio::task::yield_now().await,
        }
    };
    let status = client.generate(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("decoder") || status.message().contains("tokenizer"),
        "{}",
        status.message()
    );
    server.abort();
}

/// A field the decoder refuses (here because it allows fewer alternatives than the gateway)
/// reaches the client under the public request's name, in the message and as a `BadRequest`
/// field violation, not as the internal `steps[0].sampling.report.top_n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_refusal_names_the_public_field() {
    use tonic_types::StatusExt;
    let cluster = oneword_e2e::Cluster::start_with(oneword_e2e::tiny_model(), |c| {
        c.max_top_n = 2;
    })
    .await;
    let r = oneword_proto::gateway::v1::GenerateRequest {
        logprobs: Some(3),
        ..oneword_e2e::greedy("Hello", 2)
    };
    let status = cluster.gateway().await.generate(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("`logprobs`"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("steps["), "{}", status.message());
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "logprobs");
}

/// A full gateway refuses with a retry delay derived from how fast its permits turn over (the
/// mean time a request held one, over the number of permits), not a fixed second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overload_refusal_asks_for_a_delay_derived_from_the_turnover() {
    use futures::StreamExt;
    use tonic_types::StatusExt;
    let cluster = Cluster::start_configured(
        tiny_model(),
        |_| {},
        |g| {
            g.max_concurrent_requests = 1;
        },
    )
    .await;
    let mut gateway = cluster.gateway().await;
    let started = std::time::Instant::now();
    gateway
        .generate(oneword_e2e::greedy("Hello", 2))
        .await
        .unwrap();
    let first_took = started.elapsed();
    // One long stream holds the only permit.
    let long = pb::GenerateRequest {
        ignore_eos: true,
        ..oneword_e2e::greedy("Hello", 900)
    };
    let mut stream = gateway.generate_stream(long).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    let refused = cluster
        .gateway()
        .await
        .generate(oneword_e2e::greedy("Hello", 2))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let delay = refused
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    let floor = oneword_runtime::status::RETRY_RANGE.0;
    assert!(
        delay >= floor && delay <= first_took.max(floor),
        "{delay:?}: the one request so far took {first_took:?}"
    );
    drop(stream);
    cluster.decoder_idle().await;
}
