//! Single values as table cells — exact token bytes, percentages, bars, durations — and the
//! table they are laid out in.

use std::fmt::Write as _;

/// A token's bytes as readable text: printable characters as they are; `\n`, `\t`, `\r`, `\"` and
/// `\\` escaped; other control and invisible characters as `\u{…}`; bytes that are not (whole)
/// UTF-8 characters — half of a character split across two tokens — as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() || is_invisible(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Format characters that would print as nothing and hide in a table.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// A token quoted so that leading and trailing spaces show: `" learn"`.
pub fn quote_bytes(bytes: &[u8]) -> String {
    format!("\"{}\"", escape_bytes(bytes))
}

/// A probability as a percentage with one decimal: `4.5%`; `<0.1%` for what would round to zero
/// but is not.
pub fn percent(p: f32) -> String {
    if !p.is_finite() {
        "-".to_string()
    } else if p > 0.0 && p < 0.0005 {
        "<0.1%".to_string()
    } else {
        format!("{:.1}%", p * 100.0)
    }
}

/// A horizontal bar `fraction` of `width` cells long, in eighths of a cell.
pub fn bar(fraction: f32, width: usize) -> String {
    const PARTIAL: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (fraction * width as f32 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    s.push_str(PARTIAL[eighths % 8]);
    s
}

/// Nanoseconds as a short human duration.
pub fn duration(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// `word`, or its plural for any count but one.
pub fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// Where a column's cells sit in its width.
#[derive(Clone, Copy)]
pub enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, two spaces apart, without trailing spaces.
pub fn table(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|(h, _)| h.to_string()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, ((cell, w), (_, align))) in row.iter().zip(&widths).zip(header).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // `fmt` pads by characters, as `width` counts.
            let _ = match align {
                Align::Left => write!(line, "{cell:<w$}"),
                Align::Right => write!(line, "{cell:>w$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Entry `i` of a token list's exact bytes, else its (lossy) text.
pub fn piece<'a>(pieces: &'a [Vec<u8>], texts: &'a [String], i: usize) -> &'a [u8] {
    pieces
        .get(i)
        .map(Vec::as_slice)
        .or_else(|| texts.get(i).map(|t| t.as_bytes()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_have_one_decimal() {
        assert_eq!(percent(0.045), "4.5%");
        assert_eq!(percent(0.0349), "3.5%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(percent(0.0004), "<0.1%");
        assert_eq!(percent(0.0005), "0.1%");
        assert_eq!(percent(f32::NAN), "-");
    }

    #[test]
    fn bars_scale_in_eighths() {
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██");
        assert_eq!(bar(1.0 / 32.0, 4), "▏");
        assert_eq!(bar(0.0, 4), "");
        assert_eq!(bar(2.0, 2), "██");
        assert_eq!(bar(f32::NAN, 2), "");
    }

    #[test]
    fn escapes_make_every_byte_visible() {
        assert_eq!(quote_bytes(b" learn"), "\" learn\"");
        assert_eq!(escape_bytes(b"a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape_bytes(b"say \"hi\" \\"), "say \\\"hi\\\" \\\\");
        assert_eq!(escape_bytes(b"\x00\x07\x7f"), "\\x00\\x07\\x7f");
        assert_eq!(escape_bytes("café 日本".as_bytes()), "café 日本");
        assert_eq!(
            escape_bytes("\u{200b}\u{85}".as_bytes()),
            "\\u{200b}\\u{85}"
        );
    }

    #[test]
    fn partial_utf8_pieces_show_their_bytes() {
        // "😀" is f0 9f 98 80; GPT-2 may split it across two tokens.
        let emoji = "😀".as_bytes();
        assert_eq!(escape_bytes(&emoji[..2]), "\\xf0\\x9f");
        assert_eq!(escape_bytes(&emoji[2..]), "\\x98\\x80");
        assert_eq!(escape_bytes(b" \xe6\x97"), " \\xe6\\x97");
        assert_eq!(escape_bytes(&[b'a', 0xff, b'b']), "a\\xffb");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(400_000), "0.4 ms");
        assert_eq!(duration(35_000_000), "35 ms");
        assert_eq!(duration(1_250_000_000), "1.25 s");
    }
}
