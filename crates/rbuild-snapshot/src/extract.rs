//! ADD of a local tar archive into a stage's (mounted, merged) tree, as BuildKit does it:
//! its unpack chroots into the destination directory, so the archive's entries are placed
//! with symlinks followed *inside the destination* (an absolute link means the destination,
//! `..` stops there), whether the links come from the image or from the archive itself.
//! Every path goes through `rbuild-fsroot`'s in-root resolution; final names are never
//! followed, except for the deferred directory times, which BuildKit sets through links.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rbuild_fsroot::{FileKind, Root, Target};
use tar::EntryType;

use crate::error::SnapshotError;
use crate::sparse;
use crate::sys::Chowner;
use crate::unpack::{
    EntryMeta, UnpackStats, clean_path, entry_meta, link_name, set_xattrs, sparse_error,
};

/// Extracts the uncompressed tar stream `tar` into the directory `dest` (an absolute path
/// inside the tree `rootfs`, created if missing, symlinks on the way followed inside the
/// tree). Entries replace what stands at their path (a directory over a directory merges)
/// and are resolved as if `dest` were `/`; `--chown`/`--chmod` do not apply, as in BuildKit.
pub fn extract_archive(
    tar: impl Read,
    rootfs: &Path,
    dest: &str,
) -> Result<UnpackStats, SnapshotError> {
    let tree = Root::open(rootfs).map_err(|e| dest_err("open", "/", e))?;
    // Links on the way are followed inside the tree, dangling ones included, so the
    // destination is made (and opened) where they point.
    let rel = tree
        .resolve_in_root(&clean_dest(dest))
        .map_err(|e| dest_err("resolve", dest, e))?;
    tree.mkdir_all_in_root(&rel, 0o755)
        .map_err(|(p, e)| dest_err("mkdir", &format!("/{}", p.display()), e))?;
    let root = tree
        .open_subdir_in_root(&rel)
        .map_err(|e| dest_err("open", dest, e))?;
    let mut x = Extractor {
        root: &root,
        chown: Chowner::within(rootfs),
        stats: UnpackStats::default(),
        dirs: Vec::new(),
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(SnapshotError::TarRead)? {
        let mut entry = entry.map_err(SnapshotError::TarRead)?;
        x.entry(&mut entry)?;
    }
    x.finish()?;
    x.stats.unmapped_owners = x.chown.unmapped;
    Ok(x.stats)
}

/// `dest` as components below the root: `.` dropped, `..` clamped at the root.
fn clean_dest(dest: &str) -> PathBuf {
    let mut out: Vec<&str> = Vec::new();
    for c in dest.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect()
}

fn dest_err(op: &'static str, path: &str, source: io::Error) -> SnapshotError {
    SnapshotError::AddDest {
        op,
        path: path.to_string(),
        source,
    }
}

struct Extractor<'a> {
    root: &'a Root,
    chown: Chowner,
    stats: UnpackStats,
    /// Directories whose times are set once everything is in place.
    dirs: Vec<(String, PathBuf, i64, u32)>,
}

/// One entry being placed: its name as written and its path below the destination.
struct Place {
    shown: String,
    rel: PathBuf,
}

