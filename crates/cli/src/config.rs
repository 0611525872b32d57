//! Command-line flags. The only place the CLI reads its environment.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod instruments;
mod search;
mod sessions;

pub use instruments::{
    AttentionArgs, CompareArgs, CorpusArgs, EmbeddingModuleArgs, LensArgs, NearestArgs,
    PictureArgs, RandomWordsArgs, RanksArgs, ScoreArgs, SentenceArgs, WeightsArgs, WordsArgs,
};
pub use search::{
    CollectionAction, CollectionArgs, CreateArgs, EmbedArgs, IndexArg, MetricArg, PoolingArg,
    SearchArgs, SimilarityArgs, UpsertArgs,
};
pub use sessions::{BranchArgs, SessionAction, SessionArgs};

/// Help heading of the flags every command takes.
const GLOBAL: &str = "Global options";

/// Default gateway address (the gateway's default port).
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:50050";

const JSON_HELP: &str = "\
JSON output (--json): each response message in the proto3 JSON mapping, so any protobuf library
can parse it back: the proto field names (snake_case); every scalar and repeated field present,
absent sub-messages left out; enums by name (\"FINISH_REASON_LENGTH\"); 64-bit integers (seed,
timings) as strings; bytes (token pieces, tensor data) as base64; non-finite floats as \"NaN\",
\"Infinity\" or \"-Infinity\". `generate` prints one GenerateStreamResponse per line as the chunks
arrive (one GenerateResponse with --no-stream). Errors still go to stderr as text.";

/// Ask GPT-2 for the next word, one word at a time, through the oneword gateway.
#[derive(Debug, Parser)]
#[command(name = "oneword", version, after_long_help = JSON_HELP)]
pub struct Cli {
    /// Gateway address: `http://host:port`, or `host:port`.
    #[arg(
        long,
        global = true,
        env = "ONEWORD_GATEWAY",
        default_value = DEFAULT_GATEWAY,
        help_heading = GLOBAL
    )]
    pub gateway: String,

    /// API key, sent as `authorization: Bearer <key>` (for a gateway started with one).
    #[arg(
        long,
        global = true,
        env = "ONEWORD_API_KEY",
        hide_env_values = true,
        help_heading = GLOBAL
    )]
    pub api_key: Option<String>,

    /// Print the responses as JSON for scripts (the shape is at the end of `--help`).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Give up on a request after this many seconds; the gateway gets it as the gRPC deadline.
    /// Default: no deadline.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        value_parser = parse_seconds,
        help_heading = GLOBAL
    )]
    pub timeout: Option<Duration>,

    /// When to use colour and dim text: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = ColorChoice::Auto,
        help_heading = GLOBAL
    )]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

