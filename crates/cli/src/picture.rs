//! The instruments' pictures: answers turned into the charts of `oneword_plot`, as PNG bytes.

use oneword_plot::{
    Bars, Grid, Heatmap, Histograms, Line, LogLog, Panel, Scale, Scatter, Series, Size,
};
use oneword_proto::gateway::v1 as gw;

use crate::analysis::PowerLaw;
use crate::error::Error;
use crate::render::escape_bytes;

fn size((width, height): (u32, u32)) -> Size {
    Size { width, height }
}

fn drawn(result: Result<Vec<u8>, oneword_plot::PlotError>) -> Result<Vec<u8>, Error> {
    result.map_err(|e| Error::Response(format!("drawing the picture: {e}")))
}

/// Token labels that show leading spaces: `␣hello`.
fn labels(pieces: &[Vec<u8>]) -> Vec<String> {
    pieces
        .iter()
        .map(|p| escape_bytes(p).replace(' ', "␣"))
        .collect()
}

/// The essay's log-log plot of probability against rank, with the fitted line.
pub fn ranks(
    prompt: &str,
    p: &[f64],
    fit: Option<&PowerLaw>,
    at: (u32, u32),
) -> Result<Vec<u8>, Error> {
    let points: Vec<(f64, f64)> = p
        .iter()
        .enumerate()
        .filter(|(_, &p)| p > 0.0)
        .map(|(i, &p)| ((i + 1) as f64, p))
        .collect();
    let title = format!("next token after {:?}", shorten(prompt, 60));
    drawn(oneword_plot::loglog(
        &LogLog {
            title: &title,
            x_label: "rank",
            y_label: "probability",
            points: &points,
            fit: fit.map(|f| Line {
                slope: f.exponent,
                intercept: f.intercept,
                label: format!(
                    "p ≈ {:.3} · rank^{:.2}",
                    10f64.powf(f.intercept),
                    f.exponent
                ),
            }),
        },
        size(at),
    ))
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut short: String = text.chars().take(chars - 1).collect();
    short.push('…');
    short
}

/// One head's weights as a heatmap, or all of a layer's heads as a grid of them.
pub fn attention(
    pieces: &[Vec<u8>],
    layer: u32,
    heads: &[(u32, Vec<f32>)],
    at: (u32, u32),
) -> Result<Vec<u8>, Error> {
    let n = pieces.len();
    let tokens = labels(pieces);
    if let [(head, weights)] = heads {
        let title = format!("attention of layer {layer}, head {head}");
        return drawn(oneword_plot::heatmap(
            &Heatmap {
                title: &title,
                x_label: "attends to",
                y_label: "token",
                rows: n,
                cols: n,
                values: weights,
                row_labels: Some(&tokens),
                col_labels: Some(&tokens),
                scale: Scale::Sequential,
                range: Some((0.0, 1.0)),
            },
            size(at),
        ));
    }
    let titles: Vec<String> = heads.iter().map(|(h, _)| format!("head {h}")).collect();
    let panels: Vec<Panel> = heads
        .iter()
        .zip(&titles)
        .map(|((_, weights), title)| Panel {
            title,
            rows: n,
            cols: n,
            values: weights,
        })
        .collect();
    let columns = (heads.len() as f64).sqrt().ceil() as usize;
    let title = format!("attention of layer {layer}, {} heads", heads.len());
    drawn(oneword_plot::heatmap_grid(
        &Grid {
            title: &title,
            panels: &panels,
            columns: columns.max(1),
            scale: Scale::Sequential,
            range: Some((0.0, 1.0)),
        },
        size(at),
    ))
}

/// The embedding module's two parts side by side (the essay's picture): positions down,
/// embedding dimensions across.
pub fn embedding_module(
    pieces: &[Vec<u8>],
    token: &[f32],
    position: &[f32],
    width: usize,
    at: (u32, u32),
) -> Result<Vec<u8>, Error> {
    let n = pieces.len();
    let panels = [
        Panel {
            title: "token embeddings",
            rows: n,
            cols: width,
            values: token,
        },
        Panel {
            title: "position embeddings",
            rows: n,
            cols: width,
            values: position,
        },
    ];
    drawn(oneword_plot::heatmap_grid(
        &Grid {
            title: "the embedding module: token part and position part",
            panels: &panels,
            columns: 2,
            scale: Scale::Diverging,
            range: None,
        },
        size(at),
    ))
}

