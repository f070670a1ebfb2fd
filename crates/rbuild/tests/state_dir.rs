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

/// Runs `rbuild --root DIR images` as root over a state directory another user could
/// change; it must be refused naming `culprit`, and `victim` (a root-only directory the
/// planted links point at) must stay as it was.
fn refused_as_planted(dir: &Path, culprit: &Path, victim: &Path) {
    let before = snapshot(victim);
    for args in [&["images"][..], &["image", "prune"], &["prune"]] {
        let out = rbuild_at(dir, args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} accepted {}", dir.display());
        assert!(
            err.contains(&culprit.display().to_string())
                && err.contains("rbuild keeps its state only in a directory of its user"),
            "{args:?}: {err}"
        );
        assert_eq!(snapshot(victim), before, "{args:?} changed the victim");
    }
}

/// A root-only directory holding what rbuild's clean-up and prune would remove.
fn root_only_victim(dir: &Path) {
    fs::create_dir_all(dir.join("run-secret")).unwrap();
    fs::write(dir.join("run-secret/key"), "s").unwrap();
    fs::write(dir.join("context-db"), "s").unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::write(dir.join("tmp/blob"), "s").unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn a_state_directory_another_user_owns_is_refused() {
    if !precondition(is_root(), "runs as root to own what the test user cannot") {
        return;
    }
    let uid = ensure_test_user();
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("root-only");
    root_only_victim(&victim);
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("rbuild-state"), "x").unwrap();
    symlink(&victim, shared.join("tmp")).unwrap();
    for p in ["", "rbuild-state", "tmp"] {
        std::os::unix::fs::lchown(shared.join(p), Some(uid), Some(uid)).unwrap();
    }
    refused_as_planted(&shared, &shared, &victim);
}

#[test]
fn a_state_directory_with_linked_entries_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("root-only");
    root_only_victim(&victim);
    for entry in ["tmp", "lock", "store", "layers", "cache"] {
        let dir = tmp.path().join(format!("state-{entry}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("lock"), "").unwrap();
        let _ = fs::remove_file(dir.join(entry));
        symlink(&victim, dir.join(entry)).unwrap();
        refused_as_planted(&dir, &dir.join(entry), &victim);
    }
    let world = tmp.path().join("world-writable");
    fs::create_dir(&world).unwrap();
    fs::set_permissions(&world, fs::Permissions::from_mode(0o777)).unwrap();
    let out = rbuild_at(&world, &["images"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("writable by every user, without the sticky bit"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_dir(&world).unwrap().count(), 0, "it was changed");
}

#[test]
fn commands_started_at_once_on_a_new_root_all_claim_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new");
    let children: Vec<_> = (0..8)
        .map(|_| {
            rbuild(&dir)
                .arg("images")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(dir.join("rbuild-state").is_file());
}

/// A sticky directory every user may write to (a fresh tmpfs mount): accepted, and every
/// entry of the layout is made at once, so no other user can put a link where one goes.
#[test]
fn a_sticky_shared_root_gets_its_whole_layout_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sticky");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
    let out = rbuild_at(&dir, &["images"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let layout = [
        "cache",
        "cache-mounts",
        "images",
        "layers",
        "lock",
        "rbuild-state",
        "run",
        "store",
        "tmp",
        "urls",
    ];
    assert_eq!(names, layout);
}
