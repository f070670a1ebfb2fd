//! Overlay upper dir -> deterministic OCI layer tar.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, SnapshotError};
use crate::stack::{Found, LayerStack};
use crate::sys;
use crate::tarwrite::{self, TarHeader};

/// How to write a layer tar from an upper dir.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Clamp every mtime to at most this (SOURCE_DATE_EPOCH), for reproducible layers.
    pub clamp_mtime: Option<i64>,
    /// Paths relative to the upper dir (e.g. mountpoints the sandbox created) left out of the
    /// layer when they are empty files or empty directories.
    pub exclude: Vec<PathBuf>,
}

/// What a diff wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// Tar entries written (PAX headers not counted).
    pub entries: u64,
    /// Regular files written with their content.
    pub files: u64,
    /// Directory entries written.
    pub dirs: u64,
    /// Symlinks written.
    pub symlinks: u64,
    /// Hardlink entries written.
    pub hardlinks: u64,
    /// Devices and fifos written.
    pub nodes: u64,
    /// Whiteout entries (`.wh.<name>`) written.
    pub whiteouts: u64,
    /// Opaque markers (`.wh..wh..opq`) written.
    pub opaque_dirs: u64,
    /// Directories left out because the lower layers already have them unchanged.
    pub unchanged_dirs: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Writes the changes recorded in an overlay upper dir (`userxattr` format) as a deterministic
/// OCI layer tar: entries in walk order (parents first, siblings sorted bytewise), whiteouts as
/// `.wh.<name>`, opaque dirs followed by `<dir>/.wh..wh..opq`, hardlinks to the first path, no
/// user or group names, mtimes clamped to `opts.clamp_mtime`.
///
/// `lowers` (top-most first) are the layers the upper was mounted over: a directory that is
/// neither opaque nor different from the lower one in mode, owner or xattrs gets no entry of its
/// own (its changed children still do), as BuildKit does.
pub fn write_layer_tar(
    upper: &Path,
    lowers: &[PathBuf],
    out: impl Write,
    opts: &DiffOptions,
) -> Result<DiffStats, SnapshotError> {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
    let lower = LayerStack::new(lowers.to_vec());
    let lower_root = lower.root()?;
    let mut differ = Differ {
        lower,
        out: &mut out,
        opts,
        exclude: opts.exclude.iter().map(|p| normalize_rel(p)).collect(),
        links: HashMap::new(),
        stats: DiffStats::default(),
    };
    differ.walk_dir(b"", upper, lower_root.as_ref())?;
    tarwrite::finish(differ.out).map_err(SnapshotError::TarWrite)?;
    differ.out.flush().map_err(SnapshotError::TarWrite)?;
    Ok(differ.stats)
}

struct Differ<'a> {
    lower: LayerStack,
    out: &'a mut dyn Write,
    opts: &'a DiffOptions,
    exclude: HashSet<Vec<u8>>,
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: DiffStats,
}

