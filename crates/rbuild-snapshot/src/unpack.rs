//! Layer tar -> overlay-format directory.
//!
//! The destination is only ever written through `rbuild-fsroot`: parents are resolved without
//! following any symlink and final components are acted on without following them, so a hostile
//! layer cannot create, change or remove anything outside `dest`, whatever order its entries
//! come in.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rbuild_fsroot::{FileKind, Root, Target};
use tar::EntryType;

use crate::error::{IoContext, SnapshotError, SparseError};
use crate::sparse::{self, SparseFile, SparseRecords};
use crate::sys::{self, Chowner};

/// What an unpack did, for progress reports and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries read (extension headers not counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Character and block devices created.
    pub devices: u64,
    /// Fifos created.
    pub fifos: u64,
    /// Whiteouts (`.wh.<name>`) turned into 0:0 character devices.
    pub whiteouts: u64,
    /// Opaque markers (`.wh..wh..opq`) turned into the opaque xattr.
    pub opaque_dirs: u64,
    /// Entries skipped (devices that cannot be created here, unknown `.wh..wh.` markers).
    pub skipped: u64,
    /// The device nodes among them, for the caller's warning.
    pub skipped_devices: crate::SkippedDevices,
    /// Entries left owned by 0:0 because their owner cannot be represented here, for the
    /// caller's warning.
    pub unmapped_owners: crate::UnmappedOwners,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// The layer has an opaque marker at its root (`.wh..wh..opq`): it hides every entry of
    /// the layers below, which the caller expresses with whiteouts (see
    /// [`crate::whiteout_lower_root`]).
    pub root_opaque: bool,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks one uncompressed layer tar stream into the empty directory `dest`, in overlay
/// (`userxattr`) format, so that `dest` can serve as an overlay lowerdir.
///
/// Whiteouts become 0:0 character devices and opaque markers the `user.overlay.opaque` xattr.
/// Ownership is best effort (ids that are not mapped are kept as they are), devices that cannot
/// be created are skipped (listed in the stats' `skipped_devices` for the caller to warn), and paths that would leave `dest` are refused. Every
/// write goes through [`rbuild_fsroot::Root`], so no entry can act on a file outside `dest`.
pub fn unpack_layer(tar: impl Read, dest: &Path) -> Result<UnpackStats, SnapshotError> {
    let root = Root::open(dest).ctx("open", dest)?;
    let mut archive = tar::Archive::new(tar);
    let mut state = Unpacker {
        root,
        chown: Chowner::within(dest),
        stats: UnpackStats::default(),
        dirs: Vec::new(),
    };
    let entries = archive.entries().map_err(SnapshotError::TarRead)?;
    for entry in entries {
        let mut entry = entry.map_err(SnapshotError::TarRead)?;
        state.entry(&mut entry)?;
    }
    state.finish_dirs()?;
    state.stats.unmapped_owners = state.chown.unmapped;
    Ok(state.stats)
}

/// Metadata of one entry, merged from the header and its PAX records.
pub(crate) struct EntryMeta {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    pub(crate) mtime_nsec: u32,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
    /// The PAX sparse map and real size, for a sparse file in a PAX format.
    pub(crate) sparse: Option<SparseFile>,
}

