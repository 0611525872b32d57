//! Reflection that describes only what a server serves. A server's schema imports other files
//! (every one imports `common`), and registering every compiled file would publish the internal
//! services' methods too. So each server registers the files that define its own
//! services (keeping only those services) and the files they import, with the imports'
//! services removed: grpcurl can still describe every message, and nothing else.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

use crate::serve::ServeError;

/// The oneword descriptors a server serving the services named `served` (fully qualified,
/// such as `oneword.decoder.v1.Decoder`) describes.
pub fn descriptors(served: &[&str]) -> FileDescriptorSet {
    let all = FileDescriptorSet::decode(oneword_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in descriptor set decodes; this is a bug");
    let by_name: HashMap<&str, &FileDescriptorProto> =
        all.file.iter().map(|f| (f.name(), f)).collect();
    let mut kept = BTreeMap::new();
    let mut imports = Vec::new();
    for file in &all.file {
        let mut own = file.clone();
        own.service
            .retain(|s| served.contains(&format!("{}.{}", file.package(), s.name()).as_str()));
        if !own.service.is_empty() {
            imports.extend(own.dependency.iter().cloned());
            kept.insert(own.name().to_string(), own);
        }
    }
    while let Some(name) = imports.pop() {
        if kept.contains_key(&name) {
            continue;
        }
        // Files from outside the set (none today) are left to the client to know.
        let Some(file) = by_name.get(name.as_str()) else {
            continue;
        };
        let mut messages_only = (*file).clone();
        messages_only.service.clear();
        imports.extend(messages_only.dependency.iter().cloned());
        kept.insert(name, messages_only);
    }
    FileDescriptorSet {
        file: kept.into_values().collect(),
    }
}

/// Reflection v1 and v1alpha (the grpcurl on PyPI speaks only v1alpha) over `served`, plus
/// health's schema.
pub(crate) fn services(
    served: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let files = descriptors(served);
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(files.clone())
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services_of(set: &FileDescriptorSet) -> Vec<String> {
        set.file
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .map(|s| format!("{}.{}", f.package(), s.name()))
            })
            .collect()
    }

    #[test]
    fn the_gateway_describes_its_imports_and_no_internal_service() {
        let set = descriptors(&["oneword.gateway.v1.Gateway", "oneword.index.v1.Collections"]);
        assert_eq!(
            services_of(&set),
            ["oneword.gateway.v1.Gateway", "oneword.index.v1.Collections"]
        );
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        for file in &set.file {
            for import in &file.dependency {
                assert!(names.contains(&import.as_str()), "{import} is missing");
            }
        }
        // The public API owns its messages: no internal service's file comes with it.
        for internal in ["decoder", "tokenizer", "embedder"] {
            let file = format!("oneword/{internal}/v1/{internal}.proto");
            assert!(!names.contains(&file.as_str()), "{names:?}");
        }
    }

    #[test]
    fn an_internal_service_describes_only_itself() {
        let set = descriptors(&["oneword.decoder.v1.Decoder"]);
        assert_eq!(services_of(&set), ["oneword.decoder.v1.Decoder"]);
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "oneword/common/v1/tensor.proto",
                "oneword/decoder/v1/decoder.proto"
            ]
        );
    }
}
