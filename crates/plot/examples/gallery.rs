//! Writes one picture of each kind, from made-up data shaped like the
//! essay's, into the folder given as the only argument, and prints how long
//! each took to draw:
//!
//! ```text
//! cargo run --release -p oneword-plot --example gallery -- pictures/
//! ```

use std::time::Instant;

use oneword_plot::{
    bars, heatmap, heatmap_grid, histogram, histograms, loglog, moving_average, scatter, Bars,
    Grid, Heatmap, Histograms, Line, LogLog, Panel, PlotError, Scale, Scatter, Series, Size,
};

/// Uniform noise in [-1, 1) from xorshift, so the example needs no `rand`.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: gallery OUT_DIR")?);
    std::fs::create_dir_all(&dir)?;
    let save = |name: &str, draw: &dyn Fn() -> Result<Vec<u8>, PlotError>| {
        let started = Instant::now();
        let png = draw()?;
        println!("{name}: {:?}, {} bytes", started.elapsed(), png.len());
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok::<(), Box<dyn std::error::Error>>(())
    };

    let letters: Vec<String> = ('a'..='z').map(String::from).collect();
    // English letter frequencies (per cent), a to z.
    let freq = [
        8.2, 1.5, 2.8, 4.3, 12.7, 2.2, 2.0, 6.1, 7.0, 0.15, 0.77, 4.0, 2.4, 6.7, 7.5, 1.9, 0.095,
        6.0, 6.3, 9.1, 2.8, 0.98, 2.4, 0.15, 2.0, 0.074,
    ];
    let freq: Vec<f64> = freq.iter().map(|p| p / 100.0).collect();
    save("bars", &|| {
        let chart = Bars {
            title: "Letter frequencies in English",
            x_label: "letter",
            y_label: "probability",
            labels: &letters,
            values: &freq,
        };
        bars(&chart, Size::new(800, 500))
    })?;
    let tokens: Vec<String> = [
        " learn",
        " predict",
        " make",
        " understand",
        " do",
        " generate",
        " create",
        " adapt",
        " process",
        " think",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let probs = [
        0.045, 0.035, 0.032, 0.031, 0.029, 0.024, 0.021, 0.018, 0.016, 0.013,
    ];
    save("bars_tokens", &|| {
        let chart = Bars {
            title: "The best thing about AI is its ability to …",
            y_label: "probability",
            labels: &tokens,
            values: &probs,
            ..Default::default()
        };
        bars(&chart, Size::new(600, 450))
    })?;

    let mut pair_labels = letters.clone();
    pair_labels.push("␣".into());
    let pairs: Vec<f32> = noise(3, 27 * 27)
        .iter()
        .map(|v| (v + 1.0).powi(4) / 16.0 / 27.0)
        .collect();
    save("heatmap_pairs", &|| {
        let chart = Heatmap {
            title: "2-gram probabilities",
            x_label: "second letter",
            y_label: "first letter",
            rows: 27,
            cols: 27,
            values: &pairs,
            row_labels: Some(&pair_labels),
            col_labels: Some(&pair_labels),
            ..Default::default()
        };
        heatmap(&chart, Size::new(700, 640))
    })?;

    let t = 1024;
    let mut attention = vec![0f32; t * t];
    for i in 0..t {
        for j in 0..=i {
            attention[i * t + j] = 0.3 / (i + 1) as f32 + if i - j < 3 { 0.2 } else { 0.0 };
        }
    }
    let token_labels: Vec<String> = (0..t).map(|i| format!("Ġtoken{i}")).collect();
    save("heatmap_attention", &|| {
        let chart = Heatmap {
            title: "attention, block 0 head 3 (1024 tokens)",
            rows: t,
            cols: t,
            values: &attention,
            row_labels: Some(&token_labels),
            col_labels: Some(&token_labels),
            ..Default::default()
        };
        heatmap(&chart, Size::new(800, 800))
    })?;

    let (rows, cols) = (768, 3072);
    let weights: Vec<f32> = noise(9, rows * cols)
        .iter()
        .map(|v| v * v * v * 0.3)
        .collect();
    let weight_chart = Heatmap {
        title: "block 0 mlp.c_fc weight (768×3072)",
        x_label: "output",
        y_label: "input",
        rows,
        cols,
        values: &weights,
        scale: Scale::Diverging,
        ..Default::default()
    };
    save("heatmap_weights", &|| {
        heatmap(&weight_chart, Size::new(1200, 450))
    })?;
    save("heatmap_weights_smooth", &|| {
        let (r, c, smooth) = moving_average(rows, cols, &weights, 64)?;
        let chart = Heatmap {
            title: "64×64 moving average",
            rows: r,
            cols: c,
            values: &smooth,
            ..weight_chart
        };
        heatmap(&chart, Size::new(1200, 450))
    })?;

    let heads: Vec<Vec<f32>> = (0..12)
        .map(|h| {
            let v = noise(20 + h, 16 * 16);
            (0..256)
                .map(|k| if k % 16 <= k / 16 { v[k].abs() } else { 0.0 })
                .collect()
        })
        .collect();
    let head_titles: Vec<String> = (0..12).map(|h| format!("head {h}")).collect();
    let panels: Vec<Panel> = heads
        .iter()
        .zip(&head_titles)
        .map(|(values, title)| Panel {
            title,
            rows: 16,
            cols: 16,
            values,
        })
        .collect();
    save("heatmap_grid", &|| {
        let chart = Grid {
            title: "attention heads of block 5",
            panels: &panels,
            columns: 4,
            scale: Scale::Sequential,
            range: None,
        };
        heatmap_grid(&chart, Size::new(900, 700))
    })?;

    let ranks: Vec<(f64, f64)> = (1..=50_257)
        .map(|r| {
            (
                r as f64,
                0.08 * (r as f64).powf(-1.1) * (1.0 + 0.3 * ((r as f64).ln().sin())),
            )
        })
        .collect();
    save("loglog", &|| {
        let chart = LogLog {
            title: "next-token probability by rank",
            x_label: "rank",
            y_label: "probability",
            points: &ranks,
            fit: Some(Line {
                slope: -1.1,
                intercept: 0.08f64.log10(),
                label: "fit: p = 0.08 · rank^-1.1".into(),
            }),
        };
        loglog(&chart, Size::new(800, 600))
    })?;

    let words: Vec<String> = [
        "cat", "dog", "horse", "apple", "pear", "banana", "king", "queen", "man", "woman", "car",
        "train", "boat", "red", "green", "blue",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let xy = noise(77, words.len() * 2);
    let points: Vec<(f64, f64)> = (0..words.len())
        .map(|i| {
            (
                (i / 3) as f64 + xy[2 * i] as f64 * 0.6,
                (i % 3) as f64 + xy[2 * i + 1] as f64 * 0.6,
            )
        })
        .collect();
    save("scatter", &|| {
        let chart = Scatter {
            title: "word embeddings (PCA)",
            x_label: "PC 1",
            y_label: "PC 2",
            points: &points,
            labels: &words,
        };
        scatter(&chart, Size::new(800, 600))
    })?;

    let series: Vec<Series> = (0..48)
        .map(|b| {
            let v = noise(100 + b, 30_000);
            let spread = 0.05 + 0.004 * b as f32;
            let values: Vec<f32> = v.chunks(3).map(|c| (c[0] + c[1] + c[2]) * spread).collect();
            let (edges, counts) = histogram(&values, 80).expect("finite values");
            Series {
                label: format!("block {b}"),
                edges,
                counts,
            }
        })
        .collect();
    save("histograms", &|| {
        let chart = Histograms {
            title: "weight values by block",
            x_label: "weight",
            y_label: "count",
            series: &series,
        };
        histograms(&chart, Size::new(800, 600))
    })?;
    Ok(())
}
