//! The store of record: one SQLite database file (`index.sqlite`) in WAL mode with
//! `synchronous=FULL`, so that a committed transaction survives a crash or a power cut. Every
//! request that writes is one transaction, and is answered only after its COMMIT returned.
//!
//! One `points` table holds the points of every collection, keyed by (collection, id), rather
//! than a table per collection: the schema stays fixed (no DDL built from client-given names,
//! no identifier quoting), Create and Drop are plain row changes inside a transaction, and
//! loading a collection is one range scan of the primary key.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, ErrorCode, TransactionBehavior};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::rows::Rows;
use crate::types::{HnswParams, IndexKind, Metric, NewPoint, Spec};

/// The schema; `user_version` says which one a file holds.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    metric TEXT NOT NULL,
    index_kind TEXT NOT NULL,
    hnsw_m INTEGER NOT NULL,
    hnsw_ef_construction INTEGER NOT NULL,
    hnsw_ef_search INTEGER NOT NULL,
    created_us INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS points (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    -- dimension × little-endian f32 (normalised for cosine collections)
    vector BLOB NOT NULL,
    -- a JSON object
    payload TEXT NOT NULL,
    -- the text the vector was embedded from, if any
    text TEXT,
    PRIMARY KEY (collection, id)
) STRICT;
PRAGMA user_version = 1;
";