struct Unpacker {
    root: Root,
    chown: Chowner,
    stats: UnpackStats,
    /// Directories whose mode and mtime are set once all content is in place.
    dirs: Vec<(Vec<OsString>, u32, i64, u32)>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), SnapshotError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            tracing::debug!("ignoring global pax header");
            return Ok(());
        }
        self.stats.entries += 1;
        let (raw_path, meta) = entry_meta(entry)?;
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = clean_path(&raw_path, &shown)?;
        // A directory named like a whiteout would be written back as one: refuse it.
        if let Some((_, parents)) = comps.split_last()
            && parents
                .iter()
                .any(|c| c.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()))
        {
            return Err(unsafe_path(
                &shown,
                "a parent directory has a whiteout name",
            ));
        }

        // Names are bytes: a whiteout of a name that is not UTF-8 is still a whiteout.
        if let Some(name) = comps.last().map(|n| n.as_bytes()) {
            if name == OPAQUE_MARKER.as_bytes() {
                return self.opaque(&comps[..comps.len() - 1]);
            }
            if name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
                tracing::debug!(path = %shown, "skipping unknown whiteout marker");
                self.stats.skipped += 1;
                return Ok(());
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                let hidden = OsStr::from_bytes(hidden).to_os_string();
                return self.whiteout(&comps, &hidden, &meta, &shown);
            }
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &comps, &meta)
            }
            EntryType::Directory => self.dir(&comps, &meta),
            EntryType::Symlink => {
                let target = link_name(entry, &shown)?;
                self.symlink(&comps, &target, &meta)
            }
            EntryType::Link => {
                let target = link_name(entry, &shown)?;
                self.hardlink(&comps, &target, &shown)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.node(&comps, kind, major, minor, &meta, &shown)
            }
            other => Err(SnapshotError::UnsupportedEntry {
                path: shown,
                reason: format!("entry type {other:?}"),
            }),
        }
    }

    /// Makes sure every parent of `comps` is a real directory inside dest (creating missing ones),
    /// then clears the final component unless it is a directory and a directory is wanted.
    /// Returns whether a directory already stands there.
    fn prepare(
        &mut self,
        comps: &[OsString],
        want_dir: bool,
        shown: &str,
    ) -> Result<bool, SnapshotError> {
        if comps.is_empty() {
            return Ok(true);
        }
        ensure_real_dirs(&self.root, &comps[..comps.len() - 1], true, shown)?;
        let target = at(&self.root, comps, shown)?;
        target.clear(want_dir).ctx("remove", &target.display())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[OsString],
        meta: &EntryMeta,
    ) -> Result<(), SnapshotError> {
        let shown = display_of(comps);
        let mut data = sparse::content(entry, meta.sparse.as_ref(), self.root.fd())
            .map_err(|reason| sparse_error(&shown, reason))?;
        self.prepare(comps, false, &shown)?;
        let target = at(&self.root, comps, &shown)?;
        let mut file = target.create_file(0o600).ctx("create", &target.display())?;
        let n = io::copy(&mut data, &mut file).map_err(SnapshotError::TarRead)?;
        drop(file);
        self.stats.bytes += n;
        self.stats.files += 1;
        apply_meta(&mut self.chown, &target, meta, true)
    }

    fn dir(&mut self, comps: &[OsString], meta: &EntryMeta) -> Result<(), SnapshotError> {
        let shown = display_of(comps);
        // A directory recreated over a whiteout of the same layer must hide the lower one's
        // contents, which overlay expresses as an opaque directory.
        let over_whiteout = !comps.is_empty()
            && self
                .root
                .at_components(comps)
                .and_then(|t| t.stat())
                .is_ok_and(|st| st.is_some_and(|st| st.is_whiteout()));
        let exists = self.prepare(comps, true, &shown)?;
        let target = at(&self.root, comps, &shown)?;
        if !exists {
            target.mkdir(0o755).ctx("mkdir", &target.display())?;
        }
        if over_whiteout {
            target
                .set_xattr(sys::OPAQUE_XATTR, b"y")
                .ctx("mark opaque", &target.display())?;
            self.stats.opaque_dirs += 1;
        }
        self.stats.dirs += 1;
        self.chown.chown(&target, meta.uid, meta.gid)?;
        set_xattrs(&target, &meta.xattrs);
        self.dirs
            .push((comps.to_vec(), meta.mode, meta.mtime, meta.mtime_nsec));
        Ok(())
    }

    fn symlink(
        &mut self,
        comps: &[OsString],
        link: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), SnapshotError> {
        let shown = display_of(comps);
        if comps.is_empty() {
            return Err(unsafe_path(&shown, "the root cannot be a symlink"));
        }
        self.prepare(comps, false, &shown)?;
        let target = at(&self.root, comps, &shown)?;
        target
            .symlink(OsStr::from_bytes(link))
            .ctx("symlink", &target.display())?;
        self.stats.symlinks += 1;
        apply_meta(&mut self.chown, &target, meta, false)
    }

    fn hardlink(
        &mut self,
        comps: &[OsString],
        link: &[u8],
        shown: &str,
    ) -> Result<(), SnapshotError> {
        let link_display = String::from_utf8_lossy(link).into_owned();
        let link_comps = clean_path(link, &link_display)?;
        let bad = || SnapshotError::BadHardlink {
            path: shown.to_string(),
            target: link_display.clone(),
        };
        if comps.is_empty() || link_comps.is_empty() {
            return Err(bad());
        }
        if link_comps == comps {
            return Ok(());
        }
        // The target's parents are checked under the target's name: a message must name
        // what is missing, and a hard link reaches only earlier entries of its own layer.
        match ensure_real_dirs(
            &self.root,
            &link_comps[..link_comps.len() - 1],
            false,
            &link_display,
        ) {
            Err(SnapshotError::UnsafePath { reason, .. }) if reason == PARENT_MISSING => {
                return Err(bad());
            }
            other => other?,
        }
        match at(&self.root, &link_comps, &link_display)?.stat() {
            Ok(Some(st)) if st.kind != FileKind::Dir => {}
            _ => return Err(bad()),
        }
        self.prepare(comps, false, shown)?;
        let source = at(&self.root, &link_comps, shown)?;
        let target = at(&self.root, comps, shown)?;
        target
            .hard_link_to(&source)
            .ctx("hardlink", &target.display())?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn node(
        &mut self,
        comps: &[OsString],
        kind: EntryType,
        major: u32,
        minor: u32,
        meta: &EntryMeta,
        shown: &str,
    ) -> Result<(), SnapshotError> {
        if comps.is_empty() {
            return Err(unsafe_path(shown, "the root must be a directory"));
        }
        let ifmt = match kind {
            EntryType::Char => libc::S_IFCHR,
            EntryType::Block => libc::S_IFBLK,
            _ => libc::S_IFIFO,
        };
        self.prepare(comps, false, shown)?;
        let target = at(&self.root, comps, shown)?;
        match target.mknod(ifmt, meta.mode, major, minor) {
            Ok(()) => {}
            Err(e) if ifmt != libc::S_IFIFO && e.raw_os_error() == Some(libc::EPERM) => {
                self.stats.skipped_devices.note(shown);
                self.stats.skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(SnapshotError::io("mknod", target.display(), e)),
        }
        if ifmt == libc::S_IFIFO {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        apply_meta(&mut self.chown, &target, meta, true)
    }

    fn whiteout(
        &mut self,
        comps: &[OsString],
        hidden: &OsStr,
        meta: &EntryMeta,
        shown: &str,
    ) -> Result<(), SnapshotError> {
        let bytes = hidden.as_bytes();
        if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
            return Err(unsafe_path(shown, "whiteout of an invalid name"));
        }
        let mut hidden_comps = comps[..comps.len() - 1].to_vec();
        hidden_comps.push(hidden.to_os_string());
        ensure_real_dirs(&self.root, &comps[..comps.len() - 1], true, shown)?;
        let target = at(&self.root, &hidden_comps, shown)?;
        let path = target.display();
        // A whiteout only hides lower layers: an entry of this layer with the same name stays,
        // and a directory among them becomes opaque.
        match target.stat().ctx("stat", &path)? {
            Some(st) if st.kind == FileKind::Dir => {
                target
                    .set_xattr(sys::OPAQUE_XATTR, b"y")
                    .ctx("mark opaque", &path)?;
                self.stats.opaque_dirs += 1;
                return Ok(());
            }
            Some(st) if !st.is_whiteout() => return Ok(()),
            Some(_) => target.remove(false).ctx("remove", &path)?,
            None => {}
        }
        target
            .mknod(libc::S_IFCHR, 0, 0, 0)
            .ctx("create whiteout", &path)?;
        target
            .set_times(meta.mtime, meta.mtime_nsec)
            .ctx("set times of", &path)?;
        self.stats.whiteouts += 1;
        Ok(())
    }

    fn opaque(&mut self, dir: &[OsString]) -> Result<(), SnapshotError> {
        let shown = display_of(dir);
        if dir.is_empty() {
            // The layer replaces the whole tree below it: its root hides every lower entry.
            self.stats.root_opaque = true;
            self.stats.opaque_dirs += 1;
            return Ok(());
        }
        let exists = self.prepare(dir, true, &shown)?;
        let target = at(&self.root, dir, &shown)?;
        if !exists {
            target.mkdir(0o755).ctx("mkdir", &target.display())?;
        }
        target
            .set_xattr(sys::OPAQUE_XATTR, b"y")
            .ctx("mark opaque", &target.display())?;
        self.stats.opaque_dirs += 1;
        Ok(())
    }

    /// Sets the deferred directory modes and times. A directory that a later entry replaced
    /// (by a file or a symlink) keeps what that entry gave it.
    fn finish_dirs(&mut self) -> Result<(), SnapshotError> {
        for (comps, mode, mtime, nsec) in std::mem::take(&mut self.dirs) {
            let target = match self.root.at_components(&comps) {
                Ok(t) => t,
                Err(e) if rbuild_fsroot::is_symlink_error(&e) => continue,
                Err(e) => {
                    return Err(SnapshotError::io(
                        "open",
                        self.root.display(Path::new("")),
                        e,
                    ));
                }
            };
            let path = target.display();
            match target.stat().ctx("stat", &path)? {
                Some(st) if st.kind == FileKind::Dir => {}
                _ => continue,
            }
            target.chmod(mode).ctx("chmod", &path)?;
            target.set_times(mtime, nsec).ctx("set times of", &path)?;
        }
        Ok(())
    }
}

/// Owner, mode, xattrs and times, in that order (chown clears setuid bits and capabilities).
fn apply_meta(
    chown: &mut Chowner,
    target: &Target<'_>,
    meta: &EntryMeta,
    set_mode: bool,
) -> Result<(), SnapshotError> {
    let path = target.display();
    chown.chown(target, meta.uid, meta.gid)?;
    if set_mode {
        target.chmod(meta.mode).ctx("chmod", &path)?;
    }
    set_xattrs(target, &meta.xattrs);
    target
        .set_times(meta.mtime, meta.mtime_nsec)
        .ctx("set times of", &path)
}

pub(crate) fn set_xattrs(target: &Target<'_>, xattrs: &[(String, Vec<u8>)]) {
    for (name, value) in xattrs {
        if let Err(e) = target.set_xattr(name, value) {
            tracing::debug!(path = %target.display().display(), xattr = %name, error = %e, "skipping xattr");
        }
    }
}

/// The entry `comps` names, its parents checked to be real directories.
fn at<'r>(root: &'r Root, comps: &[OsString], shown: &str) -> Result<Target<'r>, SnapshotError> {
    root.at_components(comps)
        .map_err(|e| path_error(root, comps, shown, e))
}

