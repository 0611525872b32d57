//! The conformance suite: one set of cases, written once against the gRPC contract, run against
//! every way the index can search. A new backend or index joins with one `conformance!` line:
//! the embedded backend searched exactly and through its HNSW graph, and PostgreSQL + pgvector
//! (a real server, `common::pg`; each test in a database of its own) through its HNSW index.

#[path = "conformance/cases.rs"]
mod cases;
mod common;
#[path = "conformance/filters.rs"]
mod filters;
#[path = "conformance/scale.rs"]
mod scale;

use common::{Client, Index, Metric};
use oneword_index::Config;
use oneword_proto::index::v1 as pb;

/// One way of running the suite.
#[derive(Clone, Copy)]
pub struct Flavour {
    /// The index every collection of the suite is created with.
    pub index: pb::IndexKind,
    /// Whether a search without `exact` may be approximate (so it is held to recall, not
    /// equality, unless its answer says it was exact).
    pub approximate: bool,
    /// Adjusts the index's configuration (the backend, its database).
    pub configure: fn(&mut Config),
    /// What `CollectionInfo.backend` says.
    pub backend: &'static str,
}

const EXACT: Flavour = Flavour {
    index: pb::IndexKind::Exact,
    approximate: false,
    configure: |_| {},
    backend: "sqlite",
};

const HNSW: Flavour = Flavour {
    index: pb::IndexKind::Hnsw,
    approximate: true,
    configure: |_| {},
    backend: "sqlite",
};

const PGVECTOR: Flavour = Flavour {
    index: pb::IndexKind::Hnsw,
    approximate: true,
    configure: |config| config.postgres = common::pg::database(),
    backend: "pgvector",
};

/// A started index of this flavour, and the directory its data lives in.
pub struct Running {
    pub client: Client,
    pub flavour: Flavour,
    _index: Index,
    _dir: tempfile::TempDir,
}

impl Flavour {
    pub async fn start(self) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_data_dir(dir.path());
        (self.configure)(&mut config);
        let index = Index::start(config).await;
        Running {
            client: index.client.clone(),
            flavour: self,
            _index: index,
            _dir: dir,
        }
    }
}

impl Running {
    /// Creates a collection of vectors of `dimension` under `metric`, with this flavour's
    /// index and small HNSW parameters (the suite's graphs are small).
    pub async fn create(
        &mut self,
        name: &str,
        dimension: u32,
        metric: Metric,
    ) -> pb::CollectionInfo {
        self.client
            .create(pb::CreateRequest {
                name: name.into(),
                dimension: Some(dimension),
                metric: metric.pb(),
                index: self.flavour.index as i32,
                hnsw: Some(pb::HnswParams {
                    m: Some(16),
                    ef_construction: Some(64),
                    ef_search: Some(64),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn upsert(&mut self, collection: &str, points: Vec<pb::Point>) -> u64 {
        self.client
            .upsert(pb::UpsertRequest {
                collection: collection.into(),
                points,
            })
            .await
            .unwrap()
            .into_inner()
            .upserted
    }

    pub async fn search(&mut self, request: pb::SearchRequest) -> pb::SearchResponse {
        self.client.search(request).await.unwrap().into_inner()
    }

    pub async fn retrieve(&mut self, collection: &str, ids: &[&str]) -> Vec<pb::Record> {
        self.client
            .retrieve(pb::RetrieveRequest {
                collection: collection.into(),
                ids: ids.iter().map(|s| s.to_string()).collect(),
                with_payload: true,
                with_vector: true,
            })
            .await
            .unwrap()
            .into_inner()
            .points
    }

    pub async fn points(&mut self, collection: &str) -> u64 {
        self.client
            .get(pb::CollectionRef {
                name: collection.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .points
    }
}

/// Runs every case against one flavour, as a module of tests.
macro_rules! conformance {
    ($module:ident, $flavour:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn upsert_and_overwrite() {
                cases::upsert_and_overwrite($flavour.start().await).await
            }
            #[tokio::test]
            async fn delete_by_id_and_by_filter() {
                cases::delete_by_id_and_by_filter($flavour.start().await).await
            }
            #[tokio::test]
            async fn every_filter_operator() {
                filters::every_filter_operator($flavour.start().await).await
            }
            #[tokio::test]
            async fn top_k_ties_go_by_id() {
                cases::top_k_ties_go_by_id($flavour.start().await).await
            }
            #[tokio::test]
            async fn score_threshold_in_each_metric() {
                cases::score_threshold_in_each_metric($flavour.start().await).await
            }
            #[tokio::test]
            async fn dimension_mismatch_is_refused_and_changes_nothing() {
                cases::dimension_mismatch_is_refused_and_changes_nothing($flavour.start().await)
                    .await
            }
            #[tokio::test]
            async fn non_finite_values_are_refused() {
                cases::non_finite_values_are_refused($flavour.start().await).await
            }
            #[tokio::test]
            async fn unknown_collection_is_not_found() {
                cases::unknown_collection_is_not_found($flavour.start().await).await
            }
            #[tokio::test]
            async fn duplicate_name_and_drop() {
                cases::duplicate_name_and_drop($flavour.start().await).await
            }
            #[tokio::test]
            async fn search_by_id_excludes_the_point() {
                cases::search_by_id_excludes_the_point($flavour.start().await).await
            }
            #[tokio::test]
            async fn exact_results_equal_brute_force_in_every_metric() {
                scale::exact_results_equal_brute_force_in_every_metric($flavour.start().await).await
            }
            #[tokio::test]
            async fn round_trip_of_10k_points() {
                scale::round_trip_of_10k_points($flavour.start().await).await
            }
        }
    };
}

conformance!(exact, EXACT);
conformance!(hnsw, HNSW);
conformance!(pgvector, PGVECTOR);
