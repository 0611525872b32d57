//! The `--json` forms of the gateway's responses: the proto3 JSON mapping with the proto field
//! names, every scalar and repeated field present, absent sub-messages left out, enums by name,
//! 64-bit integers as strings, bytes as base64 and non-finite floats as "NaN"/"Infinity"/
//! "-Infinity" — so that any protobuf library can read a line back into the message.
//!
//! prost's types do not implement `Serialize`, so each message is re-read through its descriptor
//! (the same set the services serve for reflection) and written by `prost-reflect`.

use std::sync::LazyLock;

use oneword_proto::gateway::v1 as gw;
use oneword_proto::index::v1 as ix;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// A message the CLI prints, by its full proto name.
pub trait Named: Message {
    const NAME: &'static str;
}

macro_rules! named {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl Named for $ty {
            const NAME: &'static str = $name;
        })*
    };
}

named! {
    gw::NextTokensResponse => "oneword.gateway.v1.NextTokensResponse",
    gw::GenerateResponse => "oneword.gateway.v1.GenerateResponse",
    gw::GenerateStreamResponse => "oneword.gateway.v1.GenerateStreamResponse",
    gw::TokenizeResponse => "oneword.gateway.v1.TokenizeResponse",
    gw::CancelResponse => "oneword.gateway.v1.CancelResponse",
    gw::InfoResponse => "oneword.gateway.v1.InfoResponse",
    gw::CompareResponse => "oneword.gateway.v1.CompareResponse",
    gw::Session => "oneword.gateway.v1.Session",
    gw::ReleaseSessionResponse => "oneword.gateway.v1.ReleaseSessionResponse",
    gw::ScoreResponse => "oneword.gateway.v1.ScoreResponse",
    gw::InspectResponse => "oneword.gateway.v1.InspectResponse",
    gw::WordsResponse => "oneword.gateway.v1.WordsResponse",
    gw::NearestResponse => "oneword.gateway.v1.NearestResponse",
    gw::EmbedResponse => "oneword.gateway.v1.EmbedResponse",
    ix::CollectionInfo => "oneword.index.v1.CollectionInfo",
    ix::ListResponse => "oneword.index.v1.ListResponse",
    ix::DropResponse => "oneword.index.v1.DropResponse",
    ix::SnapshotResponse => "oneword.index.v1.SnapshotResponse",
    ix::UpsertResponse => "oneword.index.v1.UpsertResponse",
    ix::SearchResponse => "oneword.index.v1.SearchResponse",
    ix::Filter => "oneword.index.v1.Filter",
    gw::CorpusResponse => "oneword.gateway.v1.CorpusResponse",
    gw::WeightsResponse => "oneword.gateway.v1.WeightsResponse",
}

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(oneword_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptors decode; this is a bug")
});

/// The canonical mapping, except for the proto field names and fields at their defaults kept.
const OPTIONS: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .skip_default_fields(false);

/// One line of JSON (no trailing newline).
pub fn to_line<M: Named>(message: &M) -> String {
    let desc = POOL
        .get_message_by_name(M::NAME)
        .expect("every printed message is in the descriptor set; this is a bug");
    let message = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
        .expect("a message decodes with its own descriptor; this is a bug");
    let mut line = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut line, &OPTIONS)
        .expect("writing JSON to memory does not fail; this is a bug");
    String::from_utf8(line.into_inner()).expect("serde_json writes UTF-8; this is a bug")
}

