//! Compiles `proto/` with the protoc shipped by `protoc-bin-vendored`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a compile-time path would go stale if the build script were reused.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "oneword/common/v1/tensor.proto",
        "oneword/tokenizer/v1/tokenizer.proto",
        "oneword/embedder/v1/embedder.proto",
        "oneword/decoder/v1/decoder.proto",
        "oneword/index/v1/index.proto",
        "oneword/gateway/v1/gateway.proto",
    ]
    .map(|f| root.join(f));
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("oneword_descriptor.bin"))
        .compile_protos(&files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
