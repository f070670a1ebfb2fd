//! The state directory (`--root`) is rbuild's alone: a directory rbuild did not make is
//! refused and left as it was; clean-up removes only what rbuild named and follows no link,
//! whatever a killed build left behind.

mod common;
mod sentinel;

use common::*;
use sentinel::{Setup, as_root_and_rootless, snapshot};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Output;

/// `rbuild --root ROOT ARGS…` as root.
fn rbuild_at(root: &Path, args: &[&str]) -> Output {
    run(rbuild(root).args(args))
}

/// A directory with foreign content in `tmp/` and beside it.
fn foreign_dir(dir: &Path) {
    fs::create_dir_all(dir.join("tmp/keep-me")).unwrap();
    fs::write(dir.join("tmp/keep-me/file"), "mine\n").unwrap();
    fs::write(dir.join("tmp/run-not-rbuilds"), "mine too\n").unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(dir.join("notes.txt"), "notes\n").unwrap();
}

fn assert_refused(out: &Output, dir: &Path) {
    let err = stderr(out);
    assert!(!out.status.success(), "accepted a foreign --root:\n{err}");
    assert!(
        err.contains(&format!(
            "{} is not an rbuild state directory",
            dir.canonicalize().unwrap().display()
        )),
        "{err}"
    );
}

#[test]
fn a_foreign_root_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("foreign");
    foreign_dir(&dir);
    let ctx = context(&tmp.path().join("ctx"), "FROM scratch\nCOPY . /\n", &[]);
    let ctx = ctx.display().to_string();
    let before = snapshot(&dir);
    for args in [
        &["images"][..],
        &["image", "ls"],
        &["prune"],
        &["image", "prune"],
        &["build", &ctx],
    ] {
        let out = rbuild_at(&dir, args);
        assert_refused(&out, &dir);
        assert_eq!(
            snapshot(&dir),
            before,
            "rbuild {args:?} changed the directory"
        );
    }
}

#[test]
fn a_directory_of_only_a_foreign_tmp_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("only-tmp");
    fs::create_dir_all(dir.join("tmp/context-foreign")).unwrap();
    fs::write(dir.join("tmp/context-foreign/f"), "x").unwrap();
    let before = snapshot(&dir);
    let out = rbuild_at(&dir, &["images"]);
    assert_refused(&out, &dir);
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_new_or_empty_root_is_marked_and_an_old_one_adopted() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let old = tmp.path().join("old");
    fs::create_dir_all(old.join("store")).unwrap();
    fs::write(old.join("lock"), "").unwrap();
    for dir in [tmp.path().join("new"), empty, old] {
        let out = rbuild_at(&dir, &["images"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let marker = fs::read_to_string(dir.join("rbuild-state")).unwrap();
        assert!(marker.contains("rbuild's state directory"), "{marker}");
        // Marked, it stays rbuild's whatever it holds.
        fs::write(dir.join("extra"), "x").unwrap();
        let again = rbuild_at(&dir, &["images"]);
        assert!(again.status.success(), "{}", stderr(&again));
    }
}

#[test]
fn clean_up_removes_only_what_rbuild_named_and_keeps_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let out = rbuild_at(&dir, &["images"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir_all(dir.join("tmp/not-rbuilds/sub")).unwrap();
    fs::write(dir.join("tmp/notes.txt"), "keep\n").unwrap();
    fs::create_dir_all(dir.join("tmp/run-leftover/work/work")).unwrap();
    fs::set_permissions(
        dir.join("tmp/run-leftover/work/work"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::write(dir.join("tmp/ref-leftover"), "x").unwrap();
    let out = rbuild_at(&dir, &["images"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut left: Vec<String> = fs::read_dir(dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["not-rbuilds", "notes.txt"]);
    let mode = fs::metadata(dir.join("tmp")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o750, "the existing tmp/ was chmodded");
}

/// What a build killed with SIGKILL may leave, with a hostile context's links in it: the
/// next build's clean-up must follow none of them.
fn killed_build_leftovers(rootless: bool) {
    let setup = Setup::new(rootless);
    let (base, sentinel, runner) = (setup.base(), &setup.sentinel, &setup.runner);
    let ctx = context(&base.join("ctx"), "FROM busybox\nRUN true\n", &[]);
    let busybox = base.join("busybox");
    let first = runner.build(&ctx, &busybox, &base.join("out1"), &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let state_tmp = base.join("state/tmp");
    fs::create_dir_all(state_tmp.join("context-killed/work")).unwrap();
    symlink(
        sentinel.join("victim"),
        state_tmp.join("context-killed/work/work"),
    )
    .unwrap();
    fs::create_dir_all(state_tmp.join("run-killed")).unwrap();
    symlink(sentinel, state_tmp.join("run-killed/work")).unwrap();
    symlink(sentinel, state_tmp.join("copy-killed")).unwrap();
    let before = snapshot(sentinel);
    let out = runner.build(&ctx, &busybox, &base.join("out2"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(sentinel), before, "the sentinel changed");
    for leftover in ["context-killed", "run-killed", "copy-killed"] {
        assert!(
            fs::symlink_metadata(state_tmp.join(leftover)).is_err(),
            "{leftover} was not removed"
        );
    }
}

as_root_and_rootless!(
    killed_build_leftovers_follow_no_link_as_root,
    killed_build_leftovers_follow_no_link_rootless,
    killed_build_leftovers
);
