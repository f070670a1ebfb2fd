//! COPY (and ADD from local files) with Docker/BuildKit semantics, writing into a fresh layer
//! directory that is stacked on top of the destination image.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rbuild_fsroot::{FileKind, Root, Target};

use crate::error::{IoContext, SnapshotError};
use crate::mode::Chmod;
use crate::pattern::{self, Excludes};
use crate::stack::{Found, LayerStack, abs_display};
use crate::sys::{self, Chowner};

/// Where COPY reads from.
#[derive(Debug, Clone, Copy)]
pub enum CopySource<'a> {
    /// The build context directory; source paths are relative to it and cannot leave it.
    Context(&'a Path),
    /// The merged layers of another stage or image (`COPY --from`).
    Stack(&'a LayerStack),
}

/// The flags of one COPY instruction.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--chown`, already resolved to numeric ids. `None`: context files become 0:0 and files
    /// from a stack keep their ids.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, applied to every copied file and directory.
    pub chmod: Option<Chmod>,
    /// `--exclude` patterns (`.dockerignore` syntax), matched against paths relative to each
    /// copied source directory, or to the directory a wildcard was expanded in (with
    /// `parents`: relative to the source root or the `/./` pivot).
    pub exclude: Vec<String>,
    /// `--parents`: each source keeps its path (from the source root, or from a `/./` pivot
    /// in the source) below the destination, which is always a directory.
    pub parents: bool,
    /// The working directory a relative destination is relative to (`/` when empty).
    pub workdir: String,
}

/// What a COPY wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files copied.
    pub files: u64,
    /// Directories created (copied, carried from the destination image, or new parents).
    pub dirs: u64,
    /// Symlinks copied.
    pub symlinks: u64,
    /// Devices and fifos copied.
    pub nodes: u64,
    /// Entries skipped (sockets, devices that cannot be created here).
    pub skipped: u64,
    /// The device nodes among them, for the caller's warning.
    pub skipped_devices: crate::SkippedDevices,
    /// Entries left owned by 0:0 because their owner cannot be represented here, for the
    /// caller's warning.
    pub unmapped_owners: crate::UnmappedOwners,
    /// Bytes of file content copied.
    pub bytes: u64,
}