impl Differ<'_> {
    fn walk_dir(
        &mut self,
        rel: &[u8],
        host: &Path,
        lower: Option<&Found>,
    ) -> Result<(), SnapshotError> {
        for name in sorted_names(host)? {
            let child_host = host.join(&name);
            let meta = fs::symlink_metadata(&child_host).ctx("stat", &child_host)?;
            let child_rel = join_rel(rel, name.as_bytes());
            if self.is_excluded(&child_rel, &child_host, &meta)? {
                tracing::debug!(path = %child_host.display(), "leaving excluded path out of the layer");
                continue;
            }
            if sys::is_whiteout(&meta) {
                let mut wh = rel.to_vec();
                if !wh.is_empty() {
                    wh.push(b'/');
                }
                wh.extend_from_slice(b".wh.");
                wh.extend_from_slice(name.as_bytes());
                self.empty_file(wh, self.mtime(&meta))?;
                self.stats.whiteouts += 1;
            } else if meta.is_dir() {
                let lower_child = match lower {
                    Some(l) => self.lower.child(l, &name)?,
                    None => None,
                };
                self.dir(&child_rel, &child_host, &meta, lower_child)?;
            } else {
                self.non_dir(child_rel, &child_host, &meta)?;
            }
        }
        Ok(())
    }

    fn dir(
        &mut self,
        rel: &[u8],
        host: &Path,
        meta: &Metadata,
        lower: Option<Found>,
    ) -> Result<(), SnapshotError> {
        if sys::get_xattr(host, "user.overlay.redirect")
            .ctx("read xattr of", host)?
            .is_some()
        {
            return Err(SnapshotError::UnsupportedOverlay {
                path: host.to_path_buf(),
                what: "redirected directory (redirect_dir)",
            });
        }
        let opaque = sys::get_xattr(host, sys::OPAQUE_XATTR)
            .ctx("read xattr of", host)?
            .as_deref()
            == Some(b"y");
        let xattrs = sys::layer_xattrs(host)?;
        let lower = lower.filter(|l| l.meta.is_dir() && !opaque);
        let unchanged = match &lower {
            Some(l) => same_dir(meta, &xattrs, l)?,
            None => false,
        };
        if unchanged {
            self.stats.unchanged_dirs += 1;
        } else {
            let mut name = rel.to_vec();
            name.push(b'/');
            let mut h = self.header(name, b'5', meta);
            h.xattrs = xattrs;
            self.emit(&h, None, host)?;
            self.stats.dirs += 1;
        }
        if opaque {
            let mut marker = rel.to_vec();
            marker.extend_from_slice(b"/.wh..wh..opq");
            self.empty_file(marker, self.mtime(meta))?;
            self.stats.opaque_dirs += 1;
        }
        self.walk_dir(rel, host, lower.as_ref())
    }

    fn non_dir(&mut self, rel: Vec<u8>, host: &Path, meta: &Metadata) -> Result<(), SnapshotError> {
        let ft = meta.file_type();
        if ft.is_socket() {
            tracing::debug!(path = %host.display(), "sockets cannot be archived, skipping");
            return Ok(());
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let mut h = self.header(rel, b'1', meta);
                h.link = first.clone();
                self.emit(&h, None, host)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links.insert(key, rel.clone());
        }
        if ft.is_file() {
            if sys::get_xattr(host, "user.overlay.metacopy")
                .ctx("read xattr of", host)?
                .is_some()
            {
                return Err(SnapshotError::UnsupportedOverlay {
                    path: host.to_path_buf(),
                    what: "metadata-only copy-up (metacopy)",
                });
            }
            let mut h = self.header(rel, b'0', meta);
            h.size = meta.len();
            h.xattrs = sys::layer_xattrs(host)?;
            let mut file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(host)
                .ctx("open", host)?;
            self.emit(&h, Some(&mut file), host)?;
            self.stats.files += 1;
            self.stats.bytes += meta.len();
        } else if ft.is_symlink() {
            let target = fs::read_link(host).ctx("read link", host)?;
            let mut h = self.header(rel, b'2', meta);
            h.link = target.as_os_str().as_bytes().to_vec();
            h.xattrs = sys::layer_xattrs(host)?;
            self.emit(&h, None, host)?;
            self.stats.symlinks += 1;
        } else {
            let typeflag = if ft.is_char_device() {
                b'3'
            } else if ft.is_block_device() {
                b'4'
            } else {
                b'6'
            };
            let mut h = self.header(rel, typeflag, meta);
            if typeflag != b'6' {
                h.dev = sys::dev_parts(meta.rdev());
            }
            h.xattrs = sys::layer_xattrs(host)?;
            self.emit(&h, None, host)?;
            self.stats.nodes += 1;
        }
        Ok(())
    }

    fn header(&self, name: Vec<u8>, typeflag: u8, meta: &Metadata) -> TarHeader {
        let mut h = TarHeader::new(name, typeflag);
        h.mode = meta.mode() & 0o7777;
        h.uid = u64::from(meta.uid());
        h.gid = u64::from(meta.gid());
        h.mtime = self.mtime(meta);
        h
    }

    /// A zero-length regular file with mode 0 and owner 0:0, as whiteouts are written.
    fn empty_file(&mut self, name: Vec<u8>, mtime: i64) -> Result<(), SnapshotError> {
        let mut h = TarHeader::new(name, b'0');
        h.mtime = mtime;
        tarwrite::write_entry(self.out, &h, Some(&mut std::io::empty()))
            .map_err(SnapshotError::TarWrite)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn emit(
        &mut self,
        h: &TarHeader,
        data: Option<&mut dyn std::io::Read>,
        host: &Path,
    ) -> Result<(), SnapshotError> {
        tarwrite::write_entry(self.out, h, data).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => SnapshotError::io("archive", host, e),
            _ => SnapshotError::TarWrite(e),
        })?;
        self.stats.entries += 1;
        Ok(())
    }

    fn mtime(&self, meta: &Metadata) -> i64 {
        let m = meta.mtime();
        match self.opts.clamp_mtime {
            Some(c) if m > c => c,
            _ => m,
        }
    }

    fn is_excluded(&self, rel: &[u8], host: &Path, meta: &Metadata) -> Result<bool, SnapshotError> {
        if !self.exclude.contains(rel) {
            return Ok(false);
        }
        if meta.is_file() {
            return Ok(meta.len() == 0);
        }
        if meta.is_dir() {
            let mut entries = fs::read_dir(host).ctx("read dir", host)?;
            return Ok(entries.next().is_none());
        }
        Ok(false)
    }
}

/// Whether an upper directory matches its lower counterpart in mode, owner and layer xattrs.
fn same_dir(
    meta: &Metadata,
    xattrs: &[(String, Vec<u8>)],
    lower: &Found,
) -> Result<bool, SnapshotError> {
    if meta.mode() != lower.meta.mode()
        || meta.uid() != lower.meta.uid()
        || meta.gid() != lower.meta.gid()
    {
        return Ok(false);
    }
    Ok(sys::layer_xattrs(&lower.host)? == xattrs)
}

/// Directory entries sorted bytewise.
fn sorted_names(dir: &Path) -> Result<Vec<OsString>, SnapshotError> {
    let mut names = Vec::new();
    for ent in fs::read_dir(dir).ctx("read dir", dir)? {
        names.push(ent.ctx("read dir", dir)?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// `/a/./b/` -> `a/b`.
fn normalize_rel(p: &Path) -> Vec<u8> {
    let parts: Vec<&[u8]> = p
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    parts.join(&b'/')
}
