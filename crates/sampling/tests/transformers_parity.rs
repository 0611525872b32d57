//! The shaped distribution against transformers' logits warpers (temperature, top_k, top_p,
//! min_p, typical_p, in the order `generate` applies them) after its repetition penalty and
//! OpenAI's frequency and presence penalties over a case's history, on logits of the committed
//! tiny model: the same ids kept, with the same log-probabilities. The reference is
//! `tests/fixtures/reference/shaping-cases.json` (`make references`).

use oneword_sampling::{judge, History, Seen, Shaping};
use serde_json::Value;

#[test]
fn every_shaping_keeps_what_transformers_keeps_with_its_probabilities() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/reference/shaping-cases.json"
    );
    let document: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let logits: Vec<f32> = document["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let cases = document["cases"].as_array().unwrap();
    assert!(cases.len() >= 11);
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect()
    };
    for case in cases {
        let s = &case["shaping"];
        let float = |key: &str| s[key].as_f64().map(|v| v as f32);
        let shaping = Shaping {
            temperature: float("temperature").unwrap(),
            top_k: s["top_k"].as_u64().map(|k| k as usize),
            top_p: float("top_p"),
            min_p: float("min_p"),
            typical_p: float("typical_p"),
            repetition_penalty: float("repetition_penalty").unwrap_or(1.0),
            frequency_penalty: float("frequency_penalty").unwrap_or(0.0),
            presence_penalty: float("presence_penalty").unwrap_or(0.0),
            ..Shaping::default()
        };
        let mut seen = Seen::default();
        if let Some(history) = case.get("history") {
            seen.add(&History {
                prompt: ids(&history["prompt"]),
                generated: ids(&history["generated"]),
            });
        }
        let kept = ids(&case["kept"]);
        let expected: Vec<f64> = case["logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for id in 0..logits.len() as u32 {
            let ours = judge(&logits, &shaping, &seen, id, 0).shaped_logprob;
            match kept.iter().position(|&k| k == id) {
                Some(at) => assert!(
                    (f64::from(ours) - expected[at]).abs() < 2e-5,
                    "{s}: id {id}: {ours} against {}",
                    expected[at]
                ),
                None => assert_eq!(ours, f32::NEG_INFINITY, "{s}: id {id} should be cut"),
            }
        }
    }
}
