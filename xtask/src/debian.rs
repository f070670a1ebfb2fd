//! The Debian fixture: a small Debian 12 (bookworm) root filesystem per platform, made
//! by `mmdebstrap` from the Debian mirror the host's apt uses, written as one OCI layout
//! `testdata/images/debian/` whose image index lists `linux/amd64` and `linux/arm64`.
//!
//! The image has apt and the host's bookworm sources, so a `RUN apt-get update && apt-get
//! install ...` step works wherever the host's mirror is reachable. Package lists and
//! caches are removed (the test runs `apt-get update` itself), and so are man pages, info
//! pages, translations and documentation other than copyright files, also for packages
//! installed later (mmdebstrap keeps its dpkg path filters in `/etc/dpkg/dpkg.cfg.d/`).
//!
//! Foreign architectures run their maintainer scripts through QEMU: for the duration of
//! the build, [`HostHandlers`] registers host binfmt_misc handlers, removed afterwards.
//!
//! With `SOURCE_DATE_EPOCH` set, mmdebstrap gives the same tar for the same packages;
//! the layer is rewritten with device nodes dropped and fixed header fields, so the
//! same packages give the same digests. The stamp records the build settings and the
//! digests; while it matches and the layout verifies, nothing is rebuilt (newer
//! packages on the mirror are only picked up by `cargo xtask fixtures --force`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::fixtures::DebArch;
use crate::hostbinfmt::HostHandlers;
use crate::layout::{self, Image, ImageInput, Platform};
use crate::{rootfs, util};

/// The Debian release of the fixture.
pub const SUITE: &str = "bookworm";

/// mmdebstrap's package set: the essential packages plus apt.
const VARIANT: &str = "apt";

/// The architectures of the fixture, in index order.
pub const ARCHES: &[DebArch] = &[
    DebArch {
        deb: "amd64",
        architecture: "amd64",
        variant: None,
        optional: false,
    },
    DebArch {
        deb: "arm64",
        architecture: "arm64",
        variant: None,
        optional: false,
    },
];

/// dpkg path filters: no man/info pages, translations or documentation beyond copyright.
const DPKG_OPTIONS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// Sets up `/bin -> usr/bin` etc. before the essential packages, as debootstrap does,
/// instead of installing `usrmerge` (which pulls in perl).
const MERGED_USR_HOOKS: &str = "/usr/share/mmdebstrap/hooks/merged-usr";

/// Names the generator in the stamp. Bump the number whenever the output changes for
/// the same packages.
fn generator() -> String {
    format!(
        "rbuild-debian-fixture/1 gzip-level={} mtime={}",
        rootfs::GZIP_LEVEL,
        rootfs::MTIME
    )
}

/// Where the Debian fixture lives.
pub struct Paths {
    /// The multi-platform layout: `testdata/images/debian/`.
    pub layout: PathBuf,
    /// Records the settings and digests the layout was built with.
    pub stamp: PathBuf,
}

impl Paths {
    /// The paths under the repository root `root`.
    pub fn new(root: &Path) -> Paths {
        let images = root.join("testdata/images");
        Paths {
            layout: images.join("debian"),
            stamp: images.join(".debian.stamp"),
        }
    }
}

/// Builds the Debian layout unless it is complete and built with the current settings
/// and sources (or `force`).
pub fn run(root: &Path, force: bool) -> Result<()> {
    let paths = Paths::new(root);
    let sources = match host_sources()? {
        Some(sources) => sources,
        None => {
            util::info(&format!(
                "the host's apt has no {SUITE} sources; using deb.debian.org"
            ));
            default_sources()
        }
    };
    let settings = settings_text(&sources);
    if !force && up_to_date(&paths, &settings)? {
        util::info(&format!(
            "Debian fixture up to date: {}",
            paths.layout.display()
        ));
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "building the Debian fixture needs root (mmdebstrap, host binfmt_misc for arm64): \
             run `cargo xtask fixtures` as root"
        );
    }
    for program in ["mmdebstrap", "arch-test"] {
        if !util::on_path(program) {
            bail!("{program} is not installed: run `cargo xtask deps` as root");
        }
    }
    build(&paths, &sources, &settings)
}

