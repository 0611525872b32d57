//! Every chart kind drawn from data shaped like the essay's, decoded back
//! and checked: the requested size, a picture that is not blank, text that
//! really renders. Bad arguments are in `errors.rs`.

use oneword_plot::{
    bars, heatmap, heatmap_grid, histogram, histograms, loglog, scatter, Bars, Grid, Heatmap,
    Histograms, Line, LogLog, Panel, Scale, Scatter, Series, Size,
};

/// Luminance variance (luminance on 0..=255) below which a picture counts as
/// blank. A blank one is 0; the sparsest picture in these tests measures
/// about 500, so this leaves room for changes of style while still catching
/// a chart that lost most of its data or text.
const MIN_VARIANCE: f64 = 200.0;

/// Decodes `png`, asserts it is exactly `size` and not blank, and returns its
/// RGB pixels.
fn check_picture(png: &[u8], size: Size) -> Vec<u8> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a valid png");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane png size")];
    let info = reader.next_frame(&mut pixels).expect("png frame");
    assert_eq!((info.width, info.height), (size.width, size.height));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    pixels.truncate(info.buffer_size());
    let luma: Vec<f64> = pixels
        .chunks_exact(3)
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let var = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
    assert!(
        var > MIN_VARIANCE,
        "luminance variance {var:.1} looks blank"
    );
    pixels
}

/// A small deterministic generator, so the tests need no `rand`.
struct Noise(u64);

