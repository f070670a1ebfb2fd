//! `cargo xtask fixtures`: offline busybox base images for every Debian 12
//! architecture, built from `busybox-static` packages, written as OCI layouts.
//!
//! Same `.deb` files in, byte-identical layouts out: every tar header field, the
//! gzip level and header, and the JSON key order are fixed, and no clock is read.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::layout::{self, Image, ImageInput, Platform};
use crate::{apt, rootfs, util};

/// A Debian architecture and the OCI platform its packages run on.
#[derive(Debug, Clone, Copy)]
pub struct DebArch {
    /// Debian's name, e.g. `armhf`.
    pub deb: &'static str,
    /// OCI architecture, e.g. `arm`.
    pub architecture: &'static str,
    /// OCI variant, e.g. `v7`.
    pub variant: Option<&'static str>,
    /// Whether a missing port is skipped rather than an error.
    pub optional: bool,
}

impl DebArch {
    /// The OCI platform.
    pub fn platform(&self) -> Platform {
        Platform::linux(self.architecture, self.variant)
    }
}

const fn arch(
    deb: &'static str,
    architecture: &'static str,
    variant: Option<&'static str>,
    optional: bool,
) -> DebArch {
    DebArch {
        deb,
        architecture,
        variant,
        optional,
    }
}

/// The architectures of the fixture, in index order.
pub const ARCHES: &[DebArch] = &[
    arch("amd64", "amd64", None, false),
    arch("arm64", "arm64", None, false),
    arch("armhf", "arm", Some("v7"), false),
    arch("armel", "arm", Some("v6"), false),
    arch("i386", "386", None, false),
    arch("ppc64el", "ppc64le", None, false),
    arch("s390x", "s390x", None, false),
    arch("mips64el", "mips64le", None, false),
    // Debian 12 has no riscv64 port; used when the configured archive has one.
    arch("riscv64", "riscv64", None, true),
];

/// Names the generator in the stamp. Bump the number whenever the output changes
/// for the same packages; the pinned layer settings are part of it already.
fn generator() -> String {
    format!(
        "rbuild-fixtures/2 gzip-level={} mtime={}",
        rootfs::GZIP_LEVEL,
        rootfs::MTIME
    )
}
const PACKAGE: &str = "busybox-static";
const APT_LISTS: &str = "/var/lib/apt/lists";

/// Where the fixtures live, relative to the repository root.
pub struct Paths {
    /// Downloaded packages: `testdata/debs/`.
    pub debs: PathBuf,
    /// The multi-platform layout: `testdata/images/busybox/`.
    pub multi: PathBuf,
    /// The amd64-only layout: `testdata/images/busybox-amd64/`.
    pub single: PathBuf,
    /// Records the packages the layouts were built from.
    pub stamp: PathBuf,
}

impl Paths {
    /// The paths under `root`.
    pub fn new(root: &Path) -> Paths {
        let images = root.join("testdata/images");
        Paths {
            debs: root.join("testdata/debs"),
            multi: images.join("busybox"),
            single: images.join("busybox-amd64"),
            stamp: images.join(".busybox.stamp"),
        }
    }
}

/// One downloaded package.
#[derive(Debug, Clone)]
struct Deb {
    arch: DebArch,
    path: PathBuf,
    sha256: String,
}