/// Reads a message from its proto3 JSON form (field names as in the proto or in lowerCamelCase).
pub fn from_json<M: Named + Default>(text: &str) -> Result<M, String> {
    let desc = POOL
        .get_message_by_name(M::NAME)
        .expect("every parsed message is in the descriptor set; this is a bug");
    let mut reader = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(desc, &mut reader).map_err(|e| e.to_string())?;
    reader.end().map_err(|e| e.to_string())?;
    dynamic.transcode_to::<M>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneword_proto::common::v1 as common;
    use serde_json::{json, Value};

    fn value<M: Named>(message: &M) -> Value {
        serde_json::from_str(&to_line(message)).unwrap()
    }

    #[test]
    fn stream_chunk_has_every_scalar_field_and_no_absent_messages() {
        let chunk = gw::GenerateStreamResponse {
            index: 1,
            text: " learn".into(),
            token_ids: vec![2193],
            generated_tokens: 3,
            seed: 1,
            request_id: "r-1".into(),
            prompt_tokens: 9,
            ..Default::default()
        };
        assert_eq!(
            value(&chunk),
            json!({
                "index": 1,
                "text": " learn",
                "token_ids": [2193],
                "generated_tokens": 3,
                "finish_reason": "FINISH_REASON_UNSPECIFIED",
                "stop_sequence": "",
                "seed": "1",
                "request_id": "r-1",
                "prompt_tokens": 9,
            })
        );
    }

    #[test]
    fn last_stream_chunk_carries_usage_timings_and_details() {
        let chunk = gw::GenerateStreamResponse {
            index: 0,
            text: "!".into(),
            token_ids: vec![0],
            details: Some(gw::TokenDetails {
                ids: vec![0],
                pieces: vec![b"!".to_vec()],
                logprobs: vec![-0.5],
                ranks: vec![1],
                shaped_logprobs: vec![f32::NEG_INFINITY],
                top: vec![gw::Alternatives {
                    ids: vec![0],
                    logprobs: vec![-0.5],
                    pieces: vec![vec![0xf0]],
                }],
            }),
            generated_tokens: 40,
            finish_reason: gw::FinishReason::StopSequence as i32,
            stop_sequence: "\n".into(),
            usage: Some(gw::Usage {
                prompt_tokens: 9,
                completion_tokens: 40,
            }),
            seed: 7,
            timings: Some(gw::Timings {
                tokenize_ns: 1,
                prefill_ns: 2,
                decode_ns: 3,
                total_ns: 6,
                queue_ns: 4,
            }),
            request_id: "r-1".into(),
            prompt_tokens: 9,
            stop_token_id: None,
        };
        let v = value(&chunk);
        assert_eq!(v["finish_reason"], "FINISH_REASON_STOP_SEQUENCE");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 9, "completion_tokens": 40})
        );
        assert_eq!(
            v["timings"],
            json!({"tokenize_ns": "1", "prefill_ns": "2", "decode_ns": "3", "total_ns": "6", "queue_ns": "4"})
        );
        assert_eq!(
            v["details"],
            json!({
                "ids": [0],
                "pieces": ["IQ=="],
                "logprobs": [-0.5],
                "ranks": [1],
                "shaped_logprobs": ["-Infinity"],
                "top": [{"ids": [0], "logprobs": [-0.5], "pieces": ["8A=="]}],
            })
        );
    }

    #[test]
    fn unknown_enum_values_are_numbers_and_seeds_keep_every_digit() {
        let r = gw::GenerateResponse {
            completions: vec![gw::Completion {
                finish_reason: 99,
                ..Default::default()
            }],
            seed: u64::MAX,
            ..Default::default()
        };
        let v = value(&r);
        assert_eq!(v["completions"][0]["finish_reason"], json!(99));
        assert_eq!(v["seed"], "18446744073709551615");
        assert_eq!(v.get("usage"), None);
    }

    #[test]
    fn next_tokens_shape() {
        let r = gw::NextTokensResponse {
            raw: Some(gw::TokenTable {
                ids: vec![2193],
                probabilities: vec![0.1],
                logprobs: vec![-1.5],
                texts: vec![" learn".into()],
                pieces: vec![b" learn".to_vec()],
            }),
            shaped: None,
            entropy: 1.5,
            shaped_entropy: None,
            prompt_tokens: 9,
            full_row: Some(common::Tensor {
                data: 1.0f32.to_le_bytes().to_vec(),
                shape: vec![1],
                dtype: common::Dtype::F32 as i32,
            }),
        };
        let v = value(&r);
        assert_eq!(
            v,
            json!({
                "raw": {
                    "ids": [2193],
                    // f32 written shortest (not 0.10000000149011612).
                    "probabilities": [0.1],
                    "logprobs": [-1.5],
                    "texts": [" learn"],
                    "pieces": ["IGxlYXJu"],
                },
                "entropy": 1.5,
                "prompt_tokens": 9,
                "full_row": {"data": "AACAPw==", "shape": [1], "dtype": "DTYPE_F32"},
            })
        );
    }

    #[test]
    fn info_and_tokenize_shapes() {
        let info = gw::InfoResponse {
            model: Some(common::ModelInfo {
                model_id: "gpt2".into(),
                model_type: "gpt2".into(),
                vocab_size: 50257,
                context_length: 1024,
                hidden_size: 768,
                num_layers: 12,
                num_heads: 12,
                eos_token_id: 50256,
                device: "cpu".into(),
                dtype: common::Dtype::F32 as i32,
            }),
            max_new_tokens: 1024,
            max_n: 16,
            max_stop_sequences: 4,
            max_stop_sequence_bytes: 64,
            max_top_n: 100,
            embedding_models: Vec::new(),
        };
        let v = value(&info);
        assert_eq!(v["model"]["dtype"], "DTYPE_F32");
        assert_eq!(v["model"]["vocab_size"], 50257);
        assert_eq!(v["max_top_n"], 100);

        let tokens = gw::TokenizeResponse {
            encoding: Some(gw::Encoding {
                ids: vec![464],
                tokens: vec!["The".into()],
                pieces: vec![b"The".to_vec()],
                starts: vec![0],
                ends: vec![3],
                special: vec![false],
            }),
        };
        assert_eq!(
            value(&tokens),
            json!({"encoding": {
                "ids": [464], "tokens": ["The"], "pieces": ["VGhl"],
                "starts": [0], "ends": [3], "special": [false],
            }})
        );
    }
}
