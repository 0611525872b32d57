//! Flags of the essay's instruments.

use clap::Args;

/// Where and how big to draw a picture.
#[derive(Debug, Args)]
pub struct PictureArgs {
    /// Draw the picture into this PNG file.
    #[arg(long, value_name = "FILE")]
    pub png: Option<std::path::PathBuf>,
    /// Size of the picture in pixels.
    #[arg(long, value_name = "WxH", default_value = "1000x700", value_parser = parse_size)]
    pub size: (u32, u32),
}

/// Flags of `oneword compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The text to continue ("-" reads stdin).
    pub prompt: String,
    #[command(flatten)]
    pub continuations: ContinuationArgs,
    /// The model: the served transformer (default), or an n-gram baseline of the decoder's
    /// corpus, letters-1 ..= letters-6 or tokens-1 ..= tokens-6.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
}

/// Which continuations `compare` and `branch` make: the greedy one at temperature 0, `samples`
/// at each other temperature, all with one seed.
#[derive(Debug, Args)]
pub struct ContinuationArgs {
    /// The temperatures to compare, comma-separated (0 = greedy).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.8",
        allow_negative_numbers = true
    )]
    pub temperatures: Vec<f32>,
    /// Continuations at each temperature above 0.
    #[arg(long, default_value_t = 5)]
    pub samples: u32,
    /// Most tokens per continuation. Default (the gateway's): 16.
    #[arg(long, visible_alias = "max-new-tokens", value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Seed for the random draws. Default: a random seed, shown in the summary.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Flags of `oneword words`.
#[derive(Debug, Args)]
pub struct WordsArgs {
    /// The words; each is read as inside a sentence, after a space (" cat").
    #[arg(required_unless_present = "ids")]
    pub words: Vec<String>,
    /// A token by id, as a word of its own (after the words). Repeat for several.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<u32>,
    /// Also print each word's vector.
    #[arg(long)]
    pub vectors: bool,
    #[command(flatten)]
    pub picture: PictureArgs,
}

/// Flags of `oneword nearest`.
#[derive(Debug, Args)]
pub struct NearestArgs {
    /// The word whose neighbours to list, read as inside a sentence (" cat").
    #[arg(required_unless_present = "id")]
    pub word: Option<String>,
    /// A token by id instead of a word.
    #[arg(long, value_name = "ID", conflicts_with = "word")]
    pub id: Option<u32>,
    /// How many neighbours, 1..=1000.
    #[arg(long, default_value_t = 10)]
    pub top: u32,
    /// List the word's own token too.
    #[arg(long)]
    pub include_query: bool,
}

/// The corpus the n-gram instruments count.
#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Count this text file instead of the decoder's corpus (sent with the request).
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub picture: PictureArgs,
}

/// Flags of `oneword random-words`.
#[derive(Debug, Args)]
pub struct RandomWordsArgs {
    /// The letter n-gram orders to use, comma-separated, each 1..=6.
    #[arg(
        long,
        short = 'n',
        value_delimiter = ',',
        default_value = "1,2,3,4,5,6"
    )]
    pub n: Vec<u32>,
    /// Words per order.
    #[arg(long, default_value_t = 10)]
    pub count: u32,
    /// Seed of the draws: the same seed gives the same words.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Count this text file instead of the decoder's corpus.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<std::path::PathBuf>,
}

/// Flags of `oneword sentence`.
#[derive(Debug, Args)]
pub struct SentenceArgs {
    /// The word(s) to start with; each must occur in the corpus (the bundled King James books
    /// have no "cat": try "god", or give --corpus).
    pub start: String,
    /// The word n-gram order, 1..=6.
    #[arg(long, short = 'n', default_value_t = 2)]
    pub n: u32,
    /// Words to add.
    #[arg(long, default_value_t = 20)]
    pub words: u32,
    /// Seed of the draws: the same seed gives the same sentence.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Count this text file instead of the decoder's corpus.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<std::path::PathBuf>,
}

/// Flags of `oneword ranks`.
#[derive(Debug, Args)]
pub struct RanksArgs {
    /// The text whose next token's distribution to plot ("-" reads stdin).
    pub prompt: String,
    #[command(flatten)]
    pub picture: PictureArgs,
}

/// Flags of `oneword score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The text to score ("-" reads stdin).
    pub text: String,
    /// Also score the first token, as read after <|endoftext|>.
    #[arg(long)]
    pub from_start: bool,
    /// Also give each token's probability under this temperature (0 = greedy).
    #[arg(long, short = 't', allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// ... and cut to the K most likely tokens.
    #[arg(long, value_name = "K")]
    pub top_k: Option<u32>,
    /// ... and cut to the nucleus of total probability P, in (0, 1].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// List this many most likely alternatives at each position.
    #[arg(long, value_name = "N")]
    pub top: Option<u32>,
    /// Score the text as it continues this client session (`oneword session create`).
    #[arg(long, value_name = "ID", conflicts_with = "from_start")]
    pub session: Option<String>,
}

/// Flags of `oneword lens`.
#[derive(Debug, Args)]
pub struct LensArgs {
    /// The prompt whose next token to read from every layer ("-" reads stdin).
    pub prompt: String,
    /// How many tokens to list per layer.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: u32,
}

/// Flags of `oneword attention`.
#[derive(Debug, Args)]
pub struct AttentionArgs {
    /// The prompt to look at ("-" reads stdin).
    pub prompt: String,
    /// The block (layer), from 0.
    #[arg(long, default_value_t = 0)]
    pub layer: u32,
    /// One head, from 0. Default: all of the layer's heads (a grid with --png).
    #[arg(long)]
    pub head: Option<u32>,
    #[command(flatten)]
    pub picture: PictureArgs,
}

/// Flags of `oneword embedding-module`.
#[derive(Debug, Args)]
pub struct EmbeddingModuleArgs {
    /// The prompt to embed ("-" reads stdin); the essay's is "hello" 16 times then "bye" 6 times.
    pub prompt: String,
    #[command(flatten)]
    pub picture: PictureArgs,
}

/// Flags of `oneword weights`.
#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// The block (layer) whose matrix to show, from 0.
    #[arg(long, default_value_t = 0)]
    pub layer: u32,
    /// Which matrix of the block: attn.c_attn, attn.c_proj, mlp.c_fc or mlp.c_proj.
    #[arg(long, default_value = "attn.c_proj")]
    pub matrix: String,
    /// Smooth the image with a moving average over WINDOW x WINDOW cells (the essay uses 64).
    #[arg(long, value_name = "WINDOW")]
    pub smooth: Option<usize>,
    /// Instead of a matrix, the histograms of every block's weight values, with this many bins.
    #[arg(long, value_name = "BINS", num_args = 0..=1, default_missing_value = "100")]
    pub histogram: Option<u32>,
    #[command(flatten)]
    pub picture: PictureArgs,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parse = |n: &str| {
        n.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (16..=8192).contains(n))
    };
    s.split_once(['x', 'X'])
        .and_then(|(w, h)| Some((parse(w)?, parse(h)?)))
        .ok_or_else(|| {
            format!("expected WIDTHxHEIGHT in pixels, each 16..=8192, e.g. 1000x700, got {s:?}")
        })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn size_is_width_x_height_within_bounds() {
        assert_eq!(parse_size("1000x700"), Ok((1000, 700)));
        assert_eq!(parse_size(" 64X48 "), Ok((64, 48)));
        assert!(parse_size("1000").is_err());
        assert!(parse_size("8x8").is_err());
        assert!(parse_size("10000x700").is_err());
        assert!(parse_size("ax700").is_err());
    }
}
