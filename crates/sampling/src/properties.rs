//! The properties of [`crate::checks`] on random cases (`PROPTEST_CASES` raises their number).

use proptest::prelude::*;

use oneword_proto::decoder::v1 as pb;

use crate::checks::{sampling_checked, shaping_checked};

/// Floats at and around every bound the rules have, and any others.
fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            1.0 + f32::EPSILON,
            100.0,
            100.001,
            -100.0,
            -100.001,
            1e-45,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -1.0,
            2.0,
            2.001,
            -2.0,
            -2.001,
            10.0,
            10.001,
        ]),
        any::<f32>(),
        -2.0f32..2.0,
    ]
}

fn shaping() -> impl Strategy<Value = pb::Shaping> {
    (
        prop::option::of(float()),
        prop::option::of(prop_oneof![0u32..3, any::<u32>()]),
        prop::option::of(float()),
        prop_oneof![
            prop::collection::hash_map(0u32..20, float(), 0..4),
            prop::collection::hash_map(any::<u32>(), -100.0f32..=100.0, 295..305),
        ],
        (
            prop::option::of(float()),
            prop::option::of(float()),
            prop_oneof![
                prop::collection::vec(0u32..30, 0..3),
                prop::collection::vec(0u32..5, 127..130),
            ],
        ),
        prop::array::uniform3(prop::option::of(float())),
    )
        .prop_map(
            |(temperature, top_k, top_p, logit_bias, (min_p, typical_p, banned_ids), penalties)| {
                let [repetition_penalty, frequency_penalty, presence_penalty] = penalties;
                pb::Shaping {
                    temperature,
                    top_k,
                    top_p,
                    min_p,
                    typical_p,
                    logit_bias,
                    banned_ids,
                    repetition_penalty,
                    frequency_penalty,
                    presence_penalty,
                }
            },
        )
}

proptest! {
    #[test]
    fn a_shaping_is_accepted_exactly_when_its_rules_hold(
        s in shaping(),
        prefix in prop::sample::select(vec!["", "steps[3].sampling.shaping."]),
        vocab_size in prop::option::of(0usize..25),
    ) {
        shaping_checked(prefix, &s, vocab_size);
    }

    #[test]
    fn a_sampling_is_accepted_exactly_when_its_rules_hold(
        shaping in prop::option::of(shaping()),
        u in prop_oneof![Just(1.0f64), Just(-0.0), Just(f64::NAN), any::<f64>(), 0.0f64..1.0],
        report in prop::option::of((0u32..8, -1i32..5)),
        vocab_size in 0usize..25,
        max_top_n in 0usize..6,
    ) {
        let s = pb::Sampling {
            shaping,
            u,
            report: report.map(|(top_n, full_row)| pb::Report { top_n, full_row }),
        };
        sampling_checked("steps[0].sampling", &s, vocab_size, max_top_n);
    }
}
