//! The instruments' answers as text: rank/probability points, scores, the logit lens,
//! attention, the embedding module and weights.

use std::fmt::Write as _;

use oneword_proto::gateway::v1 as gw;

use super::cells::{percent, plural, quote_bytes, table, Align};
use super::generate::completion_block;
use crate::analysis::PowerLaw;

/// Ranks shown in the `ranks` table: 1, 2, 5, 10, 20, 50, … up to the vocabulary.
fn shown_ranks(len: usize) -> Vec<usize> {
    let mut ranks = Vec::new();
    let mut decade = 1;
    while decade <= len {
        ranks.extend(
            [decade, 2 * decade, 5 * decade]
                .into_iter()
                .filter(|&r| r <= len),
        );
        decade *= 10;
    }
    ranks
}

/// Each temperature's continuations under a heading, as `[i] text` blocks.
pub fn compare_text(resp: &gw::CompareResponse) -> String {
    let mut out = String::new();
    for group in &resp.groups {
        let what = if group.temperature == 0.0 {
            "temperature 0 (greedy)".to_string()
        } else {
            format!("temperature {}", group.temperature)
        };
        let _ = writeln!(out, "── {what}");
        for c in &group.completions {
            out.push_str(&completion_block(c.index, &c.text));
        }
        out.push('\n');
    }
    out
}

/// Probabilities at log-spaced ranks and the fitted power law.
pub fn ranks_table(p: &[f64], fit: Option<&PowerLaw>) -> String {
    let rows: Vec<Vec<String>> = shown_ranks(p.len())
        .into_iter()
        .map(|r| vec![r.to_string(), format!("{:.3e}", p[r - 1])])
        .collect();
    let mut out = table(&[("rank", Align::Right), ("prob", Align::Right)], &rows);
    match fit {
        Some(fit) => {
            let _ = writeln!(
                out,
                "\npower law over ranks 1..={}: p ≈ {:.3} × rank^{:.3} (r² {:.3})",
                fit.max_rank,
                10f64.powf(fit.intercept),
                fit.exponent,
                fit.r2
            );
        }
        None => out.push_str("\nno power law: too few tokens have any probability\n"),
    }
    out
}

/// Each scored token with its probability and rank, then the perplexity.
pub fn score_table(resp: &gw::ScoreResponse, shaped: bool) -> String {
    let mut header = vec![
        ("index", Align::Right),
        ("token", Align::Left),
        ("prob", Align::Right),
        ("rank", Align::Right),
    ];
    if shaped {
        header.push(("shaped", Align::Right));
    }
    let with_top = !resp.top.is_empty();
    if with_top {
        header.push(("most likely instead", Align::Left));
    }
    let first = resp.first_scored as usize;
    let rows: Vec<Vec<String>> = resp
        .logprobs
        .iter()
        .enumerate()
        .map(|(i, lp)| {
            let at = first + i;
            let piece = resp.pieces.get(at).map(Vec::as_slice).unwrap_or_default();
            let mut row = vec![
                at.to_string(),
                quote_bytes(piece),
                percent(lp.exp()),
                resp.ranks.get(i).map(u32::to_string).unwrap_or_default(),
            ];
            if shaped {
                row.push(percent(
                    resp.shaped_logprobs
                        .get(i)
                        .copied()
                        .unwrap_or(f32::NAN)
                        .exp(),
                ));
            }
            if let Some(top) = resp.top.get(i).filter(|_| with_top) {
                let alternatives: Vec<String> = top
                    .pieces
                    .iter()
                    .zip(&top.logprobs)
                    .map(|(p, lp)| format!("{} {}", quote_bytes(p), percent(lp.exp())))
                    .collect();
                row.push(alternatives.join("  "));
            }
            row
        })
        .collect();
    let scored = resp.logprobs.len() as u32;
    format!(
        "{}\n{scored} scored {} · log-probability {:.3} · perplexity {:.2}\n",
        table(&header, &rows),
        plural(scored, "token"),
        resp.total_logprob,
        resp.perplexity
    )
}

/// Names of the hidden states: the embeddings, after each block, and the output.
fn state_name(i: usize, states: usize) -> String {
    match i {
        0 => "embeddings".to_string(),
        i if i + 1 == states => "output".to_string(),
        i => format!("after block {}", i - 1),
    }
}

