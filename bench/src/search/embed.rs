//! Item 1: MiniLM embedding throughput of `oneword_model::SentenceEncoder` in-process, on the
//! same texts as sentence-transformers, tokenization included (as `encode` includes it), and the
//! vectors' agreement with the reference's on the corpus's lines.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use oneword_model::SentenceEncoder;
use serde_json::{json, Value};

use crate::data::{median, Matrix};

pub struct Options<'a> {
    pub model: &'a Path,
    pub data: &'a Path,
    /// Corpus lines embedded as the long-sentence run (and compared with the reference).
    pub long: usize,
    pub repeat: usize,
}

pub fn run(o: &Options) -> anyhow::Result<Value> {
    let encoder = SentenceEncoder::open(o.model, DType::F32, &Device::Cpu)?;
    let lines = |file: &str, limit: usize| -> anyhow::Result<Vec<String>> {
        Ok(std::fs::read_to_string(o.data.join(file))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(limit)
            .map(String::from)
            .collect())
    };
    let encode = |texts: &[String]| -> anyhow::Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| {
                let mut ids = encoder.encode_text(t)?;
                encoder.truncate(&mut ids);
                Ok(ids)
            })
            .collect()
    };
    let mut runs = serde_json::Map::new();
    for (name, file, limit) in [
        ("short", "short.txt", usize::MAX),
        ("verses", "verses.txt", o.long),
    ] {
        let texts = lines(file, limit)?;
        encoder.embed(&encode(&texts[..32.min(texts.len())])?, true)?; // warm-up
        let (mut calls, mut whole) = (Vec::new(), Vec::new());
        let mut vectors = Vec::new();
        for _ in 0..o.repeat {
            // One call per 32 texts, as a client's request of 32 would be.
            let start = Instant::now();
            for chunk in texts.chunks(32) {
                encoder.embed(&encode(chunk)?, true)?;
            }
            calls.push(texts.len() as f64 / start.elapsed().as_secs_f64());
            // The whole list in one call: `embed` sorts by length and passes 32 at a time.
            let start = Instant::now();
            vectors = encoder.embed(&encode(&texts)?, true)?;
            whole.push(texts.len() as f64 / start.elapsed().as_secs_f64());
        }
        let tokens: usize = encode(&texts)?.iter().map(Vec::len).sum();
        let longest = encode(&texts)?.iter().map(Vec::len).max().unwrap_or(0);
        eprintln!(
            "search bench: embed {name}: {:.0} sentences/s (calls of 32), {:.0} (one call)",
            median(&calls),
            median(&whole)
        );
        let mut run = json!({
            "sentences": texts.len(),
            "tokens": tokens,
            "longest_tokens": longest,
            "per_call_32": {"sentences_per_s": median(&calls), "all": calls},
            "one_call": {"sentences_per_s": median(&whole), "all": whole},
        });
        if name == "verses" {
            run["parity"] = parity(&vectors, &Matrix::load(o.data, "verses.f32")?);
        }
        runs.insert(name.into(), run);
    }
    Ok(json!({
        "system": "oneword SentenceEncoder",
        "version": env!("CARGO_PKG_VERSION"),
        "threads": candle_core::utils::get_num_threads(),
        "runs": runs,
        "notes": ["in-process: encode_text + truncate + embed(normalize), f32 on the CPU"],
    }))
}

/// Cosine and largest difference between our vectors and the reference's, row by row.
fn parity(ours: &[f32], reference: &Matrix) -> Value {
    let (mut min_cos, mut max_diff) = (f64::INFINITY, 0f64);
    for (i, v) in ours.chunks(reference.dim).enumerate() {
        let r = reference.row(i);
        let dot: f64 = v
            .iter()
            .zip(r)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let norm = |x: &[f32]| x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        min_cos = min_cos.min(dot / (norm(v) * norm(r)));
        for (a, b) in v.iter().zip(r) {
            max_diff = max_diff.max(f64::from((a - b).abs()));
        }
    }
    json!({"rows": ours.len() / reference.dim, "min_cosine": min_cos, "max_abs_diff": max_diff})
}
