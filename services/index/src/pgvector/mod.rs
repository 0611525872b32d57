//! The scale-out backend: PostgreSQL with pgvector stores and searches every collection, and
//! any number of index replicas share one database. A replica keeps nothing but a small pool
//! of connections ([`pool`]): every call reads the collection's row afresh in the transaction
//! that uses it (one primary-key lookup), so no replica can act on a collection another one
//! dropped, re-created or changed; caching it, even briefly, would buy a fraction of a
//! millisecond for that risk.
//!
//! Layout ([`schema`]): a `collections` table and one `points_<id>` table per collection
//! (`id`, `embedding vector(D)`, `payload jsonb`, `text`), with an HNSW index for the
//! collection's metric and a GIN index on the payload. Each call is one transaction: an upsert
//! (`INSERT … ON CONFLICT (id) DO UPDATE`), a delete or a drop is answered after its COMMIT, and
//! a failed one changes nothing.
//!
//! Searches, in the metric's own units as the embedded backend reports them, nearest first and
//! equal distances by id:
//! - exact (`exact`, or an EXACT collection): the distance *functions* (`l2_distance`, …), which
//!   no index can serve, over every row that passes the filter: a true scan, and
//!   `candidates_scanned` is the number of rows scored.
//! - HNSW: the distance *operator* under `hnsw.ef_search` and `hnsw.iterative_scan =
//!   relaxed_order` (so a filter does not cost hits), the walk's `ef` nearest re-sorted by
//!   distance and id; `candidates_scanned` is 0, because PostgreSQL does not say how many
//!   distances its walk computed. A walk that finds fewer than `top_k` rows is redone exactly
//!   (and then says so), as the embedded backend does, so a search never returns fewer hits
//!   than there are points to return.

mod pool;
pub mod schema;
mod search;
mod sql;

use std::collections::HashMap;

use pgvector::Vector;
use postgres::error::SqlState;
use postgres::Transaction;
use serde_json::{Map, Value};

use crate::backend::Backend;
use crate::error::Error;
use crate::types::{
    Found, HnswParams, IndexKind, Info, Metric, NewPoint, Record, Search, Selector, Spec, With,
};
use pool::{failed, Access, Pool};
use sql::Params;

/// See the module documentation.
pub struct Pgvector {
    pool: Pool,
}

/// A collection's row: its spec and the id that names its points table.
struct Collection {
    id: i64,
    spec: Spec,
}

impl Collection {
    fn table(&self) -> String {
        schema::table(self.id)
    }
}

/// Whether reading a collection's row also locks it against a concurrent Drop until the
/// transaction ends (writes), or not (reads: a Drop that commits meanwhile makes the table
/// vanish under them, which reads as "no such collection", as it then is).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    Share,
    None,
}

const COLUMNS: &str = "name, id, model, dimension, metric, index_kind, hnsw_m, \
                       hnsw_ef_construction, hnsw_ef_search, created_us";

impl Pgvector {
    /// Connects to `config` with at most `connections` connections and creates whatever of
    /// the layout is missing. [`Error::Postgres`] when the server cannot be reached (worth
    /// retrying); any other error will not go away by itself.
    pub fn open(config: postgres::Config, connections: usize) -> Result<Self, Error> {
        let pool = Pool::new(config, connections);
        pool.transaction("creating the index's tables", Access::Write, |tx| {
            schema::ensure(tx)
        })?;
        Ok(Pgvector { pool })
    }

