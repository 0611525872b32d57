//! A seeded source of uniform numbers, for callers (tests, examples, a CLI) that have no sampling
//! loop of their own to supply the `u`s.

/// An endless, deterministic stream of numbers in `[0, 1)` from `seed` (SplitMix64, top 53
/// bits). It is written out here rather than taken from `rand` so that a seed gives the same
/// stream in every version of this crate.
pub fn seeded_uniforms(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 bits fill an f64's mantissa exactly, so the result is below 1 and evenly spaced.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
