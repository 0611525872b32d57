//! The essay's n-gram baseline through the real services: letter and token n-gram models served
//! by their own backend beside the transformer, driven by the same gateway loop, and the corpus
//! statistics.

use std::collections::HashMap;

use oneword_bpe::BpeTokenizer;
use oneword_e2e::{hf_model, refused, Cluster};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use tonic::Code;

fn generate(model: &str, prompt: &str, seed: u64) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        max_new_tokens: Some(40),
        seed: Some(seed),
        model: model.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_model_writes_letters_through_the_generation_loop() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    let vocab = BpeTokenizer::load(&hf_model()).unwrap();
    let first = gateway
        .generate(generate("letters-3", "In the beginning", 5))
        .await
        .unwrap()
        .into_inner();
    let c = &first.completions[0];
    assert_eq!(c.token_ids.len(), 40);
    for &id in &c.token_ids {
        let piece = vocab.piece(id);
        assert!(
            piece == b" " || (piece.len() == 1 && piece[0].is_ascii_lowercase()),
            "{:?} is not a letter or the space",
            String::from_utf8_lossy(piece)
        );
    }
    // Seeded: the same again, and the stream gives the same tokens.
    let again = gateway
        .generate(generate("letters-3", "In the beginning", 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.completions[0].token_ids, c.token_ids);
    let mut stream = gateway
        .generate_stream(generate("letters-3", "In the beginning", 5))
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        streamed.extend(chunk.token_ids);
    }
    assert_eq!(streamed, c.token_ids);
    // n samples from one prefill, forked; every session is gone afterwards.
    let many = gateway
        .generate(pb::GenerateRequest {
            n: Some(3),
            ..generate("letters-2", "the", 9)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(many.completions.len(), 3);
    let info = cluster.baseline_idle().await;
    assert_eq!(info.ngram_models.len(), 12);
    // The transformer's decoder saw none of it.
    let decoder = cluster.decoder_idle().await;
    assert!(decoder.ngram_models.is_empty());
    assert_eq!(decoder.forward_passes, 0, "no transformer pass ran");

    // The essay's picture: after "q" comes "u".
    let table = gateway
        .next_tokens(pb::NextTokensRequest {
            prompt: "the q".into(),
            model: "letters-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let raw = table.raw.unwrap();
    assert_eq!(raw.texts[0], "u");
    assert!(raw.probabilities[0] > 0.9, "{:?}", raw.probabilities);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bigram_gives_the_counted_probabilities() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    // Count what follows " LORD" in the bundled corpus, by hand.
    let vocab = BpeTokenizer::load(&hf_model()).unwrap();
    let text = oneword_ngram::Corpus::bundled().text().to_string();
    let ids = vocab.encode(&text, false).unwrap().ids;
    let lord = vocab.encode(" LORD", false).unwrap().ids;
    assert_eq!(lord.len(), 1);
    let mut followers: HashMap<u32, u64> = HashMap::new();
    for pair in ids.windows(2).filter(|p| p[0] == lord[0]) {
        *followers.entry(pair[1]).or_default() += 1;
    }
    let total: u64 = followers.values().sum();
    let (&best, &count) = followers
        .iter()
        .max_by_key(|(id, count)| (**count, std::cmp::Reverse(**id)))
        .unwrap();

    let table = gateway
        .next_tokens(pb::NextTokensRequest {
            prompt: "And the LORD".into(),
            model: "tokens-2".into(),
            top_n: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .raw
        .unwrap();
    assert_eq!(table.ids[0], best);
    let expected = count as f32 / total as f32;
    assert!(
        (table.probabilities[0] - expected).abs() < 1e-5,
        "{} vs {expected}",
        table.probabilities[0]
    );

    refused(
        gateway.generate(generate("letters-7", "x", 1)).await,
        Code::InvalidArgument,
        "`model` is \"letters-7\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_statistics_are_counted_and_seeded() {
    let cluster = Cluster::start(&hf_model()).await;
    let mut gateway = cluster.gateway().await;
    let counted = gateway
        .corpus(pb::CorpusRequest {
            letter_frequencies: true,
            letter_pairs: true,
            random_words_n: 4,
            random_words: 8,
            sentence_n: 2,
            sentence_start: "god".into(),
            sentence_words: 10,
            seed: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counted.corpus_bytes, 669_897);
    assert_eq!(counted.letters.len(), 26);
    let sum: f64 = counted.frequencies.iter().sum();
    assert!((sum - 1.0).abs() < 1e-9);
    let e = counted.letters.iter().position(|l| l == "e").unwrap();
    assert!(
        counted
            .frequencies
            .iter()
            .all(|&f| f <= counted.frequencies[e]),
        "e is the most common"
    );
    let n = counted.pair_symbols.len();
    let at = |s: &str| counted.pair_symbols.iter().position(|x| x == s).unwrap();
    assert!(counted.pair_probabilities[at("q") * n + at("u")] > 0.9);
    assert_eq!(counted.random_words.len(), 8);
    assert!(counted.sentence.starts_with("god "), "{}", counted.sentence);
    assert_eq!(counted.sentence.split(' ').count(), 11);

    // A text of the caller's: after "cat" only "sat" ever comes.
    let own = gateway
        .corpus(pb::CorpusRequest {
            text: Some("the cat sat on the mat".into()),
            sentence_n: 2,
            sentence_start: "cat".into(),
            sentence_words: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.sentence, "cat sat on the");

    let bad_corpus = |r: pb::CorpusRequest, needle: &'static str| {
        let mut gateway = gateway.clone();
        async move { refused(gateway.corpus(r).await, Code::InvalidArgument, needle) }
    };
    bad_corpus(
        pb::CorpusRequest {
            sentence_n: 2,
            sentence_start: "cat".into(),
            ..Default::default()
        },
        "\"cat\" does not occur in the corpus",
    )
    .await;
    bad_corpus(
        pb::CorpusRequest {
            random_words_n: 7,
            ..Default::default()
        },
        "`random_words_n` must be in 1..=6",
    )
    .await;
    bad_corpus(
        pb::CorpusRequest {
            text: Some(String::new()),
            letter_frequencies: true,
            ..Default::default()
        },
        "`text`: the corpus is empty",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_refuses_what_is_the_others_and_a_baseline_down_is_unavailable() {
    let mut cluster = Cluster::start(&hf_model()).await;
    refused(
        cluster
            .decoder()
            .await
            .corpus(dec::CorpusRequest::default())
            .await,
        Code::Unimplemented,
        "n-gram baseline",
    );
    refused(
        cluster
            .baseline()
            .await
            .score(dec::ScoreRequest::default())
            .await,
        Code::Unimplemented,
        "no transformer",
    );
    // An n-gram session's step sent to the decoder is refused by name, and so is a transformer
    // input that names an n-gram model.
    let ids = dec::session_step::Input::TokenIds(dec::TokenIds { ids: vec![1] });
    let embeddings = dec::session_step::Input::Embeddings(oneword_proto::tensor::f32_to_wire(
        &[0.0; 32],
        &[1, 32],
    ));
    for (input, field) in [(ids, "steps[0].token_ids"), (embeddings, "steps[0].model")] {
        let step = dec::SessionStep {
            session_id: "s".into(),
            create: true,
            input: Some(input),
            model: "letters-2".into(),
            ..Default::default()
        };
        let answer = cluster
            .decoder()
            .await
            .step(dec::StepRequest { steps: vec![step] })
            .await;
        refused(answer, Code::InvalidArgument, field);
    }

    // The models the gateway knows come from the baseline's Info; with the baseline gone, a
    // request for one is UNAVAILABLE naming it, and the transformer still answers.
    cluster.baseline.stop().await;
    let mut gateway = cluster.gateway().await;
    refused(
        gateway.corpus(pb::CorpusRequest::default()).await,
        Code::Unavailable,
        "baseline",
    );
    refused(
        gateway.generate(generate("letters-2", "the", 1)).await,
        Code::Unavailable,
        "baseline",
    );
    gateway
        .generate(oneword_e2e::greedy("In the beginning", 3))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_baseline_serves_the_transformer_alone() {
    let cluster =
        Cluster::start_configured(&hf_model(), |_| {}, |g| g.baseline = String::new()).await;
    let mut gateway = cluster.gateway().await;
    refused(
        gateway.generate(generate("letters-2", "the", 1)).await,
        Code::InvalidArgument,
        "`model` is \"letters-2\"; this gateway serves",
    );
    refused(
        gateway.corpus(pb::CorpusRequest::default()).await,
        Code::FailedPrecondition,
        "no n-gram baseline",
    );
    gateway
        .generate(oneword_e2e::greedy("In the beginning", 3))
        .await
        .unwrap();
}