/// Runs one COPY: expands `srcs` (Go `filepath.Match` wildcards) in `source`, and writes the
/// result into the empty layer directory `out`, which is meant to be stacked on `dest_stack`.
///
/// Directory sources copy their contents; a file goes to `dest/<name>` when `dest` ends in `/`,
/// is an existing directory, or there are several sources. Destination symlinks are resolved
/// inside `dest_stack`'s root, and every existing directory on the way to the destination is
/// carried into `out` with its metadata from `dest_stack`.
pub fn copy(
    source: CopySource<'_>,
    srcs: &[String],
    dest: &str,
    dest_stack: &LayerStack,
    out: &Path,
    opts: &CopyOptions,
) -> Result<CopyStats, SnapshotError> {
    let (src_stack, keep_ids) = match source {
        CopySource::Context(dir) => (Cow::Owned(LayerStack::plain(dir.to_path_buf())), false),
        CopySource::Stack(stack) => (Cow::Borrowed(stack), true),
    };
    if srcs.is_empty() {
        return Err(SnapshotError::SourceNotFound {
            pattern: String::new(),
        });
    }
    let excludes =
        Excludes::new(&opts.exclude).map_err(|pattern| SnapshotError::BadPattern { pattern })?;
    let mut items = Vec::new();
    for src in srcs {
        items.extend(expand(&src_stack, src, opts.parents, &excludes)?);
    }
    let dir_syntax = opts.parents
        || dest.is_empty()
        || dest == "."
        || dest.ends_with('/')
        || dest.ends_with("/.");
    // Docker's rule counts the sources as written: one wildcard matching several files
    // copies each of them to a destination without a slash in turn, the last one winning.
    if srcs.len() > 1 && !dir_syntax {
        return Err(SnapshotError::MultipleSourcesNeedDir);
    }

    let full_dest = absolute_dest(dest, &opts.workdir);
    let partial = dest_stack.walk_partial(OsStr::new(&full_dest))?;
    let dest_exists = partial.missing.is_empty();
    let dest_is_dir = dest_exists && partial.found.as_ref().is_none_or(|f| f.meta.is_dir());
    let mut dest_comps = partial.existing.clone();
    dest_comps.extend(partial.missing.iter().cloned());

    let mut copier = Copier {
        src: &src_stack,
        dest: dest_stack,
        out: Root::open(out).ctx("open", out)?,
        opts,
        excludes,
        keep_ids,
        chown: Chowner::within(out),
        deferred: Vec::new(),
        linked: std::collections::HashMap::new(),
        stats: CopyStats::default(),
    };
    for item in &items {
        let not_dir = || SnapshotError::DestNotDirectory {
            path: abs_display(&dest_comps),
        };
        if opts.parents && !item.rel.is_empty() {
            if dest_exists && !dest_is_dir {
                return Err(not_dir());
            }
            copier.ensure_dirs(&dest_comps, None, None)?;
            copier.copy_with_parents(item, &dest_comps)?;
        } else if item.found.meta.is_dir() {
            if dest_exists && !dest_is_dir {
                return Err(not_dir());
            }
            copier.ensure_dirs(&dest_comps, Some(&item.found.meta), Some(&item.found))?;
            copier.copy_children(&item.found, &dest_comps, &item.rel)?;
        } else if dir_syntax || dest_is_dir {
            if dest_exists && !dest_is_dir {
                return Err(not_dir());
            }
            copier.ensure_dirs(&dest_comps, None, None)?;
            let mut target = dest_comps.clone();
            target.push(item.name.clone());
            copier.copy_entry(&item.found, &target, &item.rel)?;
        } else {
            let Some((_, parents)) = dest_comps.split_last() else {
                return Err(not_dir());
            };
            copier.ensure_dirs(parents, None, None)?;
            copier.copy_entry(&item.found, &dest_comps, &item.rel)?;
        }
    }
    copier.finish()?;
    copier.stats.unmapped_owners = copier.chown.unmapped;
    for p in &mut copier.stats.skipped_devices.first {
        // Recorded as host paths below `out`; shown as the layer's.
        if let Ok(inside) = Path::new(p.as_str()).strip_prefix(out) {
            *p = Path::new("/").join(inside).display().to_string();
        }
    }
    Ok(copier.stats)
}

/// One matched source: the name it is copied under and the (followed) file it stands for.
struct SrcItem {
    name: OsString,
    found: Found,
    /// Its path relative to where `--exclude` patterns (and `--parents` paths) start.
    rel: Vec<OsString>,
    /// The source path components before `rel` (the pivot of `--parents`).
    prefix: Vec<OsString>,
}

/// Expands one COPY source in a context directory into the paths (relative to the context,
/// `/`-separated, wildcard characters escaped) of the files it names, less the ones an
/// `--exclude` pattern drops. ADD uses it to find the archives a wildcard matches.
pub fn expand_sources(
    context: &Path,
    src: &str,
    exclude: &[String],
) -> Result<Vec<String>, SnapshotError> {
    Ok(expanded_components(context, src, exclude)?
        .iter()
        .map(|comps| {
            let escaped: Vec<String> = comps
                .iter()
                .map(|c| escape_pattern(&c.to_string_lossy()))
                .collect();
            escaped.join("/")
        })
        .collect())
}

/// The context-relative paths one COPY source names (wildcards expanded, `--exclude`
/// applied), as they are on disk. Cache keys hash exactly these.
pub fn source_paths(
    context: &Path,
    src: &str,
    exclude: &[String],
) -> Result<Vec<PathBuf>, SnapshotError> {
    Ok(expanded_components(context, src, exclude)?
        .into_iter()
        .map(|comps| comps.iter().collect())
        .collect())
}

