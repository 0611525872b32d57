//! How many candle operations a decode pass on the tensor path (what a GPU runs) makes, counted
//! through candle's tensor ids: every operation that makes a tensor takes the next id from one
//! global counter. A kernel launch is an operation that makes a tensor (a few ops, such as
//! reshapes of contiguous tensors, are views and launch nothing), so a count that does not grow
//! with the batch means launches that do not either: a per-sequence loop cannot come back
//! unnoticed. One test in its own binary, so that no other test makes tensors meanwhile.

use std::path::Path;

use candle_core::{DType, Device};
use oneword_model::speed::{next_tensor_id, one_sequence_per_cache};
use oneword_model::tiny::{test_device, RandomCheckpoint};
use oneword_model::{Checkpoint, Embeddings, KvCache, LogitsAt, Transformer};

/// Operations per layer of a decode pass, whatever the number of sequences: layer norms,
/// products and biases, the scatter of the new keys and values into the pool, and the batched
/// attention (query gather, scale, key and value gathers, products, mask, softmax, casts).
const PER_LAYER: usize = 55;

/// Tensors made outside the layers per sequence: none. The logits come back as candidates
/// reduced on the device for all sequences at once (what the decoder asks for on a GPU), so no
/// row is split off per sequence even on the host.
const PER_SEQUENCE: usize = 0;

struct Model {
    embeddings: Embeddings,
    transformer: Transformer,
}

impl Model {
    /// A tiny random model with `layers` layers in f16, so that on the CPU too the linear layers
    /// take candle's products, as on a GPU, rather than the CPU path's packed kernels.
    fn new(layers: usize, dir: &Path) -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let shape = RandomCheckpoint {
            n_layer: layers,
            ..RandomCheckpoint::tiny()
        };
        shape
            .write(dir, &repo.join("tests/fixtures/gpt2-tokenizer"))
            .unwrap();
        let checkpoint = Checkpoint::open(dir, DType::F16, &test_device()).unwrap();
        // Step embeddings made on the host, as the decoder makes them: the pass uploads its rows
        // at once.
        let host = Checkpoint::open(dir, DType::F32, &Device::Cpu).unwrap();
        Model {
            embeddings: Embeddings::load(&host).unwrap(),
            transformer: Transformer::load(&checkpoint).unwrap(),
        }
    }

    /// Tensors made by one decode pass of `sequences` sequences with prompts of different
    /// lengths (so their block tables differ, some past one block).
    fn decode_pass_ops(&self, sequences: usize) -> usize {
        let mut caches: Vec<KvCache> = Vec::new();
        let mut steps = Vec::new();
        for s in 0..sequences {
            let len = 3 + 7 * s % 29;
            let ids: Vec<u32> = (0..len as u32)
                .map(|i| (i * 131 + s as u32) % 50257)
                .collect();
            let positions: Vec<u32> = (0..len as u32).collect();
            let x = self.embeddings.embed(&ids, &positions).unwrap();
            let mut cache = self.transformer.new_tensor_cache();
            self.transformer
                .forward(&x, &mut cache, LogitsAt::None)
                .unwrap();
            caches.push(cache);
            steps.push(self.embeddings.embed(&[42], &[len as u32]).unwrap());
        }
        let mut batch = one_sequence_per_cache(
            &mut caches,
            &steps,
            LogitsAt::Candidates { temperature: 0.8 },
        );
        let before = next_tensor_id();
        let logits = self.transformer.forward_batch_logits(&mut batch).unwrap();
        let made = next_tensor_id() - before - 1;
        assert!(logits.iter().all(Option::is_some));
        made
    }
}

#[test]
fn a_decode_pass_makes_a_constant_number_of_operations_per_layer() {
    let (one_dir, three_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Model::new(1, one_dir.path());
    let three = Model::new(3, three_dir.path());
    let mut outside = Vec::new();
    for sequences in [1, 2, 4, 16, 32] {
        let (a, b) = (
            one.decode_pass_ops(sequences),
            three.decode_pass_ops(sequences),
        );
        let per_layer = (b - a) / 2;
        println!("{sequences} sequences: {per_layer} operations per layer, {b} in a 3-layer pass");
        outside.push((sequences, per_layer, a - per_layer));
    }
    // One sequence takes a few fewer: copies of a tensor with a dimension of 1 are views.
    assert!(outside[0].1 <= PER_LAYER);
    let (first, _, ops) = outside[1];
    for &(sequences, per_layer, more) in &outside[1..] {
        assert_eq!(
            per_layer, PER_LAYER,
            "{sequences} sequences: operations per layer changed"
        );
        assert_eq!(
            more - ops,
            (sequences - first) * PER_SEQUENCE,
            "{sequences} sequences: operations outside the layers grow with the batch"
        );
    }
}
