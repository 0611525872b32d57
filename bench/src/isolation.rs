//! Isolation of the transformer from the n-gram baseline: the inter-token latency of `streams`
//! transformer generations alone, then with an n-gram generation running beside them the whole
//! time (the baseline is its own service; before it was, an n-gram step held a lock every
//! transformer step asked for). Two kinds of side load: a streaming client that reads at a
//! reader's pace (what an n-gram user does), and generations back to back as fast as they go,
//! which on a machine whose cores every service shares measures CPU taken, not interference.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use oneword_proto::gateway::v1 as pb;
use serde_json::{json, Value};

use crate::load::Bench;

/// The n-gram model the side load runs.
const NGRAM_MODEL: &str = "tokens-3";
/// The paced client reads one chunk every this long (about 50 tokens/s).
const READ_EVERY: Duration = Duration::from_millis(20);

impl Bench {
    /// Runs `streams` transformer generations alone, then beside a paced n-gram stream, then
    /// beside n-gram generations back to back, and reports the inter-token latencies and the
    /// n-gram tokens made meanwhile.
    pub async fn ngram_isolation(&self, streams: usize) -> anyhow::Result<Value> {
        // The baseline counts a model on its first use: do that before measuring.
        self.ngram_generation(16).await?;
        let alone = self.generation(streams, true).await?;
        let paced = self.beside_ngrams(streams, Some(READ_EVERY)).await?;
        let flat_out = self.beside_ngrams(streams, None).await?;
        let p50 = |run: &Value| run["itl_ms_p50"].as_f64().unwrap_or(f64::NAN);
        Ok(json!({
            "streams": streams,
            "ngram_model": NGRAM_MODEL,
            "alone": alone,
            "itl_ms_p50_alone": p50(&alone),
            "paced": paced,
            "flat_out": flat_out,
        }))
    }

    /// `streams` transformer generations while n-gram generations run: read a chunk every
    /// `pace`, or as fast as they come.
    async fn beside_ngrams(&self, streams: usize, pace: Option<Duration>) -> anyhow::Result<Value> {
        let stop = Arc::new(AtomicBool::new(false));
        let ngram_tokens = Arc::new(AtomicUsize::new(0));
        let side = {
            let (stop, ngram_tokens) = (stop.clone(), ngram_tokens.clone());
            let mut gateway = self.gateway().await;
            let prompt = self.prompt.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = pb::GenerateRequest {
                        prompt: prompt.clone(),
                        max_new_tokens: Some(256),
                        temperature: Some(0.8),
                        ignore_eos: true,
                        model: NGRAM_MODEL.into(),
                        ..Default::default()
                    };
                    let mut stream = gateway.generate_stream(request).await?.into_inner();
                    while let Some(chunk) = stream.next().await {
                        ngram_tokens.fetch_add(chunk?.token_ids.len(), Ordering::Relaxed);
                        if let Some(pace) = pace {
                            tokio::time::sleep(pace).await;
                        }
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
                anyhow::Ok(())
            })
        };
        let started = Instant::now();
        let run = self.generation(streams, true).await?;
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        side.await??;
        Ok(json!({
            "run": run,
            "itl_ms_p50": run["itl_ms_p50"],
            "ngram_tokens_per_s": ngram_tokens.load(Ordering::Relaxed) as f64 / seconds,
        }))
    }

    /// One n-gram generation of `tokens` tokens, to its end.
    async fn ngram_generation(&self, tokens: u32) -> anyhow::Result<()> {
        let request = pb::GenerateRequest {
            prompt: self.prompt.clone(),
            max_new_tokens: Some(tokens),
            ignore_eos: true,
            model: NGRAM_MODEL.into(),
            ..Default::default()
        };
        self.gateway().await.generate(request).await?;
        Ok(())
    }
}