    fn read(
        tx: &mut Transaction<'_>,
        name: &str,
        lock: Lock,
        what: &str,
    ) -> Result<Collection, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM collections WHERE name = $1{}",
            if lock == Lock::Share {
                " FOR SHARE"
            } else {
                ""
            }
        );
        let access = if lock == Lock::Share {
            Access::Write
        } else {
            Access::Read
        };
        let row = tx
            .query_opt(&sql, &[&name])
            .map_err(|e| failed(what, access, e))?
            .ok_or_else(|| Error::NoCollection(name.to_string()))?;
        collection(&row)
    }

    /// The points of the collection `c`, counted.
    fn count(tx: &mut Transaction<'_>, c: &Collection, what: &str) -> Result<u64, Error> {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", c.table()), &[])
            .map_err(|e| on_table(&c.spec.name, what, Access::Read, e))?
            .get(0);
        Ok(n as u64)
    }

    fn info(c: Collection, points: u64) -> Info {
        Info {
            searched_with: schema::searched_with(&c.spec),
            spec: c.spec,
            points,
            backend: "pgvector",
        }
    }
}

/// A `collections` row as a collection.
fn collection(row: &postgres::Row) -> Result<Collection, Error> {
    let name: String = row.get("name");
    let bad = |what: &str, value: &str| {
        Error::Internal(format!(
            "collection `{name}` has an unknown {what} {value:?} in PostgreSQL"
        ))
    };
    let metric: String = row.get("metric");
    let index: String = row.get("index_kind");
    let int = |column: &str| row.get::<_, i32>(column).max(0) as usize;
    Ok(Collection {
        id: row.get("id"),
        spec: Spec {
            metric: Metric::parse(&metric).ok_or_else(|| bad("metric", &metric))?,
            index: IndexKind::parse(&index).ok_or_else(|| bad("index", &index))?,
            model: row.get("model"),
            dimension: int("dimension"),
            hnsw: HnswParams {
                m: int("hnsw_m"),
                ef_construction: int("hnsw_ef_construction"),
                ef_search: int("hnsw_ef_search"),
            },
            created_us: row.get("created_us"),
            name,
        },
    })
}

/// An error from a collection's points table: a table gone (the collection was dropped since
/// its row was read) is [`Error::NoCollection`].
fn on_table(name: &str, what: &str, access: Access, e: postgres::Error) -> Error {
    if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
        Error::NoCollection(name.to_string())
    } else {
        failed(what, access, e)
    }
}

/// The first NUL character in a point, which PostgreSQL cannot store in text or jsonb.
fn nul_in(points: &[NewPoint]) -> Option<(usize, &'static str)> {
    fn in_value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(in_value),
            Value::Object(map) => in_map(map),
            _ => false,
        }
    }
    fn in_map(map: &Map<String, Value>) -> bool {
        map.iter().any(|(k, v)| k.contains('\0') || in_value(v))
    }
    points.iter().enumerate().find_map(|(i, p)| {
        if p.id.contains('\0') {
            Some((i, "id"))
        } else if p.text.as_deref().is_some_and(|t| t.contains('\0')) {
            Some((i, "text"))
        } else if in_map(&p.payload) {
            Some((i, "payload"))
        } else {
            None
        }
    })
}

