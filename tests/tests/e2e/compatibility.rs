//! The public protos' promise: `v1` only grows. `make proto-check` runs buf against the previous
//! commit; these tests show the check tells a growth from a break, on copies of `proto/`.

use std::path::Path;
use std::process::Command;

use oneword_e2e::{buf, repo};

/// A copy of `proto/` with one file's text replaced, and what `buf breaking` says of it against
/// the original.
fn breaking_after(file: &str, from: &str, to: &str) -> (bool, String) {
    let original = repo().join("proto");
    let changed = tempfile::tempdir().unwrap();
    copy_dir(&original, changed.path());
    let path = changed.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} no longer holds {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let out = Command::new(buf())
        .arg("breaking")
        .arg(changed.path())
        .arg("--against")
        .arg(&original)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

const GATEWAY: &str = "oneword/gateway/v1/gateway.proto";

#[test]
fn the_protos_pass_buf_lint() {
    let out = Command::new(buf())
        .arg("lint")
        .arg(repo().join("proto"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn removing_or_renumbering_a_public_field_is_a_break() {
    let seed = "  optional uint64 seed = 6;\n  // Stop when any";
    let (ok, said) = breaking_after(GATEWAY, seed, "  // Stop when any");
    assert!(!ok, "removing GenerateRequest.seed passed: {said}");
    assert!(said.contains("GenerateRequest"), "{said}");

    let (ok, said) = breaking_after(
        GATEWAY,
        seed,
        "  optional uint64 seed = 60;\n  // Stop when any",
    );
    assert!(!ok, "renumbering GenerateRequest.seed passed: {said}");
}

#[test]
fn adding_a_field_or_changing_an_internal_proto_is_not_a_break() {
    let (ok, said) = breaking_after(
        GATEWAY,
        "message GenerateRequest {\n",
        "message GenerateRequest {\n  // A field added later.\n  optional uint32 added = 99;\n",
    );
    assert!(ok, "adding a field was called a break: {said}");

    let (ok, said) = breaking_after(
        "oneword/decoder/v1/decoder.proto",
        "  bool release_after = 6;\n",
        "",
    );
    assert!(
        ok,
        "changing the decoder's internal proto was called a break: {said}"
    );
}
