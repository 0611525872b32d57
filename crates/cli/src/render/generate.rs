//! What `generate` prints besides the text: completions among several, their token tables, and
//! the summary lines.

use oneword_proto::gateway::v1 as gw;

use super::cells::{duration, percent, piece, plural, quote_bytes, table, Align};
use crate::collect::Completion;

/// Why a completion ended, in words.
pub fn finish_text(reason: i32, stop_sequence: &str) -> String {
    match gw::FinishReason::try_from(reason) {
        Ok(gw::FinishReason::Length) => "length".into(),
        Ok(gw::FinishReason::EosToken) => "end of text".into(),
        Ok(gw::FinishReason::StopSequence) => {
            format!("stop sequence {}", quote_bytes(stop_sequence.as_bytes()))
        }
        Ok(gw::FinishReason::Cancelled) => "cancelled".into(),
        Ok(gw::FinishReason::StopToken) => "stop token".into(),
        Ok(gw::FinishReason::Unspecified) => "unfinished".into(),
        Err(_) => format!("finish reason {reason}"),
    }
}

/// "finish: length · 40 tokens".
pub fn completion_summary(c: &Completion) -> String {
    let tokens = c.tokens();
    format!(
        "finish: {} · {tokens} {}",
        finish_text(c.finish_reason, &c.stop_sequence),
        plural(tokens, "token")
    )
}

/// "seed 1 · 52.3 tokens/s · first token 35 ms", as much of it as is known.
pub fn run_summary(seed: Option<u64>, tokens: u32, timings: Option<&gw::Timings>) -> String {
    let mut parts = Vec::new();
    if let Some(seed) = seed {
        parts.push(format!("seed {seed}"));
    }
    if let Some(t) = timings {
        if t.total_ns > 0 {
            let rate = f64::from(tokens) / (t.total_ns as f64 / 1e9);
            parts.push(format!("{rate:.1} tokens/s"));
        }
        let first = t.tokenize_ns + t.prefill_ns;
        if first > 0 {
            parts.push(format!("first token {}", duration(first)));
        }
        if t.queue_ns > 0 {
            parts.push(format!("queued {}", duration(t.queue_ns)));
        }
    }
    parts.join(" · ")
}

/// The closing line of `generate`: a single completion's summary and the run's, or for several
/// completions their count and tokens and the run's.
pub fn generate_summary(
    single: bool,
    completions: &[&Completion],
    seed: Option<u64>,
    timings: Option<&gw::Timings>,
) -> String {
    let tokens: u32 = completions.iter().map(|c| c.tokens()).sum();
    let mut parts = Vec::new();
    if single && completions.is_empty() {
        parts.push("no completion came back".to_string());
    } else if single {
        parts.extend(completions.iter().map(|c| completion_summary(c)));
    } else {
        let count = completions.len() as u32;
        parts.push(format!(
            "{count} {} · {tokens} {}",
            plural(count, "completion"),
            plural(tokens, "token")
        ));
    }
    let run = run_summary(seed, tokens, timings);
    if !run.is_empty() {
        parts.push(run);
    }
    parts.join(" · ")
}

/// A completion for output among others: `[i] ` then the text, later lines indented under it.
pub fn completion_block(index: u32, text: &str) -> String {
    let prefix = format!("[{index}] ");
    let indent = format!("\n{}", " ".repeat(prefix.chars().count()));
    format!(
        "{prefix}{}\n",
        text.trim_end_matches('\n').replace('\n', &indent)
    )
}