/// The path components (from the context root) of everything one source names.
fn expanded_components(
    context: &Path,
    src: &str,
    exclude: &[String],
) -> Result<Vec<Vec<OsString>>, SnapshotError> {
    let excludes =
        Excludes::new(exclude).map_err(|pattern| SnapshotError::BadPattern { pattern })?;
    let stack = LayerStack::plain(context.to_path_buf());
    let items = expand(&stack, src, false, &excludes)?;
    Ok(items
        .into_iter()
        .map(|i| i.prefix.into_iter().chain(i.rel).collect())
        .collect())
}

/// `s` with Go wildcard characters escaped, so that it only matches itself.
fn escape_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits a `--parents` source at its `/./` pivot: the components before it are not kept
/// below the destination. Without a pivot everything is kept.
fn split_pivot(src: &str) -> (Vec<&str>, Vec<&str>) {
    let mut body = src;
    while let Some(rest) = body.strip_prefix("./") {
        body = rest;
    }
    match body.find("/./") {
        Some(i) => (
            clean_components(&body[..i]),
            clean_components(&body[i + 3..]),
        ),
        None => (Vec::new(), clean_components(body)),
    }
}

/// `dest` made absolute against `workdir` and lexically cleaned (`..` clamped at the root).
fn absolute_dest(dest: &str, workdir: &str) -> String {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!(
            "{}/{}",
            if workdir.is_empty() { "/" } else { workdir },
            dest
        )
    };
    let comps = clean_components(&joined);
    format!("/{}", comps.join("/"))
}

