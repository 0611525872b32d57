//! Every instrument of the `oneword` CLI against the real services: its table, and with
//! `--png` a picture of the stated size that is not blank.

use std::path::Path;

use oneword_e2e::cli::oneword;
use oneword_e2e::{hf_model, Cluster};

const PROMPT: &str = "The best thing about AI is its ability to";

/// Decodes a PNG and checks its size and that its pixels vary (luminance variance above 100,
/// where a blank picture has 0 and the sparsest chart here has several hundred).
fn check_png(path: &Path, width: u32, height: u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(
        (info.width, info.height),
        (width, height),
        "{}",
        path.display()
    );
    let channels = info.color_type.samples();
    let luminance: Vec<f64> = pixels[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| {
            if channels >= 3 {
                0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
            } else {
                p[0] as f64
            }
        })
        .collect();
    let mean = luminance.iter().sum::<f64>() / luminance.len() as f64;
    let variance =
        luminance.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luminance.len() as f64;
    assert!(
        variance > 100.0,
        "{} looks blank: variance {variance}",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_picture_is_a_png_of_the_stated_size_and_not_blank() {
    let cluster = Cluster::start(&hf_model()).await;
    let gateway = cluster.gateway.address.as_str();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let hello_bye = [["hello"; 16].join(" "), ["bye"; 6].join(" ")].join(" ");
    let runs: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "ranks.png",
            vec!["ranks".into(), PROMPT.into()],
            "power law over ranks",
        ),
        (
            "attention.png",
            vec![
                "attention".into(),
                hello_bye.clone(),
                "--layer".into(),
                "1".into(),
            ],
            "where the last token",
        ),
        (
            "head.png",
            vec![
                "attention".into(),
                hello_bye.clone(),
                "--head".into(),
                "2".into(),
            ],
            "most attended positions",
        ),
        (
            "embedding.png",
            vec!["embedding-module".into(), hello_bye.clone()],
            "|position|",
        ),
        (
            "matrix.png",
            vec![
                "weights".into(),
                "--layer".into(),
                "1".into(),
                "--matrix".into(),
                "mlp.c_fc".into(),
            ],
            "h.1.mlp.c_fc: 32 x 128",
        ),
        (
            "smoothed.png",
            vec![
                "weights".into(),
                "--matrix".into(),
                "mlp.c_fc".into(),
                "--smooth".into(),
                "8".into(),
            ],
            "h.0.mlp.c_fc",
        ),
        (
            "histogram.png",
            vec!["weights".into(), "--histogram".into()],
            "weight values per block",
        ),
        (
            "map.png",
            vec![
                "embed-map".into(),
                "alligator".into(),
                "crocodile".into(),
                "turnip".into(),
                "eagle".into(),
            ],
            "cosine",
        ),
    ];
    for (name, args, expected) in runs {
        let path = file(name);
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.extend(["--png", &path, "--size", "640x480"]);
        let (out, err) = oneword(gateway, &argv).await.ok();
        assert!(out.contains(expected), "{name}: {expected:?} not in\n{out}");
        assert!(
            err.contains(&format!("wrote {path} (640x480)")),
            "{name}: {err}"
        );
        check_png(Path::new(&path), 640, 480);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_instruments_print_their_tables() {
    let cluster = Cluster::start(&hf_model()).await;
    let gateway = cluster.gateway.address.as_str();

    let (out, _) = oneword(gateway, &["score", PROMPT, "--top", "2"])
        .await
        .ok();
    assert!(out.contains("8 scored tokens"), "{out}");
    assert!(out.contains("perplexity"), "{out}");
    assert!(out.contains("\" best\""), "{out}");

    let (out, _) = oneword(gateway, &["lens", PROMPT, "--top", "3"]).await.ok();
    for state in ["embeddings", "after block 0", "output"] {
        assert!(out.contains(state), "{state} not in\n{out}");
    }

    let (out, err) = oneword(
        gateway,
        &[
            "compare",
            PROMPT,
            "--samples",
            "2",
            "--max-tokens",
            "5",
            "--seed",
            "3",
        ],
    )
    .await
    .ok();
    assert!(out.contains("── temperature 0 (greedy)\n[0] "), "{out}");
    assert!(out.contains("── temperature 0.8\n[1] "), "{out}");
    assert!(out.contains("\n[2] "), "{out}");
    assert!(err.contains("seed 3"), "{err}");

    let (out, _) = oneword(gateway, &["nearest", "cat", "--top", "4"])
        .await
        .ok();
    assert!(out.starts_with("nearest to \" cat\""), "{out}");
    assert_eq!(out.lines().count(), 2 + 1 + 4, "{out}");
    let (by_id, _) = oneword(gateway, &["nearest", "--id", "3797", "--top", "4"])
        .await
        .ok();
    assert_eq!(by_id, out, "token 3797 is \" cat\"");
    let (out, _) = oneword(gateway, &["words", "dog", "--id", "3797"])
        .await
        .ok();
    assert!(out.contains("#3797  cat: \" cat\""), "{out}");

    let lines = oneword(gateway, &["--json", "words", "cat", "dog"])
        .await
        .json_lines();
    assert_eq!(lines[0]["cosine"].as_array().unwrap().len(), 4);

    let (out, _) = oneword(gateway, &["random-words", "-n", "1,6", "--count", "5"])
        .await
        .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("n = 1: ") && lines[1].starts_with("n = 6: "),
        "{out}"
    );
    assert_eq!(lines[1].split_whitespace().count(), 3 + 5, "{out}");
    let (out, _) = oneword(gateway, &["sentence", "god", "--words", "6"])
        .await
        .ok();
    assert!(
        out.starts_with("god ") && out.split_whitespace().count() == 7,
        "{out}"
    );
    let (out, _) = oneword(
        gateway,
        &[
            "generate",
            "the",
            "--model",
            "tokens-2",
            "--seed",
            "1",
            "--max-tokens",
            "5",
        ],
    )
    .await
    .ok();
    assert!(!out.is_empty());

    // The CLI checks what the gateway cannot: a map of one word, a head the layer does not have.
    let err = oneword(gateway, &["embed-map", "cat", "--png", "map.png"])
        .await
        .failed();
    assert!(err.to_string().contains("at least two words"), "{err}");
    let err = oneword(gateway, &["attention", PROMPT, "--head", "4"])
        .await
        .failed();
    assert!(
        err.to_string()
            .contains("`--head` is 4, but layer 0 has heads 0..=3"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    let err = oneword(gateway, &["attention", PROMPT, "--layer", "7"])
        .await
        .failed();
    assert!(
        err.to_string().contains("`attention_layers[0]` is 7"),
        "{err}"
    );
}
