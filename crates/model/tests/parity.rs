//! The model against Hugging Face transformers (references made by
//! `tests/reference/make_references.py`, committed), and cached decoding against full passes.
//! On the CPU unless `ONEWORD_TEST_DEVICE` names a GPU: `make gpu-check` runs the tests that hold
//! on any device (`GPU_TESTS` in bench/gpu/check.sh) there.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use oneword_model::tiny::{test_device, RandomCheckpoint};
use oneword_model::{Checkpoint, Embeddings, KvCache, LogitsAt, Sequence, Transformer};

const TOLERANCE: f32 = 1e-4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(dir: &Path) -> (Embeddings, Transformer) {
    let checkpoint = Checkpoint::open(dir, DType::F32, &test_device()).unwrap();
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
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Reference prompt `i`'s ids and input embeddings; `None` past the last.
fn reference_prompt(
    refs: &std::collections::HashMap<String, Tensor>,
    i: usize,
    embeddings: &Embeddings,
) -> Option<(Vec<u32>, Tensor)> {
    let ids: Vec<u32> = refs
        .get(&format!("prompt_{i}_ids"))?
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|&x| x as u32)
        .collect();
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let x = embeddings.embed(&ids, &positions).unwrap();
    Some((ids, x))
}

/// Makes an empty cache of one kind.
type NewCache = fn(&Transformer) -> KvCache;

/// The two kinds of cache: plain memory (the CPU's) and candle tensors (the GPUs').
fn cache_kinds() -> [(&'static str, NewCache); 2] {
    [
        ("host cache", Transformer::new_cache),
        ("tensor cache", Transformer::new_tensor_cache),
    ]
}

/// Runs every reference prompt through the model in one pass and compares the last logits,
/// with each kind of cache.
fn check_against(dir: &Path, reference: &Path) {
    for (kind, new_cache) in cache_kinds() {
        check_against_with(dir, reference, new_cache);
        eprintln!("{kind}: ok");
    }
}

fn check_against_with(dir: &Path, reference: &Path, new_cache: NewCache) {
    let (embeddings, model) = load(dir);
    let refs = candle_core::safetensors::load(reference, &Device::Cpu).unwrap();
    let mut prompts = 0;
    for i in 0.. {
        let Some((ids, x)) = reference_prompt(&refs, i, &embeddings) else {
            break;
        };
        let mut cache = new_cache(&model);
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

/// The logits of every row of `x`, run through one cache as chunks of the given lengths and then
/// one row at a time; and the cache.
fn decode_in_chunks(
    model: &Transformer,
    new_cache: NewCache,
    x: &Tensor,
    chunks: &[usize],
) -> (Tensor, KvCache) {
    let mut cache = new_cache(model);
    let mut rows = Vec::new();
    let mut at = 0;
    for &len in chunks {
        let logits = model.forward(&x.narrow(0, at, len).unwrap(), &mut cache, LogitsAt::All);
        rows.push(logits.unwrap().unwrap());
        at += len;
    }
    for p in at..x.dim(0).unwrap() {
        let logits = model.forward(&x.narrow(0, p, 1).unwrap(), &mut cache, LogitsAt::Last);
        rows.push(logits.unwrap().unwrap().unsqueeze(0).unwrap());
    }
    (Tensor::cat(&rows, 0).unwrap(), cache)
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

    // A prefill of 10, a chunk of 5 (across a block boundary), then one token at a time.
    // On the host path every product and every score is one fixed chain of operations whatever
    // the batch, and a decode step's scores (computed several key blocks at a time) are a
    // prefill's: the same bits. The tensor path's products are candle's, whose sums depend on
    // the shapes: within the parity tolerance.
    let host_bound = if test_device().is_cpu() {
        0.0
    } else {
        TOLERANCE
    };
    for ((kind, new_cache), bound) in cache_kinds().into_iter().zip([host_bound, TOLERANCE]) {
        let (stepped, cache) = decode_in_chunks(&model, new_cache, &x, &[10, 5]);
        let diff = max_abs_diff(&full, &stepped);
        assert!(
            diff <= bound,
            "{kind}: cached decoding differs from the full pass by {diff}"
        );
        assert_eq!(cache.len(), 40);
    }
    let blocks = model.cache_blocks_in_use();
    assert_eq!(
        blocks, 0,
        "tensor caches dropped, every block back in the pool"
    );
}

#[test]
fn a_fork_continues_independently_of_its_source() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, model) = load(&dir);
    // 20 positions: a full block and a partly filled one, which both sides then write into.
    let prompt = ids(20, 3);
    let x = embeddings
        .embed(&prompt, &(0..20).collect::<Vec<_>>())
        .unwrap();
    let next = |id: u32| embeddings.embed(&[id], &[20]).unwrap();
    let step = |cache: &mut KvCache, id: u32| {
        model
            .forward(&next(id), cache, LogitsAt::Last)
            .unwrap()
            .unwrap()
    };
    for (kind, new_cache) in cache_kinds() {
        let alone = |id: u32| {
            let mut cache = new_cache(&model);
            model.forward(&x, &mut cache, LogitsAt::None).unwrap();
            step(&mut cache, id)
        };
        let mut source = new_cache(&model);
        model.forward(&x, &mut source, LogitsAt::None).unwrap();
        let mut fork = source.clone();
        // The fork writes first: the source must not see it.
        let b = step(&mut fork, 546);
        let a = step(&mut source, 318);
        assert!(
            max_abs_diff(&a, &alone(318)) <= TOLERANCE,
            "{kind}: the source"
        );
        assert!(
            max_abs_diff(&b, &alone(546)) <= TOLERANCE,
            "{kind}: the fork"
        );
        assert!(
            max_abs_diff(&a, &b) > 0.1,
            "{kind}: different continuations should give different logits"
        );
    }
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

/// Token ids for tests: deterministic, spread over the vocabulary.
fn ids(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7919 + salt * 104729 + 13) % 50257)
        .collect()
}

