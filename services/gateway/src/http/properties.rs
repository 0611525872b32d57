//! The bodies' properties ([`super::checks`]) on random JSON made of the fields each body has
//! (`PROPTEST_CASES` raises their number).

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::checks;
use crate::convert::checks::config;

/// JSON values of every kind, with numbers at the edges of the integer types.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![
            0u64,
            1,
            5,
            17,
            300,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            u64::MAX
        ])
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-2.0f64..2.0).prop_map(Value::from),
        "[a-z0-9 ]{0,6}".prop_map(Value::from),
        Just(Value::from("<|endoftext|>")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The names the bodies read, and a few they do not.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "n",
        "stop",
        "seed",
        "logprobs",
        "echo",
        "best_of",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
        "ignore_eos",
        "stream",
        "model",
        "input",
        "encoding_format",
        "dimensions",
        "normalize",
        "truncate",
        "vectors",
        "size",
        "distance",
        "hnsw_config",
        "m",
        "ef_construct",
        "points",
        "id",
        "vector",
        "text",
        "payload",
        "searches",
        "limit",
        "params",
        "hnsw_ef",
        "exact",
        "filter",
        "must",
        "should",
        "must_not",
        "key",
        "match",
        "value",
        "any",
        "range",
        "gt",
        "lte",
        "5",
        "05",
        "+5",
        "x",
    ])
    .prop_map(String::from)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((key(), value()), 0..6).prop_map(|fields| {
        let object: Map<String, Value> = fields.into_iter().collect();
        serde_json::to_vec(&Value::Object(object)).expect("JSON serialises")
    })
}

proptest! {
    #[test]
    fn completion_bodies_become_valid_requests_or_name_the_parameter(
        mut body in body(),
        prompt: bool,
        small: bool,
    ) {
        // Most random bodies lack the one required field.
        if prompt && body.len() > 2 {
            let rest = String::from_utf8(body.split_off(1)).expect("JSON is UTF-8");
            let sep = if rest == "}" { "" } else { "," };
            body = format!("{{\"prompt\":\"Hello\"{sep}{rest}").into_bytes();
        }
        checks::completion_body(&body, &config(small));
    }

    #[test]
    fn embeddings_bodies_become_requests_or_name_the_parameter(body in body()) {
        checks::embeddings_body(&body);
    }

    #[test]
    fn collections_bodies_become_index_requests_or_name_the_field(
        body in body(),
        kind in 0u8..5,
    ) {
        checks::collections_body(kind, &body);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), kind: u8) {
        checks::completion_body(&bytes, &config(true));
        checks::embeddings_body(&bytes);
        checks::collections_body(kind, &bytes);
    }
}

#[test]
fn numbers_past_u32_are_refused_not_wrapped() {
    // `limit` 2^32 + 10 used to become `top_k` 10, and `vectors.size` 2^32 + 2 dimension 2.
    let search = json!({"vector": [1.0], "limit": 4_294_967_306u64});
    let e = super::collections::search_request("c", &search).unwrap_err();
    assert!(
        e.1.contains("`limit` must be an integer in 0..=4294967295"),
        "{}",
        e.1
    );
    let create = json!({"vectors": {"size": 4_294_967_298u64}});
    let e = super::collections::create_request("c".into(), &create).unwrap_err();
    assert!(e.1.contains("`vectors.size`"), "{}", e.1);
    let e = super::collections::search_request("c", &json!({"text": "a", "limit": "5"}));
    assert!(
        e.is_err(),
        "a `limit` that is not a number is refused, not ignored"
    );
}

#[test]
fn a_token_named_twice_in_logit_bias_is_refused() {
    // "5" and "05" are the same token: which bias won used to depend on hash map order.
    let body = json!({"prompt": "x", "logit_bias": {"5": 1.0, "05": -1.0}}).to_string();
    checks::completion_body(body.as_bytes(), &config(false));
    let request = serde_json::from_str(&body).expect("a completion request");
    let e = super::completions::to_generate_request(request).unwrap_err();
    assert!(
        e.message.contains("names token 5 more than once"),
        "{}",
        e.message
    );
}

/// Found by `make fuzz` (openai_bodies; the inputs are its seeds, after a byte that picks the
/// body): serde_json skips the fields a request does not have without checking that their
/// strings are UTF-8 or their numbers in range, so these bodies are requests though not JSON
/// values, and the property had assumed both.
#[test]
fn fuzz_reproducers_bodies_that_are_requests_but_not_values() {
    let embeddings = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fuzz/seeds/openai_bodies/invalid-utf8-in-ignored-field"
    ));
    let completion = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fuzz/seeds/openai_bodies/number-out-of-range-in-ignored-field"
    ));
    for body in [&embeddings[1..], &completion[1..]] {
        assert!(serde_json::from_slice::<Value>(body).is_err());
    }
    checks::embeddings_body(&embeddings[1..]);
    checks::completion_body(&completion[1..], &config(false));
}
