//! Filters from the wire, checked once: every malformed part is refused with INVALID_ARGUMENT
//! naming its path, such as `filter.must[0].key`.

use oneword_proto::index::v1 as pb;
use pb::condition::Test as PbTest;
use pb::r#match::Value as PbValue;

use crate::error::Error;
use crate::filter::{Condition, Filter, Range, Test};

/// Filters nest at most this deep (a guard for the recursion of evaluating them).
const MAX_DEPTH: usize = 16;

/// Validates the filter at `field` (`filter`).
pub fn filter(field: &str, f: pb::Filter) -> Result<Filter, Error> {
    nested(field, f, 0)
}

fn nested(field: &str, f: pb::Filter, depth: usize) -> Result<Filter, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(
            field,
            format!("`{field}` nests filters more than {MAX_DEPTH} deep"),
        ));
    }
    let list = |name: &str, conditions: Vec<pb::Condition>| {
        conditions
            .into_iter()
            .enumerate()
            .map(|(i, c)| condition(&format!("{field}.{name}[{i}]"), c, depth))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Filter {
        must: list("must", f.must)?,
        should: list("should", f.should)?,
        must_not: list("must_not", f.must_not)?,
    })
}

fn condition(field: &str, c: pb::Condition, depth: usize) -> Result<Condition, Error> {
    let test = match c.test {
        None => {
            return Err(Error::invalid(
                field,
                format!("`{field}` has no test: give `match`, `any`, `range` or `filter`"),
            ))
        }
        Some(PbTest::Filter(f)) => {
            if !c.key.is_empty() {
                let f = format!("{field}.key");
                return Err(Error::invalid(
                    &f,
                    format!("`{f}` must be empty for a nested filter, got {:?}", c.key),
                ));
            }
            return Ok(Condition::Nested(nested(
                &format!("{field}.filter"),
                f,
                depth + 1,
            )?));
        }
        Some(PbTest::Match(m)) => match m.value {
            Some(PbValue::Keyword(k)) => Test::Keyword(k),
            Some(PbValue::Integer(i)) => Test::Integer(i),
            Some(PbValue::Boolean(b)) => Test::Boolean(b),
            None => {
                let f = format!("{field}.match");
                return Err(Error::invalid(
                    &f,
                    format!("`{f}` has no value: give `keyword`, `integer` or `boolean`"),
                ));
            }
        },
        Some(PbTest::Any(a)) => match (a.keywords.is_empty(), a.integers.is_empty()) {
            (false, true) => Test::AnyKeyword(a.keywords),
            (true, false) => Test::AnyInteger(a.integers),
            (both_empty, _) => {
                let f = format!("{field}.any");
                let given = if both_empty { "neither" } else { "both" };
                return Err(Error::invalid(
                    &f,
                    format!("`{f}` must have exactly one of `keywords` and `integers` non-empty, got {given}"),
                ));
            }
        },
        Some(PbTest::Range(r)) => Test::Range(range(&format!("{field}.range"), r)?),
    };
    Ok(Condition::Field {
        path: key(&format!("{field}.key"), &c.key)?,
        test,
    })
}

fn range(field: &str, r: pb::Range) -> Result<Range, Error> {
    let bounds = [("gt", r.gt), ("gte", r.gte), ("lt", r.lt), ("lte", r.lte)];
    if bounds.iter().all(|(_, b)| b.is_none()) {
        return Err(Error::invalid(
            field,
            format!("`{field}` has no bound: give at least one of `gt`, `gte`, `lt` and `lte`"),
        ));
    }
    if let Some((name, Some(b))) = bounds.iter().find(|(_, b)| b.is_some_and(f64::is_nan)) {
        let f = format!("{field}.{name}");
        return Err(Error::invalid(
            &f,
            format!("`{f}` must be a number, got {b}"),
        ));
    }
    Ok(Range {
        gt: r.gt,
        gte: r.gte,
        lt: r.lt,
        lte: r.lte,
    })
}