impl Deb {
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Builds the fixture layouts unless they are complete and built from the packages
/// at hand (or `force`). Returns the platforms of the multi-platform layout.
pub fn run(root: &Path, force: bool) -> Result<Vec<Platform>> {
    let paths = Paths::new(root);
    if !force && let Some(platforms) = up_to_date(&paths)? {
        util::info(&format!(
            "fixtures up to date: {} ({})",
            paths.multi.display(),
            list(&platforms)
        ));
        return Ok(platforms);
    }
    std::fs::create_dir_all(&paths.debs)
        .with_context(|| format!("cannot create {}", paths.debs.display()))?;
    download_missing(&paths.debs)?;
    let debs = local_debs(&paths.debs)?;
    build(&paths, &debs)
}

fn list(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The packages present in `dir`, one per architecture, in [`ARCHES`] order.
fn local_debs(dir: &Path) -> Result<Vec<Deb>> {
    let mut debs = Vec::new();
    for arch in ARCHES {
        let Some(path) = find_deb(dir, arch.deb)? else {
            if arch.optional {
                continue;
            }
            bail!("no {PACKAGE} package for {} in {}", arch.deb, dir.display());
        };
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        debs.push(Deb {
            arch: *arch,
            sha256: util::sha256_hex(&bytes),
            path,
        });
    }
    Ok(debs)
}

/// The `busybox-static_*_<arch>.deb` in `dir`; the last by name when there are several.
fn find_deb(dir: &Path, deb_arch: &str) -> Result<Option<PathBuf>> {
    let suffix = format!("_{deb_arch}.deb");
    let prefix = format!("{PACKAGE}_");
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    found.sort();
    if found.len() > 1 {
        util::info(&format!(
            "several {PACKAGE} packages for {deb_arch}; using {}",
            found[found.len() - 1].display()
        ));
    }
    Ok(found.pop())
}

/// Downloads the packages that are not in `debs` yet, adding dpkg architectures and
/// refreshing apt's lists only when that is needed.
fn download_missing(debs: &Path) -> Result<()> {
    let mut wanted = Vec::new();
    for arch in ARCHES {
        if find_deb(debs, arch.deb)?.is_none() {
            wanted.push(*arch);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    util::step(&format!(
        "downloading {PACKAGE} for {}",
        wanted.iter().map(|a| a.deb).collect::<Vec<_>>().join(" ")
    ));
    let lists = Path::new(APT_LISTS);
    let root = util::is_root();
    let mut updated = false;
    if apt::archive_architectures(lists).is_none() {
        require_root(root, "apt has no package lists yet", "apt-get update")?;
        apt::apt_update()?;
        updated = true;
    }
    let offered = apt::archive_architectures(lists).unwrap_or_default();
    wanted.retain(|arch| {
        let available = offered.iter().any(|a| a == arch.deb);
        if !available && arch.optional {
            util::info(&format!(
                "skipping {}: the configured Debian archive has no {} port",
                arch.deb, arch.deb
            ));
        }
        available || !arch.optional
    });
    add_architectures(&wanted, root)?;
    let stale = wanted
        .iter()
        .any(|arch| !apt::has_package_lists(lists, arch.deb));
    if stale && !updated {
        require_root(
            root,
            "apt has no package lists for some architectures",
            "apt-get update",
        )?;
        apt::apt_update()?;
    }
    for arch in &wanted {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(debs).arg("download");
        if root {
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd.arg(format!("{PACKAGE}:{}", arch.deb));
        match util::run(&mut cmd) {
            Ok(()) => {}
            Err(err) if arch.optional => {
                util::info(&format!("skipping {}: {err:#}", arch.deb));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// `dpkg --add-architecture` for every wanted architecture dpkg does not know yet.
fn add_architectures(wanted: &[DebArch], root: bool) -> Result<()> {
    let known = apt::dpkg_architectures()?;
    let missing: Vec<&str> = wanted
        .iter()
        .map(|a| a.deb)
        .filter(|deb| !known.iter().any(|k| k == deb))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let commands = missing
        .iter()
        .map(|a| format!("dpkg --add-architecture {a}"))
        .chain(["apt-get update".to_string()])
        .collect::<Vec<_>>()
        .join(" && ");
    require_root(root, "dpkg lacks foreign architectures", &commands)?;
    for deb in missing {
        util::run(Command::new("dpkg").args(["--add-architecture", deb]))?;
    }
    Ok(())
}

fn require_root(root: bool, why: &str, commands: &str) -> Result<()> {
    if !root {
        bail!("{why}; run as root: {commands}\n(or run `cargo xtask fixtures` as root)");
    }
    Ok(())
}

/// Builds both layouts from `debs` and writes the stamp last.
fn build(paths: &Paths, debs: &[Deb]) -> Result<Vec<Platform>> {
    util::step("building fixture images");
    let mut busyboxes = Vec::new();
    for deb in debs {
        let version = deb_version(&deb.path)?;
        let busybox = extract_busybox(&deb.path)?;
        util::info(&format!(
            "{}: {} ({} bytes of busybox, {} {version})",
            deb.arch.platform(),
            deb.file_name(),
            busybox.len(),
            PACKAGE
        ));
        busyboxes.push((deb, version, busybox));
    }
    let native = apt::native_architecture()?;
    let host_busybox = busyboxes
        .iter()
        .find(|(deb, _, _)| deb.arch.deb == native)
        .map(|(_, _, bytes)| bytes.as_slice())
        .with_context(|| format!("no {PACKAGE} for the host architecture {native}"))?;
    let applets = list_applets(host_busybox)?;
    util::info(&format!(
        "{} applets (from the {native} busybox)",
        applets.len()
    ));

    let mut images = Vec::new();
    for (deb, version, busybox) in &busyboxes {
        let entries = rootfs::busybox_entries(busybox, &applets);
        let input = ImageInput {
            platform: deb.arch.platform(),
            layer_tar: rootfs::tar_bytes(&entries)?,
            created_by: format!(
                "Debian {PACKAGE} {version} ({}), minimal rootfs",
                deb.arch.deb
            ),
            cmd: vec!["sh".to_string()],
        };
        images.push(Image::build(&input)?);
    }
    let amd64 = images
        .iter()
        .find(|image| image.platform.architecture == "amd64")
        .context("no amd64 image")?;

    if let Some(parent) = paths.multi.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // The old stamp goes first, so an interrupted build is never taken as complete.
    remove_file_if_exists(&paths.stamp)?;
    let index_digest = layout::write_multi_platform(&paths.multi, &images, "latest")?;
    let amd64_digest = layout::write_single_platform(&paths.single, amd64, "latest")?;
    std::fs::write(&paths.stamp, stamp_text(debs))
        .with_context(|| format!("cannot write {}", paths.stamp.display()))?;

    let platforms: Vec<Platform> = images.iter().map(|i| i.platform.clone()).collect();
    util::info(&format!("{}:latest  {index_digest}", paths.multi.display()));
    for image in &images {
        util::info(&format!(
            "  {:<16} {}",
            image.platform.to_string(),
            image.manifest.digest
        ));
    }
    util::info(&format!(
        "{}:latest  {amd64_digest}",
        paths.single.display()
    ));
    util::info(&format!("platforms: {}", list(&platforms)));
    Ok(platforms)
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn stamp_text(debs: &[Deb]) -> String {
    let mut text = format!("{}\n", generator());
    for deb in debs {
        text.push_str(&format!(
            "{} {} {}\n",
            deb.arch.deb,
            deb.file_name(),
            deb.sha256
        ));
    }
    text
}

/// The platforms of the layouts when they are complete, verified, and built by this
/// generator from the packages now in `testdata/debs/` (missing packages are not
/// downloaded again just to compare); `None` when they must be rebuilt.
fn up_to_date(paths: &Paths) -> Result<Option<Vec<Platform>>> {
    let Ok(stamp) = std::fs::read_to_string(&paths.stamp) else {
        return Ok(None);
    };
    let mut lines = stamp.lines();
    if lines.next() != Some(generator().as_str()) {
        return Ok(None);
    }
    let recorded: Vec<(&str, &str, &str)> = lines
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, words.next()?, words.next()?))
        })
        .collect();
    for arch in ARCHES {
        let Some(path) = find_deb(&paths.debs, arch.deb)? else {
            if arch.optional {
                continue;
            }
            // A required architecture was added or its package removed: rebuild.
            return Ok(None);
        };
        let Some((_, file, sha)) = recorded.iter().find(|(deb, _, _)| *deb == arch.deb) else {
            return Ok(None);
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let bytes = std::fs::read(&path)?;
        if name.as_deref() != Some(*file) || util::sha256_hex(&bytes) != *sha {
            return Ok(None);
        }
    }
    let (Ok(multi), Ok(single)) = (
        layout::read_layout(&paths.multi),
        layout::read_layout(&paths.single),
    ) else {
        return Ok(None);
    };
    let expected: Vec<Platform> = recorded
        .iter()
        .filter_map(|(deb, _, _)| ARCHES.iter().find(|a| a.deb == *deb))
        .map(DebArch::platform)
        .collect();
    let platforms: Vec<Platform> = multi.into_iter().map(|i| i.platform).collect();
    let single_ok = single.len() == 1 && single[0].platform == Platform::linux("amd64", None);
    Ok((platforms == expected && single_ok).then_some(platforms))
}

fn deb_version(deb: &Path) -> Result<String> {
    util::output_text(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(deb)
            .arg("Version"),
    )
}

/// `bin/busybox` from the package's data archive (`dpkg-deb --fsys-tarfile`
/// decompresses whichever compression the package uses).
fn extract_busybox(deb: &Path) -> Result<Vec<u8>> {
    let data = util::output(Command::new("dpkg-deb").arg("--fsys-tarfile").arg(deb))?;
    let mut archive = tar::Archive::new(data.as_slice());
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "bin/busybox" && entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    bail!("{} has no bin/busybox", deb.display())
}

/// Runs a native busybox with `--list`. Debian builds every architecture with the
/// same configuration, so one list serves them all.
fn list_applets(busybox: &[u8]) -> Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = util::TempDir::new("busybox")?;
    let path = tmp.path().join("busybox");
    std::fs::write(&path, busybox)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    let list = util::output_text(Command::new(&path).arg("--list"))?;
    let applets = rootfs::parse_applets(&list);
    if !applets.iter().any(|a| a == "sh") {
        bail!("busybox --list printed no `sh` applet");
    }
    Ok(applets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arches_map_to_oci_platforms() {
        let names: Vec<String> = ARCHES.iter().map(|a| a.platform().to_string()).collect();
        assert_eq!(
            names,
            [
                "linux/amd64",
                "linux/arm64",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/386",
                "linux/ppc64le",
                "linux/s390x",
                "linux/mips64le",
                "linux/riscv64"
            ]
        );
    }

    #[test]
    fn find_deb_matches_the_architecture_suffix() {
        let tmp = util::TempDir::new("fixtures-test").unwrap();
        for name in [
            "busybox-static_1%3a1.35.0-4+b3_arm64.deb",
            "busybox-static_1%3a1.35.0-4+b3_armel.deb",
            "busybox_1%3a1.35.0-4+b3_amd64.deb",
        ] {
            std::fs::write(tmp.path().join(name), b"").unwrap();
        }
        let arm64 = find_deb(tmp.path(), "arm64").unwrap().unwrap();
        assert!(arm64.ends_with("busybox-static_1%3a1.35.0-4+b3_arm64.deb"));
        assert_eq!(find_deb(tmp.path(), "amd64").unwrap(), None);
        assert_eq!(find_deb(tmp.path(), "armhf").unwrap(), None);
        assert_eq!(find_deb(&tmp.path().join("absent"), "armhf").unwrap(), None);
    }

    #[test]
    fn stamp_lists_each_package() {
        let deb = Deb {
            arch: ARCHES[0],
            path: PathBuf::from("/x/busybox-static_1_amd64.deb"),
            sha256: "ab".repeat(32),
        };
        assert_eq!(
            stamp_text(&[deb]),
            format!(
                "{}\namd64 busybox-static_1_amd64.deb {}\n",
                generator(),
                "ab".repeat(32)
            )
        );
    }

    /// The ELF machine of a binary, honouring its byte order.
    fn elf_machine(binary: &[u8]) -> u16 {
        assert_eq!(&binary[..4], b"\x7fELF");
        let bytes = [binary[18], binary[19]];
        if binary[5] == 2 {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        }
    }

    /// Checks the generated fixture, when `cargo xtask fixtures` has built it:
    /// each platform's image carries a busybox for that CPU.
    #[test]
    fn generated_fixture_has_a_busybox_per_platform() {
        let paths = Paths::new(&util::repo_root().unwrap());
        if !paths.stamp.exists() {
            // Under CI the fixtures are always built first: a missing one is a failure.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the busybox fixture is missing under CI=true"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "=== SKIPPED: no fixture yet (run `cargo xtask fixtures`) ==="
            );
            return;
        }
        let images = layout::read_layout(&paths.multi).unwrap();
        assert!(images.len() >= 7, "{} platforms", images.len());
        for image in &images {
            let busybox = layout::read_image_file(&paths.multi, image, "/bin/busybox")
                .unwrap()
                .unwrap();
            let expected = match image.platform.architecture.as_str() {
                "amd64" => 62,
                "arm64" => 183,
                "arm" => 40,
                "386" => 3,
                "ppc64le" => 21,
                "s390x" => 22,
                "mips64le" => 8,
                "riscv64" => 243,
                other => panic!("unexpected architecture {other}"),
            };
            assert_eq!(elf_machine(&busybox), expected, "{}", image.platform);
        }
        let single = layout::read_layout(&paths.single).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].manifest_digest, images[0].manifest_digest);
    }

    #[test]
    fn missing_stamp_means_rebuild() {
        let tmp = util::TempDir::new("fixtures-test").unwrap();
        assert!(up_to_date(&Paths::new(tmp.path())).unwrap().is_none());
    }
}