/// Turns a failed parent lookup into the message of the rule it broke.
fn path_error(root: &Root, comps: &[OsString], shown: &str, e: io::Error) -> SnapshotError {
    if rbuild_fsroot::is_symlink_error(&e) {
        return unsafe_path(shown, "a parent directory is a symlink or not a directory");
    }
    let mut rel = PathBuf::new();
    rel.extend(comps);
    SnapshotError::io("open", root.display(&rel), e)
}

/// Why a path whose parent directory does not exist is refused.
const PARENT_MISSING: &str = "a parent directory is missing";

/// Checks that each prefix of `comps` under `root` is a real directory (not a symlink), creating
/// missing ones when `create` is set.
fn ensure_real_dirs(
    root: &Root,
    comps: &[OsString],
    create: bool,
    shown: &str,
) -> Result<(), SnapshotError> {
    for i in 0..comps.len() {
        let prefix = &comps[..=i];
        let target = root
            .at_components(prefix)
            .map_err(|e| path_error(root, prefix, shown, e))?;
        match target.stat().ctx("stat", &target.display())? {
            Some(st) if st.kind == FileKind::Dir => {}
            Some(st) if st.kind == FileKind::Symlink => {
                return Err(unsafe_path(shown, "a parent directory is a symlink"));
            }
            Some(_) => return Err(unsafe_path(shown, "a parent is not a directory")),
            None if create => target.mkdir(0o755).ctx("mkdir", &target.display())?,
            None => return Err(unsafe_path(shown, PARENT_MISSING)),
        }
    }
    Ok(())
}