/// A dot path into the payload.
fn key(field: &str, key: &str) -> Result<Vec<String>, Error> {
    if key.is_empty() {
        return Err(Error::invalid(
            field,
            format!("`{field}` must not be empty: name a payload key (dots for nested objects)"),
        ));
    }
    let path: Vec<String> = key.split('.').map(String::from).collect();
    if path.iter().any(String::is_empty) {
        return Err(Error::invalid(
            field,
            format!("`{field}` is {key:?}, which has an empty step between its dots"),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(key: &str, test: Option<PbTest>) -> pb::Condition {
        pb::Condition {
            key: key.into(),
            test,
        }
    }

    fn must(c: pb::Condition) -> pb::Filter {
        pb::Filter {
            must: vec![c],
            ..Default::default()
        }
    }

    fn refused(f: pb::Filter) -> (String, String) {
        match filter("filter", f) {
            Err(Error::InvalidArgument(field, message)) => (field, message),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn keyword(k: &str) -> Option<PbTest> {
        Some(PbTest::Match(pb::Match {
            value: Some(PbValue::Keyword(k.into())),
        }))
    }

    #[test]
    fn malformed_parts_are_named_by_their_path() {
        let (field, message) = refused(must(cond("", keyword("a"))));
        assert_eq!(field, "filter.must[0].key");
        assert!(
            message.contains("`filter.must[0].key` must not be empty"),
            "{message}"
        );

        let (field, _) = refused(must(cond("a..b", keyword("a"))));
        assert_eq!(field, "filter.must[0].key");

        let f = pb::Filter {
            should: vec![cond("a", keyword("x")), cond("b", None)],
            ..Default::default()
        };
        let (field, message) = refused(f);
        assert_eq!(field, "filter.should[1]");
        assert!(message.contains("has no test"), "{message}");

        let (field, message) = refused(must(cond("a", Some(PbTest::Range(pb::Range::default())))));
        assert_eq!(field, "filter.must[0].range");
        assert!(message.contains("no bound"), "{message}");

        let nan = pb::Range {
            lt: Some(f64::NAN),
            ..Default::default()
        };
        let (field, _) = refused(must(cond("a", Some(PbTest::Range(nan)))));
        assert_eq!(field, "filter.must[0].range.lt");

        let both = pb::AnyOf {
            keywords: vec!["a".into()],
            integers: vec![1],
        };
        let (field, message) = refused(must(cond("a", Some(PbTest::Any(both)))));
        assert_eq!(field, "filter.must[0].any");
        assert!(message.contains("got both"), "{message}");
        let (_, message) = refused(must(cond("a", Some(PbTest::Any(pb::AnyOf::default())))));
        assert!(message.contains("got neither"), "{message}");

        let (field, _) = refused(must(cond(
            "a",
            Some(PbTest::Match(pb::Match { value: None })),
        )));
        assert_eq!(field, "filter.must[0].match");

        // Paths go down into nested filters.
        let inner = pb::Filter {
            must_not: vec![cond("", keyword("x"))],
            ..Default::default()
        };
        let (field, _) = refused(must(cond("", Some(PbTest::Filter(inner.clone())))));
        assert_eq!(field, "filter.must[0].filter.must_not[0].key");
        let (field, _) = refused(must(cond("k", Some(PbTest::Filter(inner)))));
        assert_eq!(field, "filter.must[0].key");
    }

    #[test]
    fn a_well_formed_filter_converts() {
        let f = filter("filter", must(cond("meta.year", keyword("1611")))).unwrap();
        assert_eq!(
            f.must,
            [Condition::Field {
                path: vec!["meta".into(), "year".into()],
                test: Test::Keyword("1611".into())
            }]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut f = must(cond("a", keyword("x")));
        for _ in 0..=MAX_DEPTH {
            f = must(cond("", Some(PbTest::Filter(f))));
        }
        let (_, message) = refused(f);
        assert!(message.contains("more than 16 deep"), "{message}");
    }
}
