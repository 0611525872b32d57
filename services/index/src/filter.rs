//! Payload filters, Qdrant-shaped: a point passes when every `must` holds, at least one `should`
//! holds (if any are given) and no `must_not` holds. Conditions test the JSON value at a dot
//! path of the payload; where that value is an array, the condition holds if it holds for any
//! element (as in Qdrant), so `tags: ["a", "b"]` matches the keyword "a". A missing key holds
//! no condition (so it passes a `must_not`).

use serde_json::{Map, Value};

/// A validated filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub must: Vec<Condition>,
    pub should: Vec<Condition>,
    pub must_not: Vec<Condition>,
}

/// One test of the payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The value at `path` satisfies `test`.
    Field { path: Vec<String>, test: Test },
    /// A whole filter, for (a and b) or (c and d).
    Nested(Filter),
}

/// What a field's value must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Keyword(String),
    Integer(i64),
    Boolean(bool),
    AnyKeyword(Vec<String>),
    AnyInteger(Vec<i64>),
    Range(Range),
}

/// Bounds on a number; at least one is set, none is NaN.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl Filter {
    /// Whether the filter has no condition at all (and so passes everything).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty()
    }

    /// Whether `payload` passes.
    pub fn matches(&self, payload: &Map<String, Value>) -> bool {
        self.must.iter().all(|c| c.holds(payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.holds(payload)))
            && !self.must_not.iter().any(|c| c.holds(payload))
    }
}

impl Condition {
    fn holds(&self, payload: &Map<String, Value>) -> bool {
        match self {
            Condition::Nested(filter) => filter.matches(payload),
            Condition::Field { path, test } => match lookup(payload, path) {
                Some(Value::Array(items)) => items.iter().any(|v| test.holds(v)),
                Some(value) => test.holds(value),
                None => false,
            },
        }
    }
}

/// The value at a dot path; `None` when a step is missing or not an object.
fn lookup<'a>(payload: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(payload.get(first)?, |value, key| {
        value.as_object()?.get(key)
    })
}

impl Test {
    fn holds(&self, value: &Value) -> bool {
        match self {
            Test::Keyword(k) => value.as_str() == Some(k),
            Test::Integer(i) => integer(value) == Some(*i),
            Test::Boolean(b) => value.as_bool() == Some(*b),
            Test::AnyKeyword(ks) => value.as_str().is_some_and(|s| ks.iter().any(|k| k == s)),
            Test::AnyInteger(is) => integer(value).is_some_and(|v| is.contains(&v)),
            Test::Range(r) => value.as_f64().is_some_and(|x| r.contains(x)),
        }
    }
}

/// A JSON number as an integer: an integer literal, or a float with no fraction (`3.0`), since
/// JSON itself does not tell them apart.
fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let f = value.as_f64()?;
        (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
    })
}

impl Range {
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn field(path: &str, test: Test) -> Condition {
        Condition::Field {
            path: path.split('.').map(String::from).collect(),
            test,
        }
    }

    fn must(c: Condition) -> Filter {
        Filter {
            must: vec![c],
            ..Default::default()
        }
    }

    #[test]
    fn matches_keywords_integers_and_booleans_at_dot_paths() {
        let p = payload(json!({"book": "Genesis", "meta": {"year": 1611, "kjv": true}}));
        assert!(must(field("book", Test::Keyword("Genesis".into()))).matches(&p));
        assert!(!must(field("book", Test::Keyword("Exodus".into()))).matches(&p));
        assert!(must(field("meta.year", Test::Integer(1611))).matches(&p));
        assert!(!must(field("meta.year", Test::Integer(1612))).matches(&p));
        assert!(must(field("meta.kjv", Test::Boolean(true))).matches(&p));
        assert!(!must(field("meta.kjv", Test::Boolean(false))).matches(&p));
        // Types do not mix: the string "1611" is not the integer 1611.
        let q = payload(json!({"year": "1611", "n": 3.0, "m": 3.5}));
        assert!(!must(field("year", Test::Integer(1611))).matches(&q));
        assert!(must(field("n", Test::Integer(3))).matches(&q));
        assert!(!must(field("m", Test::Integer(3))).matches(&q));
    }

    #[test]
    fn any_of_and_arrays() {
        let p = payload(json!({"tags": ["a", "b"], "n": 7}));
        assert!(must(field("tags", Test::Keyword("b".into()))).matches(&p));
        assert!(must(field(
            "tags",
            Test::AnyKeyword(vec!["x".into(), "a".into()])
        ))
        .matches(&p));
        assert!(!must(field("tags", Test::AnyKeyword(vec!["x".into()]))).matches(&p));
        assert!(must(field("n", Test::AnyInteger(vec![1, 7]))).matches(&p));
        assert!(!must(field("n", Test::AnyInteger(vec![1, 2]))).matches(&p));
    }

    #[test]
    fn each_range_bound() {
        let p = payload(json!({"x": 5}));
        let range = |gt, gte, lt, lte| {
            must(field("x", Test::Range(Range { gt, gte, lt, lte }))).matches(&p)
        };
        assert!(range(Some(4.0), None, None, None));
        assert!(!range(Some(5.0), None, None, None));
        assert!(range(None, Some(5.0), None, None));
        assert!(!range(None, Some(5.5), None, None));
        assert!(range(None, None, Some(6.0), None));
        assert!(!range(None, None, Some(5.0), None));
        assert!(range(None, None, None, Some(5.0)));
        assert!(!range(None, None, None, Some(4.9)));
        assert!(range(Some(1.0), None, Some(9.0), None));
        // A string is not a number.
        let s = payload(json!({"x": "5"}));
        assert!(!must(field(
            "x",
            Test::Range(Range {
                gte: Some(0.0),
                ..Default::default()
            })
        ))
        .matches(&s));
    }

    #[test]
    fn must_should_must_not_and_nesting() {
        let p = payload(json!({"a": 1, "b": 2}));
        let is = |k: &str, v: i64| field(k, Test::Integer(v));
        let f = Filter {
            should: vec![is("a", 9), is("b", 2)],
            ..Default::default()
        };
        assert!(f.matches(&p));
        let f = Filter {
            should: vec![is("a", 9), is("b", 9)],
            ..Default::default()
        };
        assert!(!f.matches(&p));
        let f = Filter {
            must: vec![is("a", 1)],
            must_not: vec![is("b", 2)],
            ..Default::default()
        };
        assert!(!f.matches(&p));
        // A missing key fails a must and passes a must_not.
        assert!(!must(is("c", 1)).matches(&p));
        let f = Filter {
            must_not: vec![is("c", 1)],
            ..Default::default()
        };
        assert!(f.matches(&p));
        // (a = 9 and b = 2) or (a = 1 and b = 2)
        let both = |x, y| {
            Condition::Nested(Filter {
                must: vec![is("a", x), is("b", y)],
                ..Default::default()
            })
        };
        let f = Filter {
            should: vec![both(9, 2), both(1, 2)],
            ..Default::default()
        };
        assert!(f.matches(&p));
        let f = Filter {
            should: vec![both(9, 2), both(1, 3)],
            ..Default::default()
        };
        assert!(!f.matches(&p));
        assert!(Filter::default().matches(&p));
    }
}
