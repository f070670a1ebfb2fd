mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{set_xattr, whiteout};
use rbuild_snapshot::{LayerStack, SnapshotError};

/// Three layers, top-most first: l0 over l1 over l2.
fn layers(root: &Path) -> LayerStack {
    let (l0, l1, l2) = (root.join("l0"), root.join("l1"), root.join("l2"));
    for d in [&l0, &l1, &l2] {
        fs::create_dir(d).unwrap();
    }
    fs::create_dir_all(l2.join("a")).unwrap();
    fs::write(l2.join("a/x"), b"x").unwrap();
    fs::write(l2.join("a/y"), b"y2").unwrap();
    fs::create_dir_all(l2.join("b")).unwrap();
    fs::write(l2.join("b/z"), b"z").unwrap();
    fs::create_dir_all(l2.join("etc/real")).unwrap();
    fs::write(l2.join("etc/real/file"), b"real").unwrap();
    symlink("/etc/real", l2.join("abs")).unwrap();
    symlink("../../../../etc/real", l2.join("rel")).unwrap();
    symlink("loop2", l2.join("loop1")).unwrap();
    symlink("loop1", l2.join("loop2")).unwrap();
    // A symlink aimed at the host's root must stay inside the stack.
    symlink("/", l2.join("hostroot")).unwrap();

    fs::create_dir_all(l1.join("a")).unwrap();
    whiteout(&l1.join("a/x"));
    fs::write(l1.join("a/y"), b"y1").unwrap();
    fs::create_dir_all(l1.join("b")).unwrap();
    set_xattr(&l1.join("b"), "user.overlay.opaque", b"y");
    fs::write(l1.join("b/w"), b"w").unwrap();

    fs::create_dir_all(l0.join("a")).unwrap();
    fs::write(l0.join("a/new"), b"new").unwrap();
    fs::create_dir_all(l0.join("usr")).unwrap();
    symlink("/opt", l0.join("usr/local")).unwrap();
    fs::create_dir_all(l0.join("opt/bin")).unwrap();
    fs::write(l0.join("opt/bin/tool"), b"tool").unwrap();
    whiteout(&l0.join("etc"));
    fs::create_dir_all(l0.join("etc2")).unwrap();

    LayerStack::new(vec![l0, l1, l2])
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_names() {
    let tmp = tempfile::tempdir().unwrap();
    let s = layers(tmp.path());
    assert!(s.lookup("/a/x").unwrap().is_none());
    let y = s.lookup("/a/y").unwrap().unwrap();
    assert_eq!(
        fs::read(&y.host_path).unwrap(),
        b"y1",
        "top-most version wins"
    );
    assert_eq!(s.read_dir("/a").unwrap(), ["new", "y"]);
    assert_eq!(s.read_dir("/b").unwrap(), ["w"]);
    assert!(s.lookup("/b/z").unwrap().is_none());
    assert!(
        s.lookup("/etc/real/file").unwrap().is_none(),
        "whole dir whited out"
    );
    let root = s.read_dir("/").unwrap();
    assert!(!root.contains(&"etc".to_string()));
    assert!(root.contains(&"etc2".to_string()));
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let s = layers(tmp.path());
    let (l0, l2) = (tmp.path().join("l0"), tmp.path().join("l2"));
    // Undo the whiteout of /etc for this test.
    fs::remove_file(l0.join("etc")).unwrap();

    let abs = s.lookup("/abs").unwrap().unwrap();
    assert!(
        abs.metadata.file_type().is_symlink(),
        "lookup keeps the final symlink"
    );
    assert_eq!(abs.path, "/abs");
    let through = s.lookup("/abs/file").unwrap().unwrap();
    assert_eq!(through.path, "/etc/real/file");
    assert_eq!(through.host_path, l2.join("etc/real/file"));
    let rel = s.resolve("/rel").unwrap().unwrap();
    assert_eq!(rel.path, "/etc/real", "`..` is clamped at the root");
    let tool = s.lookup("/usr/local/bin/tool").unwrap().unwrap();
    assert_eq!(tool.path, "/opt/bin/tool");
    let hostroot = s.resolve("hostroot/etc/real/file").unwrap().unwrap();
    assert_eq!(hostroot.path, "/etc/real/file");
    assert!(s.lookup("/hostroot/etc/passwd").unwrap().is_none());
    assert!(matches!(
        s.resolve("/loop1"),
        Err(SnapshotError::SymlinkLoop { .. })
    ));
    assert!(
        s.lookup("/a/new/below").unwrap().is_none(),
        "file is not a dir"
    );
    assert_eq!(s.read_dir("/usr/local/bin").unwrap(), ["tool"]);
}

#[test]
fn an_empty_stack_is_empty() {
    let s = LayerStack::new(Vec::new());
    assert!(s.lookup("/x").unwrap().is_none());
    assert!(s.read_dir("/").is_err());
}
