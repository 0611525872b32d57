//! The distribution's rules, each on a small hand-made row.

use super::*;

fn probs(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = logits.iter().map(|&l| ((l - m) as f64).exp()).sum();
    logits.iter().map(|&l| ((l - m) as f64).exp() / z).collect()
}

#[test]
fn a_banned_token_is_never_picked_and_the_rest_renormalise() {
    let logits = [3.0f32, 1.0, 1.0, -2.0];
    let shaping = Shaping {
        banned: vec![0],
        ..Shaping::default()
    };
    let greedy = Shaping {
        temperature: 0.0,
        ..shaping.clone()
    };
    assert_eq!(pick(&logits, &greedy, &Seen::default(), 0.0, 0).token, 1);
    let banned = judge(&logits, &shaping, &Seen::default(), 0, 0);
    assert_eq!(banned.shaped_logprob, f32::NEG_INFINITY);
    // The raw numbers still describe the model: token 0 stays the most likely.
    assert_eq!(banned.rank, 1);
    let p: f64 = (1..4)
        .map(|i| (judge(&logits, &shaping, &Seen::default(), i, 0).shaped_logprob as f64).exp())
        .sum();
    assert!((p - 1.0).abs() < 1e-6, "{p}");
}

#[test]
fn typical_p_over_a_broken_row_still_keeps_a_token() {
    let logits = [f32::NAN, f32::NAN, f32::NAN];
    let shaping = Shaping {
        typical_p: Some(0.5),
        ..Shaping::default()
    };
    let picked = pick(&logits, &shaping, &Seen::default(), 0.3, 0);
    assert!((picked.token as usize) < logits.len());
}

#[test]
fn the_top_ids_are_the_head_of_the_full_order_ties_by_lower_id() {
    // Few distinct values, so that ties abound.
    let logits: Vec<f32> = (0..500u32)
        .map(|i| (i.wrapping_mul(2654435761) % 37) as f32 - 18.0)
        .collect();
    let mut all: Vec<u32> = (0..500).collect();
    all.sort_by(by_logit_desc(&logits));
    for n in [0, 1, 2, 5, FEW - 1, FEW, FEW + 1, 200, 500, 600] {
        assert_eq!(top_ids(&logits, n), all[..n.min(500)], "n = {n}");
    }
}

#[test]
fn the_row_exponential_is_within_two_ulp_and_zero_past_underflow() {
    let mut x = -87.0f32;
    while x <= 0.0 {
        let (got, want) = (exp_to_zero(x), (x as f64).exp());
        assert!(
            ((got as f64 - want) / want).abs() < 2.5e-7,
            "e^{x}: {got} vs {want}"
        );
        x += 0.001_3;
    }
    assert_eq!(exp_to_zero(0.0), 1.0);
    for x in [-87.4, -1e3, f32::NEG_INFINITY, f32::NAN] {
        assert_eq!(exp_to_zero(x), 0.0, "{x}");
    }
}

#[test]
fn greedy_takes_the_argmax_and_ignores_u() {
    let logits = [0.1, 2.0, -1.0, 2.0, 0.5];
    let greedy = Shaping {
        temperature: 0.0,
        ..Shaping::default()
    };
    for u in [0.0, 0.5, 0.999] {
        let p = pick(&logits, &greedy, &Seen::default(), u, 3);
        assert_eq!(p.token, 1, "ties go to the lower id");
        assert_eq!(p.rank, 1);
        assert_eq!(p.shaped_top, vec![(1, 0.0)]);
    }
}

#[test]
fn raw_numbers_are_the_softmax() {
    let logits = [1.0, 3.0, 0.0, 2.0];
    let p = pick(&logits, &Shaping::default(), &Seen::default(), 0.0, 4);
    let expected = probs(&logits);
    let ids: Vec<u32> = p.raw_top.iter().map(|t| t.0).collect();
    assert_eq!(ids, vec![1, 3, 0, 2]);
    for (id, lp) in &p.raw_top {
        assert!((lp.exp() as f64 - expected[*id as usize]).abs() < 1e-6);
    }
    let entropy: f64 = expected.iter().map(|p| -p * p.ln()).sum();
    assert!((p.entropy as f64 - entropy).abs() < 1e-5);
}

#[test]
fn inverse_cdf_walks_ids_in_order() {
    // probabilities 0.1, 0.2, 0.3, 0.4 over ids 0..4
    let logits: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
    let s = Shaping::default();
    let at = |u| pick(&logits, &s, &Seen::default(), u, 0).token;
    assert_eq!(at(0.0), 0);
    assert_eq!(at(0.099), 0);
    assert_eq!(at(0.101), 1);
    assert_eq!(at(0.299), 1);
    assert_eq!(at(0.301), 2);
    assert_eq!(at(0.599), 2);
    assert_eq!(at(0.601), 3);
    assert_eq!(at(0.9999999), 3);
}