fn settings_text(sources: &str) -> String {
    let arches: Vec<&str> = ARCHES.iter().map(|a| a.deb).collect();
    format!(
        "{}\nsuite={SUITE} variant={VARIANT} arches={}\ndpkg: {}\nsources:\n{sources}",
        generator(),
        arches.join(","),
        DPKG_OPTIONS.join(" ")
    )
}

/// Whether the stamp records `settings` and the layout verifies with the recorded
/// manifests, one per architecture.
fn up_to_date(paths: &Paths, settings: &str) -> Result<bool> {
    let Ok(stamp) = std::fs::read_to_string(&paths.stamp) else {
        return Ok(false);
    };
    let Some(images) = stamp.strip_prefix(settings) else {
        return Ok(false);
    };
    let Some(images) = images.strip_prefix("images:\n") else {
        return Ok(false);
    };
    let recorded: Vec<(String, String)> = images
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect();
    let Ok(found) = layout::read_layout(&paths.layout) else {
        return Ok(false);
    };
    let expected: Vec<(String, String)> = ARCHES
        .iter()
        .zip(&found)
        .map(|(arch, image)| (arch.platform().to_string(), image.manifest_digest.clone()))
        .collect();
    let platforms_match = found.len() == ARCHES.len()
        && ARCHES
            .iter()
            .zip(&found)
            .all(|(arch, image)| image.platform == arch.platform());
    Ok(platforms_match && recorded == expected)
}

fn build(paths: &Paths, sources: &str, settings: &str) -> Result<()> {
    util::step(&format!(
        "building the Debian {SUITE} fixture ({})",
        ARCHES.iter().map(|a| a.deb).collect::<Vec<_>>().join(" ")
    ));
    let started = Instant::now();
    let tmp = util::TempDir::new("debian")?;
    let sources_file = tmp.path().join("host.sources");
    std::fs::write(&sources_file, sources)?;
    let platforms: Vec<Platform> = ARCHES.iter().map(DebArch::platform).collect();
    let handlers = HostHandlers::register(&platforms, "fixtures")?;
    if handlers.count() > 0 {
        util::info(&format!(
            "registered {} host binfmt_misc handlers for mmdebstrap (removed afterwards)",
            handlers.count()
        ));
    }
    let mut images = Vec::new();
    for arch in ARCHES {
        let arch_started = Instant::now();
        let tar = tmp.path().join(format!("{}.tar", arch.deb));
        util::run(&mut mmdebstrap(arch, &sources_file, &tar))?;
        let raw = std::fs::read(&tar).with_context(|| format!("cannot read {}", tar.display()))?;
        let _ = std::fs::remove_file(&tar);
        let layer = normalise_layer(&raw)?;
        drop(raw);
        let packages = layer.packages;
        let input = ImageInput {
            platform: arch.platform(),
            layer_tar: layer.tar,
            created_by: format!(
                "mmdebstrap --variant={VARIANT} {SUITE} ({}, {packages} packages)",
                arch.deb
            ),
            cmd: vec!["bash".to_string()],
        };
        let image = Image::build(&input)?;
        util::info(&format!(
            "{}: {packages} packages, layer {} bytes gzip ({} tar), {:.0?}",
            arch.platform(),
            image.layer.bytes.len(),
            input.layer_tar.len(),
            arch_started.elapsed()
        ));
        images.push(image);
    }
    drop(handlers);

    if let Some(parent) = paths.layout.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // The old stamp goes first, so an interrupted build is never taken as complete.
    match std::fs::remove_file(&paths.stamp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove {}", paths.stamp.display()));
        }
    }
    let index_digest = layout::write_multi_platform(&paths.layout, &images, "latest")?;
    let mut stamp = format!("{settings}images:\n");
    for image in &images {
        stamp.push_str(&format!("{} {}\n", image.platform, image.manifest.digest));
    }
    std::fs::write(&paths.stamp, stamp)
        .with_context(|| format!("cannot write {}", paths.stamp.display()))?;
    util::info(&format!(
        "{}:latest  {index_digest}",
        paths.layout.display()
    ));
    for image in &images {
        util::info(&format!(
            "  {:<16} {}",
            image.platform.to_string(),
            image.manifest.digest
        ));
    }
    util::info(&format!(
        "Debian fixture built in {:.0?}",
        started.elapsed()
    ));
    Ok(())
}