impl Backend for Pgvector {
    fn name(&self) -> &'static str {
        "pgvector"
    }

    fn create(&self, spec: Spec) -> Result<Info, Error> {
        if spec.index == IndexKind::Hnsw && spec.dimension > schema::MAX_INDEXED_DIMENSION {
            return Err(Error::invalid(
                "dimension",
                format!(
                    "`dimension` must be at most {} for an HNSW collection with pgvector (its index limit), got {}; create it EXACT or AUTO",
                    schema::MAX_INDEXED_DIMENSION,
                    spec.dimension
                ),
            ));
        }
        let what = "creating a collection";
        self.pool.transaction(what, Access::Write, |tx| {
            let inserted = tx
                .query_opt(
                    "INSERT INTO collections (name, model, dimension, metric, index_kind, hnsw_m,
                         hnsw_ef_construction, hnsw_ef_search, created_us)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (name) DO NOTHING RETURNING id",
                    &[
                        &spec.name,
                        &spec.model,
                        &(spec.dimension as i32),
                        &spec.metric.as_str(),
                        &spec.index.as_str(),
                        &(spec.hnsw.m as i32),
                        &(spec.hnsw.ef_construction as i32),
                        &(spec.hnsw.ef_search as i32),
                        &spec.created_us,
                    ],
                )
                .map_err(|e| failed(what, Access::Write, e))?;
            let Some(row) = inserted else {
                return Err(Error::Exists(spec.name.clone()));
            };
            let id: i64 = row.get(0);
            tx.batch_execute(&schema::create_points(id, &spec))
                .map_err(|e| failed(what, Access::Write, e))?;
            Ok(Pgvector::info(Collection { id, spec }, 0))
        })
    }

    fn get(&self, name: &str) -> Result<Info, Error> {
        let what = "describing a collection";
        self.pool.transaction(what, Access::Read, |tx| {
            // FOR SHARE needs a writable transaction; a plain read may find the table
            // dropped under it, which `count` reports as no collection.
            let c = Pgvector::read(tx, name, Lock::None, what)?;
            let points = Pgvector::count(tx, &c, what)?;
            Ok(Pgvector::info(c, points))
        })
    }

    fn spec(&self, name: &str) -> Result<Spec, Error> {
        let what = "reading a collection";
        self.pool.transaction(what, Access::Read, |tx| {
            Ok(Pgvector::read(tx, name, Lock::None, what)?.spec)
        })
    }

    fn list(&self) -> Result<Vec<Info>, Error> {
        let what = "listing the collections";
        self.pool.transaction(what, Access::Read, |tx| {
            let rows = tx
                .query(
                    &format!("SELECT {COLUMNS} FROM collections ORDER BY name"),
                    &[],
                )
                .map_err(|e| failed(what, Access::Read, e))?;
            let mut infos = Vec::with_capacity(rows.len());
            for row in &rows {
                let c = collection(row)?;
                // Each count behind a savepoint: a collection dropped since the list was
                // read is simply left out, without aborting the transaction.
                let mut counting = tx
                    .savepoint("counting")
                    .map_err(|e| failed(what, Access::Read, e))?;
                match Pgvector::count(&mut counting, &c, what) {
                    Ok(points) => {
                        counting
                            .commit()
                            .map_err(|e| failed(what, Access::Read, e))?;
                        infos.push(Pgvector::info(c, points));
                    }
                    Err(Error::NoCollection(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(infos)
        })
    }

    fn drop_collection(&self, name: &str) -> Result<u64, Error> {
        let what = "dropping a collection";
        self.pool.transaction(what, Access::Write, |tx| {
            // Deleting the row waits for the writes that hold it FOR SHARE, and makes the
            // ones that come after find no collection.
            let row = tx
                .query_opt(
                    &format!("DELETE FROM collections WHERE name = $1 RETURNING {COLUMNS}"),
                    &[&name],
                )
                .map_err(|e| failed(what, Access::Write, e))?
                .ok_or_else(|| Error::NoCollection(name.to_string()))?;
            let c = collection(&row)?;
            let points = Pgvector::count(tx, &c, what)?;
            tx.batch_execute(&format!("DROP TABLE {}", c.table()))
                .map_err(|e| failed(what, Access::Write, e))?;
            Ok(points)
        })
    }

    fn upsert(&self, spec: &Spec, points: Vec<NewPoint>) -> Result<u64, Error> {
        if let Some((i, part)) = nul_in(&points) {
            let field = format!("points[{i}].{part}");
            return Err(Error::invalid(
                &field,
                format!(
                    "`{field}` holds the NUL character (\\u0000), which PostgreSQL cannot store"
                ),
            ));
        }
        let what = "upserting points";
        let n = points.len() as u64;
        // Rows are locked in the order they are written: by id, two upserts that share ids
        // lock them in the same order and cannot deadlock.
        let mut points = points;
        points.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let mut ids = Vec::with_capacity(points.len());
        let mut vectors = Vec::with_capacity(points.len());
        let mut payloads = Vec::with_capacity(points.len());
        let mut texts = Vec::with_capacity(points.len());
        for p in points {
            ids.push(p.id);
            vectors.push(Vector::from(p.vector));
            payloads.push(Value::Object(p.payload));
            texts.push(p.text);
        }
        self.pool.transaction(what, Access::Write, |tx| {
            let c = Pgvector::read(tx, &spec.name, Lock::Share, what)?;
            if c.spec != *spec {
                return Err(Error::NoCollection(spec.name.clone()));
            }
            tx.execute(
                &format!(
                    "INSERT INTO {} (id, embedding, payload, text)
                     SELECT * FROM unnest($1::text[], $2::vector[], $3::jsonb[], $4::text[])
                     ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding,
                         payload = excluded.payload, text = excluded.text",
                    c.table()
                ),
                &[&ids, &vectors, &payloads, &texts],
            )
            .map_err(|e| on_table(&spec.name, what, Access::Write, e))?;
            Ok(n)
        })
    }

    fn delete(&self, name: &str, selector: &Selector) -> Result<u64, Error> {
        let what = "deleting points";
        self.pool.transaction(what, Access::Write, |tx| {
            let c = Pgvector::read(tx, name, Lock::Share, what)?;
            let mut params = Params::default();
            let condition = match selector {
                Selector::Ids(ids) => {
                    let ids: Vec<String> = ids
                        .iter()
                        .filter(|id| !id.contains('\0'))
                        .cloned()
                        .collect();
                    format!("id = ANY({}::text[])", params.push(ids))
                }
                Selector::Filter(f) => sql::filter(f, &mut params),
            };
            tx.execute(
                &format!("DELETE FROM {} WHERE {condition}", c.table()),
                &params.refs(),
            )
            .map_err(|e| on_table(name, what, Access::Write, e))
        })
    }

    fn search(&self, name: &str, search: &Search) -> Result<Found, Error> {
        let what = "searching";
        self.pool.transaction(what, Access::Read, |tx| {
            let c = Pgvector::read(tx, name, Lock::None, what)?;
            search::run(tx, &c, search)
        })
    }

    fn retrieve(&self, name: &str, ids: &[String], with: With) -> Result<Vec<Record>, Error> {
        let what = "retrieving points";
        self.pool.transaction(what, Access::Read, |tx| {
            let c = Pgvector::read(tx, name, Lock::None, what)?;
            let asked: Vec<&String> = ids.iter().filter(|id| !id.contains('\0')).collect();
            let rows = tx
                .query(
                    &format!(
                        "SELECT id, payload, text, embedding FROM {} WHERE id = ANY($1::text[])",
                        c.table()
                    ),
                    &[&asked],
                )
                .map_err(|e| on_table(name, what, Access::Read, e))?;
            let found: HashMap<String, Record> = rows
                .iter()
                .map(|row| {
                    let record = record(row, 0.0, with);
                    (record.id.clone(), record)
                })
                .collect();
            // In the order asked, an id asked twice given twice.
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(r) = found.get(id) {
                    out.push(r.clone());
                }
            }
            Ok(out)
        })
    }
}

/// A row (`id`, `payload`, `text`, `embedding`, in any order) as returned to a client. The
/// payload is re-serialised as the embedded backend writes it (keys sorted, serde's numbers),
/// not as PostgreSQL prints jsonb.
fn record(row: &postgres::Row, score: f32, with: With) -> Record {
    let payload = with.payload.then(|| {
        let value: Value = row.get("payload");
        serde_json::to_string(&value).expect("a JSON value always serialises; this is a bug")
    });
    Record {
        id: row.get("id"),
        score,
        payload,
        text: if with.payload { row.get("text") } else { None },
        vector: with
            .vector
            .then(|| row.get::<_, Vector>("embedding").to_vec()),
    }
}
