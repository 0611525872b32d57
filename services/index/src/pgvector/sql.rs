//! Payload filters as SQL over the `payload jsonb` column, with every value a bound parameter,
//! meaning exactly what [`crate::filter`] means in memory:
//!
//! - match and any-of (keyword, integer, boolean) become containment, `payload @> $n`, once
//!   with the value and once with it in an array: `{"a": {"b": "red"}}` or
//!   `{"a": {"b": ["red"]}}`. Containment follows objects only (an array on the way does not
//!   contain an object), holds for a top-level element of an array at the end and not for one
//!   nested deeper, and compares numbers as numbers (`3.0` matches the integer 3, `3.5` does
//!   not) and strings byte for byte: what `lookup` and `Test::holds` do. It is also what the
//!   GIN `jsonb_path_ops` index serves.
//! - a range reads the value with `payload -> $k1 -> $k2` (`->` with a text key gives NULL on
//!   anything but an object, as `lookup` does; `#>` would index arrays by number), and compares
//!   it as `float8` when it is a number, or any number in it when it is an array.
//! - must / should / must_not are AND / OR / NOT (… OR …) of conditions that are never NULL,
//!   so that a missing key fails a `must` and passes a `must_not`.
//!
//! PostgreSQL cannot store the NUL character in text or jsonb, so no stored payload holds one:
//! a condition on a key or keyword with NUL in it matches nothing, as in memory.

use postgres::types::ToSql;
use serde_json::{Map, Value};

use crate::filter::{Condition, Filter, Range, Test};

/// A statement's bound parameters, numbered as they are pushed.
#[derive(Default)]
pub struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Binds `value`; its placeholder, `$n`.
    pub fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    /// The parameters as the client takes them.
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Containments past this many are bound as one array (`@> ANY`), which the GIN index
/// cannot serve but which keeps long any-of lists one condition.
const MAX_ORED: usize = 32;

/// A boolean SQL expression, never NULL, that holds for the rows whose payload passes `f`.
pub fn filter(f: &Filter, params: &mut Params) -> String {
    let mut parts = Vec::new();
    let all = |conditions: &[Condition], params: &mut Params| {
        conditions
            .iter()
            .map(|c| condition(c, params))
            .collect::<Vec<_>>()
    };
    if !f.must.is_empty() {
        parts.push(all(&f.must, params).join(" AND "));
    }
    if !f.should.is_empty() {
        parts.push(format!("({})", all(&f.should, params).join(" OR ")));
    }
    if !f.must_not.is_empty() {
        parts.push(format!("NOT ({})", all(&f.must_not, params).join(" OR ")));
    }
    if parts.is_empty() {
        "true".into()
    } else {
        format!("({})", parts.join(" AND "))
    }
}

fn condition(c: &Condition, params: &mut Params) -> String {
    let (path, test) = match c {
        Condition::Nested(f) => return filter(f, params),
        Condition::Field { path, test } => (path, test),
    };
    if path.iter().any(|k| k.contains('\0')) {
        return "false".into();
    }
    let scalars: Vec<Value> = match test {
        Test::Range(range) => return in_range(path, range, params),
        Test::Keyword(k) => vec![Value::from(k.as_str())],
        Test::Integer(i) => vec![Value::from(*i)],
        Test::Boolean(b) => vec![Value::from(*b)],
        Test::AnyKeyword(ks) => ks.iter().map(|k| Value::from(k.as_str())).collect(),
        Test::AnyInteger(is) => is.iter().map(|i| Value::from(*i)).collect(),
    };
    let documents: Vec<Value> = scalars
        .into_iter()
        .filter(|v| !v.as_str().is_some_and(|s| s.contains('\0')))
        .flat_map(|v| [nest(path, v.clone()), nest(path, Value::Array(vec![v]))])
        .collect();
    match documents.len() {
        0 => "false".into(),
        n if n <= MAX_ORED => {
            let ored: Vec<String> = documents
                .into_iter()
                .map(|d| format!("payload @> {}::jsonb", params.push(d)))
                .collect();
            format!("({})", ored.join(" OR "))
        }
        _ => format!("payload @> ANY({}::jsonb[])", params.push(documents)),
    }
}

/// `{"a": {"b": value}}` for the path `a.b`.
fn nest(path: &[String], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut object = Map::new();
        object.insert(key.clone(), inner);
        Value::Object(object)
    })
}

fn in_range(path: &[String], range: &Range, params: &mut Params) -> String {
    let value = path.iter().fold("payload".to_string(), |sql, key| {
        format!("{sql} -> {}::text", params.push(key.clone()))
    });
    let bounds: Vec<String> = [
        (">", range.gt),
        (">=", range.gte),
        ("<", range.lt),
        ("<=", range.lte),
    ]
    .into_iter()
    .filter_map(|(op, bound)| bound.map(|b| (op, b)))
    .map(|(op, b)| format!("{{x}}::float8 {op} {}::float8", params.push(b)))
    .collect();
    let within = |x: &str| bounds.join(" AND ").replace("{x}", x);
    // CASE, not AND: PostgreSQL may evaluate AND's operands in any order, and a cast of a
    // string to float8 is an error.
    format!(
        "(CASE jsonb_typeof({value}) \
            WHEN 'number' THEN {number} \
            WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({value}) AS e(x) \
                WHERE CASE WHEN jsonb_typeof(e.x) = 'number' THEN {element} ELSE false END) \
            ELSE false END)",
        number = within(&format!("({value})")),
        element = within("e.x"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &str, test: Test) -> Condition {
        Condition::Field {
            path: path.split('.').map(String::from).collect(),
            test,
        }
    }

    #[test]
    fn conditions_bind_every_value() {
        let f = Filter {
            must: vec![field("meta.tag", Test::Keyword("it's".into()))],
            should: vec![field(
                "n",
                Test::Range(Range {
                    gte: Some(1.0),
                    lt: Some(2.0),
                    ..Default::default()
                }),
            )],
            must_not: vec![field("b", Test::Boolean(true))],
        };
        let mut params = Params::default();
        let sql = filter(&f, &mut params);
        assert!(!sql.contains("it's") && !sql.contains("meta"), "{sql}");
        assert!(
            sql.starts_with("((payload @> $1::jsonb OR payload @> $2::jsonb) AND ("),
            "{sql}"
        );
        assert!(sql.contains("payload -> $3::text"), "{sql}");
        assert!(
            sql.contains("NOT ((payload @> $6::jsonb OR payload @> $7::jsonb))"),
            "{sql}"
        );
        assert_eq!(params.refs().len(), 7);
        assert_eq!(filter(&Filter::default(), &mut params), "true");
    }

    #[test]
    fn nul_matches_nothing_and_long_lists_are_one_array() {
        let mut params = Params::default();
        let nul = field("a", Test::Keyword("x\0".into()));
        assert_eq!(condition(&nul, &mut params), "false");
        let many = field("a", Test::AnyInteger((0..40).collect()));
        assert_eq!(condition(&many, &mut params), "payload @> ANY($1::jsonb[])");
        assert_eq!(
            nest(&["a".into(), "b".into()], Value::from(1)),
            serde_json::json!({"a": {"b": 1}})
        );
    }
}
