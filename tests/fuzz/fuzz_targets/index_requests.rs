//! The index's validation of every request type: the first byte picks the type, the second the
//! collection (dimension, metric, text model); the rest is the request's protobuf encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oneword_index::fuzzing as checks;
use oneword_proto::index::v1 as pb;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let [kind, collection, message @ ..] = data else {
        return;
    };
    let spec = checks::spec(
        usize::from(collection & 3) + 1,
        collection >> 2 & 3,
        collection & 16 != 0,
    );
    match kind % 7 {
        0 => {
            if let Ok(r) = pb::CreateRequest::decode(message) {
                checks::create(r)
            }
        }
        1 => {
            if let Ok(r) = pb::SearchRequest::decode(message) {
                checks::search(r, &spec)
            }
        }
        2 => {
            if let Ok(r) = pb::SearchBatchRequest::decode(message) {
                checks::search_batch(r, &spec)
            }
        }
        3 => {
            if let Ok(r) = pb::UpsertRequest::decode(message) {
                checks::upsert(r.points, &spec)
            }
        }
        4 => {
            if let Ok(r) = pb::DeleteRequest::decode(message) {
                checks::delete(r)
            }
        }
        5 => {
            if let Ok(r) = pb::RetrieveRequest::decode(message) {
                checks::retrieve(r)
            }
        }
        _ => checks::name(&String::from_utf8_lossy(message)),
    }
});
