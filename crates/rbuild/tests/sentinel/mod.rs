//! A sentinel tree beside the state directory, to prove a hostile build changed no host
//! file, and the runner that builds as root or as the unprivileged test user.
#![allow(dead_code)]

use crate::common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every attribute of every entry below `dir`, to compare before and after.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            sha256_hex(&fs::read(&p).unwrap())
        } else if m.file_type().is_symlink() {
            fs::read_link(&p).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.insert(
            p.clone(),
            format!(
                "{:o} {}:{} {} {} {content}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime()
            ),
        );
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// The sentinel: a 0600 file, a 0700 directory with a file, a symlink; owned by `uid`.
pub fn make_sentinel(dir: &Path, uid: u32) {
    fs::create_dir_all(dir.join("dir")).unwrap();
    fs::write(dir.join("victim"), "keep me\n").unwrap();
    fs::set_permissions(dir.join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(dir.join("dir/inside"), "inside\n").unwrap();
    fs::set_permissions(dir.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("victim", dir.join("link")).unwrap();
    for p in ["", "victim", "dir", "dir/inside", "link"] {
        std::os::unix::fs::lchown(dir.join(p), Some(uid), Some(uid)).unwrap();
    }
}

/// Who runs rbuild: root, or the unprivileged test user.
pub struct Runner {
    pub base: PathBuf,
    pub rootless: bool,
}

impl Runner {
    pub fn new(base: &Path, rootless: bool) -> Runner {
        copy_rbuild_to(&base.join("rbuild"));
        copy_dir(
            &repo().join("testdata/images/busybox-amd64"),
            &base.join("busybox"),
        );
        fs::create_dir_all(base.join("home")).unwrap();
        Runner {
            base: base.to_path_buf(),
            rootless,
        }
    }

    /// `rbuild build` with `busybox` and `base` bound, writing the final filesystem to `out`.
    pub fn build(&self, context: &Path, layout: &Path, out: &Path, extra: &[&str]) -> Output {
        if self.rootless {
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{TEST_USER}:{TEST_USER}"))
                    .arg(&self.base),
            );
        }
        let bin = self.base.join("rbuild");
        let mut c = if self.rootless {
            as_test_user(&bin, &self.base.join("home"))
        } else {
            Command::new(&bin)
        };
        c.arg("--root")
            .arg(self.base.join("state"))
            .arg("build")
            .arg("--progress=plain")
            .arg("--build-context")
            .arg(format!(
                "busybox=oci-layout://{}",
                self.base.join("busybox").display()
            ))
            .arg("--build-context")
            .arg(format!("base=oci-layout://{}", layout.display()))
            .arg("-o")
            .arg(format!("type=local,dest={}", out.display()))
            .args(extra)
            .arg(context);
        run(&mut c)
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// A temporary directory (0755) holding a sentinel tree, `sentinel/`, owned by whoever
/// builds, and a [`Runner`] building as root or as the unprivileged test user.
pub struct Setup {
    tmp: tempfile::TempDir,
    /// The sentinel tree.
    pub sentinel: PathBuf,
    /// Who builds.
    pub runner: Runner,
}

impl Setup {
    pub fn new(rootless: bool) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
        let uid = if rootless { ensure_test_user() } else { 0 };
        let sentinel = base.join("sentinel");
        make_sentinel(&sentinel, uid);
        let runner = Runner::new(base, rootless);
        Setup {
            tmp,
            sentinel,
            runner,
        }
    }

    /// The temporary directory.
    pub fn base(&self) -> &Path {
        self.tmp.path()
    }
}

/// Two tests of `body(rootless)`: as root, and as the unprivileged test user (which root
/// creates). CI runs as root; elsewhere they fail under `CI=true` or say they are skipped.
macro_rules! as_root_and_rootless {
    ($as_root:ident, $rootless:ident, $body:path) => {
        #[test]
        fn $as_root() {
            if !crate::common::precondition(crate::common::is_root(), "runs as root (CI does)") {
                return;
            }
            $body(false);
        }

        #[test]
        fn $rootless() {
            if !crate::common::precondition(
                crate::common::is_root(),
                "needs root to create its user",
            ) {
                return;
            }
            $body(true);
        }
    };
}
pub(crate) use as_root_and_rootless;
