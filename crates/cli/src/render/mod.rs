//! Responses as text for people. Pure functions: no I/O, no server.
//!
//! `cells` formats single values (tokens, percentages, bars) and lays rows out as a table,
//! `tables` renders `next`, `tokenize` and `info`, `generate` the completions and their summaries,
//! `instruments` the essay's instruments, `words` word embeddings and the n-gram corpus.

mod cells;
mod generate;
mod instruments;
mod tables;
mod words;

pub use cells::escape_bytes;
pub use generate::{completion_block, completion_summary, details_table, generate_summary};
pub use instruments::{
    attention_summary, compare_text, embedding_table, histogram_table, lens_table, matrix_summary,
    ranks_table, score_table,
};
pub use tables::{info, next_table, shaping_label, tokenize_table};
pub use words::{letter_pairs_text, letters_table, nearest_table, vectors_text, words_table};

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Faint text, for what is about the output rather than the output.
    pub fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }

    /// Bold text.
    pub fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }

    fn wrap(self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}
