//! The seam between the service and where collections live: the embedded backend
//! ([`crate::embedded::Embedded`]: SQLite rows, search structures in memory, one replica) or
//! PostgreSQL + pgvector ([`crate::pgvector::Pgvector`]: the database stores and searches, and
//! any number of replicas share it). Both answer alike; the conformance suite holds them to it.
//!
//! Everything above it is shared by every backend: validation (`convert`), embedding texts
//! (the embedder), and the error mapping. Calls block: the service runs them on its bounded
//! worker threads, never on the async ones.

use crate::error::Error;
use crate::types::{Found, Info, NewPoint, Record, Search, Selector, Spec, With};

/// See the module documentation.
pub trait Backend: Send + Sync + 'static {
    /// "sqlite" or "pgvector", as [`Info::backend`] reports it.
    fn name(&self) -> &'static str;

    /// Creates a collection; [`Error::Exists`] if the name is taken.
    fn create(&self, spec: Spec) -> Result<Info, Error>;

    /// Describes one collection; [`Error::NoCollection`] if there is none by that name.
    fn get(&self, name: &str) -> Result<Info, Error>;

    /// What [`Backend::get`] says of the collection without its point count, which a backend
    /// may have to count (every call that names a collection asks for this first).
    fn spec(&self, name: &str) -> Result<Spec, Error> {
        self.get(name).map(|info| info.spec)
    }

    /// Every collection, by name.
    fn list(&self) -> Result<Vec<Info>, Error>;

    /// Deletes a collection and its points at once; the points deleted with it.
    fn drop_collection(&self, name: &str) -> Result<u64, Error>;

    /// Inserts or replaces `points`, validated against `spec`, all or none, durable when it
    /// returns. [`Error::NoCollection`] if `spec` is no longer the collection's (it was
    /// dropped, or dropped and created again, since the caller read it).
    fn upsert(&self, spec: &Spec, points: Vec<NewPoint>) -> Result<u64, Error>;

    /// Deletes the selected points at once, durable when it returns; how many existed.
    fn delete(&self, name: &str, selector: &Selector) -> Result<u64, Error>;

    /// The points nearest a query, nearest first, equal scores by id.
    fn search(&self, name: &str, search: &Search) -> Result<Found, Error>;

    /// Several searches of one collection, answered in order as [`Backend::search`] answers
    /// each; a backend may share work among them.
    fn search_batch(&self, name: &str, searches: &[Search]) -> Result<Vec<Found>, Error> {
        searches.iter().map(|s| self.search(name, s)).collect()
    }

    /// Copies one collection into a new file under the data directory; where, and its points.
    /// Only a backend that keeps its own files can.
    fn snapshot(&self, name: &str) -> Result<(std::path::PathBuf, u64), Error> {
        let _ = name;
        Err(Error::FailedPrecondition(format!(
            "the {} backend takes no snapshots: back its database up with its own tools (pg_dump)",
            self.name()
        )))
    }

    /// Points by id, in the order asked; ids not stored are left out.
    fn retrieve(&self, name: &str, ids: &[String], with: With) -> Result<Vec<Record>, Error>;
}
