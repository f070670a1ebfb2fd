//! The busybox root filesystem of a fixture image, and its deterministic layer tar.

use std::io::Write;

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};

/// Modification time of every entry: fixed, and not 0 so no tool takes it for "unset".
pub const MTIME: u64 = 1;

/// The gzip level of fixture layers; the output bytes depend on it, so it is pinned.
pub const GZIP_LEVEL: u32 = 9;

/// One entry of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to `/`, without a leading or trailing slash.
    pub path: String,
    /// Permission bits, including sticky/setuid bits.
    pub mode: u32,
    /// What the entry is.
    pub kind: Kind,
}

/// The kinds of entries a fixture rootfs has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link with its target.
    Symlink(String),
}

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
";

const GROUP: &str = "\
root:x:0:
nogroup:x:65534:
user:x:1000:
";

/// The entries of a minimal busybox rootfs, sorted by path: `/bin/busybox`, one
/// `/bin/<applet> -> busybox` symlink per applet, `/etc/passwd`, `/etc/group`,
/// and the empty directories a container expects.
pub fn busybox_entries(busybox: &[u8], applets: &[String]) -> Vec<Entry> {
    let dir = |path: &str, mode: u32| Entry {
        path: path.to_string(),
        mode,
        kind: Kind::Dir,
    };
    let file = |path: &str, mode: u32, data: &[u8]| Entry {
        path: path.to_string(),
        mode,
        kind: Kind::File(data.to_vec()),
    };
    let mut entries = vec![
        dir("bin", 0o755),
        dir("dev", 0o755),
        dir("etc", 0o755),
        dir("proc", 0o555),
        dir("root", 0o700),
        dir("sys", 0o555),
        dir("tmp", 0o1777),
        file("bin/busybox", 0o755, busybox),
        file("etc/passwd", 0o644, PASSWD.as_bytes()),
        file("etc/group", 0o644, GROUP.as_bytes()),
    ];
    for applet in applets {
        let usable = !applet.is_empty()
            && applet != "busybox"
            && applet != "."
            && applet != ".."
            && !applet.contains('/');
        if usable {
            entries.push(Entry {
                path: format!("bin/{applet}"),
                mode: 0o777,
                kind: Kind::Symlink("busybox".to_string()),
            });
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    entries
}

/// Parses `busybox --list` output: one applet name per line.
pub fn parse_applets(list: &str) -> Vec<String> {
    let mut applets: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    applets.sort();
    applets.dedup();
    applets
}

/// Writes `entries` as an uncompressed tar, in the given order, with every header
/// field set explicitly: uid/gid 0, empty user/group names, mtime [`MTIME`].
pub fn tar_bytes(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mode(entry.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header.set_username("")?;
        header.set_groupname("")?;
        match &entry.kind {
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{}/", entry.path), std::io::empty())
                    .with_context(|| format!("tar: {}", entry.path))?;
            }
            Kind::File(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, &entry.path, data.as_slice())
                    .with_context(|| format!("tar: {}", entry.path))?;
            }
            Kind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &entry.path, target)
                    .with_context(|| format!("tar: {}", entry.path))?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// Gzips `data` at [`GZIP_LEVEL`] with no file name and a zero mtime in the header.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<Entry> {
        let applets = parse_applets("sh\nls\n\nbusybox\nenv\nls\n../x\n");
        busybox_entries(b"\x7fELF fake busybox", &applets)
    }

    #[test]
    fn applet_list_is_sorted_and_unique() {
        assert_eq!(parse_applets("sh\nls\n ls \n\ncat\n"), ["cat", "ls", "sh"]);
    }

    #[test]
    fn entries_are_sorted_and_skip_unsafe_applets() {
        let entries = sample();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin",
                "bin/busybox",
                "bin/env",
                "bin/ls",
                "bin/sh",
                "dev",
                "etc",
                "etc/group",
                "etc/passwd",
                "proc",
                "root",
                "sys",
                "tmp"
            ]
        );
    }

    #[test]
    fn tar_round_trips_with_fixed_metadata() {
        let bytes = tar_bytes(&sample()).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            assert_eq!(header.uid().unwrap(), 0);
            assert_eq!(header.gid().unwrap(), 0);
            assert_eq!(header.mtime().unwrap(), MTIME);
            assert_eq!(header.username().unwrap(), Some(""));
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            match path.as_str() {
                "tmp/" => assert_eq!(header.mode().unwrap(), 0o1777),
                "root/" => assert_eq!(header.mode().unwrap(), 0o700),
                "bin/sh" => {
                    assert_eq!(header.entry_type(), tar::EntryType::Symlink);
                    assert_eq!(
                        entry.link_name().unwrap().unwrap().to_str(),
                        Some("busybox")
                    );
                }
                "etc/passwd" => {
                    let mut text = String::new();
                    entry.read_to_string(&mut text).unwrap();
                    assert!(text.starts_with("root:x:0:0:root:/root:/bin/sh\n"));
                    assert!(text.contains("\nuser:x:1000:1000:"));
                }
                _ => {}
            }
            seen.push(path);
        }
        assert_eq!(seen.len(), 13);
        assert!(seen.contains(&"bin/".to_string()));
    }

    #[test]
    fn gzip_is_deterministic_and_decodes() {
        let data = tar_bytes(&sample()).unwrap();
        let a = gzip(&data).unwrap();
        let b = gzip(&data).unwrap();
        assert_eq!(a, b);
        // Header: magic, deflate, no flags (no file name), zero mtime.
        assert_eq!(&a[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(a.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, data);
    }
}