/// The generated tokens: probability and rank in the raw distribution, probability in the
/// shaped one, and the most likely alternatives.
pub fn details_table(d: &gw::TokenDetails) -> String {
    let has_shaped = !d.shaped_logprobs.is_empty();
    let has_top = d.top.iter().any(|a| !a.ids.is_empty());
    let mut header = vec![
        ("#", Align::Right),
        ("token", Align::Left),
        ("prob", Align::Right),
        ("rank", Align::Right),
    ];
    if has_shaped {
        header.push(("shaped", Align::Right));
    }
    if has_top {
        header.push(("alternatives", Align::Left));
    }
    let prob = |lp: Option<&f32>| lp.map_or_else(|| "-".to_string(), |lp| percent(lp.exp()));
    let rows: Vec<Vec<String>> = d
        .ids
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mut row = vec![
                i.to_string(),
                quote_bytes(piece(&d.pieces, &[], i)),
                prob(d.logprobs.get(i)),
                d.ranks.get(i).map_or_else(|| "-".into(), u32::to_string),
            ];
            if has_shaped {
                row.push(prob(d.shaped_logprobs.get(i)));
            }
            if has_top {
                let alternatives = d.top.get(i).map(|a| {
                    (0..a.ids.len())
                        .map(|j| {
                            format!(
                                "{} {}",
                                quote_bytes(piece(&a.pieces, &[], j)),
                                prob(a.logprobs.get(j))
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("  ")
                });
                row.push(alternatives.unwrap_or_default());
            }
            row
        })
        .collect();
    table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_one_line() {
        let c = Completion {
            finish_reason: gw::FinishReason::StopSequence as i32,
            stop_sequence: "\n\n".into(),
            token_ids: vec![1; 12],
            usage: Some(gw::Usage {
                prompt_tokens: 9,
                completion_tokens: 12,
            }),
            ..Default::default()
        };
        assert_eq!(
            completion_summary(&c),
            "finish: stop sequence \"\\n\\n\" · 12 tokens"
        );
        let t = gw::Timings {
            tokenize_ns: 1_000_000,
            prefill_ns: 34_000_000,
            decode_ns: 765_000_000,
            total_ns: 800_000_000,
            queue_ns: 0,
        };
        assert_eq!(
            run_summary(Some(1), 40, Some(&t)),
            "seed 1 · 50.0 tokens/s · first token 35 ms"
        );
        let queued = gw::Timings {
            queue_ns: 12_000_000,
            ..t
        };
        assert_eq!(
            run_summary(Some(1), 40, Some(&queued)),
            "seed 1 · 50.0 tokens/s · first token 35 ms · queued 12 ms"
        );
        assert_eq!(run_summary(Some(1), 40, None), "seed 1");
        assert_eq!(run_summary(None, 1, Some(&gw::Timings::default())), "");
        assert_eq!(finish_text(gw::FinishReason::Length as i32, ""), "length");
        assert_eq!(
            finish_text(gw::FinishReason::EosToken as i32, ""),
            "end of text"
        );
        assert_eq!(finish_text(0, ""), "unfinished");
        assert_eq!(finish_text(42, ""), "finish reason 42");
    }

    #[test]
    fn generate_summary_for_one_and_for_several() {
        let done = |index, tokens| Completion {
            index,
            finish_reason: gw::FinishReason::Length as i32,
            generated_tokens: tokens,
            ..Default::default()
        };
        let t = gw::Timings {
            total_ns: 2_000_000_000,
            ..Default::default()
        };
        let (a, b) = (done(0, 40), done(1, 40));
        assert_eq!(
            generate_summary(true, &[&a], Some(1), Some(&t)),
            "finish: length · 40 tokens · seed 1 · 20.0 tokens/s"
        );
        assert_eq!(
            generate_summary(false, &[&a, &b], Some(1), Some(&t)),
            "2 completions · 80 tokens · seed 1 · 40.0 tokens/s"
        );
        assert_eq!(
            generate_summary(true, &[], None, None),
            "no completion came back"
        );
    }

    #[test]
    fn completion_blocks_indent_later_lines() {
        assert_eq!(
            completion_block(0, " learn.\nAnd more.\n"),
            "[0]  learn.\n    And more.\n"
        );
        assert_eq!(completion_block(12, "x"), "[12] x\n");
        assert_eq!(completion_block(3, ""), "[3] \n");
    }

    #[test]
    fn details_table_lists_tokens_and_alternatives() {
        let d = gw::TokenDetails {
            ids: vec![2193, 422],
            pieces: vec![b" learn".to_vec(), b" \xe2\x80".to_vec()],
            logprobs: vec![0.045f32.ln(), 0.5f32.ln()],
            ranks: vec![1, 1],
            shaped_logprobs: vec![0.09f32.ln(), 0.75f32.ln()],
            top: vec![
                gw::Alternatives {
                    ids: vec![2193, 4331],
                    logprobs: vec![0.045f32.ln(), 0.035f32.ln()],
                    pieces: vec![b" learn".to_vec(), b" predict".to_vec()],
                },
                gw::Alternatives::default(),
            ],
        };
        assert_eq!(
            details_table(&d),
            "#  token         prob  rank  shaped  alternatives\n\
             0  \" learn\"      4.5%     1    9.0%  \" learn\" 4.5%  \" predict\" 3.5%\n\
             1  \" \\xe2\\x80\"  50.0%     1   75.0%\n"
        );
        // logprobs = 0 asks for no alternatives: no column.
        let bare = gw::TokenDetails {
            top: vec![],
            shaped_logprobs: vec![],
            ..d
        };
        assert_eq!(
            details_table(&bare).lines().next(),
            Some("#  token         prob  rank")
        );
    }
}
