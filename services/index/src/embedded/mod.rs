//! The embedded backend: SQLite is the store of record ([`sqlite`]), and each collection's
//! search structures ([`Indexes`]) are derived from its rows at start-up and kept in step with
//! every committed write.
//!
//! A write holds its collection's writer lock from before its transaction until its changes
//! are in memory, so the rows in memory are always those committed, in commit order; searches
//! take only the read side of the structures' lock and are not held up by the fsync. Anything
//! heavier than applying a write (compaction, building or dropping a graph) is built beside
//! the live structures and swapped in, so that searches go on meanwhile; only the writes to
//! that collection wait for it.

pub mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::Instant;

use anyhow::Context;

use crate::backend::Backend;
use crate::error::Error;
use crate::indexes::{Indexes, Policy};
use crate::types::{Found, Info, NewPoint, Record, Search, Selector, Spec, With};
use sqlite::Sqlite;

/// The database file in the data directory.
pub const DATABASE_FILE: &str = "index.sqlite";

/// See the module documentation.
pub struct Embedded {
    /// The data directory: the database, and `snapshots/`.
    dir: PathBuf,
    db: Sqlite,
    policy: Policy,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Serialises Create and Drop, which change the set of names.
    names: Mutex<()>,
}

struct Collection {
    spec: Spec,
    /// Held by every write; true once the collection is dropped, so that a write that waited
    /// for the drop fails instead of writing into nothing.
    writer: Mutex<bool>,
    indexes: RwLock<Indexes>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

impl Collection {
    fn info(&self, backend: &'static str) -> Info {
        let indexes = read(&self.indexes);
        Info {
            spec: self.spec.clone(),
            points: indexes.rows.live_count() as u64,
            searched_with: indexes.searched_with(),
            backend,
        }
    }

    /// Runs `write` (the transaction) under the writer lock, then applies its result to the
    /// structures with `apply`, then does any rebuild that became due.
    fn write<T, U>(
        &self,
        policy: Policy,
        write: impl FnOnce(&Indexes) -> Result<T, Error>,
        apply: impl FnOnce(&mut Indexes, T) -> U,
    ) -> Result<U, Error> {
        let dropped = lock(&self.writer);
        if *dropped {
            return Err(Error::NoCollection(self.spec.name.clone()));
        }
        let written = write(&read(&self.indexes))?;
        let out = apply(
            &mut self.indexes.write().unwrap_or_else(PoisonError::into_inner),
            written,
        );
        if read(&self.indexes).needs_rebuild(policy) {
            let started = Instant::now();
            let fresh = read(&self.indexes).rebuilt(policy);
            tracing::info!(collection = %self.spec.name, points = fresh.rows.live_count(), searched_with = ?fresh.searched_with(), elapsed = ?started.elapsed(), "rebuilt the search structures");
            *self.indexes.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        }
        drop(dropped);
        Ok(out)
    }
}

impl Embedded {
    /// Opens (creating if need be) the database in `dir` and loads every collection into
    /// memory, building the graphs `policy` asks for.
    pub fn open(dir: &Path, policy: Policy) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let db = Sqlite::open(&dir.join(DATABASE_FILE))?;
        let mut collections = BTreeMap::new();
        for spec in db.collections()? {
            let started = Instant::now();
            let rows = db
                .rows(&spec)
                .with_context(|| format!("loading collection `{}`", spec.name))?;
            let indexes = Indexes::build(&spec, rows, policy);
            tracing::info!(collection = %spec.name, points = indexes.rows.live_count(), searched_with = ?indexes.searched_with(), elapsed = ?started.elapsed(), "loaded");
            collections.insert(
                spec.name.clone(),
                Arc::new(Collection {
                    spec,
                    writer: Mutex::new(false),
                    indexes: RwLock::new(indexes),
                }),
            );
        }
        Ok(Embedded {
            dir: dir.to_path_buf(),
            db,
            policy,
            collections: RwLock::new(collections),
            names: Mutex::new(()),
        })
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>, Error> {
        read(&self.collections)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoCollection(name.to_string()))
    }

