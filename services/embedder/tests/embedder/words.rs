//! Words and Nearest on the tiny random GPT-2, served in-process: word vectors and distances
//! against the checkpoint's `wte` rows read independently, and Nearest against a brute-force
//! search over every row.

use crate::harness::*;
use oneword_proto::common::v1 as common;
use oneword_proto::embedder::v1 as pb;

/// Words of one and of several tokens, `<|endoftext|>`, and one word twice.
const WORDS: [&[u32]; 5] = [&[15496], &[995], &[464, 3797, 318], &[50256], &[995]];

/// The mean of the reference `wte` rows of `ids`, summed in f64.
fn mean_row(ids: &[u32]) -> Vec<f64> {
    let mut mean = vec![0f64; WIDTH];
    for &id in ids {
        for (m, &x) in mean.iter_mut().zip(&reference().wte[id as usize]) {
            *m += f64::from(x) / ids.len() as f64;
        }
    }
    mean
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn assert_near(got: f32, want: f64, tolerance: f64, what: &str) {
    assert!(
        (f64::from(got) - want).abs() <= tolerance,
        "{what}: got {got}, want {want}"
    );
}

#[tokio::test]
async fn word_vectors_are_mean_wte_rows_with_their_cosines_and_distances() {
    let server = Server::start(|_| {}).await;
    let answer = server.words(&WORDS, false).await.unwrap();
    let means: Vec<Vec<f64>> = WORDS.iter().map(|w| mean_row(w)).collect();
    let as_f32: Vec<Vec<f32>> = means
        .iter()
        .map(|m| m.iter().map(|&x| x as f32).collect())
        .collect();
    assert_rows(&answer.vectors.unwrap(), common::Dtype::F32, &as_f32, 1e-6);
    let n = WORDS.len();
    assert_eq!(
        (answer.cosine.len(), answer.euclidean.len()),
        (n * n, n * n)
    );
    for i in 0..n {
        assert_near(answer.cosine[i * n + i], 1.0, 1e-6, "cosine with itself");
        assert_eq!(answer.euclidean[i * n + i], 0.0, "distance to itself");
        for j in 0..n {
            let (ij, ji) = (i * n + j, j * n + i);
            assert_eq!(answer.cosine[ij], answer.cosine[ji], "symmetric cosine");
            assert_eq!(
                answer.euclidean[ij], answer.euclidean[ji],
                "symmetric distance"
            );
            let (a, b) = (&means[i], &means[j]);
            assert_near(answer.cosine[ij], cosine(a, b), 1e-6, "cosine");
            let d = distance(a, b);
            assert_near(answer.euclidean[ij], d, 1e-6 * d.max(1.0), "distance");
        }
    }
    // The word given twice is one point.
    assert_near(answer.cosine[n + 4], 1.0, 1e-6, "the same word");
    assert_eq!(answer.euclidean[n + 4], 0.0);
    assert!(answer.projection.is_empty() && answer.explained_variance.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_projection_is_centred_orthogonal_and_explains_its_share() {
    let server = Server::start(|_| {}).await;
    let answer = server.words(&WORDS, true).await.unwrap();
    let n = WORDS.len();
    assert_eq!(answer.projection.len(), n * 2);
    let [first, second] = answer.explained_variance[..] else {
        panic!("two shares, got {:?}", answer.explained_variance);
    };
    assert!(first >= second && second >= 0.0 && first + second <= 1.0 + 1e-6);
    // Total variance from the reference vectors: each component's sum of squared
    // coordinates is its share of it, the coordinates are centred and the components
    // orthogonal.
    let means: Vec<Vec<f64>> = WORDS.iter().map(|w| mean_row(w)).collect();
    let centre: Vec<f64> = (0..WIDTH)
        .map(|d| means.iter().map(|m| m[d]).sum::<f64>() / n as f64)
        .collect();
    let total: f64 = means.iter().map(|m| distance(m, &centre).powi(2)).sum();
    let column = |k: usize| -> Vec<f64> {
        (0..n)
            .map(|i| f64::from(answer.projection[i * 2 + k]))
            .collect()
    };
    let (x, y) = (column(0), column(1));
    assert_near(first, dot(&x, &x) / total, 1e-5, "first share");
    assert_near(second, dot(&y, &y) / total, 1e-5, "second share");
    for c in [&x, &y] {
        assert!(c.iter().sum::<f64>().abs() < 1e-5, "centred: {c:?}");
        // The sign convention: the largest coordinate in magnitude is positive.
        let largest = c
            .iter()
            .copied()
            .fold(0f64, |m, v| if v.abs() > m.abs() { v } else { m });
        assert!(largest > 0.0, "{c:?}");
    }
    assert!(dot(&x, &y).abs() < 1e-5, "orthogonal");
    // A projection never stretches a distance.
    for i in 0..n {
        for j in 0..n {
            let planar = ((x[i] - x[j]).powi(2) + (y[i] - y[j]).powi(2)).sqrt();
            assert!(planar <= distance(&means[i], &means[j]) + 1e-5);
        }
    }
    // The same words give the same plot.
    assert_eq!(server.words(&WORDS, true).await.unwrap(), answer);
    // One word has no plane to be placed on.
    let single = server.words(&WORDS[..1], true).await.unwrap();
    assert!(single.projection.is_empty() && single.explained_variance.is_empty());
    assert_eq!(single.cosine, vec![1.0]);
    server.stop().await;
}

#[tokio::test]
async fn bad_words_are_invalid_argument_naming_the_word() {
    let server = Server::start(|_| {}).await;
    assert_invalid(
        server.words(&[], true).await,
        "words",
        &["`words` must not be empty"],
    );
    assert_invalid(
        server.words(&[&[1], &[2], &[]], false).await,
        "words[2]",
        &["`words[2]` has no token ids"],
    );
    assert_invalid(
        server.words(&[&[1], &[2, 50257]], false).await,
        "words[1].ids[1]",
        &["`words[1].ids[1]` is 50257, outside the vocabulary of 50257 tokens"],
    );
    let many: Vec<&[u32]> = vec![&[7]; 513];
    assert_invalid(
        server.words(&many, false).await,
        "words",
        &["`words` holds 513 words, more than the 512 one request may carry"],
    );
    let long = vec![7; 4097];
    assert_invalid(
        server.words(&[&long, &long], false).await,
        "words",
        &["`words` hold 8194 token ids in all, more than the 8192 one request may carry"],
    );
    // The largest word list is answered.
    assert_eq!(
        server.words(&many[..512], true).await.unwrap().cosine.len(),
        512 * 512
    );
    server.stop().await;
}

/// Every token's cosine similarity to the mean of `ids`' rows, by brute force in f64.
fn brute_force(ids: &[u32]) -> Vec<f64> {
    let query = mean_row(ids);
    reference()
        .wte
        .iter()
        .map(|row| {
            cosine(
                &query,
                &row.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            )
        })
        .collect()
}

/// Asserts `answer` is the `top` best of `all` outside `excluded`, sorted, each similarity
/// within `tolerance` of the brute-force one.
fn assert_best(answer: &pb::NearestResponse, all: &[f64], top: usize, excluded: &[u32]) {
    const TOLERANCE: f64 = 1e-5;
    assert_eq!(answer.ids.len(), top);
    assert_eq!(answer.similarities.len(), top);
    for (&id, &s) in answer.ids.iter().zip(&answer.similarities) {
        assert!(!excluded.contains(&id), "{id} is excluded");
        assert_near(s, all[id as usize], TOLERANCE, "similarity");
    }
    for (a, b) in answer.similarities.windows(2).zip(answer.ids.windows(2)) {
        assert!(
            a[0] > a[1] || (a[0] == a[1] && b[0] < b[1]),
            "sorted: {answer:?}"
        );
    }
    // Nothing left out beats the last one returned.
    let mut rest: Vec<f64> = (0..all.len() as u32)
        .filter(|id| !excluded.contains(id) && !answer.ids.contains(id))
        .map(|id| all[id as usize])
        .collect();
    rest.sort_by(|a, b| b.total_cmp(a));
    let last = f64::from(answer.similarities[top - 1]);
    assert!(rest[0] <= last + TOLERANCE, "missed {} > {last}", rest[0]);
}

#[tokio::test]
async fn nearest_agrees_with_brute_force_and_finds_the_token_itself() {
    let server = Server::start(|_| {}).await;
    for id in [15496, 0, 50256] {
        let all = brute_force(&[id]);
        let with = server.nearest(&[id], Some(10), true).await.unwrap();
        assert_eq!(with.ids[0], id);
        assert_near(with.similarities[0], 1.0, 1e-6, "itself");
        assert_best(&with, &all, 10, &[]);
        let without = server.nearest(&[id], Some(10), false).await.unwrap();
        assert_best(&without, &all, 10, &[id]);
        assert_eq!(
            without.ids[..9],
            with.ids[1..],
            "the same list without the token"
        );
    }
    // A word of several tokens is their mean; all of them are left out by default.
    let word = [464, 3797, 318];
    let all = brute_force(&word);
    let answer = server.nearest(&word, None, false).await.unwrap();
    assert_best(&answer, &all, 10, &word);
    let answer = server.nearest(&word, Some(1000), true).await.unwrap();
    assert_best(&answer, &all, 1000, &[]);
    server.stop().await;
}

#[tokio::test]
async fn nearest_on_a_half_precision_model_searches_in_f32() {
    let server = Server::start(|c| c.dtype = "f16".into()).await;
    let answer = server.nearest(&[15496], Some(5), true).await.unwrap();
    assert_eq!(answer.ids[0], 15496);
    assert_near(answer.similarities[0], 1.0, 1e-6, "itself");
    // The rows were rounded to f16 once; similarities move by about that much.
    let all = brute_force(&[15496]);
    for (&id, &s) in answer.ids.iter().zip(&answer.similarities) {
        assert_near(s, all[id as usize], 2e-3, "similarity");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_nearest_requests_are_invalid_argument_naming_the_field() {
    let server = Server::start(|_| {}).await;
    assert_invalid(
        server.nearest(&[1], Some(0), false).await,
        "top",
        &["`top` must be in 1..=1000, got 0"],
    );
    assert_invalid(
        server.nearest(&[1], Some(1001), false).await,
        "top",
        &["`top` must be in 1..=1000, got 1001"],
    );
    assert_invalid(
        server.nearest(&[], None, false).await,
        "query",
        &["`query` has no token ids"],
    );
    let absent = pb::NearestRequest {
        query: None,
        top: None,
        include_query: false,
    };
    assert_invalid(
        server.client.clone().nearest(absent).await,
        "query",
        &["`query` has no token ids"],
    );
    assert_invalid(
        server.nearest(&[1, 50257], None, false).await,
        "query.ids[1]",
        &["`query.ids[1]` is 50257, outside the vocabulary of 50257 tokens"],
    );
    assert_invalid(
        server.nearest(&[1; 8193], None, false).await,
        "query.ids",
        &["`query.ids` holds 8193 tokens, more than the 8192 one request may carry"],
    );
    server.stop().await;
}
