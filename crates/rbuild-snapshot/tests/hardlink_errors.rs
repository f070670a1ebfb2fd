//! What a layer's bad hard link is reported as.

mod common;

use common::TarBuilder;
use rbuild_snapshot::{SnapshotError, unpack_layer};

#[test]
fn a_hard_link_to_a_file_of_another_layer_names_its_missing_target() {
    // The target's directory exists only in a lower layer: this layer has neither.
    let mut tb = TarBuilder::new();
    tb.dir("bin/", 0o755, 0, 0, 1)
        .hardlink("bin/sh", "usr/bin/dash");
    let dest = tempfile::tempdir().expect("tempdir");
    let err = unpack_layer(tb.finish().as_slice(), dest.path()).expect_err("refused");
    match &err {
        SnapshotError::BadHardlink { path, target } => {
            assert_eq!(path, "bin/sh");
            assert_eq!(target, "usr/bin/dash");
        }
        other => panic!("unexpected error: {other}"),
    }
    assert_eq!(
        err.to_string(),
        "hardlink \"bin/sh\" points to missing or invalid target \"usr/bin/dash\" \
         (a hard link's target must be an earlier file of the same layer)"
    );
    assert!(!dest.path().join("bin/sh").exists());
}
