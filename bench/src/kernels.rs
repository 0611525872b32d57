//! `make bench`'s kernel microbenchmark: GFLOP/s of the CPU linear layers (f32, q8_0 and bf16
//! weights) on GPT-2's shapes, for
//! row counts from one decode stream to a prefill chunk, against the machine's measured peak
//! (independent multiply-adds in registers) and against candle's matrix product (the gemm crate,
//! which packs the weights on every call) on the same shapes. Weights are cycled through enough
//! copies to exceed the last-level cache, so each call reads them from memory as a decode step
//! does. Writes one JSON document (`kernels.json`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::Parser;
use oneword_model::gpt2::host_matrix;
use oneword_model::narrow::{Bf16, Format, Q8_0};
use oneword_model::packed::{Layout, Matrix};
use oneword_model::{HostMatrix, Packed, PackedNarrow, WeightFormat};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;
use serde_json::json;

/// Measures the CPU linear-layer kernels on GPT-2-small's shapes.
#[derive(Parser)]
struct Args {
    /// Where to write the JSON document.
    #[arg(long)]
    out: PathBuf,
    /// Row counts (batch rows) to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,32,64,256,512")]
    rows: Vec<usize>,
    /// Weight bytes each measurement cycles through (past the last-level cache).
    #[arg(long, default_value_t = 256 << 20)]
    bytes: usize,
    /// Seconds to spend per measurement, at least.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
}