#[test]
fn a_sequence_batched_with_others_gets_the_logits_it_gets_alone() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, model) = load(&dir);
    let embed = |ids: &[u32], start: usize| {
        let positions: Vec<u32> = (start as u32..(start + ids.len()) as u32).collect();
        embeddings.embed(ids, &positions).unwrap()
    };
    // (tokens already cached, new tokens, which logits): decode steps at different positions,
    // a fresh prefill, and a chunk continuing a prefill; 37 rows in all, so the batch takes
    // the matrix-product path while small ones alone take the weight-streaming kernels.
    let shapes = [
        (30, 1, LogitsAt::Last),
        (0, 17, LogitsAt::Last),
        (5, 9, LogitsAt::All),
        (60, 1, LogitsAt::Last),
        (12, 8, LogitsAt::None),
        (3, 1, LogitsAt::All),
    ];
    for (kind, new_cache) in cache_kinds() {
        for subset in [&shapes[..], &[shapes[0], shapes[3], shapes[5]][..]] {
            let mut alone = Vec::new();
            let mut caches = Vec::new();
            let mut inputs = Vec::new();
            for (i, &(past, new, at)) in subset.iter().enumerate() {
                let ids = ids(past + new, i as u32);
                let mut cache = new_cache(&model);
                if past > 0 {
                    model
                        .forward(&embed(&ids[..past], 0), &mut cache, LogitsAt::None)
                        .unwrap();
                }
                let x = embed(&ids[past..], past);
                let mut own = cache.clone();
                alone.push(model.forward(&x, &mut own, at).unwrap());
                caches.push(cache);
                inputs.push(x);
            }
            let mut batch: Vec<Sequence> = caches
                .iter_mut()
                .zip(&inputs)
                .zip(subset)
                .map(|((cache, inputs), &(_, _, logits))| Sequence {
                    inputs,
                    cache,
                    logits,
                })
                .collect();
            let batched = model.forward_batch(&mut batch).unwrap();
            for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
                match (a, b) {
                    (Some(a), Some(b)) => {
                        assert_eq!(a.dims(), b.dims());
                        let diff = max_abs_diff(a, b);
                        assert!(
                            diff <= TOLERANCE,
                            "{kind}, sequence {i}: batched differs by {diff}"
                        );
                    }
                    (None, None) => {}
                    _ => panic!("{kind}, sequence {i}: logits present in one run only"),
                }
            }
            for (cache, &(past, new, _)) in caches.iter().zip(subset) {
                assert_eq!(cache.len(), past + new);
            }
        }
    }
}

