//! The database's layout. One `collections` table describes every collection; each collection
//! keeps its points in a table of its own, `points_<id>`, because an HNSW index needs one fixed
//! dimension (`vector(D)`) per indexed column, and because dropping a collection is then
//! dropping a table (its index pages go at once, no vacuum of millions of rows).
//!
//! The points table is named by the collection row's generated `id`, not by its name: a name
//! may be 64 characters and PostgreSQL cuts identifiers at 63 bytes (so two long names could
//! collide), and a table named by number needs no trust in any client-given text. The name
//! maps to the table through the `collections` row, in the transaction that uses it; a
//! collection dropped and created again gets a new id and so a new table.

use postgres::Transaction;

use super::pool::{failed, Access};
use crate::error::Error;
use crate::types::{IndexKind, Metric, Spec};

/// Key of the transaction-scoped advisory lock under which replicas create the schema, so
/// that two starting together do not race on `CREATE TABLE IF NOT EXISTS` ("onewordi").
const SCHEMA_LOCK: i64 = 0x6f6e_6577_6f72_6469;

/// The version of this layout, kept in `index_schema`.
const VERSION: i32 = 1;

/// The oldest pgvector with iterative index scans (`hnsw.iterative_scan`), which filtered
/// searches rely on.
const MIN_PGVECTOR: (u32, u32) = (0, 8);

/// pgvector indexes `vector` columns of at most this many dimensions.
pub const MAX_INDEXED_DIMENSION: usize = 2000;

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS index_schema (version integer PRIMARY KEY);
CREATE TABLE IF NOT EXISTS collections (
    name text COLLATE "C" PRIMARY KEY,
    -- names the points table, points_<id>; new for every collection ever created
    id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    model text NOT NULL,
    dimension integer NOT NULL CHECK (dimension > 0),
    metric text NOT NULL CHECK (metric IN ('cosine', 'dot', 'l2')),
    index_kind text NOT NULL CHECK (index_kind IN ('auto', 'exact', 'hnsw')),
    hnsw_m integer NOT NULL,
    hnsw_ef_construction integer NOT NULL,
    hnsw_ef_search integer NOT NULL,
    created_us bigint NOT NULL
);
"#;

/// Creates whatever of the layout is missing (idempotent), under the advisory lock; fails
/// with what to do when pgvector is missing or too old, or the layout is newer than this build.
pub fn ensure(tx: &mut Transaction<'_>) -> Result<(), Error> {
    let what = "creating the index's tables";
    let sql = |tx: &mut Transaction<'_>, sql: &str| {
        tx.batch_execute(sql)
            .map_err(|e| failed(what, Access::Write, e))
    };
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(|e| failed(what, Access::Write, e))?;
    let installed: Option<String> = tx
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .map_err(|e| failed(what, Access::Write, e))?
        .map(|row| row.get(0));
    let version = match installed {
        Some(v) => v,
        None => {
            tx.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                .map_err(|e| match e.as_db_error() {
                    Some(db) => Error::FailedPrecondition(format!(
                        "the database has no pgvector extension and this user cannot create it \
                         ({}): run `CREATE EXTENSION vector` as a superuser, or install pgvector \
                         0.8 or newer on the server",
                        db.message()
                    )),
                    None => failed(what, Access::Write, e),
                })?;
            tx.query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                &[],
            )
            .map_err(|e| failed(what, Access::Write, e))?
            .get(0)
        }
    };
    if parse_version(&version).is_none_or(|v| v < MIN_PGVECTOR) {
        return Err(Error::FailedPrecondition(format!(
            "pgvector {version} is installed; the index needs {}.{} or newer (iterative index \
             scans): `ALTER EXTENSION vector UPDATE`",
            MIN_PGVECTOR.0, MIN_PGVECTOR.1
        )));
    }
    sql(tx, TABLES)?;
    tx.execute(
        "INSERT INTO index_schema (version) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&VERSION],
    )
    .map_err(|e| failed(what, Access::Write, e))?;
    let newest: i32 = tx
        .query_one("SELECT max(version) FROM index_schema", &[])
        .map_err(|e| failed(what, Access::Write, e))?
        .get(0);
    if newest > VERSION {
        return Err(Error::FailedPrecondition(format!(
            "the database holds the index's layout version {newest}; this build knows {VERSION}"
        )));
    }
    Ok(())
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// How a search without `exact` runs: EXACT collections scan; HNSW and AUTO ones walk the
/// HNSW index that PostgreSQL keeps up to date as rows are written (there is no rebuild to
/// put off, so AUTO needs no threshold), except past the dimensions pgvector can index.
pub fn searched_with(spec: &Spec) -> IndexKind {
    match spec.index {
        IndexKind::Exact => IndexKind::Exact,
        IndexKind::Auto if spec.dimension > MAX_INDEXED_DIMENSION => IndexKind::Exact,
        IndexKind::Auto | IndexKind::Hnsw => IndexKind::Hnsw,
    }
}