/// When to style output with ANSI escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to style a stream, given whether it is a terminal.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            // https://no-color.org: any non-empty NO_COLOR turns colour off.
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The essay's table: the most likely next tokens after a prompt, with their probabilities.
    #[command(after_long_help = JSON_HELP)]
    Next(NextArgs),
    /// Continue a prompt, streaming the text as it is generated.
    #[command(long_about = GENERATE_ABOUT, after_long_help = JSON_HELP)]
    Generate(GenerateArgs),
    /// End a running generation by its request id, from any connection: its completions finish
    /// as "cancelled" with what they had.
    Cancel(CancelArgs),
    /// What-if branches: prefill a prompt once as a client session and continue it at several
    /// temperatures, the branches side by side; none of them prefills the prompt again.
    #[command(after_long_help = JSON_HELP)]
    Branch(BranchArgs),
    /// Client sessions: create (prefill a prompt and keep it), fork, release. `generate` and
    /// `next` continue one with `--session`.
    #[command(after_long_help = JSON_HELP)]
    Session(SessionArgs),
    /// Split text into GPT-2 tokens: index, id, the token's exact bytes, and its byte range.
    #[command(after_long_help = JSON_HELP)]
    Tokenize(TokenizeArgs),
    /// Describe the model and the request limits.
    #[command(after_long_help = JSON_HELP)]
    Info,
    /// The essay's temperature comparison: the greedy continuation beside samples at higher
    /// temperatures, generated together from one prefill of the prompt.
    #[command(after_long_help = JSON_HELP)]
    Compare(CompareArgs),
    /// The rank/probability curve of the next token: every token's probability against its rank
    /// on log-log axes, with the fitted power law (the essay's straight line).
    #[command(after_long_help = JSON_HELP)]
    Ranks(RanksArgs),
    /// Score a text: each token's probability and rank given the tokens before it, and the
    /// text's perplexity, from one forward pass.
    #[command(after_long_help = JSON_HELP)]
    Score(ScoreArgs),
    /// The logit lens: the next tokens read from every layer's hidden state, from the
    /// embeddings up to the model's own prediction.
    #[command(after_long_help = JSON_HELP)]
    Lens(LensArgs),
    /// Attention weights of one layer's heads for a prompt (a heatmap per head with --png).
    #[command(after_long_help = JSON_HELP)]
    Attention(AttentionArgs),
    /// The embedding module for a prompt, split into its token part and its position part.
    #[command(after_long_help = JSON_HELP)]
    EmbeddingModule(EmbeddingModuleArgs),
    /// Word embeddings: each word's vector, the cosine similarity of every pair, and (with
    /// --png) a 2-D map of the words (their first two principal components).
    #[command(visible_alias = "embed-map", after_long_help = JSON_HELP)]
    Words(WordsArgs),
    /// The tokens whose embedding vectors are nearest a word's (cosine, whole vocabulary).
    #[command(after_long_help = JSON_HELP)]
    Nearest(NearestArgs),
    /// How often each letter a-z occurs in the n-gram corpus (a bar chart with --png).
    #[command(after_long_help = JSON_HELP)]
    Letters(CorpusArgs),
    /// The probability of each letter given the one before it (the essay's "q is followed by
    /// u" picture; a heatmap with --png).
    #[command(after_long_help = JSON_HELP)]
    LetterPairs(CorpusArgs),
    /// "Random words" from letter n-gram models of the corpus: for each n, words that look more
    /// like English as n grows.
    #[command(after_long_help = JSON_HELP)]
    RandomWords(RandomWordsArgs),
    /// A sentence from the corpus's word n-gram model, starting with a word.
    #[command(after_long_help = JSON_HELP)]
    Sentence(SentenceArgs),
    /// A block's weight matrix as an image (optionally smoothed), or the histograms of every
    /// block's weight values.
    #[command(after_long_help = JSON_HELP)]
    Weights(WeightsArgs),
    /// Text embeddings for similarity search (all-MiniLM-L6-v2 by default): each text's token
    /// count and vector. With --model naming the served GPT-2: its pooled hidden states.
    #[command(after_long_help = JSON_HELP)]
    Embed(EmbedArgs),
    /// Rank texts by the cosine similarity of their embeddings to a source text. With --json:
    /// one object {"source", "texts", "scores"} in the order given.
    Similarity(SimilarityArgs),
    /// Collections of embedded points: create, list, get, drop.
    #[command(after_long_help = JSON_HELP)]
    Collection(CollectionArgs),
    /// Add or replace points in a collection from a file, in durable batches, with progress.
    #[command(after_long_help = JSON_HELP)]
    Upsert(UpsertArgs),
    /// The points of a collection nearest a text (or a vector, or a stored point).
    #[command(after_long_help = JSON_HELP)]
    Search(SearchArgs),
}

const GENERATE_ABOUT: &str = "\
Continue a prompt, streaming the text as it is generated.

With -n 1 (the default) the text goes to stdout as it arrives. With -n > 1 the completions are
generated together and their chunks interleave, so each completion is printed whole as soon as it
finishes, prefixed with `[i]` (its index, from 0; continuation lines are indented), in the order
they finish. A summary (finish reason, tokens, seed, tokens/s) goes to stderr.

With --logprobs, a table of the generated tokens follows each completion: probability and rank in
the raw distribution, probability in the shaped one, and the most likely alternatives.";