/// Requests keep their wire dtype, so one pass may mix f32, f16 and bf16 rows: on the tensor
/// path (here in f16) it gets what the same pass gets with every row already in the model's.
#[test]
fn a_sequence_batched_with_rows_of_other_dtypes_gets_the_same_logits() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let checkpoint = Checkpoint::open(&dir, DType::F16, &test_device()).unwrap();
    let embeddings = Embeddings::load(&checkpoint).unwrap();
    let model = Transformer::load(&checkpoint).unwrap();
    let wire = [(5, DType::F32), (3, DType::BF16), (4, DType::F16)].map(|(n, dtype)| {
        let positions: Vec<u32> = (0..n as u32).collect();
        let rows = embeddings.embed(&ids(n, n as u32), &positions).unwrap();
        rows.to_dtype(dtype).unwrap()
    });
    let alike = wire.clone().map(|t| t.to_dtype(DType::F16).unwrap());
    let pass = |inputs: &[Tensor]| {
        let mut caches: Vec<KvCache> = inputs.iter().map(|_| model.new_tensor_cache()).collect();
        let mut batch: Vec<Sequence> = caches
            .iter_mut()
            .zip(inputs)
            .map(|(cache, inputs)| Sequence {
                inputs,
                cache,
                logits: LogitsAt::Last,
            })
            .collect();
        model.forward_batch(&mut batch).unwrap()
    };
    for (i, (mixed, same)) in pass(&wire).iter().zip(pass(&alike)).enumerate() {
        let diff = max_abs_diff(mixed.as_ref().unwrap(), &same.unwrap());
        assert_eq!(diff, 0.0, "sequence {i}");
    }
}

#[test]
fn a_failed_batch_leaves_every_cache_as_it_was() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, model) = load(&dir);
    let ids = ids(20, 1);
    let positions: Vec<u32> = (0..20).collect();
    let x = embeddings.embed(&ids, &positions).unwrap();
    let mut a = model.new_cache();
    model
        .forward(&x.narrow(0, 0, 10).unwrap(), &mut a, LogitsAt::None)
        .unwrap();
    let mut b = model.new_tensor_cache();
    // A host cache and a tensor cache cannot share a pass: the batch fails as a whole.
    let next = x.narrow(0, 10, 1).unwrap();
    let mut batch = [
        Sequence {
            inputs: &next,
            cache: &mut a,
            logits: LogitsAt::Last,
        },
        Sequence {
            inputs: &x,
            cache: &mut b,
            logits: LogitsAt::Last,
        },
    ];
    assert!(model.forward_batch(&mut batch).is_err());
    assert_eq!((a.len(), b.len()), (10, 0));
    // And `a` goes on as if nothing had happened.
    let mut fresh = model.new_cache();
    let want = model
        .forward(&x.narrow(0, 0, 11).unwrap(), &mut fresh, LogitsAt::Last)
        .unwrap()
        .unwrap();
    let got = model
        .forward(&next, &mut a, LogitsAt::Last)
        .unwrap()
        .unwrap();
    assert!(max_abs_diff(&want, &got) <= TOLERANCE);
}

