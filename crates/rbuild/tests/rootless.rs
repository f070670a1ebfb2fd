//! rbuild run by an unprivileged user (via `setpriv`): the same build must succeed and
//! produce the same files, owned by the container's root in the layers.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const USER: &str = "rbuildtest";

fn ensure_user() -> u32 {
    if !run(Command::new("id").arg("-u").arg(USER)).status.success() {
        run_ok(Command::new("useradd").args(["--no-create-home", "--shell", "/bin/sh", USER]));
    }
    let out = run_ok(Command::new("id").arg("-u").arg(USER));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn unprivileged_user_builds_the_same_image() {
    if !is_root() {
        panic!(
            "this test creates a user and must run as root (cargo xtask test runs it as root in CI)"
        );
    }
    ensure_user();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    copy_rbuild_to(&base.join("rbuild"));
    copy_tree(&busybox_layout(), &base.join("busybox"));
    copy_tree(&repo().join("Dockerfiles/hello"), &base.join("hello"));
    std::fs::create_dir(base.join("home")).unwrap();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{USER}:{USER}"))
            .arg(base),
    );
    let platforms = "linux/amd64,linux/arm64";
    let user_out = base.join("user.tar");
    let mut c = Command::new("setpriv");
    c.args(["--reuid", USER, "--regid", USER, "--clear-groups", "--"])
        .arg(base.join("rbuild"))
        .env("HOME", base.join("home"))
        .arg("build")
        .args(["--platform", platforms])
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            base.join("busybox").display()
        ))
        .arg("-o")
        .arg(format!("type=oci,dest={}", user_out.display()))
        .arg(base.join("hello"));
    run_ok(&mut c);
    assert!(
        base.join("home/.local/share/rbuild").is_dir(),
        "default state dir of a user"
    );

    let root_out = base.join("root.tar");
    let res = build(
        &base.join("root-state"),
        &base.join("hello"),
        platforms,
        &root_out,
        &[],
    );
    assert!(res.status.success());

    let (u, r) = (
        OciLayout::open_tar(&user_out),
        OciLayout::open_tar(&root_out),
    );
    for p in ["linux/amd64", "linux/arm64"] {
        let (mu, mr) = (u.manifest_for(p), r.manifest_for(p));
        for f in ["arch", "platform", "etc/hello.txt"] {
            assert_eq!(u.file(&mu, f), r.file(&mr, f), "{p} {f}");
            assert!(u.file(&mu, f).is_some(), "{p} {f} missing");
        }
        // Files the steps wrote belong to the container's root, not to the host user.
        for (_, path, _, _, uid, gid) in u.layer_entries(&mu) {
            assert_eq!((uid, gid), (0, 0), "{p} {path}");
        }
    }
}
