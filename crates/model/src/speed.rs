//! `oneword-model speed`: the transformer alone on one device, driven as the decoder drives it
//! on a GPU (step embeddings made on the host, one pass per step for every stream, logits
//! reduced on the device to candidates and the greedy pick made from them on the host), timed
//! step by step. It needs no services, so it runs where
//! only the binary is: the GPU check (`make gpu-check`) measures with it.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use oneword_sampling::{Seen, Shaping};
use serde_json::{json, Value};

use crate::{Checkpoint, Embeddings, KvCache, Logits, LogitsAt, ModelError, Sequence, Transformer};

type Result<T> = std::result::Result<T, ModelError>;

/// Prompts prefilled together in one pass before the decode steps are timed.
const PREFILL_GROUP: usize = 16;

/// What to measure.
pub struct Plan {
    /// Concurrent streams, one decode measurement each.
    pub streams: Vec<usize>,
    /// Tokens in each stream's prompt.
    pub prompt_tokens: usize,
    /// Decode steps timed per measurement.
    pub new_tokens: usize,
    /// Prompt lengths whose prefill (one sequence, one pass) is timed.
    pub prefill: Vec<usize>,
}

impl Plan {
    /// Every count at least 1, and every sequence within the context `window`, before the model
    /// is loaded.
    fn check(&self, window: usize) -> Result<()> {
        let bad = |field: &str, value: usize, most: usize, why: &str| {
            Err(ModelError::Input(format!(
                "`{field}` must be in [1, {most}]{why}, got {value}"
            )))
        };
        if let Some(&s) = self.streams.iter().find(|&&s| s == 0) {
            return Err(ModelError::Input(format!(
                "`streams` must be at least 1, got {s}"
            )));
        }
        // Prompt and new tokens share the context window; each leaves at least one to the other.
        let shared = format!(" (the context window of {window} less the other's tokens)");
        let most_prompt = window.saturating_sub(self.new_tokens.max(1));
        if self.prompt_tokens == 0 || self.prompt_tokens > most_prompt {
            return bad("prompt_tokens", self.prompt_tokens, most_prompt, &shared);
        }
        let most_new = window - self.prompt_tokens;
        if self.new_tokens == 0 || self.new_tokens > most_new {
            return bad("new_tokens", self.new_tokens, most_new, &shared);
        }
        match self.prefill.iter().find(|&&p| p == 0 || p > window) {
            Some(&p) => bad("prefill", p, window, " (the context window)"),
            None => Ok(()),
        }
    }
}

/// The id the next tensor candle makes will get: every candle operation that makes a tensor
/// takes one from a global counter, so the difference around a pass counts its operations.
pub fn next_tensor_id() -> usize {
    let probe = Tensor::zeros(1, DType::F32, &Device::Cpu).expect("a one-element tensor");
    format!("{:?}", probe.id())
        .trim_start_matches("TensorId(")
        .trim_end_matches(')')
        .parse()
        .expect("candle's TensorId prints as TensorId(n)")
}

/// A pass of one sequence per cache with its `inputs`, each asking for its logits `at` (the
/// decoder asks for [`LogitsAt::Candidates`] on a GPU, [`LogitsAt::Last`] on the CPU).
pub fn one_sequence_per_cache<'a>(
    caches: &'a mut [KvCache],
    inputs: &'a [Tensor],
    at: LogitsAt,
) -> Vec<Sequence<'a>> {
    caches
        .iter_mut()
        .zip(inputs)
        .map(|(cache, inputs)| Sequence {
            inputs,
            cache,
            logits: at,
        })
        .collect()
}

/// The model under test, with its embedding table on the host.
struct Bench {
    embeddings: Embeddings,
    model: Transformer,
    vocab: u32,
}

impl Bench {
    fn embed(&self, id: u32, position: usize) -> Result<Tensor> {
        self.embeddings.embed(&[id], &[position as u32])
    }

