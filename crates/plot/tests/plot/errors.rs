//! Bad arguments are answered with errors that name them, and extreme but
//! legal numbers still draw: never a panic.

use oneword_plot::{
    bars, heatmap, heatmap_grid, histograms, loglog, scatter, Bars, Grid, Heatmap, Histograms,
    Line, LogLog, Panel, PlotError, Scale, Scatter, Series, Size,
};

const SIZE: Size = Size::new(640, 480);

fn letters() -> Vec<String> {
    ('a'..='z').map(String::from).collect()
}

#[test]
fn bad_sizes_are_errors() {
    let labels = letters();
    let values = vec![1.0; 26];
    let chart = Bars {
        labels: &labels,
        values: &values,
        ..Default::default()
    };
    for size in [
        Size::new(0, 0),
        Size::new(640, 0),
        Size::new(63, 480),
        Size::new(9000, 100),
    ] {
        assert!(
            matches!(bars(&chart, size), Err(PlotError::Size { .. })),
            "{size:?}"
        );
    }
    let err = bars(&chart, Size::new(0, 10)).unwrap_err().to_string();
    assert_eq!(
        err,
        "`size` is 0×10 but each side must be from 64 to 8192 pixels"
    );
}

#[test]
fn bad_bars_are_errors() {
    let labels: Vec<String> = letters()[..4].to_vec();
    let five = [1.0, 2.0, 3.0, 4.0, 5.0];
    let err = bars(
        &Bars {
            labels: &labels,
            values: &five,
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "`values` has 5 entries but `labels` has 4");
    let err = bars(&Bars::default(), SIZE).unwrap_err();
    assert_eq!(err, PlotError::Empty { name: "values" });
    let four = [1.0, f64::NAN, 3.0, 4.0];
    let err = bars(
        &Bars {
            labels: &labels,
            values: &four,
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PlotError::NotFinite {
                name: "values",
                index: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_heatmaps_are_errors() {
    let values = [0.0f32; 6];
    let shaped = |rows, cols| Heatmap {
        rows,
        cols,
        values: &values,
        ..Default::default()
    };
    let err = heatmap(&shaped(2, 2), SIZE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`values` has 6 entries but `rows` × `cols` is 2×2"
    );
    assert!(matches!(
        heatmap(&shaped(usize::MAX, 2), SIZE),
        Err(PlotError::Shape { .. })
    ));
    assert!(matches!(
        heatmap(&Heatmap::default(), SIZE),
        Err(PlotError::Empty { name: "values" })
    ));
    let labels = letters();
    let labelled = Heatmap {
        row_labels: Some(&labels[..3]),
        ..shaped(2, 3)
    };
    assert!(matches!(
        heatmap(&labelled, SIZE),
        Err(PlotError::Mismatch {
            name: "row_labels",
            ..
        })
    ));
    let labelled = Heatmap {
        col_labels: Some(&labels[..2]),
        ..shaped(2, 3)
    };
    assert!(matches!(
        heatmap(&labelled, SIZE),
        Err(PlotError::Mismatch {
            name: "col_labels",
            ..
        })
    ));
    let nan = [f32::NAN; 4];
    let err = heatmap(
        &Heatmap {
            rows: 2,
            cols: 2,
            values: &nan,
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "`values` has no finite entry");
    let ranged = Heatmap {
        range: Some((1.0, 0.0)),
        ..shaped(2, 3)
    };
    assert!(matches!(
        heatmap(&ranged, SIZE),
        Err(PlotError::Invalid { name: "range", .. })
    ));
}

#[test]
fn bad_grids_are_errors() {
    let values = [0.5f32; 4];
    let panels = [Panel {
        rows: 2,
        cols: 2,
        values: &values,
        title: "",
    }];
    let grid = |panels, columns| Grid {
        panels,
        columns,
        ..Default::default()
    };
    assert!(matches!(
        heatmap_grid(&grid(&[], 2), SIZE),
        Err(PlotError::Empty { name: "panels" })
    ));
    assert!(matches!(
        heatmap_grid(&grid(&panels, 0), SIZE),
        Err(PlotError::Invalid {
            name: "columns",
            ..
        })
    ));
    let bad = [
        panels[0],
        Panel {
            rows: 3,
            ..panels[0]
        },
    ];
    let err = heatmap_grid(&grid(&bad, 2), SIZE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`panels` entry 1: `values` has 4 entries but `rows` × `cols` is 3×2"
    );
}

#[test]
fn bad_points_and_series_are_errors() {
    let zeros = [(1.0, 0.0), (0.0, 1.0), (f64::NAN, 1.0)];
    let err = loglog(
        &LogLog {
            points: &zeros,
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert_eq!(err, PlotError::Empty { name: "points" });
    let fit = Some(Line {
        slope: f64::INFINITY,
        intercept: 0.0,
        label: "fit".into(),
    });
    let err = loglog(
        &LogLog {
            points: &[(1.0, 1.0)],
            fit,
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        PlotError::NotFinite {
            name: "fit",
            index: 0,
            ..
        }
    ));

    let labels = letters();
    let two = [(0.0, 0.0), (1.0, 1.0)];
    let err = scatter(
        &Scatter {
            points: &two,
            labels: &labels,
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`labels` has 26 entries but `points` has 2"
    );
    let err = scatter(
        &Scatter {
            points: &[(f64::NAN, 0.0)],
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert_eq!(err, PlotError::Empty { name: "points" });

    assert!(matches!(
        histograms(&Histograms::default(), SIZE),
        Err(PlotError::Empty { name: "series" })
    ));
    let bad = [Series {
        label: "block 0".into(),
        edges: vec![0.0, 1.0],
        counts: vec![1, 2],
    }];
    let err = histograms(
        &Histograms {
            series: &bad,
            ..Default::default()
        },
        SIZE,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`series` entry 0 (\"block 0\"): `edges` has 2 entries but `counts` has 2 (edges must be one more)"
    );
}

#[test]
fn extreme_but_finite_numbers_draw_without_panicking() {
    let size = Size::new(300, 200);
    let labels: Vec<String> = vec!["x".repeat(10_000), "\u{0}\n\t\u{200b}".into()];
    let huge = [f64::MAX, -f64::MAX];
    let chart = Bars {
        title: &labels[0],
        labels: &labels,
        values: &huge,
        ..Default::default()
    };
    bars(&chart, size).expect("huge bars");
    let far = [(f64::MAX, -f64::MAX), (-f64::MAX, f64::MAX), (0.0, 0.0)];
    let three: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
    scatter(
        &Scatter {
            points: &far,
            labels: &three,
            ..Default::default()
        },
        size,
    )
    .expect("far points");
    let wide = [(f64::MIN_POSITIVE, f64::MAX), (f64::MAX, f64::MIN_POSITIVE)];
    let fit = Some(Line {
        slope: 1e6,
        intercept: -1e6,
        label: "steep".into(),
    });
    loglog(
        &LogLog {
            points: &wide,
            fit,
            ..Default::default()
        },
        size,
    )
    .expect("wide log axes");
    let tiny = [f32::MIN_POSITIVE, -f32::MAX, f32::MAX];
    heatmap(
        &Heatmap {
            rows: 1,
            cols: 3,
            values: &tiny,
            scale: Scale::Diverging,
            ..Default::default()
        },
        size,
    )
    .expect("extreme cells");
    let s = [Series {
        label: String::new(),
        edges: vec![-f64::MAX, 0.0, f64::MAX],
        counts: vec![u64::MAX, 0],
    }];
    histograms(
        &Histograms {
            series: &s,
            ..Default::default()
        },
        size,
    )
    .expect("extreme histogram");
}
