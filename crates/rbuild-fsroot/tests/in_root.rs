//! In-root resolution: links on the way are followed with the tree's top as `/`.

use rbuild_fsroot::Root;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

#[test]
fn links_resolve_inside_the_tree_and_never_leave_it() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("top");
    fs::create_dir_all(top.join("real")).unwrap();
    fs::create_dir_all(tmp.path().join("real")).unwrap();
    symlink("/real", top.join("abs")).unwrap();
    symlink("../../../real", top.join("up")).unwrap();
    let root = Root::open(&top).unwrap();
    for (via, name) in [("abs", "a"), ("up", "b")] {
        let t = root.at_in_root(&Path::new(via).join(name)).unwrap();
        t.create_file(0o644).unwrap();
        assert!(top.join("real").join(name).is_file(), "{via}");
        assert!(!tmp.path().join("real").join(name).exists(), "{via}");
    }
    // The final name is never followed: the link itself is what stands there.
    let st = root
        .at_in_root(Path::new("abs"))
        .unwrap()
        .stat()
        .unwrap()
        .unwrap();
    assert_eq!(st.kind, rbuild_fsroot::FileKind::Symlink);
}

#[test]
fn mkdir_all_follows_links_and_refuses_files() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("top");
    fs::create_dir_all(top.join("real")).unwrap();
    fs::write(top.join("file"), "f").unwrap();
    symlink("/real", top.join("link")).unwrap();
    let root = Root::open(&top).unwrap();
    root.mkdir_all_in_root(Path::new("link/x/y"), 0o755)
        .unwrap();
    assert!(top.join("real/x/y").is_dir());
    let (at, e) = root
        .mkdir_all_in_root(Path::new("file/x"), 0o755)
        .unwrap_err();
    assert_eq!(at, Path::new("file"));
    assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
}