/// GPT-2 small's linear layers as `(name, inputs k, outputs n)`.
const SHAPES: [(&str, usize, usize); 5] = [
    ("attn.c_attn", 768, 2304),
    ("attn.c_proj", 768, 768),
    ("mlp.c_fc", 768, 3072),
    ("mlp.c_proj", 3072, 768),
    ("lm_head", 768, 50257),
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = rayon::current_num_threads();
    let peak_one = peak_gflops(1);
    let peak_all = peak_gflops(threads);
    eprintln!("peak: {peak_one:.1} GFLOP/s on one thread, {peak_all:.1} on {threads}");
    let mut results = Vec::new();
    for (name, k, n) in SHAPES {
        let copies = (args.bytes / (k * n * 4)).max(1);
        let weights: Vec<Vec<f32>> = (0..copies).map(|c| values(k * n, c as u32)).collect();
        let packed: Vec<Packed> = weights
            .iter()
            .map(|w| Packed::new(Matrix::new(w, k, n, Layout::InOut)))
            .collect();
        let q8 = narrow::<Q8_0>(&weights, k, n)?;
        let bf16 = narrow::<Bf16>(&weights, k, n)?;
        let q8_dot = dot(&weights, k, n, WeightFormat::Q8_0)?;
        let bf16_dot = dot(&weights, k, n, WeightFormat::Bf16)?;
        let tensors = weights
            .iter()
            .map(|w| {
                Tensor::from_slice(w, (k, n), &Device::Cpu)?
                    .t()?
                    .contiguous()
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        drop(weights);
        for &rows in &args.rows {
            let x = values(rows * k, 7);
            let flops = 2.0 * (rows * k * n) as f64;
            let ours = rate(flops, args.seconds, |i| {
                std::hint::black_box(packed[i % copies].product(&x, rows, None));
            });
            let ours_q8 = rate(flops, args.seconds, |i| {
                std::hint::black_box(q8[i % copies].product(&x, rows, None));
            });
            let ours_bf16 = rate(flops, args.seconds, |i| {
                std::hint::black_box(bf16[i % copies].product(&x, rows, None));
            });
            let ours_q8_dot = rate(flops, args.seconds, |i| {
                std::hint::black_box(q8_dot[i % copies].product(&x, rows, None));
            });
            let ours_bf16_dot = rate(flops, args.seconds, |i| {
                std::hint::black_box(bf16_dot[i % copies].product(&x, rows, None));
            });
            let xt = Tensor::from_slice(&x, (rows, k), &Device::Cpu)?;
            let gemm = rate(flops, args.seconds, |i| {
                let y = xt.matmul(&tensors[i % copies].t().expect("a 2-D tensor"));
                std::hint::black_box(y.expect("shapes that match"));
            });
            eprintln!(
                "{name} [{k}, {n}] × {rows} rows: packed {ours:.1} GFLOP/s ({:.0}% of peak), q8_0 {ours_q8:.1} (as run {ours_q8_dot:.1}), bf16 {ours_bf16:.1} (as run {ours_bf16_dot:.1}), candle/gemm {gemm:.1}",
                100.0 * ours / peak_all
            );
            results.push(json!({
                "matrix": name, "k": k, "n": n, "rows": rows,
                "packed_gflops": ours, "q8_0_widening_gflops": ours_q8, "bf16_widening_gflops": ours_bf16,
                "q8_0_gflops": ours_q8_dot, "bf16_gflops": ours_bf16_dot, "gemm_gflops": gemm,
                "packed_fraction_of_peak": ours / peak_all,
            }));
        }
    }
    let doc = json!({
        "threads": threads,
        "peak_gflops_one_thread": peak_one,
        "peak_gflops": peak_all,
        "panel_width": oneword_model::packed::panel_width(),
        "results": results,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

/// GFLOP/s of `call(i)` for i = 0, 1, … over at least `seconds` (after one warm-up call).
fn rate(flops: f64, seconds: f64, mut call: impl FnMut(usize)) -> f64 {
    call(0);
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed().as_secs_f64() < seconds || calls < 3 {
        call(calls + 1);
        calls += 1;
    }
    flops * calls as f64 / started.elapsed().as_secs_f64() / 1e9
}

/// Pseudo-random values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(97))
                % 2000) as f32
                / 1000.0
                - 1.0
        })
        .collect()
}

/// Peak multiply-add rate: 24 independent accumulators (as many as hide the latency) per thread.
fn peak_gflops(threads: usize) -> f64 {
    const STEPS: usize = 20_000_000;
    struct Fmas;
    impl WithSimd for Fmas {
        type Output = (f32, usize);
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> (f32, usize) {
            let mut acc = [simd.splat_f32s(1.0); 24];
            let (a, b) = (simd.splat_f32s(0.999_999), simd.splat_f32s(1e-7));
            for _ in 0..STEPS / 24 {
                for v in acc.iter_mut() {
                    *v = simd.mul_add_e_f32s(*v, a, b);
                }
            }
            let sum = acc.iter().map(|v| simd.reduce_sum_f32s(*v)).sum();
            (sum, S::F32_LANES)
        }
    }
    let started = Instant::now();
    let lanes: Vec<(f32, usize)> = (0..threads)
        .into_par_iter()
        .map(|_| pulp::Arch::new().dispatch(Fmas))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    std::hint::black_box(&lanes);
    let per_thread = 2.0 * (STEPS / 24 * 24 * lanes[0].1) as f64;
    per_thread * threads as f64 / elapsed / 1e9
}

/// Copies of the weights as the decoder packs them in `format` on this CPU (on the dot-product
/// instructions where it has them).
fn dot(
    weights: &[Vec<f32>],
    k: usize,
    n: usize,
    format: WeightFormat,
) -> anyhow::Result<Vec<Box<dyn HostMatrix>>> {
    Ok(weights
        .iter()
        .map(|w| host_matrix(format, Matrix::new(w, k, n, Layout::InOut)))
        .collect::<Result<_, _>>()?)
}

/// Copies of the weights in a narrow format, widened to f32 in registers.
fn narrow<F: Format>(
    weights: &[Vec<f32>],
    k: usize,
    n: usize,
) -> anyhow::Result<Vec<PackedNarrow<F>>> {
    Ok(weights
        .iter()
        .map(|w| PackedNarrow::<F>::new(Matrix::new(w, k, n, Layout::InOut)))
        .collect::<Result<_, _>>()?)
}
