//! The model against Hugging Face transformers (references made by
//! `tests/reference/make_references.py`, committed), and cached decoding against full passes.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use oneword_model::tiny::RandomCheckpoint;
use oneword_model::{Checkpoint, Embeddings, LogitsAt, Transformer};

const TOLERANCE: f32 = 1e-4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(dir: &Path) -> (Embeddings, Transformer) {
    let checkpoint = Checkpoint::open(dir, DType::F32, &Device::Cpu).unwrap();
    (
        Embeddings::load(&checkpoint).unwrap(),
        Transformer::load(&checkpoint).unwrap(),
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Runs every reference prompt through the model in one pass and compares the last logits.
fn check_against(dir: &Path, reference: &Path) {
    let (embeddings, model) = load(dir);
    let refs = candle_core::safetensors::load(reference, &Device::Cpu).unwrap();
    let mut prompts = 0;
    for i in 0.. {
        let Some(ids) = refs.get(&format!("prompt_{i}_ids")) else {
            break;
        };
        let ids: Vec<u32> = ids
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .map(|&x| x as u32)
            .collect();
        let positions: Vec<u32> = (0..ids.len() as u32).collect();
        let x = embeddings.embed(&ids, &positions).unwrap();
        let mut cache = model.new_cache();
        let logits = model
            .forward(&x, &mut cache, LogitsAt::Last)
            .unwrap()
            .unwrap();
        let expected = &refs[&format!("prompt_{i}_logits")];
        let diff = max_abs_diff(&logits, expected);
        assert!(
            diff <= TOLERANCE,
            "prompt {i} ({} tokens): max |diff| {diff} > {TOLERANCE}",
            ids.len()
        );
        // The logits are far from uniform, so the comparison means something.
        let spread = expected.max(0).unwrap().to_scalar::<f32>().unwrap()
            - expected.min(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(spread > 1.0, "reference logits are nearly flat ({spread})");
        assert_eq!(cache.len(), ids.len());
        prompts += 1;
    }
    assert_eq!(prompts, 4, "the reference file should hold four prompts");
}

#[test]
fn matches_transformers_on_a_checkpoint_written_by_save_pretrained() {
    // `transformer.` prefix, tied lm_head absent, no attn.bias buffers.
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    check_against(&dir, &dir.join("reference_logits.safetensors"));
}

#[test]
fn matches_transformers_on_the_checkpoint_our_tool_writes() {
    // No prefix, attn.bias buffers present: the layout of the `gpt2` repository on the hub.
    let dir = tempfile::tempdir().unwrap();
    RandomCheckpoint::tiny()
        .write(dir.path(), &repo().join("tests/fixtures/gpt2-tokenizer"))
        .unwrap();
    check_against(
        dir.path(),
        &repo().join("tests/fixtures/reference/tiny-gpt2-random-logits.safetensors"),
    );
}

#[test]
fn cached_step_by_step_decoding_equals_one_full_pass() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, model) = load(&dir);
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 7919 + 13) % 50257).collect();
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let x = embeddings.embed(&ids, &positions).unwrap();

    let mut full_cache = model.new_cache();
    let full = model
        .forward(&x, &mut full_cache, LogitsAt::All)
        .unwrap()
        .unwrap();
    assert_eq!(full.dims(), &[40, 50257]);

    // A prefill of 10, a chunk of 5, then one token at a time.
    let mut cache = model.new_cache();
    let mut rows = vec![model
        .forward(&x.narrow(0, 0, 10).unwrap(), &mut cache, LogitsAt::All)
        .unwrap()
        .unwrap()];
    rows.push(
        model
            .forward(&x.narrow(0, 10, 5).unwrap(), &mut cache, LogitsAt::All)
            .unwrap()
            .unwrap(),
    );
    for p in 15..40 {
        let last = model
            .forward(&x.narrow(0, p, 1).unwrap(), &mut cache, LogitsAt::Last)
            .unwrap()
            .unwrap();
        rows.push(last.unsqueeze(0).unwrap());
    }
    let stepped = Tensor::cat(&rows, 0).unwrap();
    let diff = max_abs_diff(&full, &stepped);
    assert!(
        diff <= TOLERANCE,
        "cached decoding differs from the full pass by {diff}"
    );
    assert_eq!(cache.len(), 40);
}

#[test]
fn a_fork_continues_independently_of_its_source() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, model) = load(&dir);
    let x = embeddings.embed(&[464, 1266, 1517], &[0, 1, 2]).unwrap();
    let mut source = model.new_cache();
    model.forward(&x, &mut source, LogitsAt::None).unwrap();
    let mut fork = source.clone();
    let a = model
        .forward(
            &embeddings.embed(&[318], &[3]).unwrap(),
            &mut source,
            LogitsAt::Last,
        )
        .unwrap()
        .unwrap();
    let b = model
        .forward(
            &embeddings.embed(&[546], &[3]).unwrap(),
            &mut fork,
            LogitsAt::Last,
        )
        .unwrap()
        .unwrap();
    let a_again = {
        let mut again = model.new_cache();
        model.forward(&x, &mut again, LogitsAt::None).unwrap();
        model
            .forward(
                &embeddings.embed(&[318], &[3]).unwrap(),
                &mut again,
                LogitsAt::Last,
            )
            .unwrap()
            .unwrap()
    };
    assert!(max_abs_diff(&a, &a_again) <= TOLERANCE);
    assert!(
        max_abs_diff(&a, &b) > 0.1,
        "different continuations should give different logits"
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, model) = load(&dir);
    let err = embeddings.embed(&[50257], &[0]).unwrap_err().to_string();
    assert!(err.contains("50257"), "{err}");
    let err = embeddings.embed(&[1], &[1024]).unwrap_err().to_string();
    assert!(err.contains("1024"), "{err}");
    let x = embeddings.embed(&[1, 2], &[0, 1]).unwrap();
    let mut cache = model.new_cache();
    model.forward(&x, &mut cache, LogitsAt::None).unwrap();
    let long = Tensor::zeros((1023, 32), DType::F32, &Device::Cpu).unwrap();
    let before = cache.len();
    assert!(model.forward(&long, &mut cache, LogitsAt::Last).is_err());
    assert_eq!(
        cache.len(),
        before,
        "a failed step leaves the cache as it was"
    );
}
