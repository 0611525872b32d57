//! The index's domain values, validated: what a collection is, what is stored in it and what a
//! search asks for. No wire types here; `convert` builds these from the protos.

use serde_json::{Map, Value};

use crate::filter::Filter;

/// How closeness is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Cosine similarity. Vectors are stored L2-normalised, so it is their dot product.
    Cosine,
    /// Dot product of the vectors as given.
    Dot,
    /// Euclidean distance; lower is nearer.
    L2,
}

impl Metric {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L2 => "l2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Metric::Cosine, Metric::Dot, Metric::L2]
            .into_iter()
            .find(|m| m.as_str() == s)
    }

    /// Whether a higher score is nearer (cosine, dot) rather than a lower one (L2).
    pub fn higher_is_nearer(self) -> bool {
        self != Metric::L2
    }
}

/// How a collection is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// Exact below the service's HNSW threshold, HNSW at or above it.
    Auto,
    Exact,
    Hnsw,
}

impl IndexKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Auto => "auto",
            IndexKind::Exact => "exact",
            IndexKind::Hnsw => "hnsw",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [IndexKind::Auto, IndexKind::Exact, IndexKind::Hnsw]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// HNSW's parameters, with the defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node above the base layer; the base layer keeps twice as many.
    pub m: usize,
    pub ef_construction: usize,
    /// The search list size when a request gives none.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 100,
        }
    }
}

/// Everything fixed about a collection when it is created.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub name: String,
    /// The embedder's text model, empty for vectors only.
    pub model: String,
    pub dimension: usize,
    pub metric: Metric,
    pub index: IndexKind,
    pub hnsw: HnswParams,
    /// Creation time in microseconds since the Unix epoch: it tells a collection from an
    /// earlier one of the same name that was dropped in between.
    pub created_us: i64,
}

/// A collection as described to a client.
#[derive(Clone, Debug)]
pub struct Info {
    pub spec: Spec,
    /// Points stored.
    pub points: u64,
    /// How a search without `exact` runs now.
    pub searched_with: IndexKind,
    /// "sqlite" or "pgvector".
    pub backend: &'static str,
}

/// A point ready to be stored: its vector has the collection's dimension, is finite, and is
/// normalised for a cosine collection.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPoint {
    pub id: String,
    pub vector: Vec<f32>,
    /// Always a JSON object.
    pub payload: Map<String, Value>,
    /// The text the vector was embedded from, if any.
    pub text: Option<String>,
}

/// Which points a Delete removes.
#[derive(Clone, Debug)]
pub enum Selector {
    Ids(Vec<String>),
    Filter(Filter),
}

/// Where a search starts from.
#[derive(Clone, Debug)]
pub enum Query {
    /// A text, which the service embeds into a [`Query::Vector`] before any backend sees it.
    Text(String),
    /// A vector of the collection's dimension (normalised for cosine).
    Vector(Vec<f32>),
    /// A stored point: its neighbours, itself excluded.
    Id(String),
}

/// A search, validated.
#[derive(Clone, Debug)]
pub struct Search {
    pub query: Query,
    pub top_k: usize,
    pub filter: Option<Filter>,
    /// Keep hits scoring at least this (cosine, dot) or at most this distance (L2).
    pub score_threshold: Option<f32>,
    pub with_payload: bool,
    pub with_vector: bool,
    /// Scan every point whatever the index.
    pub exact: bool,
    /// The HNSW search list size; `None` for the collection's.
    pub ef_search: Option<usize>,
}

impl Search {
    /// Whether `score` passes the threshold under `metric`.
    pub fn passes(&self, metric: Metric, score: f32) -> bool {
        match self.score_threshold {
            None => true,
            Some(t) if metric.higher_is_nearer() => score >= t,
            Some(t) => score <= t,
        }
    }
}

/// What Retrieve and Search return of each point.
#[derive(Clone, Copy, Debug, Default)]
pub struct With {
    pub payload: bool,
    pub vector: bool,
}

/// One stored point as returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: String,
    /// Similarity (cosine, dot) or distance (L2); 0 in Retrieve.
    pub score: f32,
    /// The payload as compact JSON, with `with_payload`.
    pub payload: Option<String>,
    pub text: Option<String>,
    pub vector: Option<Vec<f32>>,
}

/// A search's answer.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// Nearest first; equal scores by id.
    pub hits: Vec<Record>,
    /// Whether every candidate point was scored (recall 1).
    pub exact: bool,
    /// Points whose distance to the query was computed.
    pub candidates_scanned: u64,
}