    /// Points stored in every collection, for the metrics.
    pub fn total_points(&self) -> u64 {
        read(&self.collections)
            .values()
            .map(|c| read(&c.indexes).rows.live_count() as u64)
            .sum()
    }
}

impl Backend for Embedded {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn create(&self, spec: Spec) -> Result<Info, Error> {
        let _names = lock(&self.names);
        if read(&self.collections).contains_key(&spec.name) {
            return Err(Error::Exists(spec.name));
        }
        self.db.create(&spec)?;
        let indexes = Indexes::build(&spec, crate::rows::Rows::new(spec.dimension), self.policy);
        let collection = Arc::new(Collection {
            spec,
            writer: Mutex::new(false),
            indexes: RwLock::new(indexes),
        });
        let info = collection.info(self.name());
        self.collections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(info.spec.name.clone(), collection);
        Ok(info)
    }

    fn get(&self, name: &str) -> Result<Info, Error> {
        Ok(self.collection(name)?.info(self.name()))
    }

    fn list(&self) -> Result<Vec<Info>, Error> {
        Ok(read(&self.collections)
            .values()
            .map(|c| c.info(self.name()))
            .collect())
    }

    fn drop_collection(&self, name: &str) -> Result<u64, Error> {
        let _names = lock(&self.names);
        let collection = self.collection(name)?;
        let mut dropped = lock(&collection.writer);
        let points = self.db.drop_collection(name)?;
        *dropped = true;
        self.collections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(points)
    }

    fn upsert(&self, spec: &Spec, points: Vec<NewPoint>) -> Result<u64, Error> {
        let collection = self.collection(&spec.name)?;
        if collection.spec != *spec {
            return Err(Error::NoCollection(spec.name.clone()));
        }
        let n = points.len() as u64;
        collection.write(
            self.policy,
            |_| self.db.upsert(&spec.name, &points).map(|()| points),
            Indexes::upsert,
        )?;
        Ok(n)
    }

    fn delete(&self, name: &str, selector: &Selector) -> Result<u64, Error> {
        let collection = self.collection(name)?;
        collection.write(
            self.policy,
            |indexes| {
                let ids = match selector {
                    Selector::Ids(ids) => ids.clone(),
                    Selector::Filter(filter) => indexes.matching(filter),
                };
                let deleted = self.db.delete(name, &ids)?;
                Ok((ids, deleted))
            },
            |indexes, (ids, deleted)| {
                indexes.delete(&ids);
                deleted
            },
        )
    }

    fn search(&self, name: &str, search: &Search) -> Result<Found, Error> {
        let collection = self.collection(name)?;
        let indexes = read(&collection.indexes);
        indexes.search(name, search)
    }

    fn search_batch(&self, name: &str, searches: &[Search]) -> Result<Vec<Found>, Error> {
        let collection = self.collection(name)?;
        let indexes = read(&collection.indexes);
        indexes.search_batch(name, searches)
    }

    fn snapshot(&self, name: &str) -> Result<(PathBuf, u64), Error> {
        let collection = self.collection(name)?;
        // Writes to the collection wait, so the copy is one state of it.
        let _writer = lock(&collection.writer);
        let dir = self.dir.join("snapshots");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Database(format!("creating {}: {e}", dir.display())))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let path = dir.join(format!("{name}-{stamp}.sqlite"));
        let points = self.db.snapshot(name, &path)?;
        Ok((path, points))
    }

    fn retrieve(&self, name: &str, ids: &[String], with: With) -> Result<Vec<Record>, Error> {
        let collection = self.collection(name)?;
        let indexes = read(&collection.indexes);
        let rows = &indexes.rows;
        Ok(ids
            .iter()
            .filter_map(|id| rows.row_of(id))
            .map(|row| rows.record(row, 0.0, with))
            .collect())
    }
}
