//! ADD of an archive into a destination reached through a symlink that points at nothing
//! yet: the directory is created where the link points, as COPY and BuildKit do.

mod common;

use common::TarBuilder;
use rbuild_snapshot::extract_archive;
use std::fs;

#[test]
fn a_destination_behind_dangling_links_is_created_where_they_point() {
    let rootfs = tempfile::tempdir().expect("tempdir");
    let root = rootfs.path();
    fs::create_dir(root.join("srv")).expect("srv");
    // Absolute (from the tree's top), relative, and a chain of both.
    std::os::unix::fs::symlink("/srv/app", root.join("app")).expect("link");
    std::os::unix::fs::symlink("srv/data/deep", root.join("data")).expect("link");
    std::os::unix::fs::symlink("/chain2", root.join("chain")).expect("link");
    std::os::unix::fs::symlink("../srv/chained", root.join("chain2")).expect("link");
    std::os::unix::fs::symlink("../../srv/gone/../made/./here", root.join("up")).expect("link");
    for (dest, lands) in [
        ("/app/", "srv/app"),
        ("/data/sub", "srv/data/deep/sub"),
        ("/chain/x/", "srv/chained/x"),
        // A link whose target climbs above the top and names missing parents.
        ("/up/", "srv/made/here"),
    ] {
        let mut tb = TarBuilder::new();
        tb.file("f", 0o644, 0, 0, 1, dest.as_bytes());
        extract_archive(tb.finish().as_slice(), root, dest)
            .unwrap_or_else(|e| panic!("ADD to {dest}: {e}"));
        assert_eq!(
            fs::read(root.join(lands).join("f")).expect(lands),
            dest.as_bytes()
        );
    }
    for link in ["app", "data", "chain", "chain2", "up"] {
        assert!(
            fs::symlink_metadata(root.join(link))
                .expect(link)
                .is_symlink()
        );
    }
}

#[test]
fn a_destination_behind_a_link_loop_is_refused() {
    let rootfs = tempfile::tempdir().expect("tempdir");
    let root = rootfs.path();
    std::os::unix::fs::symlink("/b", root.join("a")).expect("link");
    std::os::unix::fs::symlink("/a", root.join("b")).expect("link");
    let mut tb = TarBuilder::new();
    tb.file("f", 0o644, 0, 0, 1, b"x");
    let err = extract_archive(tb.finish().as_slice(), root, "/a/").expect_err("refused");
    assert!(err.to_string().contains("symbolic links"), "{err}");
    assert_eq!(fs::read_dir(root).expect("list").count(), 2);
}
