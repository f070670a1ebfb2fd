//! Test tools newer than the host's release has: fetched from Debian unstable with a
//! private apt configuration (its own sources list, package lists and cache under the
//! target directory), so the host's apt setup is never changed. apt verifies the
//! downloaded lists with the host's archive keyring, as for any other download.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util;

/// The environment variable `cargo xtask test` sets to the umoci that reads zstd layers.
pub const UMOCI_ENV: &str = "RBUILD_TEST_UMOCI";

/// The suite the newer tools come from.
const SOURCE: &str = "deb http://deb.debian.org/debian sid main\n";

/// The oldest umoci that unpacks zstd layers (0.4.7, bookworm's, cannot).
const UMOCI_MIN: (u32, u32) = (0, 5);

/// Where fetched tools live: `<target dir>/tools`.
pub fn tools_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("tools")
}

/// An umoci that reads zstd layers: the host's when new enough, else Debian unstable's,
/// downloaded and extracted once under [`tools_dir`] (later calls only run `--version`).
pub fn umoci(root: &Path) -> Result<PathBuf> {
    let host = PathBuf::from("/usr/bin/umoci");
    if version_of(&host).is_some_and(|v| v >= UMOCI_MIN) {
        return Ok(host);
    }
    let dir = tools_dir(root).join("umoci");
    let bin = dir.join("root/usr/bin/umoci");
    if version_of(&bin).is_some_and(|v| v >= UMOCI_MIN) {
        util::info(&format!("umoci for zstd layers: {}", bin.display()));
        return Ok(bin);
    }
    let deb = download(&dir.join("apt"), "umoci")?;
    let extracted = dir.join("root");
    if extracted.exists() {
        std::fs::remove_dir_all(&extracted)?;
    }
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extracted))?;
    match version_of(&bin) {
        Some(v) if v >= UMOCI_MIN => Ok(bin),
        found => bail!(
            "{} is version {found:?}; need {UMOCI_MIN:?} or newer",
            bin.display()
        ),
    }
}

/// `umoci --version` as (major, minor); `None` when it does not run.
fn version_of(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// "umoci version 0.6.0+ds-1+b1" (its first line) → (0, 6).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text.lines().next()?.split_whitespace().nth(2)?;
    let mut parts = word.split(['.', '+', '~', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `apt-get download PACKAGE` from [`SOURCE`] with apt's lists and cache in `apt_dir`;
/// returns the downloaded `.deb`.
fn download(apt_dir: &Path, package: &str) -> Result<PathBuf> {
    for sub in ["lists/partial", "cache/archives/partial", "debs"] {
        std::fs::create_dir_all(apt_dir.join(sub))?;
    }
    let sources = apt_dir.join("sources.list");
    std::fs::write(&sources, SOURCE)?;
    let debs = apt_dir.join("debs");
    util::run(private_apt(apt_dir, &sources)?.arg("update"))?;
    for old in std::fs::read_dir(&debs)? {
        std::fs::remove_file(old?.path())?;
    }
    util::run(
        private_apt(apt_dir, &sources)?
            .current_dir(&debs)
            .args(["download", package]),
    )?;
    let found = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"));
    found.with_context(|| format!("apt-get download {package} left no .deb"))
}

/// `apt-get` reading only `sources` and keeping its lists and cache in `apt_dir`, for the
/// host's native architecture alone.
fn private_apt(apt_dir: &Path, sources: &Path) -> Result<Command> {
    let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
    let native = crate::apt::native_architecture()?;
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .arg("-o")
        .arg(opt("Dir::Etc::SourceList", sources))
        .args(["-o", "Dir::Etc::SourceParts=-"])
        .arg("-o")
        .arg(opt("Dir::State::Lists", &apt_dir.join("lists")))
        .arg("-o")
        .arg(opt("Dir::Cache", &apt_dir.join("cache")))
        .arg("-o")
        .arg(format!("APT::Architectures={native}"))
        .args(["-o", "APT::Sandbox::User=root"]);
    // Only the package lists: no AppStream metadata or icons the host's apt.conf.d asks for.
    for target in [
        "DEP-11",
        "DEP-11-icons-small",
        "DEP-11-icons",
        "DEP-11-icons-hidpi",
    ] {
        cmd.arg("-o").arg(format!(
            "Acquire::IndexTargets::deb::{target}::DefaultEnabled=false"
        ));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umoci_versions_parse() {
        assert_eq!(parse_version("umoci version 0.4.7\n"), Some((0, 4)));
        assert_eq!(parse_version("umoci version 0.6.0"), Some((0, 6)));
        assert_eq!(parse_version("umoci version 0.5.0+dev"), Some((0, 5)));
        assert_eq!(
            parse_version("umoci version 0.6.0+ds-1+b1\nimage spec: 1.1.1\n"),
            Some((0, 6))
        );
        assert_eq!(parse_version(""), None);
        assert!(parse_version("umoci version 0.4.7").unwrap() < UMOCI_MIN);
    }
}
