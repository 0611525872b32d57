//! The `oneword` command against the real services, called through its library as `main`
//! calls it: what reaches stdout and stderr, the `--json` forms, and the exit codes.

use std::collections::BTreeMap;

use oneword_cli::Error;
use oneword_e2e::cli::oneword;
use oneword_e2e::{hf_model, tiny_model, Cluster};
use oneword_proto::gateway::v1 as pb;
use serde_json::json;

const PROMPT: &str = "The best thing about AI is its ability to";

async fn generate(cluster: &Cluster, r: pb::GenerateRequest) -> pb::GenerateResponse {
    let response = cluster.gateway().await.generate(r).await;
    response.expect("generate").into_inner()
}

/// `[i] text` blocks (later lines indented under the first) back into text by index.
fn blocks(out: &str) -> BTreeMap<u32, String> {
    let mut blocks: BTreeMap<u32, String> = BTreeMap::new();
    let mut current = None;
    // Not `lines()`: a "\r" before a "\n" is part of the text.
    for line in out.strip_suffix('\n').unwrap_or(out).split('\n') {
        let head = line
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("] "))
            .and_then(|(index, text)| Some((index.parse::<u32>().ok()?, text)));
        if let Some((index, text)) = head {
            assert!(!blocks.contains_key(&index), "[{index}] printed twice");
            blocks.insert(index, text.to_string());
            current = Some((index, format!("[{index}] ").len()));
        } else {
            let (index, indent) = current.expect("output starts with a `[i] ` block");
            let text = blocks.get_mut(&index).expect("the block was started");
            text.push('\n');
            text.push_str(line.get(indent..).unwrap_or_default());
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_shows_the_top_tokens_the_gateway_computes() {
    let cluster = Cluster::start(&hf_model()).await;
    let gateway = &cluster.gateway.address;
    let r = pb::NextTokensRequest {
        prompt: PROMPT.into(),
        top_n: Some(5),
        ..Default::default()
    };
    let answer = cluster.gateway().await.next_tokens(r).await.unwrap();
    let raw = answer.into_inner().raw.unwrap();

    let (out, _) = oneword(gateway, &["next", PROMPT, "--top", "5"]).await.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("9 prompt tokens · entropy "), "{out}");
    let header: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(header, ["rank", "token", "prob"], "{out}");
    let rows = &lines[3..];
    assert_eq!(rows.len(), 5, "{out}");
    for (i, row) in rows.iter().enumerate() {
        let rank = row.split_whitespace().next();
        assert_eq!(rank, Some((i + 1).to_string().as_str()), "{row}");
        assert!(row.contains('%'), "{row}");
    }
    // The first row is the gateway's most likely token with its probability.
    let top = format!("\"{}\"", raw.texts[0]);
    let percent = format!("{:.1}%", raw.probabilities[0] * 100.0);
    assert!(rows[0].contains(&top), "{:?} not in {:?}", top, rows[0]);
    assert!(
        rows[0].contains(&percent),
        "{percent:?} not in {:?}",
        rows[0]
    );

    let lines = oneword(gateway, &["next", PROMPT, "--top", "5", "--json"])
        .await
        .json_lines();
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["prompt_tokens"], 9);
    assert!(v["entropy"].is_number(), "{v}");
    assert_eq!(v["raw"]["ids"], json!(raw.ids));
    assert_eq!(v["raw"]["texts"], json!(raw.texts));
    let p = v["raw"]["probabilities"][0].as_f64().unwrap();
    assert_eq!(
        p as f32, raw.probabilities[0],
        "f32 survives the JSON round trip"
    );
    assert!(v["raw"]["pieces"][0].is_string(), "bytes are base64: {v}");
    assert_eq!(v.get("shaped"), None, "absent messages are left out: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_generate_prints_the_gateways_text() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = &cluster.gateway.address;
    let r = pb::GenerateRequest {
        prompt: PROMPT.into(),
        temperature: Some(0.0),
        max_new_tokens: Some(10),
        ..Default::default()
    };
    let completion = generate(&cluster, r).await.completions.remove(0);
    let finish = pb::FinishReason::try_from(completion.finish_reason).unwrap();
    let expected = completion.text;
    assert!(!expected.is_empty());
    // The command ends the text's line so that the shell prompt starts on its own.
    let ended = if expected.ends_with('\n') {
        expected.clone()
    } else {
        format!("{expected}\n")
    };

    let greedy = [
        "generate",
        PROMPT,
        "--temperature",
        "0",
        "--max-tokens",
        "10",
    ];
    let (out, err) = oneword(gateway, &greedy).await.ok();
    assert_eq!(out, ended);
    assert!(err.starts_with("finish: "), "{err}");
    assert!(err.contains(" tokens · seed "), "{err}");

    let unary = [&greedy[..], &["--no-stream", "--echo"]].concat();
    let (out, _) = oneword(gateway, &unary).await.ok();
    assert_eq!(out, format!("{PROMPT}{ended}"));

    // Streamed JSON: one GenerateStreamResponse per line, adding up to the same text.
    let chunks = oneword(gateway, &[&greedy[..], &["--json"]].concat())
        .await
        .json_lines();
    let text: String = chunks.iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(text, expected);
    let last = chunks.last().unwrap();
    assert!(
        last["seed"].is_string(),
        "64-bit integers are strings: {last}"
    );
    assert_eq!(last["finish_reason"], finish.as_str_name(), "enums by name");
    let tokens = completion.token_ids.len();
    assert_eq!(last["usage"]["completion_tokens"], tokens, "{last}");
    assert!(last["timings"]["total_ns"].is_string(), "{last}");
    let first = &chunks[0];
    assert_eq!(first["finish_reason"], "FINISH_REASON_UNSPECIFIED");
    assert_eq!(first.get("usage"), None, "{first}");

    // Unary JSON: one GenerateResponse.
    let lines = oneword(gateway, &[&greedy[..], &["--json", "--no-stream"]].concat())
        .await
        .json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["completions"][0]["text"], expected);
    assert_eq!(lines[0]["completions"][0]["index"], 0);
    assert!(lines[0]["seed"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_completions_print_as_indexed_blocks() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = &cluster.gateway.address;
    let r = pb::GenerateRequest {
        prompt: PROMPT.into(),
        n: Some(3),
        seed: Some(1),
        temperature: Some(0.8),
        ..Default::default()
    };
    let expected: BTreeMap<u32, String> = generate(&cluster, r)
        .await
        .completions
        .into_iter()
        .map(|c| (c.index, c.text))
        .collect();
    assert_eq!(expected.len(), 3);
    // A block ends its last line itself.
    let trimmed = |texts: &BTreeMap<u32, String>| -> BTreeMap<u32, String> {
        let trim = |t: &String| t.trim_end_matches('\n').to_string();
        texts.iter().map(|(&i, t)| (i, trim(t))).collect()
    };

    let args = [
        "generate",
        PROMPT,
        "--n",
        "3",
        "--seed",
        "1",
        "--temperature",
        "0.8",
    ];
    let (out, err) = oneword(gateway, &args).await.ok();
    assert_eq!(blocks(&out), trimmed(&expected), "{out}");
    let notes: Vec<&str> = err.lines().collect();
    assert_eq!(notes.len(), 4, "{err}");
    let mut finished: Vec<&str> = notes[..3].iter().map(|n| &n[..4]).collect();
    finished.sort();
    assert_eq!(finished, ["[0] ", "[1] ", "[2] "], "{err}");
    assert!(
        notes[..3].iter().all(|n| n[4..].starts_with("finish: ")),
        "{err}"
    );
    assert!(notes[3].starts_with("3 completions · "), "{err}");
    assert!(notes[3].contains(" · seed 1"), "{err}");

    let chunks = oneword(gateway, &[&args[..], &["--json"]].concat())
        .await
        .json_lines();
    let mut texts: BTreeMap<u32, String> = BTreeMap::new();
    for chunk in &chunks {
        let index = chunk["index"].as_u64().unwrap() as u32;
        let text = chunk["text"].as_str().unwrap();
        texts.entry(index).or_default().push_str(text);
    }
    assert_eq!(texts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_and_info_describe_tokens_and_model() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = &cluster.gateway.address;

    let (out, _) = oneword(gateway, &["tokenize", "Hello world"]).await.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2 tokens", "{out}");
    // index, id, piece (quoted; " world" holds a space), byte range.
    let rows: Vec<(&str, &str)> = lines[3..]
        .iter()
        .map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            (cols[1], cols[cols.len() - 1])
        })
        .collect();
    assert_eq!(rows, [("15496", "0..5"), ("995", "5..11")], "{out}");
    assert!(lines[3].contains("  \"Hello\"  "), "{out}");
    assert!(lines[4].contains("  \" world\"  "), "{out}");

    let lines = oneword(gateway, &["tokenize", "Hello world", "--json"])
        .await
        .json_lines();
    assert_eq!(
        lines,
        [json!({"encoding": {
            "ids": [15496, 995],
            "tokens": ["Hello", " world"],
            "pieces": ["SGVsbG8=", "IHdvcmxk"],
            "starts": [0, 5],
            "ends": [5, 11],
            "special": [false, false],
        }})]
    );

    let (out, _) = oneword(gateway, &["info"]).await.ok();
    assert!(
        out.contains("\nvocabulary          50257 tokens, end of text = 50256\n"),
        "{out}"
    );
    let lines = oneword(gateway, &["info", "--json"]).await.json_lines();
    let v = &lines[0];
    assert_eq!(v["model"]["vocab_size"], 50257);
    assert!(
        v["model"]["dtype"].as_str().unwrap().starts_with("DTYPE_"),
        "{v}"
    );
    assert!(v["max_n"].as_u64().unwrap() >= 3, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_names_the_field_and_exits_with_2() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = &cluster.gateway.address;
    for command in ["generate", "next"] {
        let run = oneword(gateway, &[command, PROMPT, "--temperature", "-1"]).await;
        let err = run.failed();
        assert!(matches!(&err, Error::Status(s) if s.code() == tonic::Code::InvalidArgument));
        let message = err.to_string();
        assert!(message.contains("`temperature`"), "{message}");
        assert!(message.contains("-1"), "{message}");
        assert!(message.ends_with("(invalid argument)"), "{message}");
        assert_eq!(err.exit_code(), 2);
    }
}

#[tokio::test]
async fn no_gateway_listening_says_how_to_start_one() {
    // Bind and drop a listener to get a local port that refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let err = oneword(&address, &["next", PROMPT]).await.failed();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    let message = err.to_string();
    let reach = format!("cannot reach the gateway at http://{address}");
    assert!(message.contains(&reach), "{message}");
    assert!(message.contains("make run"), "{message}");
    assert_eq!(err.exit_code(), 1);
}

#[tokio::test]
async fn the_cli_sends_the_api_key_the_gateway_asks_for() {
    let cluster =
        Cluster::start_configured(tiny_model(), |_| {}, |g| g.api_key = "k3y".parse().unwrap())
            .await;
    let gateway = &cluster.gateway.address;
    let refused = oneword(gateway, &["generate", "Hello", "--max-new-tokens", "2"])
        .await
        .failed();
    assert!(refused.to_string().contains("API key"), "{refused}");
    let (out, _) = oneword(
        gateway,
        &[
            "--api-key",
            "k3y",
            "generate",
            "Hello",
            "--max-new-tokens",
            "2",
        ],
    )
    .await
    .ok();
    assert!(!out.is_empty());
}

/// `branch` prefills once and continues the session at each temperature: the same tokens as
/// Generate from scratch with the seed it reports; `session create` and `generate --session`
/// do the same by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_and_session_continue_one_prefill() {
    let cluster = Cluster::start(tiny_model()).await;
    let gateway = &cluster.gateway.address;
    let args = [
        "--json",
        "branch",
        PROMPT,
        "--temperatures",
        "0,0.8",
        "--samples",
        "2",
        "--seed",
        "3",
        "--max-tokens",
        "5",
    ];
    let lines = oneword(gateway, &args).await.json_lines();
    assert_eq!(
        lines[0]["token_ids"].as_array().unwrap().len(),
        9,
        "{}",
        lines[0]
    );
    let groups = lines[1]["groups"].as_array().unwrap();
    for (group, (temperature, n)) in groups.iter().zip([(0.0, 1), (0.8, 2)]) {
        let r = pb::GenerateRequest {
            prompt: PROMPT.into(),
            temperature: Some(temperature),
            n: Some(n),
            seed: Some(3),
            max_new_tokens: Some(5),
            ..Default::default()
        };
        let expected = generate(&cluster, r).await.completions;
        let texts: Vec<&str> = group["completions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = expected.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, expected, "temperature {temperature}");
    }
    let (_, err) = oneword(gateway, &args[1..]).await.ok();
    assert!(
        err.contains("3 branches from one prefill of 9 tokens"),
        "{err}"
    );

    let (out, _) = oneword(gateway, &["session", "create", PROMPT]).await.ok();
    let id = out.trim();
    let greedy = ["--temperature", "0", "--max-tokens", "5"];
    let (kept, _) = oneword(
        gateway,
        &[&["generate", "--session", id], &greedy[..]].concat(),
    )
    .await
    .ok();
    let (fresh, _) = oneword(gateway, &[&["generate", PROMPT], &greedy[..]].concat())
        .await
        .ok();
    assert_eq!(kept, fresh);
    oneword(gateway, &["session", "release", id]).await.ok();
    cluster.decoder_idle().await;
}
