//! `oneword-model`: fetch a model into the Hugging Face cache, write a random-weight checkpoint,
//! or time the transformer alone on a device.

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
    /// Time the transformer alone on a device, driven as the decoder drives it: decode steps of
    /// many streams at once (ms per step, tokens/s, candle operations per pass) and one-sequence
    /// prefills. Prints JSON.
    Speed {
        /// A checkpoint directory (e.g. one `random --shape gpt2-small` wrote).
        dir: PathBuf,
        /// `cpu`, `cuda` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Weights and activations: `auto`, `f32`, `f16` or `bf16`.
        #[arg(long, default_value = "auto")]
        dtype: String,
        /// Concurrent streams, one measurement each.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
        streams: Vec<usize>,
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        /// Decode steps timed per measurement.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Prompt lengths whose one-sequence prefill is timed.
        #[arg(long, value_delimiter = ',', default_value = "512,1024")]
        prefill: Vec<usize>,
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
        Command::Speed {
            dir,
            device,
            dtype,
            streams,
            prompt_tokens,
            new_tokens,
            prefill,
        } => {
            let device = oneword_model::load_device(&device)?;
            let dtype = oneword_model::checkpoint::pick_dtype(&dtype, &device)?;
            let plan = oneword_model::speed::Plan {
                streams,
                prompt_tokens,
                new_tokens,
                prefill,
            };
            let report = oneword_model::speed::measure(&dir, &device, dtype, &plan)
                .with_context(|| format!("timing {}", dir.display()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
