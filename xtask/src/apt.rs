//! Debian packaging: which packages are installed, installing the missing ones,
//! and the architecture bookkeeping the fixtures need.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::util;

/// System packages the test suite, the demo and the benchmarks use.
pub const TEST_PACKAGES: &[&str] = &[
    "qemu-user-static",
    "skopeo",
    "podman",
    "umoci",
    "uidmap",
    "buildah",
    "runc",
    "docker-registry",
    // The registry tests make a CA and a server certificate with it.
    "openssl",
    "time",
    // The terminal the tty progress tests run rbuild in.
    "tmux",
    // The Debian fixture: mmdebstrap, which needs arch-test for foreign architectures
    // and the archive keyring to verify what it downloads.
    "mmdebstrap",
    "arch-test",
    "debian-archive-keyring",
];

/// `cargo xtask deps`: installs whichever of [`TEST_PACKAGES`] are missing.
pub fn deps() -> Result<()> {
    ensure_installed(TEST_PACKAGES)
}

/// Installs the missing ones among `packages` (as root), or names them and fails (otherwise).
pub fn ensure_installed(packages: &[&str]) -> Result<()> {
    ensure_installed_as(packages, util::is_root())
}

fn ensure_installed_as(packages: &[&str], root: bool) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        util::info(&format!("installed: {}", packages.join(" ")));
        return Ok(());
    }
    let install = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !root {
        bail!(
            "missing packages: {}\nrun as root: {install}",
            missing.join(" ")
        );
    }
    util::info(&format!("installing: {}", missing.join(" ")));
    apt_update()?;
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing);
    util::run(&mut cmd)?;
    let still = missing_packages(packages);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

/// The packages in `packages` whose dpkg status is not "install ok installed".
pub fn missing_packages<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages
        .iter()
        .copied()
        .filter(|pkg| !is_installed(pkg))
        .collect()
}

fn is_installed(package: &str) -> bool {
    let mut cmd = Command::new("dpkg-query");
    cmd.args(["-W", "-f=${Status}", package]);
    match cmd.output() {
        Ok(out) => out.status.success() && out.stdout == b"install ok installed",
        Err(_) => false,
    }
}

/// `apt-get update`, non-interactively. A partial failure (one mirror mid-sync)
/// is reported and tolerated: the lists that did arrive are usually enough, and
/// the install or download that follows fails clearly when they are not.
pub fn apt_update() -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").arg("update");
    if let Err(err) = util::run(&mut cmd) {
        util::info(&format!(
            "warning: {err:#}; continuing with the lists apt has"
        ));
    }
    Ok(())
}

/// The host's dpkg architecture plus the foreign ones already added.
pub fn dpkg_architectures() -> Result<Vec<String>> {
    let native = util::output_text(Command::new("dpkg").arg("--print-architecture"))?;
    let foreign = util::output_text(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let mut arches = vec![native];
    arches.extend(foreign.split_whitespace().map(str::to_string));
    Ok(arches)
}

/// The host's dpkg architecture, e.g. `amd64`.
pub fn native_architecture() -> Result<String> {
    util::output_text(Command::new("dpkg").arg("--print-architecture"))
}

/// Every architecture named by the `Architectures:` fields of the downloaded
/// release files, or `None` when apt has no release files yet.
pub fn archive_architectures(lists: &Path) -> Option<Vec<String>> {
    let mut found = Vec::new();
    let mut any = false;
    for entry in std::fs::read_dir(lists).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with("_InRelease") || name.ends_with("_Release")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        any = true;
        found.extend(release_architectures(&text));
    }
    found.sort();
    found.dedup();
    any.then_some(found)
}

/// The architectures in one release file's `Architectures:` field.
pub fn release_architectures(release: &str) -> Vec<String> {
    release
        .lines()
        .find_map(|line| line.strip_prefix("Architectures:"))
        .map(|arches| arches.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether apt has a package index for `arch` (so `apt-get download pkg:arch` can work).
pub fn has_package_lists(lists: &Path, arch: &str) -> bool {
    let needle = format!("_binary-{arch}_Packages");
    let Ok(entries) = std::fs::read_dir(lists) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(&needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_architectures_reads_the_field() {
        let release = "Origin: Debian\nSuite: stable\nArchitectures: all amd64 arm64 s390x\nComponents: main\n";
        assert_eq!(
            release_architectures(release),
            ["all", "amd64", "arm64", "s390x"]
        );
        assert!(release_architectures("Origin: Debian\n").is_empty());
    }

    #[test]
    fn archive_architectures_merges_release_files() {
        let tmp = util::TempDir::new("apt-test").unwrap();
        assert_eq!(archive_architectures(tmp.path()), None);
        std::fs::write(
            tmp.path().join("a_dists_x_InRelease"),
            "Architectures: amd64 i386\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("b_dists_y_InRelease"),
            "Architectures: amd64 s390x\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("a_dists_x_main_binary-s390x_Packages.lz4"),
            "",
        )
        .unwrap();
        assert_eq!(
            archive_architectures(tmp.path()).unwrap(),
            ["amd64", "i386", "s390x"]
        );
        assert!(has_package_lists(tmp.path(), "s390x"));
        assert!(!has_package_lists(tmp.path(), "i386"));
    }

    #[test]
    fn non_root_gets_the_command_to_run() {
        let err = ensure_installed_as(&["dpkg", "no-such-package-xtask-test"], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing packages: no-such-package-xtask-test\n"),
            "{err}"
        );
        assert!(
            err.contains("apt-get install -y --no-install-recommends no-such-package-xtask-test"),
            "{err}"
        );
        ensure_installed_as(&["dpkg"], false).unwrap();
    }

    #[test]
    fn a_package_that_does_not_exist_is_missing() {
        let missing = missing_packages(&["dpkg", "no-such-package-xtask-test"]);
        assert_eq!(missing, ["no-such-package-xtask-test"]);
    }
}