/// Splits a path into components, dropping `.` and resolving `..` lexically, clamped at root.
fn clean_components(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Expands one COPY source (possibly with wildcards) into the files it names, in walk order,
/// dropping matches that `excludes` covers.
fn expand(
    stack: &LayerStack,
    src: &str,
    parents: bool,
    excludes: &Excludes,
) -> Result<Vec<SrcItem>, SnapshotError> {
    let (prefix, rest) = if parents {
        split_pivot(src)
    } else {
        (Vec::new(), clean_components(src))
    };
    let comps: Vec<&str> = prefix.iter().chain(&rest).copied().collect();
    let not_found = || SnapshotError::SourceNotFound {
        pattern: src.to_string(),
    };
    let first_wild = comps.iter().position(|c| pattern::has_wildcards(c));
    // Where the kept path starts: the pivot with --parents, else the wildcard's directory
    // (nothing of a plain source is matched against --exclude).
    let keep_from = match (parents, first_wild) {
        (true, _) => prefix.len(),
        (false, Some(w)) => w,
        (false, None) => comps.len(),
    };
    let Some(first_wild) = first_wild else {
        let path = format!("/{}", comps.join("/"));
        let (_, found) = stack.walk(OsStr::new(&path), true)?.ok_or_else(not_found)?;
        let name = OsString::from(comps.last().copied().unwrap_or("/"));
        let lexical: Vec<OsString> = comps.iter().map(OsString::from).collect();
        let item = make_item(name, found, lexical, keep_from);
        return Ok(keep(item, excludes).into_iter().collect());
    };
    // A wildcard may match nothing (BuildKit's AllowEmptyWildcard): that source copies
    // nothing, even when the directory before the wildcard is missing.
    let base = format!("/{}", comps[..first_wild].join("/"));
    let Some((base_comps, base_found)) = stack.walk(OsStr::new(&base), true)? else {
        return Ok(Vec::new());
    };
    let base_lexical: Vec<OsString> = comps[..first_wild].iter().map(OsString::from).collect();
    let mut current = vec![(base_comps, base_lexical, base_found)];
    for comp in &comps[first_wild..] {
        let mut next = Vec::new();
        for (parent_comps, parent_lexical, parent) in &current {
            if !parent.meta.is_dir() {
                continue;
            }
            for name in stack.list(parent)? {
                let matched = pattern::matches(comp, &name.to_string_lossy()).map_err(|_| {
                    SnapshotError::BadPattern {
                        pattern: src.to_string(),
                    }
                })?;
                if !matched {
                    continue;
                }
                if let Some(child) = stack.child(parent, &name)? {
                    let mut child_comps = parent_comps.clone();
                    child_comps.push(name.clone());
                    let mut child_lexical = parent_lexical.clone();
                    child_lexical.push(name);
                    next.push((child_comps, child_lexical, child));
                }
            }
        }
        current = next;
    }
    let mut items = Vec::with_capacity(current.len());
    for (comps, lexical, found) in current {
        let name = comps.last().cloned().unwrap_or_default();
        let found = if found.meta.file_type().is_symlink() {
            let path = abs_display(&comps);
            let (_, target) = stack.walk(OsStr::new(&path), true)?.ok_or_else(|| {
                SnapshotError::SourceNotFound {
                    pattern: path.clone(),
                }
            })?;
            target
        } else {
            found
        };
        items.extend(keep(make_item(name, found, lexical, keep_from), excludes));
    }
    Ok(items)
}

fn make_item(
    name: OsString,
    found: Found,
    mut lexical: Vec<OsString>,
    keep_from: usize,
) -> SrcItem {
    let rel = lexical.split_off(keep_from.min(lexical.len()));
    SrcItem {
        name,
        found,
        rel,
        prefix: lexical,
    }
}

/// The item unless an `--exclude` pattern covers it (directories with exceptions below them
/// are kept and filtered entry by entry).
fn keep(item: SrcItem, excludes: &Excludes) -> Option<SrcItem> {
    if item.rel.is_empty() || !is_excluded(excludes, &item.rel, item.found.meta.is_dir()) {
        Some(item)
    } else {
        None
    }
}

/// Whether the entry at `rel` is left out; an excluded directory is still walked when some
/// pattern re-includes paths.
fn is_excluded(excludes: &Excludes, rel: &[OsString], is_dir: bool) -> bool {
    if excludes.is_empty() {
        return false;
    }
    let names: Vec<std::borrow::Cow<'_, str>> = rel.iter().map(|c| c.to_string_lossy()).collect();
    let refs: Vec<&str> = names.iter().map(|c| c.as_ref()).collect();
    excludes.excluded(&refs) && !(is_dir && excludes.has_exceptions())
}

struct Copier<'a> {
    src: &'a LayerStack,
    dest: &'a LayerStack,
    out: Root,
    opts: &'a CopyOptions,
    excludes: Excludes,
    keep_ids: bool,
    chown: Chowner,
    /// Directories whose mode (if any) and times are set once their contents are written.
    deferred: Vec<(Vec<OsString>, Option<u32>, i64, u32)>,
    stats: CopyStats,
    /// Files with several links copied so far, by source (device, inode): where their first
    /// copy went, so the other names become hard links to it as in the source.
    linked: std::collections::HashMap<(u64, u64), Vec<OsString>>,
}

