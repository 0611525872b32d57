//! Concurrent streams against the running services, timed token by token.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use futures::future::try_join_all;
use futures::StreamExt;
use oneword_e2e::Cluster;
use oneword_model::wire::to_wire;
use oneword_model::{Checkpoint, Embeddings, Gpt2Config};
use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use serde_json::{json, Value};
use tonic::transport::Channel;

type DecoderClient = dec::decoder_client::DecoderClient<Channel>;
type GatewayClient = pb::gateway_client::GatewayClient<Channel>;

/// Bytes of weights one decode step reads: every block's four matrices and the LM head, in f32.
pub fn decode_weight_bytes(c: &Gpt2Config) -> usize {
    let per_block = 4 * c.n_embd * c.n_embd + 2 * c.n_embd * c.inner_dim();
    4 * (c.n_layer * per_block + c.vocab_size * c.n_embd)
}

/// The services, running, and what a client needs to drive them.
pub struct Bench {
    cluster: Cluster,
    embeddings: Embeddings,
    pub(crate) prompt: String,
    /// `prompt`'s ids.
    prompt_ids: Vec<u32>,
    /// The id of " the", to make prompts of any length.
    filler: u32,
    new_tokens: usize,
}

/// When one stream started and when each of its tokens arrived.
struct Timeline {
    started: Instant,
    tokens: Vec<Instant>,
}

impl Bench {
    pub async fn start(
        model: &Path,
        prompt_tokens: usize,
        new_tokens: usize,
        dtype: &str,
        kv_cache_dtype: &str,
    ) -> anyhow::Result<Self> {
        let cluster = Cluster::start_with(model, |c| {
            c.dtype = dtype.to_string();
            c.kv_cache_dtype = kv_cache_dtype.to_string();
        })
        .await;
        let checkpoint = Checkpoint::open(model, DType::F32, &Device::Cpu)?;
        let embeddings = Embeddings::load(&checkpoint)?;
        // "the the the …": one token per word with GPT-2's vocabulary.
        let prompt = format!("the{}", " the".repeat(prompt_tokens.saturating_sub(1)));
        let mut gateway = cluster.gateway().await;
        let encoding = gateway
            .tokenize(pb::TokenizeRequest {
                text: prompt.clone(),
                allow_special: false,
            })
            .await?
            .into_inner()
            .encoding
            .unwrap_or_default();
        anyhow::ensure!(
            encoding.ids.len() == prompt_tokens,
            "the bench prompt is {} tokens, not {prompt_tokens}",
            encoding.ids.len()
        );
        Ok(Bench {
            cluster,
            embeddings,
            filler: *encoding.ids.last().unwrap_or(&0),
            prompt,
            prompt_ids: encoding.ids,
            new_tokens,
        })
    }

    /// `concurrency` streams at once, through the gateway or to the decoder alone.
    pub async fn generation(
        &self,
        concurrency: usize,
        through_gateway: bool,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        let timelines: Vec<Timeline> = if through_gateway {
            let mut clients = Vec::new();
            for _ in 0..concurrency {
                clients.push(self.cluster.gateway().await);
            }
            try_join_all(clients.into_iter().map(|c| self.gateway_stream(c))).await?
        } else {
            let mut clients = Vec::new();
            for _ in 0..concurrency {
                clients.push(self.cluster.decoder().await);
            }
            let streams = clients
                .into_iter()
                .enumerate()
                .map(|(i, c)| self.decoder_stream(c, format!("bench-{i}")));
            try_join_all(streams).await?
        };
        let wall = started.elapsed();
        let tokens: usize = timelines.iter().map(|t| t.tokens.len()).sum();
        // Steady decoding, as llama-batched-bench times it: every stream decoding at once. That
        // is from the moment every stream has its first token (all prompts are in) to the moment
        // the first stream ends; after it fewer streams share each step. The tokens that arrive
        // in that window, over its length.
        let all_started = timelines
            .iter()
            .filter_map(|t| t.tokens.first())
            .max()
            .copied();
        let first_done = timelines
            .iter()
            .filter_map(|t| t.tokens.last())
            .min()
            .copied();
        let last_done = timelines
            .iter()
            .filter_map(|t| t.tokens.last())
            .max()
            .copied();
        let rate = |from: Instant, to: Instant| {
            let within = timelines
                .iter()
                .flat_map(|t| &t.tokens)
                .filter(|&&at| at > from && at <= to)
                .count();
            (to > from).then(|| within as f64 / (to - from).as_secs_f64())
        };
        let decode_tokens_per_s = all_started.zip(first_done).and_then(|(f, t)| rate(f, t));
        // The same from every prompt in to the last token: the streams that started first end
        // first, so the tail runs fewer of them (this report's decode figure before 2026-12-04).
        let decode_to_end_tokens_per_s = all_started.zip(last_done).and_then(|(f, t)| rate(f, t));
        let ttft: Vec<Duration> = timelines
            .iter()
            .filter_map(|t| t.tokens.first().map(|&first| first - t.started))
            .collect();
        let itl: Vec<Duration> = timelines
            .iter()
            .flat_map(|t| t.tokens.windows(2).map(|w| w[1] - w[0]))
            .collect();
        Ok(json!({
            "concurrency": concurrency,
            "prompt_tokens": self.prompt_ids.len(),
            "new_tokens": self.new_tokens,
            "tokens_per_s": tokens as f64 / wall.as_secs_f64(),
            "decode_tokens_per_s": decode_tokens_per_s,
            "decode_to_end_tokens_per_s": decode_to_end_tokens_per_s,
            "ttft_ms_p50": percentile_ms(ttft.clone(), 0.5),
            "ttft_ms_p99": percentile_ms(ttft, 0.99),
            "itl_ms_p50": percentile_ms(itl.clone(), 0.5),
            "itl_ms_p99": percentile_ms(itl, 0.99),
        }))
    }

