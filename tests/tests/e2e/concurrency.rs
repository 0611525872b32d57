//! Many requests at once: they share the decoder's forward passes, a seeded request does not
//! care what it shared them with, long prompts are prefilled in chunks without changing a
//! number, and clients that leave take nothing with them.

use futures::StreamExt;
use oneword_e2e::{tiny_model, Cluster};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_proto::tensor::{f32_to_wire, wire_to_f32};

fn seeded(prompt: &str, max_new_tokens: u32, seed: u64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        max_new_tokens: Some(max_new_tokens),
        temperature: Some(0.8),
        seed: Some(seed),
        ignore_eos: true,
        ..Default::default()
    }
}

async fn decoder_info(cluster: &Cluster) -> dec::InfoResponse {
    cluster
        .decoder()
        .await
        .info(dec::InfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_request_gets_the_same_tokens_alone_and_among_31_others() {
    let cluster = Cluster::start(tiny_model()).await;
    let probe = seeded("The essay asks what ChatGPT is doing", 24, 42);
    let alone = cluster
        .gateway()
        .await
        .generate(probe.clone())
        .await
        .unwrap()
        .into_inner()
        .completions
        .remove(0)
        .token_ids;

    let before = decoder_info(&cluster).await;
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let mut gateway = cluster.gateway().await;
        // Others of different prompt lengths, seeds and lengths, so that batches mix positions.
        let request = if i == 17 {
            probe.clone()
        } else {
            seeded(
                &"and so on ".repeat(1 + i as usize % 7),
                8 + i as u32,
                1000 + i,
            )
        };
        tasks.push(tokio::spawn(async move {
            gateway.generate(request).await.unwrap().into_inner()
        }));
    }
    let mut among_others = None;
    for (i, task) in tasks.into_iter().enumerate() {
        let response = task.await.unwrap();
        if i == 17 {
            among_others = Some(response.completions[0].token_ids.clone());
        }
    }
    assert_eq!(among_others.unwrap(), alone);

    // And they did share passes: more than one row per pass on average.
    let after = decoder_info(&cluster).await;
    let (passes, rows) = (
        after.forward_passes - before.forward_passes,
        after.forward_rows - before.forward_rows,
    );
    assert!(
        rows as f64 / passes as f64 > 2.0,
        "{rows} rows in {passes} passes: the requests were not batched"
    );
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_100_streams_frees_every_decoder_session() {
    let cluster = Cluster::start(tiny_model()).await;
    let mut streams = Vec::new();
    for i in 0..100 {
        let mut gateway = cluster.gateway().await;
        let mut stream = gateway
            .generate_stream(seeded("Once upon a time", 900, i))
            .await
            .unwrap()
            .into_inner();
        // Wait for the first token so the stream is surely running.
        stream.next().await.unwrap().unwrap();
        streams.push((gateway, stream));
    }
    let info = decoder_info(&cluster).await;
    assert_eq!(info.sessions, 100, "each running stream holds a session");
    drop(streams);
    cluster.decoder_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prompt_prefilled_in_chunks_gives_the_logits_of_one_pass() {
    // The same 300 rows through a decoder that takes at most 64 rows per pass, and through one
    // that takes them at once; a short stream runs beside the chunked one.
    let chunked = Cluster::start_with(tiny_model(), |c| c.max_batch_tokens = 64).await;
    let whole = Cluster::start(tiny_model()).await;
    let embeddings: Vec<f32> = (0..300 * 64)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 60.0)
        .collect();
    let step = |id: &str, rows: usize| dec::StepRequest {
        steps: vec![dec::SessionStep {
            session_id: id.into(),
            create: true,
            start_position: 0,
            input: Some(dec::session_step::Input::Embeddings(f32_to_wire(
                &embeddings[..rows * 64],
                &[rows as u32, 64],
            ))),
            sampling: Some(dec::Sampling {
                shaping: Some(dec::Shaping {
                    temperature: Some(0.0),
                    ..Default::default()
                }),
                u: 0.0,
                report: Some(dec::Report {
                    top_n: 0,
                    full_row: dec::FullRow::F32 as i32,
                }),
            }),
            release_after: true,
            ..Default::default()
        }],
    };
    let mut side = chunked.gateway().await;
    let stream =
        tokio::spawn(async move { side.generate(seeded("Meanwhile", 40, 3)).await.unwrap() });
    let row = |r: dec::StepResponse| {
        wire_to_f32(
            r.results[0]
                .pick
                .as_ref()
                .unwrap()
                .full_row
                .as_ref()
                .unwrap(),
        )
        .unwrap()
    };
    let a = row(chunked
        .decoder()
        .await
        .step(step("long", 300))
        .await
        .unwrap()
        .into_inner());
    let b = row(whole
        .decoder()
        .await
        .step(step("long", 300))
        .await
        .unwrap()
        .into_inner());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-4, "chunked prefill differs by {diff}");
    stream.await.unwrap();
    let info = decoder_info(&chunked).await;
    assert!(
        info.forward_passes >= 5,
        "300 rows at 64 per pass take at least 5 passes, took {}",
        info.forward_passes
    );
}
