//! The shaping's rules, written once. The gateway checks a request's fields with them (field
//! names as the public API spells them); each backend checks its step's `sampling` again with
//! the same functions (field paths such as `steps[0].sampling.shaping.top_p`), since an internal
//! service still protects itself from a caller that skipped the gateway.

use oneword_proto::decoder::v1 as pb;

use crate::{History, RowPrecision, Sampling, Shaping};

/// A field out of its range: its path, and a message naming it, the value and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: String, message: String) -> Self {
        FieldError { field, message }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// Bias added to a logit, as OpenAI bounds it.
const MAX_BIAS: f32 = 100.0;

/// Entries of `logit_bias`, as OpenAI bounds them: the map goes with every step of every
/// sample, so its size multiplies a request's traffic and work.
pub const MAX_LOGIT_BIAS_ENTRIES: usize = 300;

/// The strongest repetition penalty: 10 already all but bans every token seen.
pub const MAX_REPETITION_PENALTY: f32 = 10.0;

/// Frequency and presence penalties, as OpenAI bounds them.
pub const MAX_PENALTY: f32 = 2.0;

/// Entries of `banned_ids`: the end-of-text token and a request's stop tokens, with room.
pub const MAX_BANNED_IDS: usize = 128;

/// Checks a shaping; `prefix` is the path its fields hang from (`""` at the top of a request,
/// `"steps[0].sampling.shaping."` inside a step). The ids of `logit_bias` are checked against
/// `vocab_size` when it is known (the gateway learns it later, see [`check_logit_bias_ids`]).
pub fn shaping(
    prefix: &str,
    shaping: &pb::Shaping,
    vocab_size: Option<usize>,
) -> Result<Shaping, FieldError> {
    let field = |name: &str| format!("{prefix}{name}");
    let temperature = shaping.temperature.unwrap_or(1.0);
    if !temperature.is_finite() || temperature < 0.0 {
        let f = field("temperature");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be a finite number >= 0 (0 = greedy), got {temperature}"),
        ));
    }
    if shaping.top_k == Some(0) {
        let f = field("top_k");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be >= 1 when given, got 0"),
        ));
    }
    if let Some(p) = shaping.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        let f = field("top_p");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be in (0, 1], got {p}"),
        ));
    }
    if let Some(p) = shaping.min_p.filter(|p| !(0.0..=1.0).contains(p)) {
        let f = field("min_p");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be in [0, 1], got {p}"),
        ));
    }
    if let Some(p) = shaping.typical_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        let f = field("typical_p");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be in (0, 1], got {p}"),
        ));
    }
    if let Some(p) = shaping
        .repetition_penalty
        .filter(|p| !(*p > 0.0 && *p <= MAX_REPETITION_PENALTY))
    {
        let f = field("repetition_penalty");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be in (0, {MAX_REPETITION_PENALTY}], got {p}"),
        ));
    }
    for (name, value) in [
        ("frequency_penalty", shaping.frequency_penalty),
        ("presence_penalty", shaping.presence_penalty),
    ] {
        if let Some(v) = value.filter(|v| !(-MAX_PENALTY..=MAX_PENALTY).contains(v)) {
            let f = field(name);
            return Err(FieldError::new(
                f.clone(),
                format!("`{f}` must be in [-{MAX_PENALTY}, {MAX_PENALTY}], got {v}"),
            ));
        }
    }
    if shaping.logit_bias.len() > MAX_LOGIT_BIAS_ENTRIES {
        let f = field("logit_bias");
        return Err(FieldError::new(
            f.clone(),
            format!(
                "`{f}` has {} entries, over the limit of {MAX_LOGIT_BIAS_ENTRIES}",
                shaping.logit_bias.len()
            ),
        ));
    }
    let mut logit_bias: Vec<(u32, f32)> = shaping
        .logit_bias
        .iter()
        .map(|(&id, &bias)| (id, bias))
        .collect();
    logit_bias.sort_unstable_by_key(|b| b.0);
    let f = field("logit_bias");
    if let Some(&(id, bias)) = logit_bias
        .iter()
        .find(|(_, bias)| !(-MAX_BIAS..=MAX_BIAS).contains(bias))
    {
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}[{id}]` must be in [-100, 100], got {bias}"),
        ));
    }
    if shaping.banned_ids.len() > MAX_BANNED_IDS {
        let f = field("banned_ids");
        return Err(FieldError::new(
            f.clone(),
            format!(
                "`{f}` has {} ids, over the limit of {MAX_BANNED_IDS}",
                shaping.banned_ids.len()
            ),
        ));
    }
    if let Some(vocab_size) = vocab_size {
        check_logit_bias_ids(prefix, logit_bias.iter().map(|b| b.0), vocab_size)?;
        if let Some(&id) = shaping
            .banned_ids
            .iter()
            .find(|&&id| id as usize >= vocab_size)
        {
            let f = field("banned_ids");
            return Err(FieldError::new(
                f.clone(),
                format!("`{f}` names token {id}, outside the vocabulary of {vocab_size} tokens"),
            ));
        }
    }
    Ok(Shaping {
        temperature,
        top_k: shaping.top_k.map(|k| k as usize),
        top_p: shaping.top_p,
        min_p: shaping.min_p,
        typical_p: shaping.typical_p,
        logit_bias,
        banned: shaping.banned_ids.clone(),
        repetition_penalty: shaping.repetition_penalty.unwrap_or(1.0),
        frequency_penalty: shaping.frequency_penalty.unwrap_or(0.0),
        presence_penalty: shaping.presence_penalty.unwrap_or(0.0),
    })
}

/// Checks that every biased token is in the vocabulary.
pub fn check_logit_bias_ids(
    prefix: &str,
    mut ids: impl Iterator<Item = u32>,
    vocab_size: usize,
) -> Result<(), FieldError> {
    match ids.find(|&id| id as usize >= vocab_size) {
        None => Ok(()),
        Some(id) => {
            let f = format!("{prefix}logit_bias");
            Err(FieldError::new(
                f.clone(),
                format!(
                    "`{f}` names token {id}, outside the vocabulary of {vocab_size} tokens (ids 0..={})",
                    vocab_size.saturating_sub(1)
                ),
            ))
        }
    }
}

/// Checks a step's history (its path is `f`): one id per row of the step, each in the
/// vocabulary.
pub fn history(
    f: &str,
    h: pb::History,
    rows: usize,
    vocab_size: usize,
) -> Result<History, FieldError> {
    let given = h.prompt_ids.len() + h.generated_ids.len();
    if given != rows {
        return Err(FieldError::new(
            f.to_string(),
            format!(
                "`{f}` names {given} token ids for a step of {rows} rows; it must name one per row"
            ),
        ));
    }
    if let Some(id) = h
        .prompt_ids
        .iter()
        .chain(&h.generated_ids)
        .find(|&&id| id as usize >= vocab_size)
    {
        return Err(FieldError::new(
            f.to_string(),
            format!("`{f}` names token {id}, outside the vocabulary of {vocab_size} tokens"),
        ));
    }
    Ok(History {
        prompt: h.prompt_ids,
        generated: h.generated_ids,
    })
}

/// Checks a step's sampling; `prefix` is its path (`"steps[0].sampling"`).
pub fn sampling(
    prefix: &str,
    s: &pb::Sampling,
    vocab_size: usize,
    max_top_n: usize,
) -> Result<Sampling, FieldError> {
    let shaping = s
        .shaping
        .as_ref()
        .map(|given| shaping(&format!("{prefix}.shaping."), given, Some(vocab_size)))
        .transpose()?;
    if !(0.0..1.0).contains(&s.u) {
        let f = format!("{prefix}.u");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be in [0, 1), got {}", s.u),
        ));
    }
    let report = s.report.unwrap_or_default();
    if report.top_n as usize > max_top_n {
        let f = format!("{prefix}.report.top_n");
        return Err(FieldError::new(
            f.clone(),
            format!("`{f}` must be at most {max_top_n}, got {}", report.top_n),
        ));
    }
    let full_row = match pb::FullRow::try_from(report.full_row) {
        Ok(pb::FullRow::F32) => Some(RowPrecision::F32),
        Ok(pb::FullRow::F16) => Some(RowPrecision::F16),
        _ => None,
    };
    Ok(Sampling {
        shaping,
        u: s.u,
        top_n: report.top_n as usize,
        full_row,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(s: pb::Shaping, prefix: &str) -> FieldError {
        shaping(prefix, &s, Some(10)).unwrap_err()
    }

    #[test]
    fn each_rule_names_the_field_the_value_and_the_range() {
        let cases = [
            (
                pb::Shaping {
                    temperature: Some(-1.0),
                    ..Default::default()
                },
                "temperature",
                "must be a finite number >= 0 (0 = greedy), got -1",
            ),
            (
                pb::Shaping {
                    temperature: Some(f32::NAN),
                    ..Default::default()
                },
                "temperature",
                "got NaN",
            ),
            (
                pb::Shaping {
                    top_k: Some(0),
                    ..Default::default()
                },
                "top_k",
                "must be >= 1 when given, got 0",
            ),
            (
                pb::Shaping {
                    top_p: Some(1.5),
                    ..Default::default()
                },
                "top_p",
                "must be in (0, 1], got 1.5",
            ),
            (
                pb::Shaping {
                    repetition_penalty: Some(0.0),
                    ..Default::default()
                },
                "repetition_penalty",
                "must be in (0, 10], got 0",
            ),
            (
                pb::Shaping {
                    frequency_penalty: Some(2.5),
                    ..Default::default()
                },
                "frequency_penalty",
                "must be in [-2, 2], got 2.5",
            ),
            (
                pb::Shaping {
                    presence_penalty: Some(f32::NAN),
                    ..Default::default()
                },
                "presence_penalty",
                "must be in [-2, 2], got NaN",
            ),
            (
                pb::Shaping {
                    logit_bias: [(3, 101.0)].into(),
                    ..Default::default()
                },
                "logit_bias",
                "`logit_bias[3]` must be in [-100, 100], got 101",
            ),
            (
                pb::Shaping {
                    logit_bias: [(10, 1.0)].into(),
                    ..Default::default()
                },
                "logit_bias",
                "names token 10, outside the vocabulary of 10 tokens (ids 0..=9)",
            ),
            (
                pb::Shaping {
                    logit_bias: (0..301).map(|id| (id, 1.0)).collect(),
                    ..Default::default()
                },
                "logit_bias",
                "`logit_bias` has 301 entries, over the limit of 300",
            ),
        ];
        for (s, field, says) in cases {
            let e = bad(s, "");
            assert_eq!(e.field, field);
            assert!(e.message.contains(says), "{:?} lacks {says:?}", e.message);
        }
    }

    #[test]
    fn the_prefix_gives_the_field_its_path() {
        let e = bad(
            pb::Shaping {
                top_p: Some(0.0),
                ..Default::default()
            },
            "steps[2].sampling.shaping.",
        );
        assert_eq!(e.field, "steps[2].sampling.shaping.top_p");
        assert!(e
            .message
            .starts_with("`steps[2].sampling.shaping.top_p` must be in (0, 1]"));
    }

    #[test]
    fn absent_fields_mean_off_and_biases_come_sorted() {
        let s = shaping(
            "",
            &pb::Shaping {
                logit_bias: [(7, -1.0), (2, 3.0)].into(),
                ..Default::default()
            },
            Some(10),
        )
        .unwrap();
        assert_eq!(
            s,
            Shaping {
                logit_bias: vec![(2, 3.0), (7, -1.0)],
                ..Shaping::default()
            }
        );
    }

    #[test]
    fn a_step_checks_its_draw_and_report() {
        let s = |u: f64, top_n: u32| pb::Sampling {
            shaping: None,
            u,
            report: Some(pb::Report {
                top_n,
                full_row: pb::FullRow::F16 as i32,
            }),
        };
        assert_eq!(
            sampling("steps[0].sampling", &s(1.0, 1), 10, 5)
                .unwrap_err()
                .field,
            "steps[0].sampling.u"
        );
        assert_eq!(
            sampling("steps[0].sampling", &s(0.5, 6), 10, 5)
                .unwrap_err()
                .field,
            "steps[0].sampling.report.top_n"
        );
        let ok = sampling("steps[0].sampling", &s(0.5, 5), 10, 5).unwrap();
        assert_eq!((ok.top_n, ok.full_row), (5, Some(RowPrecision::F16)));
    }
}