/// Hidden states and attention weights (what the "inside the model" instruments show) against
/// transformers' `output_hidden_states` and `output_attentions`.
#[test]
fn internals_match_transformers() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, model) = load(&dir);
    let refs =
        candle_core::safetensors::load(dir.join("reference_internals.safetensors"), &Device::Cpu)
            .unwrap();
    let n_layer = model.config().n_layer;
    for prompt in 0..2 {
        let ids: Vec<u32> = refs[&format!("prompt_{prompt}_ids")]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|id| id as u32)
            .collect();
        let positions: Vec<u32> = (0..ids.len() as u32).collect();
        let inputs = embeddings.embed(&ids, &positions).unwrap();
        let all_layers: Vec<usize> = (0..n_layer).collect();
        let seen = model.inspect(&inputs, &all_layers).unwrap();
        assert_eq!(seen.hidden_states.len(), n_layer + 1);
        for (l, state) in seen.hidden_states.iter().enumerate() {
            let expected = &refs[&format!("prompt_{prompt}_hidden_{l}")];
            let diff = max_abs_diff(state, expected);
            assert!(diff <= TOLERANCE, "prompt {prompt} hidden {l}: {diff}");
        }
        for (l, weights) in seen.attentions.iter().enumerate() {
            let expected = &refs[&format!("prompt_{prompt}_attention_{l}")];
            assert_eq!(weights.dims(), expected.dims());
            let diff = max_abs_diff(weights, expected);
            assert!(diff <= TOLERANCE, "prompt {prompt} attention {l}: {diff}");
        }
        // Scoring's pass keeps only the last state, and it is the same one.
        let last = model.last_hidden_state(&inputs).unwrap();
        assert_eq!(max_abs_diff(&last, &seen.hidden_states[n_layer]), 0.0);
        // The lens's last row is the model's own next-token logits.
        let lens = model.logit_lens(&seen.hidden_states).unwrap();
        assert_eq!(lens.dims(), &[n_layer + 1, model.config().vocab_size]);
        let mut cache = model.new_cache();
        let logits = model
            .forward(&inputs, &mut cache, LogitsAt::Last)
            .unwrap()
            .unwrap();
        let diff = max_abs_diff(&lens.get(n_layer).unwrap(), &logits);
        assert!(diff <= TOLERANCE, "prompt {prompt} lens vs logits: {diff}");
    }
}

#[test]
fn block_matrices_are_the_checkpoints() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (_, model) = load(&dir);
    let file = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for name in oneword_model::BLOCK_MATRICES {
        let ours = model.block_matrix(1, name).unwrap();
        let stored = &file[&format!("transformer.h.1.{name}.weight")];
        assert_eq!(max_abs_diff(&ours, stored), 0.0, "{name}");
    }
    assert!(model.block_matrix(2, "mlp.c_fc").is_err());
    assert!(model.block_matrix(0, "attn.bias").is_err());
}