impl Noise {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn letters() -> Vec<String> {
    ('a'..='z').map(String::from).collect()
}

const SIZE: Size = Size::new(640, 480);

fn letter_bars(title: &str) -> Vec<u8> {
    let values: Vec<f64> = (0..26)
        .map(|i| ((i * 7) % 13) as f64 / 100.0 + 0.001)
        .collect();
    let labels = letters();
    let chart = Bars {
        title,
        x_label: "letter",
        y_label: "probability",
        labels: &labels,
        values: &values,
    };
    bars(&chart, SIZE).expect("letter frequencies")
}

#[test]
fn bars_of_letter_frequencies() {
    check_picture(&letter_bars("Letter frequencies"), SIZE);
}

#[test]
fn text_really_renders() {
    let a = check_picture(&letter_bars("Letter frequencies"), SIZE);
    let b = check_picture(&letter_bars("Letter frequencies in English"), SIZE);
    let none = check_picture(&letter_bars(""), SIZE);
    assert_ne!(a, b, "a different title changes the picture");
    assert_ne!(a, none, "a title changes the picture");
    // Same input, same bytes: nothing depends on the machine's fonts.
    assert_eq!(
        letter_bars("Letter frequencies"),
        letter_bars("Letter frequencies")
    );
}

#[test]
fn bars_of_next_tokens_with_long_and_negative_values() {
    let labels: Vec<String> = (0..40).map(|i| format!(" token number {i}\n")).collect();
    let values: Vec<f64> = (0..40).map(|i| 0.3 / (i + 1) as f64 - 0.01).collect();
    let chart = Bars {
        title: "Next token after \"The best thing about AI is its ability to\"",
        labels: &labels,
        values: &values,
        ..Default::default()
    };
    check_picture(
        &bars(&chart, Size::new(500, 400)).unwrap(),
        Size::new(500, 400),
    );
}

#[test]
fn heatmap_of_letter_pairs() {
    let mut noise = Noise(7);
    let values: Vec<f32> = (0..27 * 27).map(|_| (noise.next() + 1.0) / 54.0).collect();
    let mut labels = letters();
    labels.push("␣".to_string());
    let chart = Heatmap {
        title: "2-gram probabilities",
        x_label: "second letter",
        y_label: "first letter",
        rows: 27,
        cols: 27,
        values: &values,
        row_labels: Some(&labels),
        col_labels: Some(&labels),
        ..Default::default()
    };
    check_picture(&heatmap(&chart, SIZE).unwrap(), SIZE);
}

#[test]
fn heatmap_of_long_attention() {
    // Causal attention over 1024 tokens: each row sums to one below the diagonal.
    let t = 1024;
    let mut values = vec![0f32; t * t];
    for i in 0..t {
        for j in 0..=i {
            values[i * t + j] = 1.0 / (i + 1) as f32;
        }
        values[i * t + i] += 0.5;
    }
    let tokens: Vec<String> = (0..t).map(|i| format!("Ġtok{i}")).collect();
    let chart = Heatmap {
        title: "block 0, head 3",
        rows: t,
        cols: t,
        values: &values,
        row_labels: Some(&tokens),
        col_labels: Some(&tokens),
        range: Some((0.0, 1.0)),
        ..Default::default()
    };
    check_picture(
        &heatmap(&chart, Size::new(700, 700)).unwrap(),
        Size::new(700, 700),
    );
}

#[test]
fn heatmap_of_a_weight_matrix_and_its_moving_average() {
    let (rows, cols) = (768, 3072);
    let mut noise = Noise(11);
    let values: Vec<f32> = (0..rows * cols).map(|_| noise.next() * 0.1).collect();
    let size = Size::new(1200, 420);
    let chart = Heatmap {
        title: "block 0 mlp.c_fc weights",
        x_label: "output",
        y_label: "input",
        rows,
        cols,
        values: &values,
        scale: Scale::Diverging,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let png = heatmap(&chart, size).unwrap();
    eprintln!("768×3072 heatmap: {:?}", started.elapsed());
    check_picture(&png, size);

    let (r, c, smooth) = oneword_plot::moving_average(rows, cols, &values, 64).unwrap();
    assert_eq!((r, c), (705, 3009));
    let chart = Heatmap {
        title: "64×64 moving average",
        rows: r,
        cols: c,
        values: &smooth,
        ..chart
    };
    check_picture(&heatmap(&chart, size).unwrap(), size);
}

#[test]
fn heatmap_of_embeddings_without_labels_and_with_gaps() {
    let mut noise = Noise(3);
    let mut values: Vec<f32> = (0..10 * 768).map(|_| noise.next()).collect();
    values[5] = f32::NAN;
    values[800] = f32::INFINITY;
    let chart = Heatmap {
        title: "embedding of \"hello world\" positions",
        x_label: "dimension",
        y_label: "position",
        rows: 10,
        cols: 768,
        values: &values,
        scale: Scale::Diverging,
        ..Default::default()
    };
    check_picture(&heatmap(&chart, SIZE).unwrap(), SIZE);
}

#[test]
fn grid_of_attention_heads() {
    let t = 20;
    let heads: Vec<Vec<f32>> = (0..12)
        .map(|h| {
            let mut noise = Noise(100 + h);
            (0..t * t)
                .map(|k| {
                    if k % t <= k / t {
                        noise.next().abs()
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let titles: Vec<String> = (0..12).map(|h| format!("head {h}")).collect();
    let panels: Vec<Panel> = heads
        .iter()
        .zip(&titles)
        .map(|(values, title)| Panel {
            title,
            rows: t,
            cols: t,
            values,
        })
        .collect();
    for columns in [4, 3, 20] {
        let chart = Grid {
            title: "attention in block 5",
            panels: &panels,
            columns,
            scale: Scale::Sequential,
            range: None,
        };
        check_picture(
            &heatmap_grid(&chart, Size::new(900, 700)).unwrap(),
            Size::new(900, 700),
        );
    }
}

#[test]
fn loglog_of_a_next_token_distribution() {
    // Zipf-like over GPT-2's vocabulary, with zeros at the end that log axes skip.
    let n = 50_257;
    let points: Vec<(f64, f64)> = (1..=n)
        .map(|r| {
            (
                r as f64,
                if r > 50_000 {
                    0.0
                } else {
                    0.1 * (r as f64).powf(-1.2)
                },
            )
        })
        .collect();
    let chart = LogLog {
        title: "next-token probabilities by rank",
        x_label: "rank",
        y_label: "probability",
        points: &points,
        fit: Some(Line {
            slope: -1.2,
            intercept: -1.0,
            label: "fit: p = 0.1·rank^-1.2".to_string(),
        }),
    };
    let started = std::time::Instant::now();
    let png = loglog(&chart, SIZE).unwrap();
    eprintln!("50,257-point log-log plot: {:?}", started.elapsed());
    check_picture(&png, SIZE);
    let few = LogLog {
        points: &points[..30],
        fit: None,
        ..chart
    };
    check_picture(&loglog(&few, SIZE).unwrap(), SIZE);
}

#[test]
fn scatter_of_labelled_words() {
    let words = [
        "cat", "dog", "apple", "pear", "king", "queen", "man", "woman", "car", "train",
    ];
    let labels: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let mut noise = Noise(5);
    let mut points: Vec<(f64, f64)> = (0..words.len())
        .map(|_| (noise.next() as f64 * 3.0, noise.next() as f64))
        .collect();
    points[3] = (f64::NAN, 0.0);
    let chart = Scatter {
        title: "word embeddings, first two principal components",
        x_label: "PC 1",
        y_label: "PC 2",
        points: &points,
        labels: &labels,
    };
    let labelled = check_picture(&scatter(&chart, SIZE).unwrap(), SIZE);
    let bare = Scatter {
        labels: &[],
        ..chart
    };
    assert_ne!(
        labelled,
        check_picture(&scatter(&bare, SIZE).unwrap(), SIZE)
    );
}

#[test]
fn histograms_of_weights_per_block() {
    let series = |n: usize| -> Vec<Series> {
        (0..n)
            .map(|b| {
                let mut noise = Noise(1 + b as u64);
                let spread = 0.05 + 0.01 * b as f32;
                let values: Vec<f32> = (0..4000)
                    .map(|_| (noise.next() + noise.next() + noise.next()) * spread)
                    .collect();
                let (edges, counts) = histogram(&values, 60).unwrap();
                Series {
                    label: format!("block {b}"),
                    edges,
                    counts,
                }
            })
            .collect()
    };
    for n in [1, 3, 48] {
        let s = series(n);
        let chart = Histograms {
            title: "weight values",
            x_label: "value",
            y_label: "count",
            series: &s,
        };
        check_picture(&histograms(&chart, SIZE).unwrap(), SIZE);
    }
}

#[test]
fn every_chart_fits_the_smallest_size() {
    let tiny = Size::new(Size::MIN, Size::MIN);
    let labels = letters();
    let values = vec![1.0; 26];
    let png = bars(
        &Bars {
            title: "a long title that cannot fit",
            labels: &labels,
            values: &values,
            ..Default::default()
        },
        tiny,
    );
    check_picture(&png.unwrap(), tiny);
    let m: Vec<f32> = (0..26 * 26).map(|v| v as f32).collect();
    let chart = Heatmap {
        title: "t",
        x_label: "x",
        y_label: "y",
        rows: 26,
        cols: 26,
        values: &m,
        row_labels: Some(&labels),
        ..Default::default()
    };
    check_picture(&heatmap(&chart, tiny).unwrap(), tiny);
    let points = [(1.0, 0.5), (10.0, 0.01)];
    check_picture(
        &loglog(
            &LogLog {
                title: "t",
                points: &points,
                ..Default::default()
            },
            tiny,
        )
        .unwrap(),
        tiny,
    );
    check_picture(
        &scatter(
            &Scatter {
                points: &points,
                ..Default::default()
            },
            tiny,
        )
        .unwrap(),
        tiny,
    );
    let panels = [Panel {
        rows: 26,
        cols: 26,
        values: &m,
        title: "p",
    }];
    let grid = Grid {
        panels: &panels,
        columns: 1,
        ..Default::default()
    };
    check_picture(&heatmap_grid(&grid, tiny).unwrap(), tiny);
    let (edges, counts) = histogram(&m, 5).unwrap();
    let s = [Series {
        label: "s".into(),
        edges,
        counts,
    }];
    check_picture(
        &histograms(
            &Histograms {
                series: &s,
                ..Default::default()
            },
            tiny,
        )
        .unwrap(),
        tiny,
    );
}