/// Splits a tar path into components, dropping `.` and resolving `..` lexically; refuses absolute
/// paths and paths that climb above the root.
pub(crate) fn clean_path(raw: &[u8], shown: &str) -> Result<Vec<OsString>, SnapshotError> {
    if raw.first() == Some(&b'/') {
        return Err(unsafe_path(shown, "absolute path"));
    }
    if raw.contains(&0) {
        return Err(unsafe_path(shown, "nul byte in path"));
    }
    let mut out: Vec<OsString> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(unsafe_path(shown, "path escapes the destination"));
                }
            }
            name => out.push(OsStr::from_bytes(name).to_os_string()),
        }
    }
    Ok(out)
}

fn unsafe_path(shown: &str, reason: &'static str) -> SnapshotError {
    SnapshotError::UnsafePath {
        path: shown.to_string(),
        reason,
    }
}

fn display_of(comps: &[OsString]) -> String {
    let parts: Vec<_> = comps.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

pub(crate) fn link_name<R: Read>(
    entry: &tar::Entry<'_, R>,
    shown: &str,
) -> Result<Vec<u8>, SnapshotError> {
    match entry.link_name_bytes() {
        Some(l) if !l.is_empty() => Ok(l.into_owned()),
        _ => Err(SnapshotError::UnsupportedEntry {
            path: shown.to_string(),
            reason: "link without a target".to_string(),
        }),
    }
}

/// The entry's path (`GNU.sparse.name` when given) and its metadata.
pub(crate) fn entry_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<(Vec<u8>, EntryMeta), SnapshotError> {
    let path = entry.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&path).into_owned();
    let meta = header_meta(entry, &shown)?;
    let name = meta.sparse.as_ref().and_then(|s| s.name.clone());
    Ok((name.unwrap_or(path), meta))
}