impl Copier<'_> {
    /// The owner a copied file gets.
    fn ids_for(&self, meta: &Metadata) -> (u32, u32) {
        match self.opts.chown {
            Some(ids) => ids,
            None if self.keep_ids => (meta.uid(), meta.gid()),
            None => (0, 0),
        }
    }

    /// The permission bits a copied file or directory gets.
    fn mode_for(&self, meta: &Metadata) -> u32 {
        match &self.opts.chmod {
            Some(chmod) => chmod.apply(meta.mode(), meta.is_dir()),
            None => meta.mode() & 0o7777,
        }
    }

    /// Creates every directory of `comps` in `out` that is not there yet: directories that exist
    /// in the destination image are carried with their metadata; missing ones get mode 0755 and
    /// the `--chown` ids, except the last one when `last_from` gives a source directory to take
    /// mode, times and xattrs from.
    fn ensure_dirs(
        &mut self,
        comps: &[OsString],
        last_from: Option<&Metadata>,
        last_src: Option<&Found>,
    ) -> Result<(), SnapshotError> {
        for i in 0..comps.len() {
            let prefix = &comps[..=i];
            let target = out_at(&self.out, prefix)?;
            match target.stat().ctx("stat", &target.display())? {
                Some(st) if st.kind == FileKind::Dir => continue,
                Some(_) => {
                    return Err(SnapshotError::DestNotDirectory {
                        path: abs_display(prefix),
                    });
                }
                None => {}
            }
            drop(target);
            let is_last = i + 1 == comps.len();
            match self.dest.lookup_exact(prefix)? {
                Some(existing) if existing.meta.is_dir() => self.carry_dir(prefix, &existing)?,
                Some(_) => {
                    return Err(SnapshotError::DestNotDirectory {
                        path: abs_display(prefix),
                    });
                }
                None => match (is_last, last_from, last_src) {
                    (true, Some(meta), Some(src)) => self.new_dest_dir(prefix, meta, &src.host)?,
                    _ => self.new_parent_dir(prefix)?,
                },
            }
        }
        Ok(())
    }

    /// Recreates an existing destination directory in `out` with its metadata.
    fn carry_dir(&mut self, comps: &[OsString], existing: &Found) -> Result<(), SnapshotError> {
        let meta = &existing.meta;
        let target = out_at(&self.out, comps)?;
        target.mkdir(0o755).ctx("mkdir", &target.display())?;
        self.chown.chown(&target, meta.uid(), meta.gid())?;
        copy_xattrs(&existing.host, &target)?;
        drop(target);
        self.deferred.push((
            comps.to_vec(),
            Some(meta.mode() & 0o7777),
            meta.mtime(),
            meta.mtime_nsec() as u32,
        ));
        self.stats.dirs += 1;
        Ok(())
    }

    /// A missing parent of the destination: 0755, owned by the `--chown` ids or 0:0.
    fn new_parent_dir(&mut self, comps: &[OsString]) -> Result<(), SnapshotError> {
        let target = out_at(&self.out, comps)?;
        let path = target.display();
        target.mkdir(0o755).ctx("mkdir", &path)?;
        target.chmod(0o755).ctx("chmod", &path)?;
        let (uid, gid) = self.opts.chown.unwrap_or((0, 0));
        self.chown.chown(&target, uid, gid)?;
        self.stats.dirs += 1;
        Ok(())
    }

    /// A missing destination directory that receives a source directory's contents takes that
    /// directory's times and xattrs, and mode 0755 (through `--chmod` when given), as
    /// BuildKit creates it.
    fn new_dest_dir(
        &mut self,
        comps: &[OsString],
        meta: &Metadata,
        host: &Path,
    ) -> Result<(), SnapshotError> {
        let mode = match &self.opts.chmod {
            Some(chmod) => chmod.apply(0o755, true),
            None => 0o755,
        };
        self.new_dir_with(comps, meta, host, mode)
    }

    /// A directory kept from the source (`--parents`): its own mode, times and xattrs.
    fn new_dir_like(
        &mut self,
        comps: &[OsString],
        meta: &Metadata,
        host: &Path,
    ) -> Result<(), SnapshotError> {
        let mode = self.mode_for(meta);
        self.new_dir_with(comps, meta, host, mode)
    }

    fn new_dir_with(
        &mut self,
        comps: &[OsString],
        meta: &Metadata,
        host: &Path,
        mode: u32,
    ) -> Result<(), SnapshotError> {
        let (uid, gid) = self.ids_for(meta);
        let target = out_at(&self.out, comps)?;
        target.mkdir(0o755).ctx("mkdir", &target.display())?;
        self.chown.chown(&target, uid, gid)?;
        copy_xattrs(host, &target)?;
        drop(target);
        self.deferred.push((
            comps.to_vec(),
            Some(mode),
            meta.mtime(),
            meta.mtime_nsec() as u32,
        ));
        self.stats.dirs += 1;
        Ok(())
    }

    /// `--parents`: recreates the item's kept parent directories below `dest` (from the
    /// source's directories), then copies the item to `dest/<rel>`.
    fn copy_with_parents(
        &mut self,
        item: &SrcItem,
        dest: &[OsString],
    ) -> Result<(), SnapshotError> {
        let dirs = if item.found.meta.is_dir() {
            item.rel.len()
        } else {
            item.rel.len() - 1
        };
        for i in 0..dirs {
            let mut target = dest.to_vec();
            target.extend(item.rel[..=i].iter().cloned());
            if out_at(&self.out, &target)?.stat().ok().flatten().is_some() {
                continue;
            }
            if self.dest.lookup_exact(&target)?.is_some() {
                self.ensure_dirs(&target, None, None)?;
                continue;
            }
            let mut src_path = item.prefix.clone();
            src_path.extend(item.rel[..=i].iter().cloned());
            let src_dir = if i + 1 == item.rel.len() {
                Some(item.found.clone())
            } else {
                self.src
                    .walk(OsStr::new(&abs_display(&src_path)), true)?
                    .map(|(_, f)| f)
            };
            match src_dir {
                Some(f) if f.meta.is_dir() => self.new_dir_like(&target, &f.meta, &f.host)?,
                _ => self.new_parent_dir(&target)?,
            }
        }
        let mut target = dest.to_vec();
        target.extend(item.rel.iter().cloned());
        if item.found.meta.is_dir() {
            self.copy_children(&item.found, &target, &item.rel)
        } else {
            self.copy_entry(&item.found, &target, &item.rel)
        }
    }

    fn copy_children(
        &mut self,
        dir: &Found,
        target: &[OsString],
        rel: &[OsString],
    ) -> Result<(), SnapshotError> {
        for name in self.src.list(dir)? {
            let Some(child) = self.src.child(dir, &name)? else {
                continue;
            };
            let mut child_rel = rel.to_vec();
            child_rel.push(name.clone());
            if is_excluded(&self.excludes, &child_rel, child.meta.is_dir()) {
                continue;
            }
            let mut child_target = target.to_vec();
            child_target.push(name);
            self.copy_entry(&child, &child_target, &child_rel)?;
        }
        Ok(())
    }

    /// Copies one file, symlink, node or directory tree to `target` (components inside `out`).
    fn copy_entry(
        &mut self,
        src: &Found,
        target: &[OsString],
        rel: &[OsString],
    ) -> Result<(), SnapshotError> {
        let meta = &src.meta;
        let ft = meta.file_type();
        if ft.is_socket() || (ft.is_char_device() && meta.rdev() == 0) {
            tracing::debug!(path = %src.host.display(), "not copying socket or whiteout-like device");
            self.stats.skipped += 1;
            return Ok(());
        }
        let (uid, gid) = self.ids_for(meta);
        let mode = self.mode_for(meta);
        let out = out_at(&self.out, target)?;
        let path = out.display();
        let existing_dir = out.clear(meta.is_dir()).ctx("remove", &path)?;
        if meta.is_dir() {
            if !existing_dir {
                out.mkdir(0o755).ctx("mkdir", &path)?;
            }
            self.chown.chown(&out, uid, gid)?;
            copy_xattrs(&src.host, &out)?;
            drop(out);
            self.deferred.push((
                target.to_vec(),
                Some(mode),
                meta.mtime(),
                meta.mtime_nsec() as u32,
            ));
            self.stats.dirs += 1;
            return self.copy_children(src, target, rel);
        }
        if ft.is_file() && meta.nlink() > 1 {
            let id = (meta.dev(), meta.ino());
            if let Some(first) = self.linked.get(&id) {
                let first = out_at(&self.out, first)?;
                out.hard_link_to(&first).ctx("hardlink", &path)?;
                self.stats.files += 1;
                return Ok(());
            }
            self.linked.insert(id, target.to_vec());
        }
        if ft.is_file() {
            copy_file(&src.host, &out)?;
            self.stats.files += 1;
            self.stats.bytes += meta.len();
        } else if ft.is_symlink() {
            let link = fs::read_link(&src.host).ctx("read link", &src.host)?;
            out.symlink(link.as_os_str()).ctx("symlink", &path)?;
            self.chown.chown(&out, uid, gid)?;
            out.set_times(meta.mtime(), meta.mtime_nsec() as u32)
                .ctx("set times of", &path)?;
            self.stats.symlinks += 1;
            return Ok(());
        } else if !make_node(&mut self.stats, meta, &out)? {
            return Ok(());
        }
        self.chown.chown(&out, uid, gid)?;
        out.chmod(mode).ctx("chmod", &path)?;
        copy_xattrs(&src.host, &out)?;
        out.set_times(meta.mtime(), meta.mtime_nsec() as u32)
            .ctx("set times of", &path)
    }

    /// Sets the deferred directory modes and times. A directory that a later source replaced
    /// (by a file or a symlink) keeps what that source gave it.
    fn finish(&mut self) -> Result<(), SnapshotError> {
        for (comps, mode, sec, nsec) in std::mem::take(&mut self.deferred) {
            let target = match self.out.at_components(&comps) {
                Ok(t) => t,
                Err(e) if rbuild_fsroot::is_symlink_error(&e) => continue,
                Err(e) => return Err(SnapshotError::io("open", self.out.path().to_path_buf(), e)),
            };
            let path = target.display();
            match target.stat().ctx("stat", &path)? {
                Some(st) if st.kind == FileKind::Dir => {}
                _ => continue,
            }
            if let Some(mode) = mode {
                target.chmod(mode).ctx("chmod", &path)?;
            }
            target.set_times(sec, nsec).ctx("set times of", &path)?;
        }
        Ok(())
    }
}