/// Flags of `oneword next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// The text whose next token to show ("-" reads stdin); with --session, what follows the
    /// session's tokens (may be left out).
    #[arg(default_value = "", hide_default_value = true)]
    pub prompt: String,
    /// The next tokens after this client session's tokens (and then the prompt).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Read the prompt as GPT-2 token ids separated by spaces or commas (as `oneword tokenize`
    /// lists them) instead of text.
    #[arg(long)]
    pub ids: bool,
    /// How many of the most likely tokens to list, 1..=100. Default (the gateway's): 5.
    #[arg(long, visible_alias = "top-n", value_name = "N")]
    pub top: Option<u32>,
    /// Also show the distribution a sampler at this temperature sees (0 = greedy).
    #[arg(long, short = 't', allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Also show the distribution cut to the k most likely tokens.
    #[arg(long, value_name = "K")]
    pub top_k: Option<u32>,
    /// Also show the distribution cut to the nucleus of total probability P, in (0, 1].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Also return the whole raw logit row (JSON only: `full_row`, base64 of little-endian f32).
    #[arg(long, requires = "json")]
    pub full_row: bool,
    /// The model: the served transformer (default), or an n-gram baseline of the decoder's
    /// corpus, letters-1 ..= letters-6 or tokens-1 ..= tokens-6.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
}

/// Flags of `oneword generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The text to continue ("-" reads stdin); with --session, what follows the session's
    /// tokens (may be left out).
    #[arg(default_value = "", hide_default_value = true)]
    pub prompt: String,
    /// Continue this client session (`oneword session create`) instead of prefilling the
    /// prompt from scratch.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// With --session and -n 1: the session takes the prompt and the completion, so the next
    /// call continues after them.
    #[arg(long, requires = "session")]
    pub append: bool,
    /// Read the prompt as GPT-2 token ids separated by spaces or commas (as `oneword tokenize`
    /// lists them) instead of text.
    #[arg(long)]
    pub ids: bool,
    /// Most tokens to generate per completion. Default (the gateway's): 16.
    #[arg(long, visible_alias = "max-new-tokens", value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Softmax temperature, >= 0; 0 is greedy. Default (the gateway's): 1.
    #[arg(long, short = 't', allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Sample only among the K most likely tokens.
    #[arg(long, value_name = "K")]
    pub top_k: Option<u32>,
    /// Sample only among the most likely tokens whose probability adds up to P, in (0, 1].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Seed for the random draws: the same request with the same seed gives the same text.
    /// Default: a random seed, shown in the summary.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this string appears (not included in the text). Repeat for several.
    #[arg(long, value_name = "S")]
    pub stop: Vec<String>,
    /// How many independent completions of the prompt (printed whole as each finishes when > 1).
    #[arg(long, short = 'n')]
    pub n: Option<u32>,
    /// Show each generated token's probability and rank, plus this many alternatives.
    #[arg(long, value_name = "N")]
    pub logprobs: Option<u32>,
    /// Keep generating after the end-of-text token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Add BIAS (in [-100, 100]) to token ID's logit before sampling: -100 all but bans it, +100
    /// all but forces it. Repeat for several, e.g. `--logit-bias 50256=-100`.
    #[arg(long, value_name = "ID=BIAS", value_parser = parse_logit_bias)]
    pub logit_bias: Vec<(u32, f32)>,
    /// Print the prompt before the generated text (n = 1 only).
    #[arg(long)]
    pub echo: bool,
    /// Wait for the whole response (the unary Generate RPC) instead of streaming.
    #[arg(long)]
    pub no_stream: bool,
    /// The model: the served transformer (default), or an n-gram baseline of the decoder's
    /// corpus, letters-1 ..= letters-6 or tokens-1 ..= tokens-6.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Sample only among the tokens at least P times as likely as the most likely one, in [0, 1].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Sample only among the locally typical tokens of total probability P, in (0, 1].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub typical_p: Option<f32>,
    /// Generate at least N tokens: until then end-of-text and the stop tokens cannot be picked.
    #[arg(long, value_name = "N")]
    pub min_tokens: Option<u32>,
    /// Discourage every token already in the prompt or the completion (transformers'
    /// repetition penalty, in (0, 10]; 1 is off, 1.2 is a common choice).
    #[arg(long, value_name = "P")]
    pub repetition_penalty: Option<f32>,
    /// Subtract P from a token's logit for each time the completion generated it (OpenAI's
    /// frequency penalty, in [-2, 2]).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub frequency_penalty: Option<f32>,
    /// Subtract P once from the logit of every token the completion generated (OpenAI's
    /// presence penalty, in [-2, 2]).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub presence_penalty: Option<f32>,
    /// Stop when this token id is generated. Repeat for several.
    #[arg(long, value_name = "ID")]
    pub stop_token_id: Vec<u32>,
    /// Keep the stop sequence (or stop token) that ended a completion in its text.
    #[arg(long)]
    pub include_stop: bool,
    /// Name the request (1 to 128 letters, digits, '-', '_', '.', ':'), so that `oneword cancel
    /// ID` can end it from elsewhere. Default: the gateway mints one, shown in the summary.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

