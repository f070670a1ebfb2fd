//! Every operation of `Root`/`Target` stays inside the tree, whatever symlinks it holds.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use rbuild_fsroot::{FileKind, Root};

/// A tree with a symlink `esc` to a host file and `dir` to a host directory beside it.
fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "k").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(tmp.path().join("hostdir")).unwrap();
    symlink(&victim, tree.join("esc")).unwrap();
    symlink(tmp.path().join("hostdir"), tree.join("dir")).unwrap();
    symlink("../victim", tree.join("rel")).unwrap();
    (tmp, victim)
}

fn victim_unchanged(victim: &Path) {
    let m = fs::metadata(victim).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(fs::read(victim).unwrap(), b"k");
    assert!(m.mtime() > 1_000_000);
}

#[test]
fn metadata_calls_on_a_symlink_never_reach_its_target() {
    let (tmp, victim) = setup();
    let root = Root::open(&tmp.path().join("tree")).unwrap();
    for name in ["esc", "rel"] {
        let t = root.at(Path::new(name)).unwrap();
        assert_eq!(t.stat().unwrap().unwrap().kind, FileKind::Symlink);
        assert!(t.chmod(0o7777).is_err(), "chmod of a symlink is refused");
        t.set_times(1, 0).unwrap();
        assert!(t.set_xattr("user.x", b"y").is_err());
        assert!(t.open_file().is_err());
        assert!(t.create_file(0o644).is_err());
    }
    victim_unchanged(&victim);
    assert!(
        fs::read_dir(tmp.path().join("hostdir"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn parents_that_are_symlinks_are_refused() {
    let (tmp, _victim) = setup();
    let root = Root::open(&tmp.path().join("tree")).unwrap();
    let err = root.at(Path::new("dir/new")).unwrap_err();
    assert!(rbuild_fsroot::is_symlink_error(&err), "{err}");
    assert!(root.at(Path::new("../x")).is_err());
    assert!(root.at(Path::new("/etc/passwd")).is_err());
    assert!(root.create_dir_all(Path::new("dir/a/b"), 0o755).is_err());
    assert!(
        fs::read_dir(tmp.path().join("hostdir"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_directory_replaced_by_a_symlink_is_not_followed() {
    let (tmp, victim) = setup();
    let tree = tmp.path().join("tree");
    let root = Root::open(&tree).unwrap();
    root.create_dir_all(Path::new("a/x"), 0o755).unwrap();
    fs::remove_dir(tree.join("a/x")).unwrap();
    symlink(&victim, tree.join("a/x")).unwrap();
    let t = root.at(Path::new("a/x")).unwrap();
    assert!(t.chmod(0o777).is_err());
    t.chown(0, 0).ok();
    victim_unchanged(&victim);
}

#[test]
fn files_links_and_removal_work_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Root::open(tmp.path()).unwrap();
    root.create_dir_all(Path::new("d/e"), 0o755).unwrap();
    let f = root.at(Path::new("d/e/f")).unwrap();
    {
        use std::io::Write;
        f.create_file(0o600).unwrap().write_all(b"hi").unwrap();
    }
    f.chmod(0o4755).unwrap();
    f.set_times(1_000_000_000, 5).unwrap();
    let st = f.stat().unwrap().unwrap();
    assert_eq!(
        (st.kind, st.mode, st.mtime, st.mtime_nsec),
        (FileKind::File, 0o4755, 1_000_000_000, 5)
    );
    let l = root.at(Path::new("d/link")).unwrap();
    l.hard_link_to(&f).unwrap();
    assert_eq!(l.stat().unwrap().unwrap().nlink, 2);
    root.at(Path::new("")).unwrap().chmod(0o750).unwrap();
    assert_eq!(fs::metadata(tmp.path()).unwrap().mode() & 0o7777, 0o750);
    root.at(Path::new("d")).unwrap().remove_all().unwrap();
    assert!(root.list().unwrap().is_empty());
}