/// See the module documentation. One connection: SQLite has one writer at a time anyway, and
/// reads are served from memory.
pub struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating if need be) the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("opening the index database {}", path.display()))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "the index database {} cannot use WAL (journal_mode is {mode})",
            path.display()
        );
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        anyhow::ensure!(
            version <= 1,
            "the index database {} has schema version {version}; this build knows 1",
            path.display()
        );
        conn.execute_batch(SCHEMA)
            .context("creating the index's tables")?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic cannot leave the connection half-used: an open transaction rolls back when
        // it is dropped during the unwinding.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every collection's spec, by name.
    pub fn collections(&self) -> anyhow::Result<Vec<Spec>> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT name, model, dimension, metric, index_kind, hnsw_m, hnsw_ef_construction,
                    hnsw_ef_search, created_us FROM collections ORDER BY name",
        )?;
        let specs = statement.query_map([], |r| {
            Ok((
                Spec {
                    name: r.get(0)?,
                    model: r.get(1)?,
                    dimension: r.get::<_, u32>(2)? as usize,
                    metric: Metric::Cosine,
                    index: IndexKind::Auto,
                    hnsw: HnswParams {
                        m: r.get::<_, u32>(5)? as usize,
                        ef_construction: r.get::<_, u32>(6)? as usize,
                        ef_search: r.get::<_, u32>(7)? as usize,
                    },
                    created_us: r.get(8)?,
                },
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        specs
            .map(|row| {
                let (mut spec, metric, index) = row?;
                spec.metric = Metric::parse(&metric).with_context(|| {
                    format!(
                        "collection `{}` has an unknown metric {metric:?}",
                        spec.name
                    )
                })?;
                spec.index = IndexKind::parse(&index).with_context(|| {
                    format!("collection `{}` has an unknown index {index:?}", spec.name)
                })?;
                Ok(spec)
            })
            .collect()
    }

    /// The stored points of `spec`'s collection.
    pub fn rows(&self, spec: &Spec) -> anyhow::Result<Rows> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT id, vector, payload, text FROM points WHERE collection = ?1 ORDER BY id",
        )?;
        let mut rows = Rows::new(spec.dimension);
        let mut points = Vec::new();
        let mut query = statement.query([&spec.name])?;
        while let Some(r) = query.next()? {
            let id: String = r.get(0)?;
            let what = || format!("point `{id}` of collection `{}`", spec.name);
            let bytes: Vec<u8> = r.get(1)?;
            anyhow::ensure!(
                bytes.len() == 4 * spec.dimension,
                "{} has a vector of {} bytes, not {}",
                what(),
                bytes.len(),
                4 * spec.dimension
            );
            let payload: String = r.get(2)?;
            let payload = match serde_json::from_str(&payload) {
                Ok(Value::Object(map)) => map,
                _ => anyhow::bail!("{} has a payload that is not a JSON object", what()),
            };
            points.push(NewPoint {
                vector: from_le_bytes(&bytes),
                payload,
                text: r.get(3)?,
                id,
            });
            // Bounded batches keep the parsed points from doubling the memory of a big load.
            if points.len() == 4096 {
                rows.upsert(std::mem::take(&mut points));
            }
        }
        rows.upsert(points);
        Ok(rows)
    }

    /// Records a new collection; [`Error::Exists`] if the name is taken.
    pub fn create(&self, spec: &Spec) -> Result<(), Error> {
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO collections (name, model, dimension, metric, index_kind, hnsw_m,
                 hnsw_ef_construction, hnsw_ef_search, created_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (name) DO NOTHING",
            params![
                spec.name,
                spec.model,
                spec.dimension as i64,
                spec.metric.as_str(),
                spec.index.as_str(),
                spec.hnsw.m as i64,
                spec.hnsw.ef_construction as i64,
                spec.hnsw.ef_search as i64,
                spec.created_us
            ],
        );
        match inserted.map_err(|e| failed("creating a collection", e))? {
            0 => Err(Error::Exists(spec.name.clone())),
            _ => Ok(()),
        }
    }

    /// Deletes a collection and its points in one transaction; the points deleted.
    pub fn drop_collection(&self, name: &str) -> Result<u64, Error> {
        self.write("dropping a collection", |tx| {
            let points = tx.execute("DELETE FROM points WHERE collection = ?1", [name])?;
            tx.execute("DELETE FROM collections WHERE name = ?1", [name])?;
            Ok(points as u64)
        })
    }

    /// Inserts or replaces `points` in one transaction.
    pub fn upsert(&self, collection: &str, points: &[NewPoint]) -> Result<(), Error> {
        self.write("upserting points", |tx| {
            let mut statement = tx.prepare_cached(
                "INSERT INTO points (collection, id, vector, payload, text)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (collection, id) DO UPDATE
                 SET vector = excluded.vector, payload = excluded.payload, text = excluded.text",
            )?;
            for p in points {
                statement.execute(params![
                    collection,
                    p.id,
                    to_le_bytes(&p.vector),
                    payload_text(&p.payload),
                    p.text
                ])?;
            }
            Ok(())
        })
    }

    /// Deletes points by id in one transaction; how many existed.
    pub fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, Error> {
        self.write("deleting points", |tx| {
            let mut statement =
                tx.prepare_cached("DELETE FROM points WHERE collection = ?1 AND id = ?2")?;
            let mut deleted = 0;
            for id in ids {
                deleted += statement.execute(params![collection, id])? as u64;
            }
            Ok(deleted)
        })
    }

    /// Copies collection `name` (its row and its points) into a new database file at `path`, in
    /// this schema, in one read of the main database (consistent) and one transaction of the
    /// copy with `synchronous=FULL` (durable when this returns); the points copied.
    pub fn snapshot(&self, name: &str, path: &Path) -> Result<u64, Error> {
        let what = "writing a snapshot";
        let target = path
            .to_str()
            .ok_or_else(|| Error::Internal(format!("{} is not UTF-8", path.display())))?;
        let conn = self.conn();
        conn.execute("ATTACH DATABASE ?1 AS snapshot", [target])
            .map_err(|e| failed(what, e))?;
        let copied = (|| {
            conn.pragma_update(Some("snapshot"), "synchronous", "FULL")?;
            let schema = SCHEMA
                .replace("EXISTS collections", "EXISTS snapshot.collections")
                .replace("EXISTS points", "EXISTS snapshot.points")
                .replace("PRAGMA user_version", "PRAGMA snapshot.user_version");
            conn.execute_batch(&schema)?;
            conn.execute_batch("BEGIN")?;
            conn.execute(
                "INSERT INTO snapshot.collections SELECT * FROM main.collections WHERE name = ?1",
                [name],
            )?;
            let points = conn.execute(
                "INSERT INTO snapshot.points SELECT * FROM main.points WHERE collection = ?1",
                [name],
            )?;
            conn.execute_batch("COMMIT")?;
            Ok(points as u64)
        })();
        if copied.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let detached = conn.execute_batch("DETACH DATABASE snapshot");
        let points = copied.map_err(|e| failed(what, e))?;
        detached.map_err(|e| failed(what, e))?;
        Ok(points)
    }

    /// Runs `work` in one IMMEDIATE transaction (the write lock taken at BEGIN, so a commit
    /// never fails on a lock upgrade) and commits it; on any error nothing is changed.
    fn write<T>(
        &self,
        what: &'static str,
        work: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| failed(what, e))?;
        let out = work(&tx).map_err(|e| failed(what, e))?;
        tx.commit().map_err(|e| failed(what, e))?;
        Ok(out)
    }
}

/// A database error as the client sees it: the database unusable for now (disk full, I/O,
/// locked, read-only, corrupt) is UNAVAILABLE, logged here; anything else is a bug, INTERNAL,
/// logged where it becomes a status.
fn failed(what: &'static str, error: rusqlite::Error) -> Error {
    match error.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::OutOfMemory,
        ) => {
            tracing::error!(%error, "the index database failed while {what}");
            Error::Database(format!("{what}: {error}"))
        }
        _ => Error::Internal(format!("{what}: {error}")),
    }
}

fn to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A JSON object as stored.
pub fn payload_text(payload: &Map<String, Value>) -> String {
    serde_json::to_string(payload).expect("a JSON map always serialises; this is a bug")
}