#[test]
fn sampling_frequencies_match_the_temperature_scaled_softmax() {
    let logits = [0.5f32, 1.5, -0.3, 1.0, 0.0];
    let s = Shaping {
        temperature: 0.8,
        ..Shaping::default()
    };
    let scaled: Vec<f32> = logits.iter().map(|l| l / 0.8).collect();
    let expected = probs(&scaled);
    let n = 20_000;
    let mut counts = [0usize; 5];
    for k in 0..n {
        counts[pick(
            &logits,
            &s,
            &Seen::default(),
            (k as f64 + 0.5) / n as f64,
            0,
        )
        .token as usize] += 1;
    }
    for (c, e) in counts.iter().zip(&expected) {
        assert!(
            (*c as f64 / n as f64 - e).abs() < 1e-3,
            "{counts:?} vs {expected:?}"
        );
    }
}

#[test]
fn top_k_and_top_p_cut_the_tail() {
    // probabilities 0.5, 0.3, 0.15, 0.05
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    let top_k = Shaping {
        top_k: Some(2),
        ..Shaping::default()
    };
    let p = pick(&logits, &top_k, &Seen::default(), 0.99, 4);
    assert_eq!(p.token, 1);
    assert_eq!(p.shaped_top.len(), 2);
    assert!((p.shaped_top[0].1.exp() - 0.625).abs() < 1e-6);
    // top_p 0.7: 0 before id 0 (keep), 0.5 before id 1 (keep), 0.8 before id 2 (stop) -> {0, 1}
    let top_p = Shaping {
        top_p: Some(0.7),
        ..Shaping::default()
    };
    let p = pick(&logits, &top_p, &Seen::default(), 0.99, 4);
    assert_eq!(
        p.shaped_top.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(p.token, 1);
    assert!((p.shaped_logprob.exp() - 0.375).abs() < 1e-6);
    assert_eq!(p.rank, 2);
    // A tiny top_p still keeps the most likely token.
    let tiny = Shaping {
        top_p: Some(1e-6),
        ..Shaping::default()
    };
    assert_eq!(pick(&logits, &tiny, &Seen::default(), 0.7, 1).token, 0);
}

#[test]
fn logit_bias_shapes_but_leaves_the_raw_numbers_alone() {
    let logits = [2.0f32, 1.0, 0.0];
    let s = Shaping {
        temperature: 0.0,
        logit_bias: vec![(2, 5.0)],
        ..Shaping::default()
    };
    let p = pick(&logits, &s, &Seen::default(), 0.0, 3);
    assert_eq!(p.token, 2);
    assert_eq!(p.rank, 3, "rank is in the raw distribution");
    assert_eq!(p.raw_top[0].0, 0);
    let banned = Shaping {
        logit_bias: vec![(0, -100.0), (1, -100.0)],
        ..Shaping::default()
    };
    for k in 0..10 {
        assert_eq!(
            pick(
                &logits,
                &banned,
                &Seen::default(),
                (k as f64 + 0.5) / 10.0,
                0
            )
            .token,
            2
        );
    }
}

#[test]
fn rank_counts_better_tokens() {
    let logits = [3.0, 1.0, 2.0, 1.0];
    let s = Shaping {
        top_k: Some(4),
        ..Shaping::default()
    };
    // u near 1 walks to the least likely token of the kept, sorted set: id 3 (tie with 1, higher id).
    let p = pick(&logits, &s, &Seen::default(), 0.999999, 0);
    assert_eq!(p.token, 3);
    assert_eq!(p.rank, 4);
}

#[test]
fn judge_reports_a_given_token_as_pick_would_have() {
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    let top_k = Shaping {
        top_k: Some(2),
        ..Shaping::default()
    };
    let drawn = pick(&logits, &top_k, &Seen::default(), 0.99, 2);
    assert_eq!(
        judge(&logits, &top_k, &Seen::default(), drawn.token, 2),
        drawn
    );
    let cut = judge(&logits, &top_k, &Seen::default(), 3, 0);
    assert_eq!((cut.rank, cut.shaped_logprob), (4, f32::NEG_INFINITY));
    assert!((cut.logprob.exp() - 0.05).abs() < 1e-6);
    let greedy = Shaping {
        temperature: 0.0,
        ..Shaping::default()
    };
    assert_eq!(
        judge(&logits, &greedy, &Seen::default(), 0, 0).shaped_logprob,
        0.0
    );
    assert_eq!(
        judge(&logits, &greedy, &Seen::default(), 1, 0).shaped_logprob,
        f32::NEG_INFINITY
    );
}

#[test]
fn shaped_entropy_follows_the_shaping() {
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    let plain = pick(&logits, &Shaping::default(), &Seen::default(), 0.5, 0);
    assert!((plain.shaped_entropy - plain.entropy).abs() < 1e-6);
    let two = pick(
        &logits,
        &Shaping {
            top_k: Some(2),
            ..Shaping::default()
        },
        &Seen::default(),
        0.5,
        0,
    );
    let (a, b) = (0.625f64, 0.375f64);
    assert!((two.shaped_entropy as f64 - (-a * a.ln() - b * b.ln())).abs() < 1e-6);
    let cold = Shaping {
        temperature: 0.0,
        ..Shaping::default()
    };
    assert_eq!(
        pick(&logits, &cold, &Seen::default(), 0.5, 0).shaped_entropy,
        0.0
    );
}
