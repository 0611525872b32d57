//! `oneword-model`: fetch a model into the Hugging Face cache, or write a random-weight checkpoint.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use oneword_model::tiny::RandomCheckpoint;

#[derive(Parser)]
#[command(
    about = "Fetch GPT-2 checkpoints and text-embedding models, or write random GPT-2 checkpoints for tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Resolve a Hugging Face id (downloading it into the Hugging Face cache if needed) or a
    /// directory, and print the local directory.
    Fetch {
        /// A Hugging Face id such as `gpt2`, or a directory.
        model: String,
        /// A sentence-transformers model (the embedder's text model, e.g.
        /// `sentence-transformers/all-MiniLM-L6-v2`): its pooling files too. An empty MODEL then
        /// fetches nothing (no text model).
        #[arg(long)]
        text: bool,
    },
    /// Write a checkpoint with random weights in the Hugging Face layout.
    Random {
        /// Directory to write into (created if missing).
        dir: PathBuf,
        /// Directory holding the tokenizer files (vocab.json + merges.txt or tokenizer.json) to copy.
        #[arg(long, default_value = "tests/fixtures/gpt2-tokenizer")]
        tokenizer: PathBuf,
        /// Shapes: `tiny` (2 layers, width 64) or `gpt2-small` (12 layers, width 768).
        #[arg(long, value_enum, default_value_t = Shape::Tiny)]
        shape: Shape,
        /// Seed of the weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Shape {
    Tiny,
    Gpt2Small,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Fetch { model, text: true } if model.is_empty() => {}
        Command::Fetch { model, text } => {
            let dir = if text {
                oneword_checkpoint::hub::resolve_sentence(&model)?
            } else {
                oneword_checkpoint::hub::resolve(&model)?
            };
            println!("{}", dir.display());
        }
        Command::Random {
            dir,
            tokenizer,
            shape,
            seed,
        } => {
            let spec = match shape {
                Shape::Tiny => RandomCheckpoint::tiny(),
                Shape::Gpt2Small => RandomCheckpoint::gpt2_small(),
            };
            RandomCheckpoint { seed, ..spec }
                .write(&dir, &tokenizer)
                .with_context(|| format!("writing {}", dir.display()))?;
            println!("{}", dir.display());
        }
    }
    Ok(())
}