/// The largest logit minus the smallest.
fn spread_of(logits: &Tensor) -> f32 {
    let flat = logits.flatten_all().unwrap();
    flat.max(0).unwrap().to_scalar::<f32>().unwrap()
        - flat.min(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Positions (rows) where `a` and `b` have the same greedy pick.
fn same_picks(a: &Tensor, b: &Tensor) -> usize {
    let picks = |t: &Tensor| t.argmax(1).unwrap().to_vec1::<u32>().unwrap();
    picks(a)
        .iter()
        .zip(picks(b))
        .filter(|(x, y)| **x == *y)
        .count()
}

/// Linear layers in `format` (converted at load) against f32 at every position of the reference
/// prompts and against transformers at their last: how far the logits move and how often the
/// greedy pick changes. Printed for the README; `bound` (a share of the logits' spread) is loose
/// enough for any checkpoint of this size and tight enough to catch a broken kernel (a wrong
/// scale, sign or widening moves logits by whole units).
fn narrow_weights_stay_near_f32_and_transformers(
    format: oneword_model::WeightFormat,
    bound: f32,
    min_agreement: f64,
) {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, f32_model) = load(&dir);
    let mut checkpoint = Checkpoint::open(&dir, DType::F32, &Device::Cpu).unwrap();
    checkpoint.weights = format;
    let narrow_model = Transformer::load(&checkpoint).unwrap();
    let refs =
        candle_core::safetensors::load(dir.join("reference_logits.safetensors"), &Device::Cpu)
            .unwrap();
    let mut closeness = Closeness::default();
    for i in 0..4 {
        let (_, x) = reference_prompt(&refs, i, &embeddings).expect("four prompts");
        let all = |model: &Transformer| {
            let mut cache = model.new_cache();
            model
                .forward(&x, &mut cache, LogitsAt::All)
                .unwrap()
                .unwrap()
        };
        let expected = &refs[&format!("prompt_{i}_logits")];
        closeness.add(&all(&f32_model), &all(&narrow_model), expected);
    }
    closeness.check(format.name(), bound, min_agreement);
}

/// How far a model's logits move from the f32 model's (every position) and from transformers'
/// (the last), over the reference prompts, and how often its greedy pick stays f32's.
#[derive(Default)]
struct Closeness {
    vs_f32: f32,
    vs_hf: f32,
    /// The widest spread of transformers' logits, which the bounds are shares of.
    spread: f32,
    agree: usize,
    positions: usize,
}

impl Closeness {
    /// One prompt: f32's and the model's logits `[n, vocab]`, transformers' at the last position.
    fn add(&mut self, exact: &Tensor, narrow: &Tensor, expected: &Tensor) {
        let n = exact.dim(0).unwrap();
        self.vs_f32 = self.vs_f32.max(max_abs_diff(exact, narrow));
        let last = narrow.get(n - 1).unwrap();
        self.vs_hf = self.vs_hf.max(max_abs_diff(&last, expected));
        self.spread = self.spread.max(spread_of(expected));
        self.agree += same_picks(exact, narrow);
        self.positions += n;
    }

    /// Prints the numbers (for the README) and checks them: both distances within `bound` of
    /// the spread, the greedy pick kept at `min_agreement` of the positions at least.
    fn check(&self, what: &str, bound: f32, min_agreement: f64) {
        let Closeness {
            vs_f32,
            vs_hf,
            spread,
            agree,
            positions,
        } = *self;
        eprintln!(
            "{what}: max |Δlogit| {vs_f32:.4} against f32, {vs_hf:.4} against transformers \
             (logits spread over {spread:.2}); greedy picks equal at {agree} of {positions} positions"
        );
        assert!(vs_f32 < bound * spread, "{vs_f32} of {spread}");
        assert!(vs_hf < bound * spread, "{vs_hf} of {spread}");
        let agreement = agree as f64 / positions as f64;
        assert!(
            agreement >= min_agreement,
            "greedy picks agree at {agreement:.3}"
        );
    }
}

#[test]
fn q8_0_weights_stay_near_f32_and_transformers() {
    narrow_weights_stay_near_f32_and_transformers(oneword_model::WeightFormat::Q8_0, 0.05, 0.9);
}

#[test]
fn bf16_weights_stay_near_f32_and_transformers() {
    narrow_weights_stay_near_f32_and_transformers(oneword_model::WeightFormat::Bf16, 0.01, 0.97);
}

#[test]
fn f16_weights_stay_near_f32_and_transformers() {
    narrow_weights_stay_near_f32_and_transformers(oneword_model::WeightFormat::F16, 0.01, 0.97);
}

/// An f16 KV cache holds twice the positions in the same bytes, moves the logits of the
/// reference prompts only by f16's rounding of keys and values, and still gives a position the
/// same bits in one pass, in chunks or step by step (every key is rounded when it is stored,
/// before any query reads it).
#[test]
fn an_f16_kv_cache_holds_twice_the_positions_and_stays_near_f32() {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (embeddings, f32_model) = load(&dir);
    let mut checkpoint = Checkpoint::open(&dir, DType::F32, &Device::Cpu).unwrap();
    checkpoint.kv_cache = oneword_model::KvFormat::F16;
    let model = Transformer::load(&checkpoint).unwrap();
    assert_eq!(
        2 * model.cache_bytes_per_token(),
        f32_model.cache_bytes_per_token()
    );

    let refs =
        candle_core::safetensors::load(dir.join("reference_logits.safetensors"), &Device::Cpu)
            .unwrap();
    let (mut worst, mut spread, mut agree, mut positions) = (0f32, 0f32, 0, 0);
    for i in 0..4 {
        let (ids, x) = reference_prompt(&refs, i, &embeddings).expect("four prompts");
        let all = |model: &Transformer| {
            let mut cache = model.new_cache();
            let logits = model.forward(&x, &mut cache, LogitsAt::All).unwrap();
            (logits.unwrap(), cache)
        };
        let ((exact, f32_cache), (half, half_cache)) = (all(&f32_model), all(&model));
        assert_eq!(2 * half_cache.bytes(), f32_cache.bytes());
        worst = worst.max(max_abs_diff(&exact, &half));
        let expected = &refs[&format!("prompt_{i}_logits")];
        spread = spread.max(spread_of(expected));
        agree += same_picks(&exact, &half);
        positions += exact.dim(0).unwrap();

        // The first half in one chunk, then a token at a time.
        let (stepped, _) = decode_in_chunks(
            &model,
            Transformer::new_cache,
            &x,
            &[(ids.len() / 2).max(1)],
        );
        assert_eq!(max_abs_diff(&half, &stepped), 0.0, "prompt {i}");
    }
    eprintln!(
        "f16 KV cache: max |Δlogit| {worst:.4} against the f32 cache (logits spread over \
         {spread:.2}); greedy picks equal at {agree} of {positions} positions"
    );
    assert!(worst < 0.01 * spread, "{worst} of {spread}");
    assert!(agree * 100 >= 97 * positions, "{agree} of {positions}");
}

/// The tensor path (candle's ops, the path CUDA takes) with the whole model in `dtype`, run on
/// the CPU: against the f32 model at every position of the reference prompts and against
/// transformers at their last, within `bound` of the logits' spread, with the greedy pick
/// agreeing with f32's at `min_agreement` of the positions at least; and decoding token by
/// token through its cache within the same bound of one pass. Printed for the README.
fn tensor_path_in(dtype: DType, bound: f32, min_agreement: f64) {
    let dir = repo().join("tests/fixtures/tiny-gpt2-hf");
    let (f32_embeddings, f32_model) = load(&dir);
    let checkpoint = Checkpoint::open(&dir, dtype, &test_device()).unwrap();
    let (embeddings, model) = (
        Embeddings::load(&checkpoint).unwrap(),
        Transformer::load(&checkpoint).unwrap(),
    );
    assert_eq!(model.dtype(), dtype);
    let refs =
        candle_core::safetensors::load(dir.join("reference_logits.safetensors"), &Device::Cpu)
            .unwrap();
    let mut closeness = Closeness::default();
    for i in 0..4 {
        let (ids, exact_x) = reference_prompt(&refs, i, &f32_embeddings).expect("four prompts");
        let (_, x) = reference_prompt(&refs, i, &embeddings).expect("four prompts");
        let mut exact_cache = f32_model.new_cache();
        let exact = f32_model
            .forward(&exact_x, &mut exact_cache, LogitsAt::All)
            .unwrap()
            .unwrap();
        let mut cache = model.new_tensor_cache();
        let narrow = model
            .forward(&x, &mut cache, LogitsAt::All)
            .unwrap()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let last = narrow.get(ids.len() - 1).unwrap();
        let mut stepped = model.new_tensor_cache();
        let mut by_steps = None;
        for row in 0..ids.len() {
            let input = x.narrow(0, row, 1).unwrap();
            by_steps = model.forward(&input, &mut stepped, LogitsAt::Last).unwrap();
        }
        let by_steps = by_steps.unwrap().to_dtype(DType::F32).unwrap();
        let drift = max_abs_diff(&by_steps, &last);
        assert!(
            drift < bound * spread_of(&last),
            "step by step drifts {drift}"
        );
        let expected = &refs[&format!("prompt_{i}_logits")];
        closeness.add(&exact, &narrow, expected);
    }
    closeness.check(&format!("tensor path in {dtype:?}"), bound, min_agreement);
}

#[test]
fn the_tensor_path_in_f16_stays_near_f32_and_transformers() {
    tensor_path_in(DType::F16, 0.005, 0.98);
}

#[test]
fn the_tensor_path_in_bf16_stays_near_f32_and_transformers() {
    tensor_path_in(DType::BF16, 0.015, 0.93);
}
