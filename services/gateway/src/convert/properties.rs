//! Validation's properties ([`super::checks`]) on random requests around every limit
//! (`PROPTEST_CASES` raises their number).

use proptest::prelude::*;

use oneword_proto::gateway::v1 as pb;

use super::checks;

// Each field is mostly valid, so that many requests are valid but for one field (or none) and
// each rule decides the outcome often; values sit at and around the limits of the small and the
// default configuration.

fn prompt() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        6 => "[a-z ]{1,16}",
        1 => "[a-z🦀]{15,18}",
        1 => ".{0,8}",
    ]
}

/// A prompt as token ids: mostly none (the text is the prompt), else a few or around the small
/// configuration's limit of 16.
fn ids() -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        4 => Just(Vec::new()),
        2 => prop::collection::vec(any::<u32>(), 1..4),
        1 => prop::collection::vec(0u32..50257, 15..18),
    ]
}

fn count() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(prop_oneof![
        6 => 0u32..6,
        3 => 14u32..18,
        1 => 99u32..102,
        1 => 1020u32..1030,
        1 => any::<u32>(),
    ])
}

fn float() -> impl Strategy<Value = Option<f32>> {
    let special = prop::sample::select(vec![
        0.0f32,
        -0.0,
        1.0,
        1.0000001,
        -1.0,
        f32::NAN,
        f32::INFINITY,
        f32::MIN_POSITIVE,
        2.0,
        2.0000002,
        -2.0,
        10.0,
        10.000001,
    ]);
    prop::option::of(prop_oneof![4 => 0.01f32..1.0, 2 => special, 1 => any::<f32>()])
}

fn stops() -> impl Strategy<Value = Vec<String>> {
    let stop = prop::sample::select(vec!["a", "a", "\n", "abcd", "", "abcde", "🦀"])
        .prop_map(String::from);
    prop::collection::vec(stop, 0..4)
}

fn bias() -> impl Strategy<Value = std::collections::HashMap<u32, f32>> {
    let value = prop_oneof![-101.0f32..101.0, Just(f32::NAN), Just(100.0), Just(-100.0)];
    prop_oneof![
        4 => Just(Default::default()),
        2 => prop::collection::hash_map(prop_oneof![0u32..60000, any::<u32>()], value, 0..3),
        1 => prop::collection::hash_map(any::<u32>(), -1.0f32..1.0, 299..302),
    ]
}

/// No client session, or one (the handle is checked when the request runs, not here).
fn session() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "sess-1"]).prop_map(String::from)
}

fn generate() -> impl Strategy<Value = pb::GenerateRequest> {
    let shaping = (float(), count(), float(), bias());
    let rest = (
        stops(),
        count(),
        count(),
        any::<Option<u64>>(),
        any::<bool>(),
        "[a-z0-9:._ -]{0,3}|x{127,130}",
    );
    let stop_tokens = (
        prop_oneof![
            4 => Just(Vec::new()),
            2 => prop::collection::vec(prop_oneof![0u32..6, 50250u32..50260], 1..4),
            1 => prop::collection::vec(0u32..50257, 63..66),
        ],
        any::<bool>(),
    );
    (
        prompt(),
        ids(),
        count(),
        shaping,
        rest,
        (stop_tokens, float(), float(), count()),
        (float(), float(), float()),
        (session(), any::<bool>()),
    )
        .prop_map(
            |(
                prompt,
                prompt_token_ids,
                max_new_tokens,
                (temperature, top_k, top_p, logit_bias),
                rest,
                ((stop_token_ids, include_stop_str_in_output), min_p, typical_p, min_new_tokens),
                (repetition_penalty, frequency_penalty, presence_penalty),
                (session_id, append_to_session),
            )| {
                let (stop, n, logprobs, seed, ignore_eos, request_id) = rest;
                pb::GenerateRequest {
                    prompt,
                    max_new_tokens,
                    temperature,
                    top_k,
                    top_p,
                    seed,
                    stop,
                    n,
                    logprobs,
                    ignore_eos,
                    logit_bias,
                    model: String::new(),
                    request_id,
                    prompt_token_ids,
                    stop_token_ids,
                    include_stop_str_in_output,
                    min_p,
                    typical_p,
                    min_new_tokens,
                    repetition_penalty,
                    frequency_penalty,
                    presence_penalty,
                    session_id,
                    append_to_session,
                }
            },
        )
}

proptest! {
    #[test]
    fn generate_is_accepted_exactly_when_its_rules_hold(
        r in generate(),
        small: bool,
        model in (0usize..20, 0usize..1100, prop_oneof![0usize..5, Just(50257)]),
    ) {
        checks::generate(r, &checks::config(small), model);
    }

    #[test]
    fn next_tokens_is_accepted_exactly_when_its_rules_hold(
        (prompt, top_n, temperature, top_k, top_p) in (prompt(), count(), float(), count(), float()),
        prompt_token_ids in ids(),
        full_row: bool,
        small: bool,
        (session_id, model) in (session(), prop::sample::select(vec!["", "tokens-2"])),
    ) {
        let model = model.to_string();
        let r = pb::NextTokensRequest { prompt, top_n, temperature, top_k, top_p, full_row, model, prompt_token_ids, session_id };
        checks::next_tokens(r, &checks::config(small));
    }

    #[test]
    fn compare_is_accepted_exactly_when_its_rules_hold(
        (prompt, temperatures, samples, max_new_tokens) in (
            prompt(),
            prop::collection::vec(float().prop_map(|t| t.unwrap_or(0.0)), 0..10),
            count(),
            count(),
        ),
        (top_k, top_p, seed) in (count(), float(), any::<Option<u64>>()),
        prompt_token_ids in ids(),
        small: bool,
    ) {
        let r = pb::CompareRequest { prompt, temperatures, samples, max_new_tokens, seed, top_k, top_p, model: String::new(), request_id: String::new(), prompt_token_ids };
        checks::compare(r, &checks::config(small));
    }

    #[test]
    fn score_is_accepted_exactly_when_its_rules_hold(
        (text, token_ids, top_n) in (prompt(), ids(), count()),
        (temperature, top_k, top_p) in (float(), count(), float()),
        from_start: bool,
        small: bool,
        session_id in session(),
    ) {
        let r = pb::ScoreRequest { text, token_ids, from_start, temperature, top_k, top_p, top_n, session_id };
        checks::score(r, &checks::config(small));
    }

    #[test]
    fn inspect_is_accepted_exactly_when_its_rules_hold(
        prompt in prompt(),
        lens_top_n in count(),
        attention_layers in prop::collection::vec(any::<u32>(), 0..3),
        small: bool,
    ) {
        let r = pb::InspectRequest { prompt, lens_top_n, attention_layers, ..Default::default() };
        checks::inspect(r, &checks::config(small));
    }
}
