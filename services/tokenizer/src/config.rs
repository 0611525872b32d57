//! The tokenizer's flags; every one can also be set through its `ONEWORD_TOKENIZER_*` variable.

use std::net::SocketAddr;

use clap::Parser;

oneword_runtime::server_flags!("tokenizer", "TOKENIZER", metrics = "0.0.0.0:9091");

#[derive(Clone, Debug, Parser)]
#[command(
    name = "oneword-tokenizer",
    about = "GPT-2's byte-level BPE over gRPC: text to token ids and back"
)]
pub struct Config {
    /// Model: a Hugging Face id (downloaded into the Hugging Face cache) or a local directory
    /// holding tokenizer.json or vocab.json + merges.txt (config.json is read when present).
    #[arg(long, env = "ONEWORD_TOKENIZER_MODEL", default_value = "gpt2")]
    pub model: String,
    /// Address to serve gRPC on.
    #[arg(
        long,
        env = "ONEWORD_TOKENIZER_LISTEN",
        default_value = "0.0.0.0:50051"
    )]
    pub listen: SocketAddr,
    /// Most texts one Encode call may carry.
    #[arg(
        long,
        env = "ONEWORD_TOKENIZER_MAX_BATCH_TEXTS",
        default_value_t = 1024
    )]
    pub max_batch_texts: usize,
    /// Longest text Encode accepts, in bytes.
    #[arg(long, env = "ONEWORD_TOKENIZER_MAX_TEXT_BYTES", default_value_t = 1 << 20)]
    pub max_text_bytes: usize,
    /// Largest gRPC request accepted, in bytes; must exceed `--max-text-bytes`.
    #[arg(long, env = "ONEWORD_TOKENIZER_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    /// Encode batches that may wait for a worker thread before new ones are refused with
    /// RESOURCE_EXHAUSTED (small ones are encoded on the spot and never wait).
    #[arg(long, env = "ONEWORD_TOKENIZER_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    #[command(flatten)]
    pub server: ServerFlags,
}

impl Config {
    /// Defaults for a model, as tests build it.
    pub fn for_model(model: impl Into<String>) -> Self {
        Config::parse_from(["oneword-tokenizer", "--model", &model.into()])
    }

    /// Checks that the limits fit together, naming the flag at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_batch_texts == 0 || self.max_batch_texts > u32::MAX as usize {
            anyhow::bail!(
                "`--max-batch-texts` must be in [1, {}], got {}",
                u32::MAX,
                self.max_batch_texts
            );
        }
        // Offsets travel as uint32.
        if self.max_text_bytes == 0 || self.max_text_bytes > u32::MAX as usize {
            anyhow::bail!(
                "`--max-text-bytes` must be in [1, {}], got {}",
                u32::MAX,
                self.max_text_bytes
            );
        }
        if self.max_message_bytes <= self.max_text_bytes {
            anyhow::bail!(
                "`--max-message-bytes` must exceed `--max-text-bytes` ({}), got {}",
                self.max_text_bytes,
                self.max_message_bytes
            );
        }
        if self.queue_capacity == 0 {
            anyhow::bail!("`--queue-capacity` must be at least 1, got 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = Config::for_model("gpt2");
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 50051);
        assert_eq!((c.max_batch_texts, c.max_text_bytes), (1024, 1 << 20));
    }

    #[test]
    fn rejects_limits_that_do_not_fit() {
        let mut c = Config::for_model("gpt2");
        c.max_message_bytes = c.max_text_bytes;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--max-message-bytes"), "{e}");
        let mut c = Config::for_model("gpt2");
        c.max_batch_texts = 0;
        assert!(c.validate().is_err());
    }
}