/// The mmdebstrap command for one architecture, writing an uncompressed tar.
fn mmdebstrap(arch: &DebArch, sources: &Path, tar: &Path) -> Command {
    let mut cmd = Command::new("mmdebstrap");
    cmd.env("SOURCE_DATE_EPOCH", rootfs::MTIME.to_string())
        .arg("--mode=root")
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--architectures={}", arch.deb))
        .arg(format!("--hook-dir={MERGED_USR_HOOKS}"));
    for option in DPKG_OPTIONS {
        cmd.arg(format!("--dpkgopt={option}"));
    }
    // mmdebstrap copies the host's resolver settings and host name in; the sandbox
    // provides both in every step.
    cmd.arg(r#"--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname""#)
        .arg("--format=tar")
        .arg(SUITE)
        .arg(tar)
        .arg(sources);
    cmd
}

/// A layer tar ready for [`ImageInput`], and how many packages dpkg lists as installed.
struct Layer {
    tar: Vec<u8>,
    packages: usize,
}

/// Rewrites mmdebstrap's tar as a layer: the root entry and everything below `/dev`
/// dropped (device nodes cannot be unpacked without privileges, and the sandbox mounts
/// its own `/dev`), paths without `./`, empty user and group names, the other header
/// fields and extended attributes as they were, entries in the same order.
fn normalise_layer(raw: &[u8]) -> Result<Layer> {
    let mut archive = tar::Archive::new(raw);
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut packages = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = entry.path()?.to_string_lossy().into_owned();
        let path = raw_path.trim_start_matches("./").trim_end_matches('/');
        if path.is_empty() || path == "." || path.starts_with("dev/") {
            continue;
        }
        let path = path.to_string();
        let kind = entry.header().entry_type();
        let xattrs: Vec<(String, Vec<u8>)> = match entry.pax_extensions()? {
            Some(extensions) => extensions
                .filter_map(|ext| ext.ok())
                .filter_map(|ext| {
                    let key = ext.key().ok()?;
                    key.starts_with("SCHILY.xattr.")
                        .then(|| (key.to_string(), ext.value_bytes().to_vec()))
                })
                .collect(),
            None => Vec::new(),
        };
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.header().mode()?);
        header.set_uid(entry.header().uid()?);
        header.set_gid(entry.header().gid()?);
        header.set_mtime(entry.header().mtime()?);
        header.set_username("")?;
        header.set_groupname("")?;
        header.set_entry_type(kind);
        if !xattrs.is_empty() {
            builder
                .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        match kind {
            tar::EntryType::Directory => {
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                header.set_entry_type(tar::EntryType::Regular);
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                if path == "var/lib/dpkg/status" {
                    packages = installed_packages(&String::from_utf8_lossy(&data));
                }
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, &path, data.as_slice())?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .with_context(|| format!("{path}: link without a target"))?
                    .to_string_lossy()
                    .into_owned();
                // Hard link targets are archive paths and lose their `./` like the paths.
                let target = if kind == tar::EntryType::Link {
                    target.trim_start_matches("./").to_string()
                } else {
                    target
                };
                header.set_size(0);
                builder.append_link(&mut header, &path, &target)?;
            }
            other => bail!("{path}: unexpected {other:?} entry outside /dev"),
        }
    }
    if packages == 0 {
        bail!("mmdebstrap's tar has no installed packages in var/lib/dpkg/status");
    }
    Ok(Layer {
        tar: builder.into_inner()?,
        packages,
    })
}

/// How many stanzas of a dpkg status file say `Status: install ok installed`.
fn installed_packages(status: &str) -> usize {
    status
        .lines()
        .filter(|line| *line == "Status: install ok installed")
        .count()
}

/// One apt source, reduced to what the fixture needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<String>,
}

