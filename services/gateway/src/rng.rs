//! The gateway's counter-based random draws.
//!
//! Every draw is a pure function of `(seed, sample, step)`: ChaCha20 keyed by the seed, with the
//! sample index as its stream and the step as the position in that stream. There is no state to
//! advance, so a sequence's draws cannot depend on which other requests shared its batch, on how
//! many steps other samples took, or on the order in which the gateway happened to ask.
//!
//! The layout is fixed so that a seed reproduces the same text across releases:
//! - key: the seed as 8 little-endian bytes followed by 24 zero bytes;
//! - stream (ChaCha's 64-bit nonce): the sample index, leaving the high 32 bits free for a later
//!   component of the key;
//! - the draw for step `k` is the `k`-th little-endian `u64` of that stream's keystream (bytes
//!   `8k..8k+8`), turned into a float from its top 53 bits.
//!
//! The tests pin values computed with an independent ChaCha20 (Python's `cryptography`), so a
//! change of crate version that altered the draws would fail them.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// ChaCha counts its position in 32-bit words; one draw consumes a `u64`, i.e. two words.
const WORDS_PER_STEP: u128 = 2;

/// `2^-53`: scales a 53-bit integer into `[0, 1)` exactly (an `f64` has a 53-bit significand).
const INV_2_POW_53: f64 = 1.0 / (1u64 << 53) as f64;

/// Returns a uniform number in `[0, 1)` determined only by `seed`, the `sample` index within the
/// request and the decoding `step`.
pub fn uniform(seed: u64, sample: u32, step: u32) -> f64 {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha20Rng::from_seed(key);
    // The stream before the position: `set_stream` would otherwise regenerate the buffer that
    // `set_word_pos` just filled.
    rng.set_stream(u64::from(sample));
    rng.set_word_pos(u128::from(step) * WORDS_PER_STEP);
    unit_interval(rng.next_u64())
}

/// Returns a fresh seed from the operating system's randomness, for requests that give none (the
/// gateway reports it back so such a run can still be reproduced).
pub fn random_seed() -> u64 {
    rand::random()
}

/// Maps the top 53 bits of `bits` onto `[0, 1)`; every value is a multiple of `2^-53`, and 1.0
/// cannot occur, so an inverse-CDF pick never runs past the last token.
fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 * INV_2_POW_53
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_chacha20() {
        // (seed, sample, step) -> the keystream's u64, from Python `cryptography`'s ChaCha20 with
        // the 16-byte nonce `counter_le64(0) ++ sample_le64`.
        let cases: [(u64, u32, u32, u64); 5] = [
            (0, 0, 0, 0x903d_f1a0_ade0_b876),
            (42, 0, 0, 0x6ae3_0a51_26e5_761f),
            (42, 3, 17, 0xec22_a723_a821_5683),
            (0xDEAD_BEEF, 1, 1000, 0xf60d_e0c3_6792_041e),
            (u64::MAX, u32::MAX, 123_456, 0xf696_1658_7602_d625),
        ];
        for (seed, sample, step, bits) in cases {
            assert_eq!(
                uniform(seed, sample, step),
                unit_interval(bits),
                "seed {seed}, sample {sample}, step {step}"
            );
        }
        // Spelled out once, so the conversion itself is pinned too.
        assert_eq!(uniform(42, 0, 0), 0.4175268600582933);
    }

    #[test]
    fn same_key_gives_same_value() {
        for (seed, sample, step) in [(0, 0, 0), (7, 1, 2), (u64::MAX, u32::MAX, u32::MAX)] {
            assert_eq!(uniform(seed, sample, step), uniform(seed, sample, step));
        }
    }

    #[test]
    fn order_of_draws_does_not_matter() {
        let forward: Vec<f64> = (0..64).map(|step| uniform(9, 2, step)).collect();
        let backward: Vec<f64> = (0..64).rev().map(|step| uniform(9, 2, step)).collect();
        assert!(forward.iter().eq(backward.iter().rev()));
    }

    #[test]
    fn each_component_of_the_key_changes_the_value() {
        let mut seen = Vec::new();
        for seed in [0, 1, 2, u64::MAX] {
            for sample in [0, 1, 2, u32::MAX] {
                for step in [0, 1, 2, 7, 8, 9, u32::MAX] {
                    seen.push(uniform(seed, sample, step).to_bits());
                }
            }
        }
        let total = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), total, "two different keys gave the same draw");
    }

    #[test]
    fn values_lie_in_the_unit_interval() {
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
        for step in 0..1000 {
            let u = uniform(123, 4, step);
            assert!((0.0..1.0).contains(&u), "step {step}: {u}");
        }
    }

    /// Asserts rough uniformity: the mean near 1/2 and 10 equal bins near 1/10 each. With n =
    /// 10,000 a bin's count has standard deviation 30, so ±150 is a 5-sigma bound.
    fn assert_roughly_uniform(draws: &[f64]) {
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let mut bins = [0usize; 10];
        for &u in draws {
            bins[(u * 10.0) as usize] += 1;
        }
        for (i, &count) in bins.iter().enumerate() {
            assert!(
                (850..=1150).contains(&count),
                "bin {i} has {count} of 10000: {bins:?}"
            );
        }
    }

    #[test]
    fn steps_of_one_sequence_are_roughly_uniform() {
        let draws: Vec<f64> = (0..10_000).map(|step| uniform(2023, 0, step)).collect();
        assert_roughly_uniform(&draws);
    }

    #[test]
    fn samples_at_one_step_are_roughly_uniform() {
        let draws: Vec<f64> = (0..10_000).map(|sample| uniform(2023, sample, 5)).collect();
        assert_roughly_uniform(&draws);
    }

    #[test]
    fn random_seeds_differ() {
        // Two equal 64-bit OS-random values would mean the seed is not random at all.
        assert_ne!(random_seed(), random_seed());
    }
}
