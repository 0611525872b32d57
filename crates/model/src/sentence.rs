//! Sentence embeddings for similarity search: Sentence-BERT (Reimers & Gurevych, "Sentence-BERT:
//! Sentence Embeddings using Siamese BERT-Networks", EMNLP 2019), as the reference implementation
//! `sentence-transformers` runs it: the checkpoint's WordPiece tokenizer, BERT (our own CPU
//! forward, [`crate::bert`], in f32 on the CPU; candle-transformers' elsewhere), then the pooling
//! and normalisation its own files name (see [`oneword_checkpoint::SentenceConfig`]).
//! all-MiniLM-L6-v2 is the default model; any sentence-transformers BERT loads the same way.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use oneword_checkpoint::{Pooling, SentenceConfig};
use rayon::prelude::*;
use tokenizers::{Encoding, Token, Tokenizer};

use crate::bert::HostBert;
use crate::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// Most sequences in one candle forward pass, and most padded tokens: past these, a bigger batch
/// only costs memory (attention scores grow with the square of the longest text).
const BATCH_SEQUENCES: usize = 32;
const BATCH_TOKENS: usize = 8192;

/// Most tokens in one pass of the CPU forward: enough rows for gemm to run near its peak; more
/// would only grow the activations (`[tokens, intermediate]`, 3 MiB for MiniLM at 512).
const HOST_BATCH_TOKENS: usize = 512;

enum Bert {
    /// f32 on the CPU.
    Host(HostBert),
    Candle(BertModel),
}

/// A loaded sentence-embedding model.
pub struct SentenceEncoder {
    bert: Bert,
    tokenizer: Tokenizer,
    pipeline: SentenceConfig,
    /// Width of the vectors.
    pub dimensions: usize,
    /// Most tokens of one input, special tokens included.
    pub max_tokens: usize,
    pub vocab_size: usize,
    pub dir: PathBuf,
    pub device: Device,
    pub dtype: DType,
}

impl SentenceEncoder {
    /// Resolves `model` (a directory or a Hugging Face id, as for GPT-2) and loads it on the
    /// device and dtype named as [`crate::Checkpoint::load`] takes them.
    pub fn load(model: &str, device: &str, dtype: &str) -> Result<Self> {
        let dir = oneword_checkpoint::hub::resolve_sentence(model)?;
        let device = crate::load_device(device)?;
        let dtype = crate::checkpoint::pick_dtype(dtype, &device)?;
        Self::open(&dir, dtype, &device)
    }

