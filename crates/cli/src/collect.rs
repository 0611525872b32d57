//! Putting streamed chunks back together into completions.

use std::collections::BTreeMap;

use oneword_proto::gateway::v1 as gw;

/// One completion as far as it has arrived.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub index: u32,
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Tokens generated so far, as the gateway counts them.
    pub generated_tokens: u32,
    pub details: Option<gw::TokenDetails>,
    /// `FinishReason` as sent; 0 (unspecified) until the last chunk.
    pub finish_reason: i32,
    pub stop_sequence: String,
    pub usage: Option<gw::Usage>,
    pub timings: Option<gw::Timings>,
}

impl Completion {
    /// Whether the completion's last chunk has arrived.
    pub fn finished(&self) -> bool {
        self.finish_reason != gw::FinishReason::Unspecified as i32
    }

    /// Tokens generated: the usage on the last chunk, else the running count.
    pub fn tokens(&self) -> u32 {
        self.usage
            .map(|u| u.completion_tokens)
            .unwrap_or(self.generated_tokens)
            .max(self.token_ids.len() as u32)
    }

    /// Appends a chunk of this completion.
    pub fn push(&mut self, chunk: gw::GenerateStreamResponse) {
        self.text.push_str(&chunk.text);
        self.token_ids.extend_from_slice(&chunk.token_ids);
        self.generated_tokens = self.generated_tokens.max(chunk.generated_tokens);
        if let Some(new) = chunk.details {
            self.details
                .get_or_insert_with(Default::default)
                .append(new);
        }
        if chunk.finish_reason != gw::FinishReason::Unspecified as i32 {
            self.finish_reason = chunk.finish_reason;
            self.stop_sequence = chunk.stop_sequence;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.timings.is_some() {
            self.timings = chunk.timings;
        }
    }
}

impl From<gw::Completion> for Completion {
    fn from(c: gw::Completion) -> Self {
        Completion {
            index: c.index,
            generated_tokens: c.token_ids.len() as u32,
            text: c.text,
            token_ids: c.token_ids,
            details: c.details,
            finish_reason: c.finish_reason,
            stop_sequence: c.stop_sequence,
            usage: None,
            timings: None,
        }
    }
}

/// All completions of one streamed request.
#[derive(Debug, Default)]
pub struct Collector {
    completions: BTreeMap<u32, Completion>,
    /// The seed, from any chunk (every chunk carries it).
    pub seed: Option<u64>,
    /// The request's id, from any chunk (every chunk carries it).
    pub request_id: String,
}

impl Collector {
    /// Adds a chunk and returns the completion it belongs to.
    pub fn push(&mut self, chunk: gw::GenerateStreamResponse) -> &Completion {
        self.seed = Some(chunk.seed);
        if self.request_id.is_empty() {
            self.request_id.clone_from(&chunk.request_id);
        }
        let completion = self
            .completions
            .entry(chunk.index)
            .or_insert_with(|| Completion {
                index: chunk.index,
                ..Default::default()
            });
        completion.push(chunk);
        completion
    }

    /// Every completion seen, by index.
    pub fn completions(&self) -> impl Iterator<Item = &Completion> {
        self.completions.values()
    }

    /// The completions ran side by side, so the request took as long as the slowest.
    pub fn timings(&self) -> Option<gw::Timings> {
        self.completions()
            .filter_map(|c| c.timings)
            .reduce(|a, b| gw::Timings {
                tokenize_ns: a.tokenize_ns.max(b.tokenize_ns),
                prefill_ns: a.prefill_ns.max(b.prefill_ns),
                decode_ns: a.decode_ns.max(b.decode_ns),
                total_ns: a.total_ns.max(b.total_ns),
                queue_ns: a.queue_ns.max(b.queue_ns),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: u32, text: &str, ids: &[u32], generated: u32) -> gw::GenerateStreamResponse {
        gw::GenerateStreamResponse {
            index,
            text: text.into(),
            token_ids: ids.to_vec(),
            generated_tokens: generated,
            seed: 42,
            ..Default::default()
        }
    }

    fn timings(total_ns: u64) -> gw::Timings {
        gw::Timings {
            tokenize_ns: 1,
            prefill_ns: 2,
            decode_ns: total_ns - 3,
            total_ns,
            queue_ns: 0,
        }
    }

    #[test]
    fn interleaved_chunks_are_sorted_into_their_completions() {
        let mut c = Collector::default();
        c.push(chunk(0, " learn", &[2193], 1));
        c.push(chunk(1, " make", &[787], 1));
        let first = c.push(chunk(0, " from", &[422], 2)).clone();
        assert_eq!(first.text, " learn from");
        assert_eq!(first.token_ids, vec![2193, 422]);
        assert!(!first.finished());

        let mut last = chunk(1, "", &[], 2);
        last.finish_reason = gw::FinishReason::Length as i32;
        last.usage = Some(gw::Usage {
            prompt_tokens: 9,
            completion_tokens: 2,
        });
        last.timings = Some(timings(100));
        let second = c.push(last);
        assert!(second.finished());
        assert_eq!(second.text, " make");
        assert_eq!(second.tokens(), 2);

        assert_eq!(c.seed, Some(42));
        let tokens: u32 = c.completions().map(Completion::tokens).sum();
        assert_eq!(tokens, 4);
        let indexes: Vec<u32> = c.completions().map(|c| c.index).collect();
        assert_eq!(indexes, vec![0, 1]);
    }

    #[test]
    fn details_are_concatenated() {
        let mut c = Completion::default();
        for (id, piece) in [(1u32, b"a"), (2, b"b")] {
            let mut ch = chunk(0, "", &[id], id);
            ch.details = Some(gw::TokenDetails {
                ids: vec![id],
                pieces: vec![piece.to_vec()],
                logprobs: vec![-1.0],
                ranks: vec![id],
                shaped_logprobs: vec![-0.5],
                top: vec![gw::Alternatives::default()],
            });
            c.push(ch);
        }
        let d = c.details.unwrap();
        assert_eq!(d.ids, vec![1, 2]);
        assert_eq!(d.pieces, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(d.ranks, vec![1, 2]);
        assert_eq!(d.top.len(), 2);
    }

    #[test]
    fn request_time_is_the_slowest_completion() {
        let mut c = Collector::default();
        assert_eq!(c.timings(), None);
        for (i, total) in [(0, 50), (1, 80), (2, 60)] {
            let mut ch = chunk(i, "", &[], 0);
            ch.timings = Some(timings(total));
            c.push(ch);
        }
        assert_eq!(c.timings().unwrap().total_ns, 80);
    }
}