/// A weight matrix as an image, optionally smoothed by the essay's moving average.
pub fn matrix(
    name: &str,
    rows: usize,
    cols: usize,
    values: &[f32],
    smooth: Option<usize>,
    at: (u32, u32),
) -> Result<Vec<u8>, Error> {
    let smoothed;
    let (rows, cols, values, title) = match smooth {
        Some(window) => {
            smoothed = oneword_plot::moving_average(rows, cols, values, window)
                .map_err(|e| Error::Usage(format!("`--smooth`: {e}")))?;
            (
                smoothed.0,
                smoothed.1,
                smoothed.2.as_slice(),
                format!("{name}, {window}x{window} moving average"),
            )
        }
        None => (rows, cols, values, name.to_string()),
    };
    drawn(oneword_plot::heatmap(
        &Heatmap {
            title: &title,
            x_label: "output",
            y_label: "input",
            rows,
            cols,
            values,
            row_labels: None,
            col_labels: None,
            scale: Scale::Diverging,
            range: None,
        },
        size(at),
    ))
}

/// Every block's histogram of weight values.
pub fn histograms(histograms: &[gw::Histogram], at: (u32, u32)) -> Result<Vec<u8>, Error> {
    let series: Vec<Series> = histograms
        .iter()
        .map(|h| Series {
            label: format!("block {}", h.layer),
            edges: h.edges.clone(),
            counts: h.counts.clone(),
        })
        .collect();
    drawn(oneword_plot::histograms(
        &Histograms {
            title: "weight values of each block",
            x_label: "weight value",
            y_label: "count",
            series: &series,
        },
        size(at),
    ))
}

/// The words on the plane of their first two principal components.
pub fn word_map(
    words: &[String],
    resp: &gw::WordsResponse,
    at: (u32, u32),
) -> Result<Vec<u8>, Error> {
    if resp.projection.len() != 2 * words.len() {
        return Err(Error::Usage("a map needs at least two words".into()));
    }
    let points: Vec<(f64, f64)> = resp
        .projection
        .chunks_exact(2)
        .map(|p| (p[0] as f64, p[1] as f64))
        .collect();
    let share = |i: usize| resp.explained_variance.get(i).map_or(0.0, |v| v * 100.0);
    let (x, y) = (
        format!("component 1 ({:.0}%)", share(0)),
        format!("component 2 ({:.0}%)", share(1)),
    );
    drawn(oneword_plot::scatter(
        &Scatter {
            title: "words in embedding space",
            x_label: &x,
            y_label: &y,
            points: &points,
            labels: words,
        },
        size(at),
    ))
}

/// Letter frequencies as a bar chart.
pub fn letters(resp: &gw::CorpusResponse, at: (u32, u32)) -> Result<Vec<u8>, Error> {
    let values: Vec<f64> = resp.frequencies.iter().map(|f| f * 100.0).collect();
    drawn(oneword_plot::bars(
        &Bars {
            title: "letter frequencies",
            x_label: "letter",
            y_label: "share (%)",
            labels: &resp.letters,
            values: &values,
        },
        size(at),
    ))
}

/// P(second letter | first letter) as a heatmap, the space shown as ␣.
pub fn letter_pairs(resp: &gw::CorpusResponse, at: (u32, u32)) -> Result<Vec<u8>, Error> {
    let n = resp.pair_symbols.len();
    let symbols: Vec<String> = resp
        .pair_symbols
        .iter()
        .map(|s| {
            if s == " " {
                "␣".to_string()
            } else {
                s.clone()
            }
        })
        .collect();
    let values: Vec<f32> = resp.pair_probabilities.iter().map(|&p| p as f32).collect();
    drawn(oneword_plot::heatmap(
        &Heatmap {
            title: "probability of the next letter",
            x_label: "second letter",
            y_label: "first letter",
            rows: n,
            cols: n,
            values: &values,
            row_labels: Some(&symbols),
            col_labels: Some(&symbols),
            scale: Scale::Sequential,
            range: Some((0.0, 1.0)),
        },
        size(at),
    ))
}