    /// Opens the sentence-transformers checkpoint in `dir`.
    pub fn open(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let pipeline = SentenceConfig::from_dir(dir)?;
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| ModelError::Io(config_path.clone(), e))?;
        let config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", config_path.display())))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| ModelError::Checkpoint(format!("tokenizer.json: {e}")))?;
        // The file may carry a fixed padding and truncation for other uses (MiniLM's: 128);
        // lengths are decided here, against the model's limit.
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::Checkpoint(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        let max_tokens = pipeline
            .max_seq_length
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        // SAFETY: the file is mapped read-only and the mapping lives as long as the VarBuilder;
        // like every mmap it assumes nobody truncates the checkpoint while the service runs.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], dtype, device)?
        };
        let bert = if device.is_cpu() && dtype == DType::F32 {
            Bert::Host(HostBert::load(vb, &config)?)
        } else {
            Bert::Candle(BertModel::load(vb, &config)?)
        };
        Ok(SentenceEncoder {
            bert,
            tokenizer,
            pipeline,
            dimensions: config.hidden_size,
            max_tokens,
            vocab_size: config.vocab_size,
            dir: dir.to_path_buf(),
            device: device.clone(),
            dtype,
        })
    }

    pub fn pooling(&self) -> Pooling {
        self.pipeline.pooling
    }

    /// Whether the checkpoint's pipeline normalises its vectors.
    pub fn normalizes(&self) -> bool {
        self.pipeline.normalize
    }

    /// A text's token ids with the special tokens the model expects ([CLS] … [SEP]), uncut.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Input(format!("tokenizing: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids given by a caller (each below `vocab_size`) with the special tokens added, as
    /// [`encode_text`](Self::encode_text) would have added them.
    pub fn encode_ids(&self, ids: &[u32]) -> Result<Vec<u32>> {
        let tokens = ids
            .iter()
            .map(|&id| {
                let value = self.tokenizer.id_to_token(id).unwrap_or_default();
                Token::new(id, value, (0, 0))
            })
            .collect();
        let encoding = self
            .tokenizer
            .post_process(Encoding::from_tokens(tokens, 0), None, true)
            .map_err(|e| ModelError::Input(format!("adding special tokens: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Cuts encoded ids to `max_tokens`, keeping the closing special token, as the reference's
    /// truncation does.
    pub fn truncate(&self, ids: &mut Vec<u32>) {
        if ids.len() > self.max_tokens {
            let last = *ids.last().expect("a long input is not empty");
            ids.truncate(self.max_tokens - 1);
            ids.push(last);
        }
    }

    /// One vector per input (encoded ids, each at most `max_tokens` long and below
    /// `vocab_size`), `dimensions` f32 values each, concatenated in the order of the inputs.
    pub fn embed(&self, inputs: &[Vec<u32>], normalize: bool) -> Result<Vec<f32>> {
        if let Some(long) = inputs.iter().find(|ids| ids.len() > self.max_tokens) {
            return Err(ModelError::Input(format!(
                "an input of {} tokens is over the limit of {}",
                long.len(),
                self.max_tokens
            )));
        }
        if let Some(&id) = inputs
            .iter()
            .flatten()
            .find(|&&id| id as usize >= self.vocab_size)
        {
            return Err(ModelError::Input(format!(
                "token id {id} is not below the vocabulary size {}",
                self.vocab_size
            )));
        }
        let mut out = match &self.bert {
            Bert::Host(bert) => self.embed_host(bert, inputs),
            Bert::Candle(bert) => self.embed_padded(bert, inputs)?,
        };
        if normalize {
            out.chunks_mut(self.dimensions).for_each(l2_normalize);
        }
        Ok(out)
    }

    /// The CPU forward: consecutive inputs in passes of about equal tokens, passes spread over
    /// the threads with gemm single-threaded inside each (a barrier in every matrix product
    /// cost more than the product on small batches); a lone short pass uses every thread in
    /// each product instead.
    fn embed_host(&self, bert: &HostBert, inputs: &[Vec<u32>]) -> Vec<f32> {
        let threads = rayon::current_num_threads();
        let total: usize = inputs.iter().map(Vec::len).sum();
        let target = total.div_ceil(threads).clamp(1, HOST_BATCH_TOKENS);
        let mut passes = Vec::new();
        let (mut start, mut tokens) = (0, 0);
        for (i, ids) in inputs.iter().enumerate() {
            if i > start && tokens + ids.len() > target {
                passes.push(&inputs[start..i]);
                (start, tokens) = (i, 0);
            }
            tokens += ids.len();
        }
        if start < inputs.len() {
            passes.push(&inputs[start..]);
        }
        let parallelism = match passes.len() {
            1 if threads > 1 => gemm::Parallelism::Rayon(threads),
            _ => gemm::Parallelism::None,
        };
        let d = self.dimensions;
        let pooled: Vec<Vec<f32>> = passes
            .par_iter()
            .map(|pass| {
                let sequences: Vec<&[u32]> = pass.iter().map(|ids| &ids[..]).collect();
                let states = bert.forward(&sequences, parallelism);
                let mut out = vec![0f32; pass.len() * d];
                let mut row = 0;
                for (ids, vector) in sequences.iter().zip(out.chunks_mut(d)) {
                    let len = ids.len();
                    // An empty input has no token to pool: it stays all zeros.
                    if len > 0 {
                        let states = &states[row * d..(row + len) * d];
                        vector.copy_from_slice(&pool(states, &[len], len, d, self.pooling()));
                    }
                    row += len;
                }
                out
            })
            .collect();
        pooled.concat()
    }

    /// Candle's forward: texts sorted by length, so that little of each padded pass is padding.
    fn embed_padded(&self, bert: &BertModel, inputs: &[Vec<u32>]) -> Result<Vec<f32>> {
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].len());
        let mut out = vec![0f32; inputs.len() * self.dimensions];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len()
                && end - start < BATCH_SEQUENCES
                && inputs[order[end]].len() * (end + 1 - start) <= BATCH_TOKENS
            {
                end += 1;
            }
            let batch: Vec<&[u32]> = order[start..end].iter().map(|&i| &inputs[i][..]).collect();
            let vectors = self.forward_padded(bert, &batch)?;
            for (k, &i) in order[start..end].iter().enumerate() {
                let d = self.dimensions;
                out[i * d..(i + 1) * d].copy_from_slice(&vectors[k * d..(k + 1) * d]);
            }
            start = end;
        }
        Ok(out)
    }

    /// One padded candle pass over `batch`, pooled.
    fn forward_padded(&self, bert: &BertModel, batch: &[&[u32]]) -> Result<Vec<f32>> {
        let longest = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; batch.len() * longest];
        let mut mask = vec![0u32; batch.len() * longest];
        for (row, input) in batch.iter().enumerate() {
            ids[row * longest..row * longest + input.len()].copy_from_slice(input);
            mask[row * longest..row * longest + input.len()].fill(1);
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask_t = Tensor::from_vec(mask, shape, &self.device)?;
        let types = ids.zeros_like()?;
        let states = bert.forward(&ids, &types, Some(&mask_t))?;
        let states = states
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let lengths: Vec<usize> = batch.iter().map(|ids| ids.len()).collect();
        Ok(pool(
            &states,
            &lengths,
            longest,
            self.dimensions,
            self.pipeline.pooling,
        ))
    }
}