/// A collection's points table, quoted.
pub fn table(id: i64) -> String {
    quote_ident(&format!("points_{id}"))
}

/// An identifier in double quotes, any `"` doubled: safe whatever the text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// pgvector's operator class for a metric's distance operator.
fn opclass(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => "vector_cosine_ops",
        Metric::Dot => "vector_ip_ops",
        Metric::L2 => "vector_l2_ops",
    }
}

/// The statements that create the points table of the collection `id` (DDL takes no bound
/// parameters; every value in it is a number this code formats). Ids sort bytewise (`COLLATE
/// "C"`), as the embedded backend sorts them, whatever the database's collation.
pub fn create_points(id: i64, spec: &Spec) -> String {
    let table = table(id);
    let mut sql = format!(
        "CREATE TABLE {table} (
            id text COLLATE \"C\" PRIMARY KEY,
            embedding vector({dimension}) NOT NULL,
            payload jsonb NOT NULL DEFAULT '{{}}',
            text text
        );
        CREATE INDEX {gin} ON {table} USING gin (payload jsonb_path_ops);",
        dimension = spec.dimension,
        gin = quote_ident(&format!("points_{id}_payload")),
    );
    if searched_with(spec) == IndexKind::Hnsw {
        // pgvector requires ef_construction ≥ 2·m; the embedded graph does not, so a smaller
        // one is raised here rather than refused.
        sql.push_str(&format!(
            "CREATE INDEX {hnsw} ON {table} USING hnsw (embedding {ops}) \
             WITH (m = {m}, ef_construction = {ef});",
            hnsw = quote_ident(&format!("points_{id}_hnsw")),
            ops = opclass(spec.metric),
            m = spec.hnsw.m,
            ef = spec.hnsw.ef_construction.max(2 * spec.hnsw.m),
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::HnswParams;

    #[test]
    fn identifiers_are_quoted_and_versions_compared() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(table(7), "\"points_7\"");
        assert_eq!(parse_version("0.8.6"), Some((0, 8)));
        assert!(parse_version("0.7.4").unwrap() < MIN_PGVECTOR);
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn exact_collections_get_no_graph_and_auto_ones_one_within_pgvectors_limit() {
        let spec = |index, dimension| Spec {
            name: "c".into(),
            model: String::new(),
            dimension,
            metric: Metric::Dot,
            index,
            hnsw: HnswParams {
                m: 48,
                ef_construction: 16,
                ef_search: 10,
            },
            created_us: 0,
        };
        assert!(!create_points(1, &spec(IndexKind::Exact, 8)).contains("hnsw"));
        let sql = create_points(1, &spec(IndexKind::Auto, 8));
        assert!(
            sql.contains(
                "USING hnsw (embedding vector_ip_ops) WITH (m = 48, ef_construction = 96)"
            ),
            "{sql}"
        );
        assert_eq!(
            searched_with(&spec(IndexKind::Auto, 4096)),
            IndexKind::Exact
        );
        assert!(!create_points(1, &spec(IndexKind::Auto, 4096)).contains("hnsw"));
    }
}
