//! The tables of `next`, `tokenize` and `info`.

use std::collections::HashMap;
use std::fmt::Write as _;

use oneword_proto::common::v1 as common;
use oneword_proto::gateway::v1 as gw;

use super::cells::{bar, percent, piece, plural, quote_bytes, table, Align};

/// Width of the probability bar of the most likely token, in terminal cells.
const BAR_WIDTH: usize = 24;

/// "temperature 0.8, top-k 3, top-p 0.9", or `None` without any shaping.
pub fn shaping_label(
    temperature: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
) -> Option<String> {
    let parts: Vec<String> = [
        temperature.map(|t| format!("temperature {t}")),
        top_k.map(|k| format!("top-k {k}")),
        top_p.map(|p| format!("top-p {p}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The essay's table: rank, token, probability (and shaped probability), bar.
pub fn next_table(resp: &gw::NextTokensResponse, shaping: Option<&str>) -> String {
    let empty = gw::TokenTable::default();
    let raw = resp.raw.as_ref().unwrap_or(&empty);
    let shaped: Option<HashMap<u32, f32>> = resp.shaped.as_ref().map(|t| {
        t.ids
            .iter()
            .copied()
            .zip(t.probabilities.iter().copied())
            .collect()
    });
    let top = raw.probabilities.iter().copied().fold(0.0f32, f32::max);

    let mut header = vec![
        ("rank", Align::Right),
        ("token", Align::Left),
        ("prob", Align::Right),
    ];
    if shaped.is_some() {
        header.push(("shaped", Align::Right));
    }
    header.push(("", Align::Left));

    let rows: Vec<Vec<String>> = raw
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let p = raw.probabilities.get(i).copied().unwrap_or(f32::NAN);
            let mut row = vec![
                (i + 1).to_string(),
                quote_bytes(piece(&raw.pieces, &raw.texts, i)),
                percent(p),
            ];
            if let Some(shaped) = &shaped {
                // Not in the shaped list: cut by top-k/top-p (or below its top n).
                row.push(
                    shaped
                        .get(id)
                        .map_or_else(|| "-".to_string(), |&p| percent(p)),
                );
            }
            row.push(if top > 0.0 {
                bar(p / top, BAR_WIDTH)
            } else {
                String::new()
            });
            row
        })
        .collect();

    let shaped_entropy = resp
        .shaped_entropy
        .map(|h| format!(" (shaped {h:.2})"))
        .unwrap_or_default();
    let mut out = format!(
        "{} prompt {} · entropy {:.2} nats{shaped_entropy}\n\n",
        resp.prompt_tokens,
        plural(resp.prompt_tokens, "token"),
        resp.entropy
    );
    out.push_str(&table(&header, &rows));
    if let (Some(label), Some(_)) = (shaping, &shaped) {
        let _ = writeln!(out, "\nshaped: {label}");
    }
    out
}

/// Tokens of a text: index, id, exact bytes, byte range, and whether special.
pub fn tokenize_table(enc: &gw::Encoding) -> String {
    let header = [
        ("index", Align::Right),
        ("id", Align::Right),
        ("piece", Align::Left),
        ("bytes", Align::Left),
        ("", Align::Left),
    ];
    let rows: Vec<Vec<String>> = enc
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let range = match (enc.starts.get(i), enc.ends.get(i)) {
                (Some(s), Some(e)) => format!("{s}..{e}"),
                _ => String::new(),
            };
            let special = enc.special.get(i).copied().unwrap_or(false);
            vec![
                i.to_string(),
                id.to_string(),
                quote_bytes(piece(&enc.pieces, &enc.tokens, i)),
                range,
                if special {
                    "special".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let n = enc.ids.len() as u32;
    format!("{n} {}\n\n{}", plural(n, "token"), table(&header, &rows))
}

/// The model and the request limits, one `key  value` line each.
pub fn info(resp: &gw::InfoResponse) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    if let Some(m) = &resp.model {
        let dtype = common::Dtype::try_from(m.dtype)
            .map(|d| match d {
                common::Dtype::F32 => "f32",
                common::Dtype::F16 => "f16",
                common::Dtype::Bf16 => "bf16",
                common::Dtype::Unspecified => "unspecified",
            })
            .unwrap_or("unknown");
        lines.push(("model", format!("{} ({})", m.model_id, m.model_type)));
        lines.push((
            "vocabulary",
            format!("{} tokens, end of text = {}", m.vocab_size, m.eos_token_id),
        ));
        lines.push(("context", format!("{} tokens", m.context_length)));
        lines.push((
            "shape",
            format!(
                "{} blocks × {} heads, width {}",
                m.num_layers, m.num_heads, m.hidden_size
            ),
        ));
        lines.push(("device", format!("{}, {dtype}", m.device)));
    }
    lines.push(("max tokens", resp.max_new_tokens.to_string()));
    lines.push(("max n", resp.max_n.to_string()));
    lines.push(("max top / logprobs", resp.max_top_n.to_string()));
    lines.push((
        "stop sequences",
        format!(
            "at most {}, each at most {} bytes",
            resp.max_stop_sequences, resp.max_stop_sequence_bytes
        ),
    ));
    for m in &resp.embedding_models {
        lines.push((
            "text embeddings",
            format!(
                "{}: {} dimensions, {} pooling, at most {} tokens and {} texts a request",
                m.name, m.dimensions, m.pooling, m.max_tokens, m.max_texts
            ),
        ));
    }
    let key_width = lines
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|(k, v)| format!("{k:key_width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn essay_table() -> gw::TokenTable {
        let words = [" learn", " predict", " make", " understand", " do"];
        let probs = [0.045, 0.035, 0.032, 0.031, 0.029];
        gw::TokenTable {
            ids: vec![2193, 4331, 787, 1833, 466],
            probabilities: probs.to_vec(),
            logprobs: probs.iter().map(|p: &f32| p.ln()).collect(),
            texts: words.iter().map(|w| w.to_string()).collect(),
            pieces: words.iter().map(|w| w.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn next_table_is_the_essays() {
        let resp = gw::NextTokensResponse {
            raw: Some(essay_table()),
            shaped: None,
            entropy: 4.9321,
            shaped_entropy: None,
            prompt_tokens: 9,
            full_row: None,
        };
        let text = next_table(&resp, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "9 prompt tokens · entropy 4.93 nats");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "rank  token          prob");
        assert_eq!(
            lines[3],
            format!("   1  \" learn\"       4.5%  {}", "█".repeat(24))
        );
        assert!(
            lines[4].starts_with("   2  \" predict\"     3.5%  ██████████████████▋"),
            "{}",
            lines[4]
        );
        assert!(
            lines[7].starts_with("   5  \" do\"          2.9%  "),
            "{}",
            lines[7]
        );
        assert_eq!(lines.len(), 8);
    }

    #[test]
    fn next_table_shows_the_shaped_column() {
        let mut shaped = essay_table();
        // top-k 2 at some temperature: three tokens cut.
        shaped.ids.truncate(2);
        shaped.probabilities = vec![0.6, 0.4];
        let resp = gw::NextTokensResponse {
            raw: Some(essay_table()),
            shaped: Some(shaped),
            entropy: 4.9,
            shaped_entropy: Some(0.67),
            prompt_tokens: 9,
            full_row: None,
        };
        let label = shaping_label(Some(0.8), Some(2), None);
        assert_eq!(label.as_deref(), Some("temperature 0.8, top-k 2"));
        let text = next_table(&resp, label.as_deref());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "rank  token          prob  shaped");
        assert!(
            lines[3].starts_with("   1  \" learn\"       4.5%   60.0%  █"),
            "{}",
            lines[3]
        );
        assert!(
            lines[5].starts_with("   3  \" make\"        3.2%       -  █"),
            "{}",
            lines[5]
        );
        assert_eq!(lines.last(), Some(&"shaped: temperature 0.8, top-k 2"));
    }

    #[test]
    fn no_shaping_no_label() {
        assert_eq!(shaping_label(None, None, None), None);
        assert_eq!(
            shaping_label(None, None, Some(0.9)).as_deref(),
            Some("top-p 0.9")
        );
    }

    #[test]
    fn tokenize_table_shows_ranges_and_special_tokens() {
        let enc = gw::Encoding {
            ids: vec![464, 12520, 50256],
            tokens: vec!["The".into(), " \u{fffd}".into(), "<|endoftext|>".into()],
            pieces: vec![
                b"The".to_vec(),
                b" \xf0\x9f".to_vec(),
                b"<|endoftext|>".to_vec(),
            ],
            starts: vec![0, 3, 8],
            ends: vec![3, 6, 21],
            special: vec![false, false, true],
        };
        assert_eq!(
            tokenize_table(&enc),
            "3 tokens\n\
             \n\
             index     id  piece            bytes\n\
             \x20   0    464  \"The\"            0..3\n\
             \x20   1  12520  \" \\xf0\\x9f\"      3..6\n\
             \x20   2  50256  \"<|endoftext|>\"  8..21  special\n"
        );
    }

    #[test]
    fn info_lists_model_and_limits() {
        let resp = gw::InfoResponse {
            model: Some(common::ModelInfo {
                model_id: "gpt2".into(),
                model_type: "gpt2".into(),
                vocab_size: 50257,
                context_length: 1024,
                hidden_size: 768,
                num_layers: 12,
                num_heads: 12,
                eos_token_id: 50256,
                device: "cuda:0".into(),
                dtype: common::Dtype::F16 as i32,
            }),
            max_new_tokens: 1024,
            max_n: 16,
            max_stop_sequences: 4,
            max_stop_sequence_bytes: 64,
            max_top_n: 100,
            embedding_models: vec![gw::EmbeddingModel {
                name: "sentence-transformers/all-MiniLM-L6-v2".into(),
                dimensions: 384,
                max_tokens: 256,
                max_texts: 512,
                pooling: "mean".into(),
            }],
        };
        let text = info(&resp);
        assert!(
            text.starts_with("model               gpt2 (gpt2)\n"),
            "{text}"
        );
        assert!(
            text.contains("\ncontext             1024 tokens\n"),
            "{text}"
        );
        assert!(text.contains("\nshape               12 blocks × 12 heads, width 768\n"));
        assert!(text.contains("\ndevice              cuda:0, f16\n"));
        assert!(text.contains("\nstop sequences      at most 4, each at most 64 bytes\n"));
        assert!(text.contains("\ntext embeddings     sentence-transformers/all-MiniLM-L6-v2: 384 dimensions, mean pooling, at most 256 tokens and 512 texts a request\n"), "{text}");
        // Without a model section the limits still show.
        let bare = info(&gw::InfoResponse::default());
        assert!(bare.starts_with("max tokens"), "{bare}");
    }
}
