//! Word embeddings and the n-gram corpus as text: words and their similarities, nearest tokens,
//! letter frequencies and letter pairs.

use std::fmt::Write as _;

use oneword_proto::gateway::v1 as gw;

use super::cells::{bar, quote_bytes, table, Align};

/// The tokens each word was read as, then the cosine similarity of every pair.
pub fn words_table(words: &[String], resp: &gw::WordsResponse) -> String {
    let mut out = String::new();
    for (word, tokens) in words.iter().zip(&resp.tokens) {
        let pieces: Vec<String> = tokens.pieces.iter().map(|p| quote_bytes(p)).collect();
        let _ = writeln!(out, "{word}: {}", pieces.join(" "));
    }
    let n = words.len();
    let mut header: Vec<(&str, Align)> = vec![("cosine", Align::Left)];
    header.extend(words.iter().map(|w| (w.as_str(), Align::Right)));
    let rows: Vec<Vec<String>> = (0..n)
        .map(|i| {
            let mut row = vec![words[i].clone()];
            row.extend((0..n).map(|j| {
                resp.cosine
                    .get(i * n + j)
                    .map_or_else(String::new, |c| format!("{c:.3}"))
            }));
            row
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&header, &rows));
    if resp.explained_variance.len() == 2 {
        let _ = writeln!(
            out,
            "\nthe 2-D map shows {:.0}% + {:.0}% of the words' variance",
            resp.explained_variance[0] * 100.0,
            resp.explained_variance[1] * 100.0
        );
    }
    out
}

/// Each word's vector, all its numbers.
pub fn vectors_text(words: &[String], vectors: &[f32], width: usize) -> String {
    let mut out = String::new();
    for (word, v) in words.iter().zip(vectors.chunks(width.max(1))) {
        let numbers: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
        let _ = writeln!(out, "\n{word} ({width} numbers):\n{}", numbers.join(" "));
    }
    out
}

/// The nearest tokens with their similarities.
pub fn nearest_table(resp: &gw::NearestResponse) -> String {
    let query = resp.query.clone().unwrap_or_default();
    let pieces: Vec<String> = query.pieces.iter().map(|p| quote_bytes(p)).collect();
    let rows: Vec<Vec<String>> = resp
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            vec![
                (i + 1).to_string(),
                quote_bytes(resp.pieces.get(i).map(Vec::as_slice).unwrap_or_default()),
                id.to_string(),
                format!(
                    "{:.3}",
                    resp.similarities.get(i).copied().unwrap_or(f32::NAN)
                ),
            ]
        })
        .collect();
    format!(
        "nearest to {} by cosine similarity\n\n{}",
        pieces.join(" "),
        table(
            &[
                ("rank", Align::Right),
                ("token", Align::Left),
                ("id", Align::Right),
                ("cosine", Align::Right),
            ],
            &rows
        )
    )
}

/// Each letter's share of the corpus, with a bar.
pub fn letters_table(resp: &gw::CorpusResponse) -> String {
    let top = resp.frequencies.iter().copied().fold(0.0, f64::max);
    let rows: Vec<Vec<String>> = resp
        .letters
        .iter()
        .zip(&resp.frequencies)
        .map(|(l, &f)| {
            vec![
                l.clone(),
                format!("{:.2}%", f * 100.0),
                bar((f / top.max(f64::MIN_POSITIVE)) as f32, 30),
            ]
        })
        .collect();
    format!(
        "letters of {} ({} bytes)\n\n{}",
        resp.corpus,
        resp.corpus_bytes,
        table(
            &[
                ("letter", Align::Left),
                ("share", Align::Right),
                ("", Align::Left)
            ],
            &rows
        )
    )
}

/// For each letter, the letters most likely to follow it.
pub fn letter_pairs_text(resp: &gw::CorpusResponse) -> String {
    let n = resp.pair_symbols.len();
    let shown = |s: &str| {
        if s == " " {
            "␣".to_string()
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = resp
        .pair_symbols
        .iter()
        .enumerate()
        .map(|(i, first)| {
            let row = &resp.pair_probabilities[i * n..(i + 1) * n];
            let mut order: Vec<usize> = (0..n).filter(|&j| row[j] > 0.0).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let next: Vec<String> = order
                .iter()
                .take(4)
                .map(|&j| format!("{} {:.1}%", shown(&resp.pair_symbols[j]), row[j] * 100.0))
                .collect();
            vec![shown(first), next.join("  ")]
        })
        .collect();
    format!(
        "the letter after each letter in {}\n\n{}",
        resp.corpus,
        table(
            &[("letter", Align::Left), ("most likely next", Align::Left)],
            &rows
        )
    )
}