/// The logit lens: one row per hidden state with its most likely next tokens.
pub fn lens_table(resp: &gw::InspectResponse) -> String {
    let states = resp.lens.len();
    let rows: Vec<Vec<String>> = resp
        .lens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let tokens: Vec<String> = t
                .pieces
                .iter()
                .zip(&t.probabilities)
                .map(|(p, prob)| format!("{} {}", quote_bytes(p), percent(*prob)))
                .collect();
            vec![state_name(i, states), tokens.join("  ")]
        })
        .collect();
    let n = resp.ids.len() as u32;
    format!(
        "next token after {n} {}, read from every layer\n\n{}",
        plural(n, "token"),
        table(
            &[
                ("read from", Align::Left),
                ("most likely next", Align::Left)
            ],
            &rows
        )
    )
}

/// Where the last token looks: each head's three most attended positions.
pub fn attention_summary(pieces: &[Vec<u8>], layer: u32, heads: &[(u32, Vec<f32>)]) -> String {
    let n = pieces.len();
    let rows: Vec<Vec<String>> = heads
        .iter()
        .map(|(h, weights)| {
            let last = &weights[(n - 1) * n..n * n];
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| last[b].total_cmp(&last[a]).then(a.cmp(&b)));
            let top: Vec<String> = order
                .iter()
                .take(3)
                .map(|&j| format!("{j}:{} {}", quote_bytes(&pieces[j]), percent(last[j])))
                .collect();
            vec![h.to_string(), top.join("  ")]
        })
        .collect();
    format!(
        "layer {layer}: where the last token {} attends\n\n{}",
        quote_bytes(&pieces[n - 1]),
        table(
            &[
                ("head", Align::Right),
                ("most attended positions", Align::Left)
            ],
            &rows
        )
    )
}

fn norm(row: &[f32]) -> f32 {
    row.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// The embedding module per position: the sizes of its token part, position part and sum.
pub fn embedding_table(
    pieces: &[Vec<u8>],
    token: &[f32],
    position: &[f32],
    width: usize,
) -> String {
    let rows: Vec<Vec<String>> = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let t = &token[i * width..(i + 1) * width];
            let p = &position[i * width..(i + 1) * width];
            let sum: Vec<f32> = t.iter().zip(p).map(|(a, b)| a + b).collect();
            vec![
                i.to_string(),
                quote_bytes(piece),
                format!("{:.3}", norm(t)),
                format!("{:.3}", norm(p)),
                format!("{:.3}", norm(&sum)),
            ]
        })
        .collect();
    format!(
        "the embedding module: token part + position part = the blocks' input ({width} wide)\n\n{}",
        table(
            &[
                ("position", Align::Right),
                ("token", Align::Left),
                ("|token|", Align::Right),
                ("|position|", Align::Right),
                ("|sum|", Align::Right),
            ],
            &rows
        )
    )
}

/// Mean, standard deviation, minimum and maximum.
pub fn stats(values: &[f32]) -> (f64, f64, f32, f32) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (mean, var.sqrt(), min, max)
}

/// A weight matrix's shape and value statistics.
pub fn matrix_summary(name: &str, rows: usize, cols: usize, values: &[f32]) -> String {
    let (mean, std, min, max) = stats(values);
    format!(
        "{name}: {rows} x {cols} · mean {mean:.4} · std {std:.4} · min {min:.4} · max {max:.4}\n"
    )
}

/// Per block: how many weights, their spread, and the fullest bin.
pub fn histogram_table(histograms: &[gw::Histogram]) -> String {
    let rows: Vec<Vec<String>> = histograms
        .iter()
        .map(|h| {
            let total: u64 = h.counts.iter().sum();
            let (mut mean, mut sq) = (0.0, 0.0);
            for (i, &c) in h.counts.iter().enumerate() {
                let mid = (h.edges[i] + h.edges[i + 1]) / 2.0;
                mean += mid * c as f64;
                sq += mid * mid * c as f64;
            }
            let total_f = total.max(1) as f64;
            let (mean, sq) = (mean / total_f, sq / total_f);
            vec![
                h.layer.to_string(),
                total.to_string(),
                format!("{mean:.4}"),
                format!("{:.4}", (sq - mean * mean).max(0.0).sqrt()),
            ]
        })
        .collect();
    let range = histograms
        .first()
        .map(|h| {
            format!(
                "over [{:.3}, {:.3}] in {} bins\n\n",
                h.edges.first().unwrap_or(&0.0),
                h.edges.last().unwrap_or(&0.0),
                h.counts.len()
            )
        })
        .unwrap_or_default();
    format!(
        "weight values per block {range}{}",
        table(
            &[
                ("block", Align::Right),
                ("weights", Align::Right),
                ("mean", Align::Right),
                ("std", Align::Right),
            ],
            &rows
        )
    )
}
