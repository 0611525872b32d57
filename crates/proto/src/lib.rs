//! Generated protobuf and gRPC code for all oneword services. `proto/` is the only place the
//! contracts are edited; this crate is the only place they are compiled.

#![forbid(unsafe_code)]
#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod common {
    pub mod v1 {
        tonic::include_proto!("oneword.common.v1");
    }
}
pub mod tokenizer {
    pub mod v1 {
        tonic::include_proto!("oneword.tokenizer.v1");
    }
}
pub mod embedder {
    pub mod v1 {
        tonic::include_proto!("oneword.embedder.v1");
    }
}
pub mod decoder {
    pub mod v1 {
        tonic::include_proto!("oneword.decoder.v1");
    }
}
pub mod index {
    pub mod v1 {
        tonic::include_proto!("oneword.index.v1");
    }
}
pub mod tensor;

/// Properties shared by the property tests and the fuzz targets (`make fuzz`); not an API.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod checks;
#[cfg(test)]
mod properties;

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("oneword.gateway.v1");
    }
}

impl gateway::v1::TokenDetails {
    /// Appends a later chunk's tokens, as the unary call and streaming clients reassemble them.
    pub fn append(&mut self, more: Self) {
        self.ids.extend(more.ids);
        self.pieces.extend(more.pieces);
        self.logprobs.extend(more.logprobs);
        self.ranks.extend(more.ranks);
        self.shaped_logprobs.extend(more.shaped_logprobs);
        self.top.extend(more.top);
    }
}

/// Encoded `FileDescriptorSet` of every oneword proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("oneword_descriptor");