pub(crate) fn sparse_error(shown: &str, reason: SparseError) -> SnapshotError {
    SnapshotError::Sparse {
        path: shown.to_string(),
        reason,
    }
}

/// Reads the header fields and PAX records (mtime, xattrs, sparse maps).
fn header_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shown: &str,
) -> Result<EntryMeta, SnapshotError> {
    let header = entry.header();
    let kind = header.entry_type();
    let bad = |what: &str| SnapshotError::UnsupportedEntry {
        path: shown.to_string(),
        reason: format!("invalid {what} field"),
    };
    let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
    let uid = header.uid().map_err(|_| bad("uid"))?;
    let gid = header.gid().map_err(|_| bad("gid"))?;
    let mut meta = EntryMeta {
        mode,
        uid: u32::try_from(uid).map_err(|_| bad("uid"))?,
        gid: u32::try_from(gid).map_err(|_| bad("gid"))?,
        mtime: i64::try_from(header.mtime().map_err(|_| bad("mtime"))?).unwrap_or(i64::MAX),
        mtime_nsec: 0,
        xattrs: Vec::new(),
        sparse: None,
    };
    let Some(pax) = entry.pax_extensions().map_err(SnapshotError::TarRead)? else {
        return Ok(meta);
    };
    let mut sparse = SparseRecords::default();
    for ext in pax {
        let ext = ext.map_err(SnapshotError::TarRead)?;
        let Ok(key) = ext.key() else { continue };
        if let Some(field) = key.strip_prefix("GNU.sparse.") {
            sparse
                .add(field, ext.value_bytes())
                .map_err(|e| sparse_error(shown, e))?;
        } else if key == "mtime" {
            let value = ext.value().map_err(|_| bad("pax mtime"))?;
            (meta.mtime, meta.mtime_nsec) =
                parse_pax_time(value).ok_or_else(|| bad("pax mtime"))?;
        } else if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
            if sys::is_overlay_xattr(name) {
                tracing::debug!(path = %shown, xattr = %name, "ignoring overlay xattr in layer");
                continue;
            }
            meta.xattrs
                .push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
    meta.sparse = sparse.finish().map_err(|e| sparse_error(shown, e))?;
    if meta.sparse.is_some() && !matches!(kind, EntryType::Regular | EntryType::Continuous) {
        return Err(sparse_error(shown, SparseError::NotAFile));
    }
    Ok(meta)
}

/// Parses a PAX time ("1700000000", "-12.5", "1700000000.123456789") into seconds and nanoseconds.
fn parse_pax_time(value: &str) -> Option<(i64, u32)> {
    let (neg, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos_str: String = frac.chars().take(9).collect();
    while nanos_str.len() < 9 {
        nanos_str.push('0');
    }
    let nanos: u32 = nanos_str.parse().ok()?;
    if !neg {
        return Some((secs, nanos));
    }
    if nanos == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time("1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn clean_path_refuses_escapes() {
        assert!(clean_path(b"../x", "../x").is_err());
        assert!(clean_path(b"a/../../x", "").is_err());
        assert!(clean_path(b"/etc/passwd", "").is_err());
        assert_eq!(
            clean_path(b"./a/./b/../c/", "").unwrap(),
            vec![OsString::from("a"), OsString::from("c")]
        );
        assert!(clean_path(b"./", "").unwrap().is_empty());
    }
}
