//! The public messages that mirror an internal service's: converted field by field, so that an
//! internal proto can change without changing what callers of `oneword.gateway.v1` see.

use oneword_proto::decoder::v1 as dec;
use oneword_proto::gateway::v1 as pb;
use oneword_proto::tokenizer::v1 as tok;

pub fn encoding(e: tok::Encoding) -> pb::Encoding {
    {
        pb::Encoding {
            ids: e.ids,
            tokens: e.tokens,
            pieces: e.pieces,
            starts: e.starts,
            ends: e.ends,
            special: e.special,
        }
    }
}

pub fn weights_request(r: pb::WeightsRequest) -> dec::WeightsRequest {
    {
        dec::WeightsRequest {
            layer: r.layer,
            matrix: r.matrix,
            histogram_bins: r.histogram_bins,
        }
    }
}

pub fn weights_response(r: dec::WeightsResponse) -> pb::WeightsResponse {
    {
        pb::WeightsResponse {
            matrix: r.matrix,
            histograms: r
                .histograms
                .into_iter()
                .map(|h| pb::Histogram {
                    layer: h.layer,
                    edges: h.edges,
                    counts: h.counts,
                })
                .collect(),
        }
    }
}

pub fn corpus_request(r: pb::CorpusRequest) -> dec::CorpusRequest {
    {
        dec::CorpusRequest {
            text: r.text,
            letter_frequencies: r.letter_frequencies,
            letter_pairs: r.letter_pairs,
            random_words_n: r.random_words_n,
            random_words: r.random_words,
            sentence_n: r.sentence_n,
            sentence_start: r.sentence_start,
            sentence_words: r.sentence_words,
            seed: r.seed,
        }
    }
}

pub fn corpus_response(r: dec::CorpusResponse) -> pb::CorpusResponse {
    {
        pb::CorpusResponse {
            corpus: r.corpus,
            corpus_bytes: r.corpus_bytes,
            letters: r.letters,
            frequencies: r.frequencies,
            pair_symbols: r.pair_symbols,
            pair_probabilities: r.pair_probabilities,
            random_words: r.random_words,
            sentence: r.sentence,
        }
    }
}