/// The host's enabled `deb` sources for [`SUITE`] (and its `-updates`, `-security`
/// etc. suites), from `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.list` and
/// `*.sources`, as one deb822 text; `None` when there are none.
fn host_sources() -> Result<Option<String>> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut sources = Vec::new();
    for file in files {
        let name = file.to_string_lossy();
        let deb822 = name.ends_with(".sources");
        if !deb822 && !name.ends_with(".list") {
            continue;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        if deb822 {
            sources.extend(parse_deb822(&text));
        } else {
            sources.extend(parse_one_line(&text));
        }
    }
    let kept: Vec<Source> = sources.into_iter().filter_map(for_suite).collect();
    Ok((!kept.is_empty()).then(|| render(&kept)))
}

/// What mmdebstrap would use without a mirror argument.
fn default_sources() -> String {
    render(&[
        Source {
            uris: vec!["http://deb.debian.org/debian".to_string()],
            suites: vec![SUITE.to_string(), format!("{SUITE}-updates")],
            components: vec!["main".to_string()],
            signed_by: None,
        },
        Source {
            uris: vec!["http://deb.debian.org/debian-security".to_string()],
            suites: vec![format!("{SUITE}-security")],
            components: vec!["main".to_string()],
            signed_by: None,
        },
    ])
}

/// The source with only the suites of [`SUITE`]; `None` when none is left.
fn for_suite(mut source: Source) -> Option<Source> {
    source.suites.retain(|suite| {
        suite == SUITE
            || suite
                .strip_prefix(SUITE)
                .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('/'))
    });
    (!source.suites.is_empty() && !source.uris.is_empty()).then_some(source)
}

/// The `deb` entries of a one-line-style sources.list.
fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(after) => match after.split_once(']') {
                Some((options, rest)) => (options, rest),
                None => continue,
            },
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let signed_by = options
            .split_whitespace()
            .find_map(|o| o.strip_prefix("signed-by="))
            .map(str::to_string);
        out.push(Source {
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
            signed_by,
        });
    }
    out
}