/// Pools `states` ([batch, longest, width], row-major) over each row's first `lengths[row]`
/// tokens. (The decoder pools GPT-2's hidden states with it too.)
pub fn pool(
    states: &[f32],
    lengths: &[usize],
    longest: usize,
    width: usize,
    pooling: Pooling,
) -> Vec<f32> {
    let mut out = vec![0f32; lengths.len() * width];
    for (row, (&len, vector)) in lengths.iter().zip(out.chunks_mut(width)).enumerate() {
        let token = |t: usize| &states[(row * longest + t) * width..][..width];
        match pooling {
            Pooling::Cls => vector.copy_from_slice(token(0)),
            Pooling::LastToken => vector.copy_from_slice(token(len.max(1) - 1)),
            Pooling::Max => {
                vector.fill(f32::NEG_INFINITY);
                for t in 0..len {
                    for (v, &x) in vector.iter_mut().zip(token(t)) {
                        *v = v.max(x);
                    }
                }
            }
            Pooling::Mean | Pooling::MeanSqrtLen | Pooling::WeightedMean => {
                let mut total = 0f32;
                for t in 0..len {
                    let weight = if pooling == Pooling::WeightedMean {
                        (t + 1) as f32
                    } else {
                        1.0
                    };
                    total += weight;
                    for (v, &x) in vector.iter_mut().zip(token(t)) {
                        *v += weight * x;
                    }
                }
                let divisor = match pooling {
                    Pooling::MeanSqrtLen => (len as f32).sqrt(),
                    _ => total,
                };
                // sentence-transformers clamps the divisor away from zero the same way.
                let divisor = divisor.max(1e-9);
                vector.iter_mut().for_each(|v| *v /= divisor);
            }
        }
    }
    out
}

/// Scales `vector` to length 1 (left as it is when all zeros), as `torch.nn.functional.normalize`.
pub fn l2_normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    vector.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_reads_only_the_real_tokens() {
        // Two rows of width 2, the second padded after one token with garbage.
        let states = [1.0, 2.0, 3.0, 6.0, 5.0, -1.0, 100.0, 100.0];
        let lengths = [2, 1];
        let pooled = |p| pool(&states, &lengths, 2, 2, p);
        assert_eq!(pooled(Pooling::Mean), [2.0, 4.0, 5.0, -1.0]);
        assert_eq!(pooled(Pooling::Cls), [1.0, 2.0, 5.0, -1.0]);
        assert_eq!(pooled(Pooling::LastToken), [3.0, 6.0, 5.0, -1.0]);
        assert_eq!(pooled(Pooling::Max), [3.0, 6.0, 5.0, -1.0]);
        let s = 2f32.sqrt();
        assert_eq!(pooled(Pooling::MeanSqrtLen), [4.0 / s, 8.0 / s, 5.0, -1.0]);
        assert_eq!(
            pooled(Pooling::WeightedMean),
            [7.0 / 3.0, 14.0 / 3.0, 5.0, -1.0]
        );
    }

    #[test]
    fn normalising_gives_length_one_and_keeps_zeros() {
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0.0, 0.0];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