    /// A pass of one sequence per cache, each asking for its last row's logits as the decoder
    /// asks on this model's device: as candidates where the device reduces them, else the row.
    fn batch<'a>(&self, caches: &'a mut [KvCache], inputs: &'a [Tensor]) -> Vec<Sequence<'a>> {
        let at = if self.model.logits_on_device() {
            LogitsAt::Candidates { temperature: 0.0 }
        } else {
            LogitsAt::Last
        };
        one_sequence_per_cache(caches, inputs, at)
    }

    /// Greedy picks from each sequence's candidates, or its whole row where they cannot tell.
    fn greedy(logits: Vec<Option<Logits>>) -> Result<Vec<u32>> {
        let shaping = Shaping {
            temperature: 0.0,
            ..Shaping::default()
        };
        let argmax = |row: Vec<f32>| -> u32 {
            (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32
        };
        logits
            .into_iter()
            .map(|logits| match logits {
                Some(Logits::Candidates(candidates, row)) => {
                    match candidates.pick(&shaping, &Seen::default(), 0.0, 0) {
                        Some(pick) => Ok(pick.token),
                        None => Ok(argmax(row.download()?)),
                    }
                }
                Some(Logits::Rows(row)) => Ok(argmax(row.to_vec1()?)),
                None => Err(ModelError::Input("a sequence got no logits".into())),
            })
            .collect()
    }

    /// Prompts of `streams` streams prefilled, [`PREFILL_GROUP`] per pass; their first picks.
    fn prefill(&self, streams: usize, prompt: usize) -> Result<(Vec<KvCache>, Vec<u32>)> {
        let mut caches: Vec<KvCache> = (0..streams).map(|_| self.model.new_cache()).collect();
        let mut next = Vec::with_capacity(streams);
        for (g, group) in caches.chunks_mut(PREFILL_GROUP).enumerate() {
            let inputs = (0..group.len())
                .map(|i| {
                    let salt = (g * PREFILL_GROUP + i) as u32;
                    let ids: Vec<u32> = (0..prompt as u32)
                        .map(|p| (p * 7919 + salt * 104_729 + 13) % self.vocab)
                        .collect();
                    let positions: Vec<u32> = (0..prompt as u32).collect();
                    self.embeddings.embed(&ids, &positions)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut batch = self.batch(group, &inputs);
            next.extend(Self::greedy(self.model.forward_batch_logits(&mut batch)?)?);
        }
        Ok((caches, next))
    }

    /// One decode step of every stream; the picks, and candle operations it made.
    fn step(&self, caches: &mut [KvCache], next: &[u32]) -> Result<(Vec<u32>, usize)> {
        let inputs = caches
            .iter()
            .zip(next)
            .map(|(cache, &id)| self.embed(id, cache.len()))
            .collect::<Result<Vec<_>>>()?;
        let mut batch = self.batch(caches, &inputs);
        let before = next_tensor_id();
        let logits = self.model.forward_batch_logits(&mut batch)?;
        let ops = next_tensor_id() - before - 1;
        Ok((Self::greedy(logits)?, ops))
    }

    fn decode(&self, streams: usize, plan: &Plan) -> Result<Value> {
        let positions = streams * (plan.prompt_tokens + plan.new_tokens + 1);
        self.model.reserve_cache(positions, streams)?;
        let (mut caches, mut next) = self.prefill(streams, plan.prompt_tokens)?;
        let mut steps = Vec::with_capacity(plan.new_tokens);
        let mut ops = 0;
        for _ in 0..plan.new_tokens {
            let started = Instant::now();
            (next, ops) = self.step(&mut caches, &next)?;
            steps.push(started.elapsed());
        }
        let total: Duration = steps.iter().sum();
        steps.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| ms(steps[((steps.len() - 1) as f64 * q).round() as usize]);
        Ok(json!({
            "streams": streams,
            "ms_per_step_p50": at(0.5),
            "ms_per_step_p99": at(0.99),
            "tokens_per_s": (streams * steps.len()) as f64 / total.as_secs_f64(),
            // Candle operations in the last step's pass (each a kernel launch at most).
            "ops_per_pass": ops,
        }))
    }

    /// One sequence's prompt of `tokens` in one pass, the fastest of three.
    fn prefill_ms(&self, tokens: usize) -> Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let started = Instant::now();
            self.prefill(1, tokens)?;
            best = best.min(started.elapsed().as_secs_f64() * 1e3);
        }
        Ok(best)
    }
}

/// Measures `plan` on the checkpoint in `dir`, with weights in `dtype` on `device`.
pub fn measure(dir: &Path, device: &Device, dtype: DType, plan: &Plan) -> Result<Value> {
    let checkpoint = Checkpoint::open(dir, dtype, device)?;
    plan.check(checkpoint.config.n_positions)?;
    let host = Checkpoint::open(dir, DType::F32, &Device::Cpu)?;
    let bench = Bench {
        embeddings: Embeddings::load(&host)?,
        model: Transformer::load(&checkpoint)?,
        vocab: checkpoint.config.vocab_size as u32,
    };
    // Warm-up: kernels loaded, libraries' handles made.
    let warm_up = Plan {
        streams: vec![1],
        prompt_tokens: plan.prompt_tokens.min(8),
        new_tokens: 2,
        prefill: Vec::new(),
    };
    bench.decode(1, &warm_up)?;
    let decode = plan
        .streams
        .iter()
        .map(|&s| bench.decode(s, plan))
        .collect::<Result<Vec<_>>>()?;
    let prefill = plan
        .prefill
        .iter()
        .map(|&t| Ok(json!({ "prompt_tokens": t, "ms": bench.prefill_ms(t)? })))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "device": format!("{device:?}"),
        "dtype": format!("{dtype:?}").to_lowercase(),
        "layers": checkpoint.config.n_layer,
        "width": checkpoint.config.n_embd,
        "prompt_tokens": plan.prompt_tokens,
        "new_tokens": plan.new_tokens,
        "decode": decode,
        "prefill": prefill,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::RandomCheckpoint;

    #[test]
    fn speed_measures_every_plan_entry_on_the_tiny_model() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        RandomCheckpoint::tiny()
            .write(dir.path(), &repo.join("tests/fixtures/gpt2-tokenizer"))
            .unwrap();
        let plan = Plan {
            streams: vec![1, 3],
            prompt_tokens: 5,
            new_tokens: 3,
            prefill: vec![20],
        };
        let report = measure(dir.path(), &Device::Cpu, DType::F16, &plan).unwrap();
        let decode = report["decode"].as_array().unwrap();
        assert_eq!(decode.len(), 2);
        for d in decode {
            assert!(d["tokens_per_s"].as_f64().unwrap() > 0.0, "{d}");
            assert!(d["ops_per_pass"].as_u64().unwrap() > 0, "{d}");
        }
        assert!(report["prefill"][0]["ms"].as_f64().unwrap() > 0.0);
        let too_long = Plan {
            prefill: vec![2_000],
            ..plan
        };
        let err = measure(dir.path(), &Device::Cpu, DType::F16, &too_long).unwrap_err();
        assert!(err.to_string().contains("1024"), "{err}");
        let no_steps = Plan {
            streams: vec![1],
            prompt_tokens: 5,
            new_tokens: 0,
            prefill: vec![],
        };
        let err = measure(dir.path(), &Device::Cpu, DType::F16, &no_steps).unwrap_err();
        assert!(err.to_string().contains("new_tokens"), "{err}");
        // A prompt that leaves no room for the steps names the range that would fit.
        let no_room = Plan {
            streams: vec![1],
            prompt_tokens: 1000,
            new_tokens: 100,
            prefill: vec![],
        };
        let err = measure(dir.path(), &Device::Cpu, DType::F16, &no_room).unwrap_err();
        assert!(
            err.to_string()
                .contains("`prompt_tokens` must be in [1, 924]"),
            "{err}"
        );
    }
}
