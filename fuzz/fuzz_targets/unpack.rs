//! Arbitrary bytes fed as a tar layer to the unpacker, in both whiteout modes, in a fresh temp
//! root with a sentinel directory beside it: whatever the bytes, the unpacker must not panic and
//! nothing outside the root may change.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;

use keel_containerd::diff::unpack::{unpack_with, UnpackOptions, WhiteoutMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let sentinel = dir.path().join("sentinel");
    fs::create_dir(&root).expect("root");
    fs::create_dir(&sentinel).expect("sentinel");
    fs::write(sentinel.join("canary"), b"canary").expect("canary");
    // Small files only, so one input cannot take seconds.
    let options = UnpackOptions { max_file_size: 1 << 24, max_total_size: 1 << 26 };
    for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        let _ = unpack_with(data, &root, mode, &options);
    }
    let beside: Vec<_> = fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(beside.len(), 2, "something appeared beside the root: {beside:?}");
    let inside: Vec<_> = fs::read_dir(&sentinel).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(inside, vec!["canary"], "the sentinel changed");
    assert_eq!(fs::read(sentinel.join("canary")).expect("canary"), b"canary", "the canary was written");
    assert_eq!(fs::metadata(sentinel.join("canary")).expect("canary").nlink(), 1, "the canary was linked");
});
