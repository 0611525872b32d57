//! The machine's memory bandwidth: how fast all threads together can read a buffer far larger
//! than the caches, which bounds a decode step that must read every weight once.

use std::time::Instant;

use rayon::prelude::*;

/// Bytes read per trial: well past any last-level cache.
const BYTES: usize = 1 << 30;

/// The best of a few trials, in GB/s.
pub fn measure() -> f64 {
    let data = vec![1u64; BYTES / 8];
    let chunk = data.len().div_ceil(rayon::current_num_threads());
    (0..5)
        .map(|_| {
            let started = Instant::now();
            let sum: u64 = data.par_chunks(chunk).map(sum_lanes).sum();
            std::hint::black_box(sum);
            BYTES as f64 / started.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// A sum in independent lanes, so the loop is bound by loads rather than by one add chain.
fn sum_lanes(values: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    for chunk in values.chunks_exact(8) {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.wrapping_add(*v);
        }
    }
    lanes.iter().fold(0, |a, b| a.wrapping_add(*b))
}
