//! One search as SQL: the collection's row read, the query vector found, then a ranking by
//! an exact scan or an HNSW walk (see the module documentation of [`super`]).

use std::collections::HashMap;

use pgvector::Vector;
use postgres::Transaction;

use super::pool::{failed, Access};
use super::sql::{self, Params};
use super::{on_table, record, schema, Collection};
use crate::error::Error;
use crate::types::{Found, IndexKind, Metric, Query, Record, Search, With};

/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

/// Runs `search` on the collection `c`, in `tx`.
pub fn run(tx: &mut Transaction<'_>, c: &Collection, search: &Search) -> Result<Found, Error> {
    let (name, what) = (c.spec.name.as_str(), "searching");
    let (query, exclude) = match &search.query {
        Query::Vector(v) => (v.clone(), None),
        Query::Text(_) => {
            return Err(Error::Internal(
                "a text query reached the index unembedded; this is a bug".into(),
            ))
        }
        Query::Id(id) => {
            let row = if id.contains('\0') {
                None
            } else {
                tx.query_opt(
                    &format!("SELECT embedding FROM {} WHERE id = $1", c.table()),
                    &[id],
                )
                .map_err(|e| on_table(name, what, Access::Read, e))?
            };
            let row = row.ok_or_else(|| Error::NoPoint {
                collection: name.to_string(),
                id: id.clone(),
            })?;
            (row.get::<_, Vector>(0).to_vec(), Some(id.clone()))
        }
    };
    if query.len() != c.spec.dimension {
        return Err(Error::invalid(
            "vector",
            format!(
                "`vector` has {} values but collection `{name}` holds {}-dimensional vectors",
                query.len(),
                c.spec.dimension
            ),
        ));
    }
    let exact = search.exact || schema::searched_with(&c.spec) == IndexKind::Exact;
    let plan = Plan {
        c,
        query: Vector::from(query),
        exclude,
        search,
    };
    if !exact {
        let ef = search
            .ef_search
            .unwrap_or(c.spec.hnsw.ef_search)
            .max(search.top_k);
        // Formatted, not bound: SET takes no parameters, and this is a number (within
        // pgvector's range; a longer list comes from the iterative scan).
        tx.batch_execute(&format!(
            "SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = relaxed_order; \
             SET LOCAL enable_seqscan = off",
            ef.clamp(1, MAX_EF_SEARCH)
        ))
        .map_err(|e| failed(what, Access::Read, e))?;
        let (found, walked) = plan.run(tx, Some(ef))?;
        if walked >= search.top_k {
            return Ok(found);
        }
        tx.batch_execute("SET LOCAL enable_seqscan = on")
            .map_err(|e| failed(what, Access::Read, e))?;
    }
    Ok(plan.run(tx, None)?.0)
}

/// One search's SQL.
struct Plan<'a> {
    c: &'a Collection,
    query: Vector,
    exclude: Option<String>,
    search: &'a Search,
}

impl Plan<'_> {
    /// Runs the search exactly (`ef` None) or through the HNSW index with the search list
    /// `ef`: the hits ranked, scored and cut at the threshold, and how many rows the ranking
    /// found (for a walk, whether it found `top_k`).
    fn run(&self, tx: &mut Transaction<'_>, ef: Option<usize>) -> Result<(Found, usize), Error> {
        let s = self.search;
        let metric = self.c.spec.metric;
        let table = self.c.table();
        let on_table = |e| on_table(&self.c.spec.name, "searching", Access::Read, e);
        let mut params = Params::default();
        let q = format!("{}::vector", params.push(self.query.clone()));
        let mut conditions = Vec::new();
        if let Some(id) = &self.exclude {
            conditions.push(format!("id <> {}", params.push(id.clone())));
        }
        if let Some(f) = s.filter.as_ref().filter(|f| !f.is_empty()) {
            conditions.push(sql::filter(f, &mut params));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let ranking = match ef {
            // The distance functions: no index serves them, so every passing row is scored,
            // and the window counts them before the LIMIT.
            None => format!(
                "SELECT id, {function}(embedding, {q}) AS d, count(*) OVER () AS n
                 FROM {table} {filter} ORDER BY d, id LIMIT {k}",
                function = match metric {
                    Metric::Cosine => "cosine_distance",
                    Metric::Dot => "-inner_product",
                    Metric::L2 => "l2_distance",
                },
                k = params.push(s.top_k as i64),
            ),
            // The operator, which the HNSW index serves. The walk's rows come in relaxed
            // order, which the planner takes for sorted (even through a MATERIALIZED CTE since
            // PostgreSQL 17), so they are ranked here rather than by a second ORDER BY.
            Some(ef) => format!(
                "SELECT id, embedding {op} {q} AS d, 0::bigint AS n
                 FROM {table} {filter} ORDER BY embedding {op} {q} LIMIT {ef}",
                op = match metric {
                    Metric::Cosine => "<=>",
                    Metric::Dot => "<#>",
                    Metric::L2 => "<->",
                },
                ef = params.push(ef.max(s.top_k) as i64),
            ),
        };
        let rows = tx.query(&ranking, &params.refs()).map_err(on_table)?;
        let scanned = rows.first().map_or(0, |r| r.get::<_, i64>("n")) as u64;
        let mut ranked: Vec<(f64, String)> = rows
            .iter()
            .map(|r| (r.get::<_, f64>("d"), r.get::<_, String>("id")))
            .collect();
        let walked = ranked.len();
        ranked.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        ranked.truncate(s.top_k);
        ranked.retain(|(d, _)| s.passes(metric, score(metric, *d)));

        let with = With {
            payload: s.with_payload,
            vector: s.with_vector,
        };
        let mut details: HashMap<String, Record> = HashMap::new();
        if (with.payload || with.vector) && !ranked.is_empty() {
            let ids: Vec<&str> = ranked.iter().map(|(_, id)| id.as_str()).collect();
            let rows = tx
                .query(
                    &format!(
                        "SELECT id, payload, text, embedding FROM {table} WHERE id = ANY($1::text[])"
                    ),
                    &[&ids],
                )
                .map_err(on_table)?;
            details = rows
                .iter()
                .map(|row| (row.get("id"), record(row, 0.0, with)))
                .collect();
        }
        let hits = ranked
            .into_iter()
            .map(|(d, id)| {
                let mut r = details.remove(&id).unwrap_or(Record {
                    id,
                    score: 0.0,
                    payload: None,
                    text: None,
                    vector: None,
                });
                r.score = score(metric, d);
                r
            })
            .collect();
        let found = Found {
            hits,
            exact: ef.is_none(),
            candidates_scanned: scanned,
        };
        Ok((found, walked))
    }
}

/// The score a client sees for pgvector's distance `d`: cosine similarity (`<=>` is 1 −
/// cosine), the dot product (`<#>` is its negative) or the Euclidean distance.
fn score(metric: Metric, d: f64) -> f32 {
    (match metric {
        Metric::Cosine => 1.0 - d,
        Metric::Dot => -d,
        Metric::L2 => d,
    }) as f32
}
