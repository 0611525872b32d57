use super::*;

const LIMITS: Limits = Limits {
    vocab_size: 10,
    context_length: 4,
    max_batch_tokens: 3,
    max_parts_tokens: 2,
    max_words: 2,
};

fn embed(ids: &[u32], positions: &[u32]) -> Result<EmbedInput, Error> {
    embed_input(
        pb::EmbedRequest {
            ids: ids.to_vec(),
            positions: positions.to_vec(),
        },
        &LIMITS,
    )
}

#[test]
fn accepts_the_edges_of_every_range() {
    let input = embed(&[0, 9, 5], &[3, 0, 1]).unwrap();
    assert_eq!((input.ids, input.positions), (vec![0, 9, 5], vec![3, 0, 1]));
}

#[test]
fn names_the_first_bad_field_with_its_index_value_and_range() {
    assert_eq!(
        invalid(embed(&[0, 10, 11], &[0, 1, 2])),
        (
            "ids[1]".into(),
            "`ids[1]` is 10, outside the vocabulary of 10 tokens".into()
        )
    );
    assert_eq!(
        invalid(embed(&[0, 1], &[0, 4])),
        (
            "positions[1]".into(),
            "`positions[1]` is 4, outside the context of 4 positions".into()
        )
    );
    assert_eq!(
        invalid(embed(&[0, 1], &[0])),
        ("positions".into(), "`ids` and `positions` must be the same length, but `ids` has length 2 and `positions` has length 1".into())
    );
    assert_eq!(
        invalid(embed(&[], &[])),
        ("ids".into(), "`ids` must not be empty".into())
    );
    assert_eq!(
        invalid(embed(&[0; 4], &[0; 4])),
        (
            "ids".into(),
            "`ids` holds 4 tokens, more than the 3 one request may carry".into()
        )
    );
}

fn words(groups: &[&[u32]]) -> Result<WordsInput, Error> {
    let words = groups
        .iter()
        .map(|ids| pb::TokenGroup { ids: ids.to_vec() })
        .collect();
    words_input(
        pb::WordsRequest {
            words,
            project: true,
        },
        &LIMITS,
    )
}

fn nearest(ids: Option<&[u32]>, top: Option<u32>) -> Result<NearestInput, Error> {
    let request = pb::NearestRequest {
        query: ids.map(|ids| pb::TokenGroup { ids: ids.to_vec() }),
        top,
        include_query: false,
    };
    nearest_input(request, &LIMITS)
}

fn invalid<T: std::fmt::Debug>(result: Result<T, Error>) -> (String, String) {
    match result {
        Err(Error::InvalidArgument(field, message)) => (field, message),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

fn pair(field: &str, message: &str) -> (String, String) {
    (field.into(), message.into())
}

#[test]
fn words_become_groups_of_ids() {
    let input = words(&[&[1, 2], &[9]]).unwrap();
    assert_eq!(
        input.groups,
        Groups {
            ids: vec![1, 2, 9],
            lengths: vec![2, 1]
        }
    );
    assert!(input.project);
}

#[test]
fn words_name_the_bad_word_and_id() {
    let cases = [
        (words(&[]), pair("words", "`words` must not be empty")),
        (
            words(&[&[1], &[], &[2]]),
            pair(
                "words",
                "`words` holds 3 words, more than the 2 one request may carry",
            ),
        ),
        (
            words(&[&[1], &[]]),
            pair("words[1]", "`words[1]` has no token ids"),
        ),
        (
            words(&[&[1], &[2, 10]]),
            pair(
                "words[1].ids[1]",
                "`words[1].ids[1]` is 10, outside the vocabulary of 10 tokens",
            ),
        ),
        (
            words(&[&[1, 2], &[3, 4]]),
            pair(
                "words",
                "`words` hold 4 token ids in all, more than the 3 one request may carry",
            ),
        ),
    ];
    for (result, expected) in cases {
        assert_eq!(invalid(result), expected);
    }
}

#[test]
fn nearest_defaults_top_and_checks_its_range() {
    let input = nearest(Some(&[4, 5]), None).unwrap();
    assert_eq!((input.ids, input.top), (vec![4, 5], DEFAULT_TOP));
    assert_eq!(nearest(Some(&[4]), Some(1000)).unwrap().top, 1000);
    let cases = [
        (
            nearest(Some(&[4]), Some(0)),
            pair("top", "`top` must be in 1..=1000, got 0"),
        ),
        (
            nearest(Some(&[4]), Some(1001)),
            pair("top", "`top` must be in 1..=1000, got 1001"),
        ),
        (
            nearest(None, None),
            pair("query", "`query` has no token ids"),
        ),
        (
            nearest(Some(&[]), None),
            pair("query", "`query` has no token ids"),
        ),
        (
            nearest(Some(&[0, 12]), None),
            pair(
                "query.ids[1]",
                "`query.ids[1]` is 12, outside the vocabulary of 10 tokens",
            ),
        ),
        (
            nearest(Some(&[0; 4]), None),
            pair(
                "query.ids",
                "`query.ids` holds 4 tokens, more than the 3 one request may carry",
            ),
        ),
    ];
    for (result, expected) in cases {
        assert_eq!(invalid(result), expected);
    }
}

#[test]
fn embed_parts_has_its_own_cap_on_ids() {
    let request = |n: usize| pb::EmbedRequest {
        ids: vec![0; n],
        positions: vec![0; n],
    };
    assert!(embed_input(request(2), &LIMITS.parts()).is_ok());
    assert_eq!(
        invalid(embed_input(request(3), &LIMITS.parts())),
        pair(
            "ids",
            "`ids` holds 3 tokens, more than the 2 one request may carry"
        )
    );
}