/// The entry `comps` names in `out`, reached without following any symlink.
fn out_at<'r>(out: &'r Root, comps: &[OsString]) -> Result<Target<'r>, SnapshotError> {
    out.at_components(comps).map_err(|e| {
        if rbuild_fsroot::is_symlink_error(&e) {
            SnapshotError::DestNotDirectory {
                path: abs_display(comps),
            }
        } else {
            SnapshotError::io("open", out.path().to_path_buf(), e)
        }
    })
}

/// Copies a regular file's contents from a source tree into a new file at `to`.
fn copy_file(from: &Path, to: &Target<'_>) -> Result<(), SnapshotError> {
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)
        .ctx("open", from)?;
    let mut output = to.create_file(0o600).ctx("create", &to.display())?;
    io::copy(&mut input, &mut output).ctx("copy to", &to.display())?;
    Ok(())
}

/// Recreates a device or fifo; false when devices cannot be created here.
fn make_node(
    stats: &mut CopyStats,
    meta: &Metadata,
    out: &Target<'_>,
) -> Result<bool, SnapshotError> {
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        libc::S_IFCHR
    } else if ft.is_block_device() {
        libc::S_IFBLK
    } else {
        libc::S_IFIFO
    };
    let (major, minor) = sys::dev_parts(meta.rdev());
    match out.mknod(kind, meta.mode(), major, minor) {
        Ok(()) => {
            stats.nodes += 1;
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            stats
                .skipped_devices
                .note(&out.display().display().to_string());
            stats.skipped += 1;
            Ok(false)
        }
        Err(e) => Err(SnapshotError::io("mknod", out.display(), e)),
    }
}

/// Copies the layer-relevant xattrs of a source file onto `to`.
fn copy_xattrs(from: &Path, to: &Target<'_>) -> Result<(), SnapshotError> {
    for (name, value) in sys::layer_xattrs(from)? {
        if let Err(e) = to.set_xattr(&name, &value) {
            tracing::debug!(path = %to.display().display(), xattr = %name, error = %e, "skipping xattr");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_made_absolute_and_clean() {
        assert_eq!(absolute_dest("app/", "/work"), "/work/app");
        assert_eq!(absolute_dest(".", "/work"), "/work");
        assert_eq!(absolute_dest("/x/../../y", "/work"), "/y");
        assert_eq!(absolute_dest("x", ""), "/x");
    }
}
