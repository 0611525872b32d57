//! Flags of the similarity-search commands.

use clap::Args;

/// Flags of `oneword embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The texts to embed ("-" reads one text from stdin).
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// The text-embedding model (`oneword info` lists it); default: the gateway's.
    #[arg(long)]
    pub model: Option<String>,
    /// Cut a text over the model's token limit instead of refusing it.
    #[arg(long)]
    pub truncate: bool,
    /// Leave the vectors unnormalised (the model's own pipeline normalises MiniLM's).
    #[arg(long)]
    pub raw: bool,
    /// Print every value of each vector, not just the first few.
    #[arg(long)]
    pub full: bool,
    /// With --model naming the served GPT-2: how its hidden states become one vector.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// With --model naming the served GPT-2: which hidden state (0 = the input embeddings;
    /// default the last, after the final layer norm).
    #[arg(long)]
    pub layer: Option<u32>,
}

/// How GPT-2's hidden states are pooled.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PoolingArg {
    Mean,
    Last,
    WeightedMean,
}

/// Flags of `oneword similarity`.
#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// The text to compare the others with.
    pub source: String,
    /// The texts to rank by cosine similarity to the source.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// The text-embedding model; default: the gateway's.
    #[arg(long)]
    pub model: Option<String>,
}

/// Flags of `oneword collection`.
#[derive(Debug, Args)]
pub struct CollectionArgs {
    #[command(subcommand)]
    pub action: CollectionAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum CollectionAction {
    /// Create a collection of texts (embedded with a model) or of vectors.
    Create(CreateArgs),
    /// List the collections.
    List,
    /// Describe one collection.
    Get { name: String },
    /// Delete a collection and all its points.
    Drop { name: String },
    /// Copy a collection into a SQLite file on the index's disk (embedded store only).
    Snapshot { name: String },
}

/// How closeness is scored.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MetricArg {
    Cosine,
    Dot,
    L2,
}

/// How a collection is searched.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IndexArg {
    /// Exact below the index's threshold, HNSW above it.
    Auto,
    Exact,
    Hnsw,
}

/// Flags of `oneword collection create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// 1 to 64 characters of [A-Za-z0-9_-].
    pub name: String,
    /// The text model whose vectors it holds; default: the gateway's text model (unless
    /// --dimension alone makes it a collection of vectors).
    #[arg(long)]
    pub model: Option<String>,
    /// Length of the vectors, for a collection of vectors only.
    #[arg(long)]
    pub dimension: Option<u32>,
    #[arg(long, value_enum, default_value_t = MetricArg::Cosine)]
    pub metric: MetricArg,
    #[arg(long, value_enum, default_value_t = IndexArg::Auto)]
    pub index: IndexArg,
    /// HNSW's links per node.
    #[arg(long)]
    pub m: Option<u32>,
    /// HNSW's candidate list while building.
    #[arg(long)]
    pub ef_construction: Option<u32>,
    /// Drop a collection of the same name first.
    #[arg(long)]
    pub replace: bool,
}

/// Flags of `oneword upsert`.
#[derive(Debug, Args)]
pub struct UpsertArgs {
    /// The collection to write to.
    pub collection: String,
    /// The points: JSON lines `{"id", "text" | "vector", "payload"}`, or with --lines one text
    /// per line ("-" reads stdin).
    #[arg(long, value_name = "FILE")]
    pub file: String,
    /// Each non-empty line is a text; its id is its line number, its payload {"line": N}.
    #[arg(long)]
    pub lines: bool,
    /// Points per request; each request is durable when answered.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

/// Flags of `oneword search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The collection to search.
    pub collection: String,
    /// The query text, embedded with the collection's model.
    #[arg(required_unless_present_any = ["id", "vector"])]
    pub query: Option<String>,
    /// Search near a stored point instead (itself left out).
    #[arg(long, conflicts_with_all = ["query", "vector"])]
    pub id: Option<String>,
    /// Search near a vector given as a JSON array.
    #[arg(long, conflicts_with = "query")]
    pub vector: Option<String>,
    /// How many hits.
    #[arg(long, default_value_t = 10)]
    pub top: u32,
    /// Only points whose payload passes, as JSON: {"must": [{"key": "line", "range": {"lt": 100}}]}
    /// (must / should / must_not; match {keyword | integer | boolean}, any {keywords | integers},
    /// range {gt, gte, lt, lte}).
    #[arg(long)]
    pub filter: Option<String>,
    /// Only hits scoring at least this (cosine, dot) or at most this distance (L2).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Score every point, whatever the collection's index.
    #[arg(long)]
    pub exact: bool,
    /// HNSW's search list size for this query.
    #[arg(long)]
    pub ef: Option<u32>,
}