/// The enabled stanzas of type `deb` in a deb822 `.sources` file.
fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    let mut paragraph: Vec<(String, String)> = Vec::new();
    let finish = |paragraph: &mut Vec<(String, String)>, out: &mut Vec<Source>| {
        let field = |name: &str| {
            paragraph
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let words = |name: &str| -> Vec<String> {
            field(name)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let is_deb = words("Types").iter().any(|t| t == "deb");
        let enabled = field("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        if is_deb && enabled {
            // Only a keyring file name carries over; an inline key (several lines) does not.
            let signed_by = field("Signed-By")
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.contains('\n'))
                .map(str::to_string);
            out.push(Source {
                uris: words("URIs"),
                suites: words("Suites"),
                components: words("Components"),
                signed_by,
            });
        }
        paragraph.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            finish(&mut paragraph, &mut out);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = paragraph.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            paragraph.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    finish(&mut paragraph, &mut out);
    out
}

/// Sources as a deb822 text.
fn render(sources: &[Source]) -> String {
    let mut text = String::new();
    for source in sources {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("Types: deb\n");
        text.push_str(&format!("URIs: {}\n", source.uris.join(" ")));
        text.push_str(&format!("Suites: {}\n", source.suites.join(" ")));
        text.push_str(&format!("Components: {}\n", source.components.join(" ")));
        if let Some(keyring) = &source.signed_by {
            text.push_str(&format!("Signed-By: {keyring}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_keep_enabled_deb_stanzas_of_the_suite() {
        let text = "\
Types: deb
# a comment
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://example.org/off
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 xyz
";
        let kept: Vec<Source> = parse_deb822(text)
            .into_iter()
            .filter_map(for_suite)
            .collect();
        assert_eq!(
            render(&kept),
            "\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"
        );
    }

    #[test]
    fn one_line_sources_are_converted() {
        let text = "\
# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/m.gpg] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main # trailing
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb http://old.example/debian bookworm/updates main
";
        let kept: Vec<Source> = parse_one_line(text)
            .into_iter()
            .filter_map(for_suite)
            .collect();
        assert_eq!(
            kept,
            [
                Source {
                    uris: vec!["http://mirror.example/debian".into()],
                    suites: vec!["bookworm".into()],
                    components: vec!["main".into(), "contrib".into()],
                    signed_by: Some("/etc/apt/keyrings/m.gpg".into()),
                },
                Source {
                    uris: vec!["http://security.debian.org/debian-security".into()],
                    suites: vec!["bookworm-security".into()],
                    components: vec!["main".into()],
                    signed_by: None,
                },
                Source {
                    uris: vec!["http://old.example/debian".into()],
                    suites: vec!["bookworm/updates".into()],
                    components: vec!["main".into()],
                    signed_by: None,
                },
            ]
        );
    }

    #[test]
    fn default_sources_name_the_debian_archive() {
        let text = default_sources();
        assert!(
            text.contains(
                "URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
            )
        );
        assert!(text.contains("Suites: bookworm-security\n"));
    }

    fn raw_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(kind);
            header.set_mode(0o755);
            header.set_uid(0);
            header.set_gid(42);
            header.set_mtime(1);
            header.set_username("root").unwrap();
            header.set_size(data.len() as u64);
            match link {
                Some(target) => builder.append_link(&mut header, path, target).unwrap(),
                None => builder.append_data(&mut header, path, data).unwrap(),
            }
        };
        add("./dev/", tar::EntryType::Directory, b"", None);
        add("./dev/null", tar::EntryType::Char, b"", None);
        add(
            "./dev/fd",
            tar::EntryType::Symlink,
            b"",
            Some("/proc/self/fd"),
        );
        add("./", tar::EntryType::Directory, b"", None);
        add("./bin", tar::EntryType::Symlink, b"", Some("usr/bin"));
        add("./usr/bin/perl", tar::EntryType::Regular, b"ELF", None);
        add(
            "./usr/bin/perl5",
            tar::EntryType::Link,
            b"",
            Some("./usr/bin/perl"),
        );
        add(
            "./var/lib/dpkg/status",
            tar::EntryType::Regular,
            b"Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: install ok installed\n",
            None,
        );
        builder.into_inner().unwrap()
    }

    #[test]
    fn layer_drops_dev_and_the_root_entry() {
        let layer = normalise_layer(&raw_tar()).unwrap();
        assert_eq!(layer.packages, 2);
        let mut archive = tar::Archive::new(layer.tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.username().unwrap(), Some(""));
            assert_eq!(header.gid().unwrap(), 42);
            assert_eq!(header.mtime().unwrap(), 1);
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            seen.push((
                entry.path().unwrap().to_string_lossy().into_owned(),
                header.entry_type(),
                link,
            ));
        }
        assert_eq!(
            seen,
            [
                ("dev/".to_string(), tar::EntryType::Directory, None),
                (
                    "bin".into(),
                    tar::EntryType::Symlink,
                    Some("usr/bin".into())
                ),
                ("usr/bin/perl".into(), tar::EntryType::Regular, None),
                (
                    "usr/bin/perl5".into(),
                    tar::EntryType::Link,
                    Some("usr/bin/perl".into())
                ),
                ("var/lib/dpkg/status".into(), tar::EntryType::Regular, None),
            ]
        );
    }

    #[test]
    fn layer_without_packages_is_an_error() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1);
        header.set_size(0);
        builder
            .append_data(&mut header, "./etc/", std::io::empty())
            .unwrap();
        let err = normalise_layer(&builder.into_inner().unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains("no installed packages"), "{err}");
    }

    #[test]
    fn stale_or_missing_stamp_means_rebuild() {
        let tmp = util::TempDir::new("debian-test").unwrap();
        let paths = Paths::new(tmp.path());
        assert!(!up_to_date(&paths, &settings_text("x")).unwrap());
        std::fs::create_dir_all(paths.stamp.parent().unwrap()).unwrap();
        std::fs::write(&paths.stamp, format!("{}images:\n", settings_text("y"))).unwrap();
        assert!(!up_to_date(&paths, &settings_text("x")).unwrap());
    }
}
