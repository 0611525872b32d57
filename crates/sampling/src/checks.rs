//! Properties of the shaping's validation, shared by the property tests (`cargo test`) and the
//! fuzz targets (`make fuzz`). Each panics when its property fails.

use oneword_proto::decoder::v1 as pb;

use crate::validate::MAX_LOGIT_BIAS_ENTRIES;
use crate::{sampling, shaping, FieldError, RowPrecision};

/// An error names its field under `prefix`, in backticks in its message.
fn names_field(e: &FieldError, prefix: &str) {
    assert!(e.field.starts_with(prefix), "{e:?} is not under {prefix:?}");
    assert!(
        e.message.contains(&format!("`{}", e.field)),
        "{e:?} does not name its field"
    );
}

/// A shaping is accepted exactly when every rule holds (the rules restated here), as a value
/// with the same settings and the biases sorted by id; else the error names a field.
pub fn shaping_checked(prefix: &str, s: &pb::Shaping, vocab_size: Option<usize>) {
    let valid = s.temperature.is_none_or(|t| t.is_finite() && t >= 0.0)
        && s.top_k != Some(0)
        && s.top_p.is_none_or(|p| p > 0.0 && p <= 1.0)
        && s.min_p.is_none_or(|p| (0.0..=1.0).contains(&p))
        && s.typical_p.is_none_or(|p| p > 0.0 && p <= 1.0)
        && s.repetition_penalty.is_none_or(|p| p > 0.0 && p <= 10.0)
        && s.frequency_penalty
            .is_none_or(|p| (-2.0..=2.0).contains(&p))
        && s.presence_penalty.is_none_or(|p| (-2.0..=2.0).contains(&p))
        && s.logit_bias.len() <= MAX_LOGIT_BIAS_ENTRIES
        && s.logit_bias.values().all(|b| (-100.0..=100.0).contains(b))
        && vocab_size.is_none_or(|v| s.logit_bias.keys().all(|&id| (id as usize) < v))
        && s.banned_ids.len() <= crate::validate::MAX_BANNED_IDS
        && vocab_size.is_none_or(|v| s.banned_ids.iter().all(|&id| (id as usize) < v));
    match shaping(prefix, s, vocab_size) {
        Ok(v) => {
            assert!(valid, "{s:?} was accepted");
            assert_eq!(v.temperature, s.temperature.unwrap_or(1.0));
            assert_eq!(v.top_k, s.top_k.map(|k| k as usize));
            assert_eq!(
                (v.top_p, v.min_p, v.typical_p),
                (s.top_p, s.min_p, s.typical_p)
            );
            assert_eq!(v.banned, s.banned_ids);
            assert_eq!(
                (
                    v.repetition_penalty,
                    v.frequency_penalty,
                    v.presence_penalty
                ),
                (
                    s.repetition_penalty.unwrap_or(1.0),
                    s.frequency_penalty.unwrap_or(0.0),
                    s.presence_penalty.unwrap_or(0.0)
                )
            );
            assert_eq!(v.logit_bias.len(), s.logit_bias.len());
            assert!(v.logit_bias.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(v.logit_bias.iter().all(|(id, b)| s.logit_bias[id] == *b));
        }
        Err(e) => {
            assert!(!valid, "{s:?} was refused: {e:?}");
            names_field(&e, prefix);
        }
    }
}

/// A step's sampling is accepted exactly when its shaping is, `u` is in [0, 1) and `top_n` is
/// at most `max_top_n`; else the error names a field under `prefix`.
pub fn sampling_checked(prefix: &str, s: &pb::Sampling, vocab_size: usize, max_top_n: usize) {
    let shaping_prefix = format!("{prefix}.shaping.");
    let shaping_ok = shaping(
        &shaping_prefix,
        &s.shaping.clone().unwrap_or_default(),
        Some(vocab_size),
    )
    .is_ok();
    let report = s.report.unwrap_or_default();
    let valid = shaping_ok && (0.0..1.0).contains(&s.u) && report.top_n as usize <= max_top_n;
    match sampling(prefix, s, vocab_size, max_top_n) {
        Ok(v) => {
            assert!(valid, "{s:?} was accepted");
            assert_eq!((v.u, v.top_n), (s.u, report.top_n as usize));
            assert_eq!(
                v.shaping.is_some(),
                s.shaping.is_some(),
                "sent or the session's"
            );
            let row = match pb::FullRow::try_from(report.full_row) {
                Ok(pb::FullRow::F32) => Some(RowPrecision::F32),
                Ok(pb::FullRow::F16) => Some(RowPrecision::F16),
                _ => None,
            };
            assert_eq!(v.full_row, row);
        }
        Err(e) => {
            assert!(!valid, "{s:?} was refused: {e:?}");
            names_field(&e, prefix);
        }
    }
}