/// Flags of `oneword cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The running request's id (`--request-id`, or the one its summary showed).
    pub request_id: String,
}

/// Flags of `oneword tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// The text to split ("-" reads stdin).
    pub text: String,
    /// Read "<|endoftext|>" in the text as the special token rather than as plain characters.
    #[arg(long)]
    pub allow_special: bool,
}

fn parse_logit_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, bias) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=BIAS, e.g. 50256=-100, got {s:?}"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| format!("expected a token id before `=`, got {id:?}"))?;
    let bias = bias
        .trim()
        .parse()
        .map_err(|_| format!("expected a number after `=`, got {bias:?}"))?;
    Ok((id, bias))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {s:?}"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("must be a positive number of seconds, got {s}"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "oneword",
            "next",
            "The best thing about AI is its ability to",
            "--top",
            "5",
            "--json",
            "--gateway",
            "localhost:1",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.gateway, "localhost:1");
        let Command::Next(args) = cli.command else {
            panic!("expected next")
        };
        assert_eq!(args.top, Some(5));
        assert_eq!(args.temperature, None);
    }

    #[test]
    fn generate_collects_repeated_stops() {
        let cli = Cli::try_parse_from([
            "oneword", "generate", "hi", "--stop", ".", "--stop", "\n", "-n", "3", "--seed", "1",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("expected generate")
        };
        assert_eq!(args.stop, vec![".".to_string(), "\n".to_string()]);
        assert_eq!(args.n, Some(3));
        assert_eq!(args.seed, Some(1));
    }

    #[test]
    fn negative_numbers_reach_the_gateway_which_says_what_is_allowed() {
        let cli = Cli::try_parse_from(["oneword", "generate", "hi", "-t", "-1", "--top-p", "-0.5"])
            .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("expected generate")
        };
        assert_eq!((args.temperature, args.top_p), (Some(-1.0), Some(-0.5)));
        let cli = Cli::try_parse_from(["oneword", "next", "hi", "--temperature", "-1"]).unwrap();
        let Command::Next(args) = cli.command else {
            panic!("expected next")
        };
        assert_eq!(args.temperature, Some(-1.0));
    }

    #[test]
    fn full_row_needs_json() {
        assert!(Cli::try_parse_from(["oneword", "next", "x", "--full-row"]).is_err());
        assert!(Cli::try_parse_from(["oneword", "next", "x", "--full-row", "--json"]).is_ok());
    }

    #[test]
    fn logit_bias_is_id_equals_bias() {
        assert_eq!(parse_logit_bias("50256=-100"), Ok((50256, -100.0)));
        assert_eq!(parse_logit_bias(" 13 = 2.5 "), Ok((13, 2.5)));
        assert!(parse_logit_bias("50256").is_err());
        assert!(parse_logit_bias("x=1").is_err());
        assert!(parse_logit_bias("1=x").is_err());
        let cli = Cli::try_parse_from([
            "oneword",
            "generate",
            "hi",
            "--logit-bias",
            "1=2",
            "--logit-bias",
            "3=-4",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("expected generate")
        };
        assert_eq!(args.logit_bias, vec![(1, 2.0), (3, -4.0)]);
    }

    #[test]
    fn timeout_must_be_positive() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("nan").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