impl Place {
    fn err(&self, op: &'static str, source: io::Error) -> SnapshotError {
        SnapshotError::AddEntry {
            entry: self.shown.clone(),
            op,
            path: format!("/{}", self.rel.display()),
            source,
        }
    }
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), SnapshotError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.stats.entries += 1;
        let (raw, meta) = entry_meta(entry)?;
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let start = raw.iter().take_while(|b| **b == b'/').count();
        let comps = clean_path(&raw[start..], &shown)?;
        refuse_whiteout_names(&comps, &shown)?;
        let Some((_, parents)) = comps.split_last() else {
            if kind == EntryType::Directory {
                return Ok(());
            }
            return Err(SnapshotError::UnsafePath {
                path: shown,
                reason: "only a directory can stand for the destination itself",
            });
        };
        let place = Place {
            shown,
            rel: comps.iter().collect(),
        };
        self.ensure_parent(parents, &place)?;
        let root = self.root;
        let target = root
            .at_in_root(&place.rel)
            .map_err(|e| place.err("open", e))?;
        let want_dir = kind == EntryType::Directory;
        let is_dir = target.clear(want_dir).map_err(|e| place.err("remove", e))?;
        match kind {
            EntryType::Directory => {
                if !is_dir {
                    target.mkdir(0o755).map_err(|e| place.err("mkdir", e))?;
                }
                self.stats.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut data = sparse::content(entry, meta.sparse.as_ref(), root.fd())
                    .map_err(|reason| sparse_error(&place.shown, reason))?;
                let mut file = target
                    .create_file(0o600)
                    .map_err(|e| place.err("open", e))?;
                self.stats.bytes +=
                    io::copy(&mut data, &mut file).map_err(SnapshotError::TarRead)?;
                self.stats.files += 1;
            }
            EntryType::Symlink => {
                let link = link_name(entry, &place.shown)?;
                target
                    .symlink(OsStr::from_bytes(&link))
                    .map_err(|e| place.err("symlink", e))?;
                self.stats.symlinks += 1;
            }
            EntryType::Link => {
                let link = link_name(entry, &place.shown)?;
                self.hardlink(&target, &link, &place)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.node(entry.header(), &target, kind, &meta, &place)? {
                    return Ok(());
                }
            }
            other => {
                return Err(SnapshotError::UnsupportedEntry {
                    path: place.shown,
                    reason: format!("entry type {other:?}"),
                });
            }
        }
        self.apply_meta(&target, kind, &meta, place)
    }

    /// Creates the entry's missing parent directories (0755), following links inside the
    /// destination; a parent that exists is left as it is, even a dangling link.
    fn ensure_parent(&self, parents: &[OsString], place: &Place) -> Result<(), SnapshotError> {
        if parents.is_empty() {
            return Ok(());
        }
        let rel: PathBuf = parents.iter().collect();
        let missing = match self.root.at_in_root(&rel) {
            Ok(t) => t.stat().map_err(|e| place.err("lstat", e))?.is_none(),
            Err(e) => e.raw_os_error() == Some(libc::ENOENT),
        };
        if missing {
            self.root
                .mkdir_all_in_root(&rel, 0o755)
                .map_err(|(_, e)| place.err("mkdir", e))?;
        }
        Ok(())
    }

    /// A hard link to an entry at `link` (below the destination, links on its way followed
    /// inside it): an earlier entry or a file the destination already had.
    fn hardlink(
        &mut self,
        target: &Target<'_>,
        link: &[u8],
        place: &Place,
    ) -> Result<(), SnapshotError> {
        let shown = String::from_utf8_lossy(link).into_owned();
        let start = link.iter().take_while(|b| **b == b'/').count();
        let comps = clean_path(&link[start..], &shown)?;
        let rel: PathBuf = comps.iter().collect();
        let source = self
            .root
            .at_in_root(&rel)
            .map_err(|e| place.err("link", e))?;
        target
            .hard_link_to(&source)
            .map_err(|e| place.err("link", e))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// A device or fifo; false when devices cannot be created here (skipped, as in layers).
    fn node(
        &mut self,
        header: &tar::Header,
        target: &Target<'_>,
        kind: EntryType,
        meta: &EntryMeta,
        place: &Place,
    ) -> Result<bool, SnapshotError> {
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let ifmt = match kind {
            EntryType::Char => libc::S_IFCHR,
            EntryType::Block => libc::S_IFBLK,
            _ => libc::S_IFIFO,
        };
        match target.mknod(ifmt, meta.mode, major, minor) {
            Ok(()) => {}
            Err(e) if ifmt != libc::S_IFIFO && e.raw_os_error() == Some(libc::EPERM) => {
                self.stats.skipped_devices.note(&place.shown);
                self.stats.skipped += 1;
                return Ok(false);
            }
            Err(e) => return Err(place.err("mknod", e)),
        }
        if ifmt == libc::S_IFIFO {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        Ok(true)
    }

    /// Owner, mode (not of a symlink), xattrs, times; a directory's times wait for the end.
    /// A hard link's header metadata lands on the inode it shares, as in BuildKit.
    fn apply_meta(
        &mut self,
        target: &Target<'_>,
        kind: EntryType,
        meta: &EntryMeta,
        place: Place,
    ) -> Result<(), SnapshotError> {
        self.chown.chown(target, meta.uid, meta.gid)?;
        let st = target.stat().map_err(|e| place.err("lstat", e))?;
        let is_symlink = st.is_some_and(|s| s.kind == FileKind::Symlink);
        if !is_symlink {
            target.chmod(meta.mode).map_err(|e| place.err("chmod", e))?;
            set_xattrs(target, &meta.xattrs);
        }
        if kind == EntryType::Directory {
            self.dirs
                .push((place.shown, place.rel, meta.mtime, meta.mtime_nsec));
            return Ok(());
        }
        target
            .set_times(meta.mtime, meta.mtime_nsec)
            .map_err(|e| place.err("chtimes", e))
    }

    /// Sets the directories' times, following a link that replaced one inside the
    /// destination (BuildKit's `chtimes`), then gives the destination itself the current
    /// time, which BuildKit's unpack leaves on it.
    fn finish(&mut self) -> Result<(), SnapshotError> {
        for (shown, rel, sec, nsec) in std::mem::take(&mut self.dirs) {
            let place = Place { shown, rel };
            self.root
                .set_times_in_root(&place.rel, sec, nsec)
                .map_err(|e| place.err("chtimes", e))?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let top = self
            .root
            .at(Path::new(""))
            .and_then(|t| t.set_times(now.as_secs() as i64, now.subsec_nanos()));
        top.map_err(|e| dest_err("chtimes", "/", e))
    }
}

/// A name like `.wh.x` (or below such a directory) would be read back as a whiteout once
/// the layer is written: refused, naming the entry.
fn refuse_whiteout_names(comps: &[OsString], shown: &str) -> Result<(), SnapshotError> {
    if comps.iter().any(|c| c.as_bytes().starts_with(b".wh.")) {
        return Err(SnapshotError::UnsafePath {
            path: shown.to_string(),
            reason: "a whiteout name cannot be stored in a layer",
        });
    }
    Ok(())
}