    /// A client of the gateway.
    pub(crate) async fn gateway(&self) -> GatewayClient {
        self.cluster.gateway().await
    }

    async fn gateway_stream(&self, mut client: GatewayClient) -> anyhow::Result<Timeline> {
        let request = pb::GenerateRequest {
            prompt: self.prompt.clone(),
            max_new_tokens: Some(self.new_tokens as u32),
            temperature: Some(0.0),
            ignore_eos: true,
            ..Default::default()
        };
        let started = Instant::now();
        let mut stream = client.generate_stream(request).await?.into_inner();
        let mut tokens = Vec::with_capacity(self.new_tokens);
        while let Some(chunk) = stream.next().await {
            let now = Instant::now();
            tokens.extend(chunk?.token_ids.iter().map(|_| now));
        }
        Ok(Timeline { started, tokens })
    }

    /// The gateway's loop without the gateway: embeddings made here, greedy picks, one session.
    async fn decoder_stream(
        &self,
        mut client: DecoderClient,
        id: String,
    ) -> anyhow::Result<Timeline> {
        let started = Instant::now();
        let mut tokens = Vec::with_capacity(self.new_tokens);
        let mut ids = self.prompt_ids.clone();
        let mut position = 0;
        for i in 0..self.new_tokens {
            let positions: Vec<u32> = (position as u32..ids.len() as u32).collect();
            let inputs = self.embeddings.embed(&ids[position..], &positions)?;
            let response = client
                .step(dec::StepRequest {
                    steps: vec![dec::SessionStep {
                        session_id: id.clone(),
                        create: i == 0,
                        start_position: position as u32,
                        input: Some(dec::session_step::Input::Embeddings(to_wire(&inputs)?)),
                        sampling: Some(greedy()),
                        release_after: i + 1 == self.new_tokens,
                        ..Default::default()
                    }],
                })
                .await?
                .into_inner();
            let pick = response.results[0]
                .pick
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no pick"))?;
            tokens.push(Instant::now());
            position = ids.len();
            ids.push(pick.token_id);
        }
        Ok(Timeline { started, tokens })
    }

    /// Median time of a prefill of `n` tokens (the decoder alone, logits of the last position).
    pub async fn prefill_ms(&self, n: usize) -> anyhow::Result<f64> {
        let mut client = self.cluster.decoder().await;
        let mut ids = self.prompt_ids.clone();
        ids.resize(n, self.filler);
        let positions: Vec<u32> = (0..n as u32).collect();
        let inputs = to_wire(&self.embeddings.embed(&ids, &positions)?)?;
        let mut times = Vec::new();
        for trial in 0..3 {
            let started = Instant::now();
            client
                .step(dec::StepRequest {
                    steps: vec![dec::SessionStep {
                        session_id: format!("prefill-{n}-{trial}"),
                        create: true,
                        start_position: 0,
                        input: Some(dec::session_step::Input::Embeddings(inputs.clone())),
                        sampling: Some(greedy()),
                        release_after: true,
                        ..Default::default()
                    }],
                })
                .await?;
            times.push(started.elapsed());
        }
        Ok(percentile_ms(times, 0.5).unwrap_or(f64::NAN))
    }
}

fn greedy() -> dec::Sampling {
    dec::Sampling {
        shaping: Some(dec::Shaping {
            temperature: Some(0.0),
            ..Default::default()
        }),
        u: 0.0,
        report: None,
    }
}

fn percentile_ms(mut values: Vec<Duration>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1].as_secs_f64() * 1e3)
}
