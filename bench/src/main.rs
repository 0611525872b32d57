//! `make bench`'s measuring side for oneword: starts the five services in this process on a
//! checkpoint, drives them at several concurrencies through the gateway (gRPC streams, as a
//! client would) and through the decoder alone (gRPC steps with embeddings made here), measures
//! prefill times, the transformer's latency beside n-gram generations, and the machine's memory
//! bandwidth, and writes one JSON document per system in the schema `bench/report.py` reads.

#![forbid(unsafe_code)]

mod bandwidth;
mod isolation;
mod load;

use std::path::PathBuf;

use clap::Parser;
use serde_json::{json, Value};

/// Benchmarks oneword on a checkpoint and writes JSON results.
#[derive(Parser)]
struct Args {
    /// The checkpoint (a GPT-2-small-shaped one with random weights for `make bench`).
    #[arg(long)]
    model: PathBuf,
    /// Where to write `oneword.json`, `oneword-decoder.json` and `machine.json`.
    #[arg(long)]
    out: PathBuf,
    /// Prompt length of the generation runs, in tokens.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated per stream.
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Concurrent streams, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,32")]
    concurrency: Vec<usize>,
    /// Prompt lengths whose prefill time is measured.
    #[arg(long, value_delimiter = ',', default_value = "128,512,1024")]
    prefill: Vec<usize>,
    /// Transformer streams whose inter-token latency is measured alone and beside n-gram
    /// generations (`isolation.json`); 0 = skip.
    #[arg(long, default_value_t = 16)]
    isolation_streams: usize,
    /// The decoder's `--dtype` (f32; or q8_0, bf16 or f16 linear layers); results of any but f32
    /// are named after it (`oneword q8_0`, `oneword-q8_0.json`).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// The decoder's `--kv-cache-dtype` (auto, f32 or f16: auto is f16 beside narrow weights, as
    /// the decoder's default); results with f16 are named after it too (`oneword kv-f16`,
    /// `oneword-kv-f16.json`).
    #[arg(long, default_value = "auto")]
    kv_cache_dtype: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let threads = rayon::current_num_threads();

    let bandwidth = bandwidth::measure();
    eprintln!("memory bandwidth: {bandwidth:.1} GB/s ({threads} threads)");
    let model = oneword_model::Gpt2Config::from_dir(&args.model)?;
    let machine = json!({
        "cpu": cpu_model(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "threads": threads,
        "bandwidth_gb_s": bandwidth,
        "model": format!("GPT-2 shapes: {} layers, width {}, vocabulary {}, random weights", model.n_layer, model.n_embd, model.vocab_size),
    });
    write(&args, "machine.json", &machine)?;

    let bench = load::Bench::start(
        &args.model,
        args.prompt_tokens,
        args.new_tokens,
        &args.dtype,
        &args.kv_cache_dtype,
    )
    .await?;
    let mut weight_bytes = load::decode_weight_bytes(&model);
    let (mut name, mut file) = ("oneword".to_string(), "oneword".to_string());
    for (setting, prefix) in [(&args.dtype, ""), (&args.kv_cache_dtype, "kv-")] {
        if setting != "f32" && setting != "auto" {
            name += &format!(" {prefix}{setting}");
            file += &format!("-{prefix}{setting}");
        }
    }
    match args.dtype.as_str() {
        // A byte per weight and an f32 scale per 32.
        "q8_0" => weight_bytes = weight_bytes / 4 * 9 / 8,
        "bf16" | "f16" => weight_bytes /= 2,
        _ => {}
    }
    for (system, file, through_gateway) in [
        (name.clone(), format!("{file}.json"), true),
        (
            format!("{name} decoder alone"),
            format!("{file}-decoder.json"),
            false,
        ),
    ] {
        let mut generation = Vec::new();
        for &c in &args.concurrency {
            let run = bench.generation(c, through_gateway).await?;
            eprintln!("{system}, {c} streams: {run}");
            generation.push(run);
        }
        let mut prefill = Vec::new();
        if !through_gateway {
            for &n in &args.prefill {
                let ms = bench.prefill_ms(n).await?;
                eprintln!("{system}, prefill of {n}: {ms:.1} ms");
                prefill.push(json!({"prompt_tokens": n, "ms": ms}));
            }
        }
        let doc = json!({
            "system": system,
            "version": env!("CARGO_PKG_VERSION"),
            "threads": threads,
            "weight_bytes": weight_bytes,
            "generation": generation,
            "prefill": prefill,
            "notes": [if through_gateway {
                "gRPC GenerateStream through the gateway, tokenizer, embedder and decoder, greedy, EOS ignored"
            } else {
                "gRPC Step calls to the decoder alone with embeddings computed by the client"
            }],
        });
        write(&args, &file, &doc)?;
    }
    if args.isolation_streams > 0 {
        let isolation = bench.ngram_isolation(args.isolation_streams).await?;
        let f = |path: &str| {
            isolation
                .pointer(path)
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        eprintln!(
            "{} transformer streams: inter-token latency p50 {:.1} ms alone, {:.1} ms beside a paced n-gram stream ({:.0} tokens/s), {:.1} ms beside n-gram generations flat out ({:.0} tokens/s)",
            args.isolation_streams,
            f("/itl_ms_p50_alone"),
            f("/paced/itl_ms_p50"),
            f("/paced/ngram_tokens_per_s"),
            f("/flat_out/itl_ms_p50"),
            f("/flat_out/ngram_tokens_per_s"),
        );
        write(&args, "isolation.json", &isolation)?;
    }
    Ok(())
}

fn write(args: &Args, name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(
        args.out.join(name),
        serde_json::to_string_pretty(value)? + "\n",
    )?;
    Ok(())
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
