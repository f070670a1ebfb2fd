//! A read-only merged view of stacked layer directories, with overlay semantics, and path
//! resolution confined to the stack's root like a chroot.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::{IoContext, SnapshotError};
use crate::sys;

/// Most symlinks followed in one resolution, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// A read-only merged view of layer directories (top-most first) following overlay semantics:
/// whiteouts hide lower names and opaque directories hide lower contents. Used to read COPY
/// sources from other stages and to resolve COPY destinations.
#[derive(Debug, Clone)]
pub struct LayerStack {
    dirs: Vec<PathBuf>,
    /// When false the directories are plain trees (a build context): no whiteouts, no opaque.
    overlay: bool,
}

/// One file found in a [`LayerStack`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// The resolved path inside the root, absolute (`/` for the root).
    pub path: String,
    /// The real file, in whichever layer dir holds the visible version.
    pub host_path: PathBuf,
    /// `lstat` of `host_path`.
    pub metadata: Metadata,
}

/// A visible file: its layer, host path, metadata, and (for directories) the layers that
/// contribute to its contents, top-most first.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Path relative to the layer dirs.
    pub(crate) rel: PathBuf,
    pub(crate) host: PathBuf,
    pub(crate) meta: Metadata,
    pub(crate) dir_layers: Vec<usize>,
}

/// The outcome of walking a path that may be partly missing (for COPY destinations).
#[derive(Debug)]
pub(crate) struct Partial {
    /// Resolved components of the longest existing prefix.
    pub(crate) existing: Vec<OsString>,
    /// What the existing prefix is (the root when `existing` is empty).
    pub(crate) found: Option<Found>,
    /// Remaining components that do not exist, already cleaned of `.` and `..`.
    pub(crate) missing: Vec<OsString>,
}

impl LayerStack {
    /// Creates the view over layer directories, top-most first.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        LayerStack {
            dirs,
            overlay: true,
        }
    }

    /// A view over one plain directory tree (no overlay markers), such as a build context.
    pub(crate) fn plain(dir: PathBuf) -> Self {
        LayerStack {
            dirs: vec![dir],
            overlay: false,
        }
    }

    /// The layer directories, top-most first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Looks a path up without following a final symlink. Intermediate symlinks are resolved
    /// inside the root (absolute targets re-rooted, `..` clamped at the root). `None` when the
    /// path does not exist or goes through a non-directory.
    pub fn lookup(&self, path: &str) -> Result<Option<Entry>, SnapshotError> {
        self.entry(path, false)
    }

    /// Like [`LayerStack::lookup`] but follows a final symlink too, still inside the root.
    pub fn resolve(&self, path: &str) -> Result<Option<Entry>, SnapshotError> {
        self.entry(path, true)
    }

    /// The merged, sorted names in a directory (following symlinks to it inside the root).
    pub fn read_dir(&self, path: &str) -> Result<Vec<String>, SnapshotError> {
        let Some((_, found)) = self.walk(OsStr::new(path), true)? else {
            return Err(SnapshotError::NotADirectory {
                path: path.to_string(),
            });
        };
        if !found.meta.is_dir() {
            return Err(SnapshotError::NotADirectory {
                path: path.to_string(),
            });
        }
        let names = self.list(&found)?;
        names
            .into_iter()
            .map(|n| {
                n.into_string().map_err(|n| SnapshotError::NonUtf8Name {
                    name: n.to_string_lossy().into_owned(),
                })
            })
            .collect()
    }

    fn entry(&self, path: &str, follow: bool) -> Result<Option<Entry>, SnapshotError> {
        Ok(self
            .walk(OsStr::new(path), follow)?
            .map(|(comps, found)| Entry {
                path: abs_display(&comps),
                host_path: found.host,
                metadata: found.meta,
            }))
    }

    /// The root directory and the layers that contribute to it; `None` for an empty stack.
    pub(crate) fn root(&self) -> Result<Option<Found>, SnapshotError> {
        let mut layers = Vec::new();
        let mut top: Option<(PathBuf, Metadata)> = None;
        for (i, dir) in self.dirs.iter().enumerate() {
            let meta = match fs::symlink_metadata(dir) {
                Ok(m) if m.is_dir() => m,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SnapshotError::io("stat", dir, e)),
            };
            if top.is_none() {
                top = Some((dir.clone(), meta));
            }
            layers.push(i);
            if self.is_opaque(dir)? {
                break;
            }
        }
        Ok(top.map(|(host, meta)| Found {
            rel: PathBuf::new(),
            host,
            meta,
            dir_layers: layers,
        }))
    }

    fn is_opaque(&self, host: &std::path::Path) -> Result<bool, SnapshotError> {
        if !self.overlay {
            return Ok(false);
        }
        let v = sys::get_xattr(host, sys::OPAQUE_XATTR).ctx("read xattr of", host)?;
        Ok(v.as_deref() == Some(b"y"))
    }

    /// Finds `name` inside the directory `parent`.
    pub(crate) fn child(
        &self,
        parent: &Found,
        name: &OsStr,
    ) -> Result<Option<Found>, SnapshotError> {
        let mut found: Option<Found> = None;
        let rel = parent.rel.join(name);
        for &i in &parent.dir_layers {
            let host = self.dirs[i].join(&rel);
            let meta = match fs::symlink_metadata(&host) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(e) => return Err(SnapshotError::io("stat", host, e)),
            };
            let whiteout = self.overlay && sys::is_whiteout(&meta);
            match &mut found {
                None if whiteout => return Ok(None),
                None if meta.is_dir() => {
                    let opaque = self.is_opaque(&host)?;
                    found = Some(Found {
                        rel: rel.clone(),
                        host,
                        meta,
                        dir_layers: vec![i],
                    });
                    if opaque {
                        break;
                    }
                }
                None => {
                    return Ok(Some(Found {
                        rel,
                        host,
                        meta,
                        dir_layers: Vec::new(),
                    }));
                }
                Some(dir) if meta.is_dir() => {
                    dir.dir_layers.push(i);
                    if self.is_opaque(&host)? {
                        break;
                    }
                }
                Some(_) => break,
            }
        }
        Ok(found)
    }

    /// The merged, sorted names of a directory.
    pub(crate) fn list(&self, dir: &Found) -> Result<Vec<OsString>, SnapshotError> {
        let rel = &dir.rel;
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut names: Vec<OsString> = Vec::new();
        for &i in &dir.dir_layers {
            let host = self.dirs[i].join(rel);
            for ent in fs::read_dir(&host).ctx("read dir", &host)? {
                let ent = ent.ctx("read dir", &host)?;
                let name = ent.file_name();
                if seen.contains(&name) {
                    continue;
                }
                seen.insert(name.clone());
                if self.overlay {
                    let meta = ent.metadata().ctx("stat", &ent.path())?;
                    if sys::is_whiteout(&meta) {
                        continue;
                    }
                }
                names.push(name);
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    /// Resolves `path` inside the root. Returns the resolved components and what is there.
    pub(crate) fn walk(
        &self,
        path: &OsStr,
        follow_last: bool,
    ) -> Result<Option<(Vec<OsString>, Found)>, SnapshotError> {
        let Some(root) = self.root()? else {
            return Ok(None);
        };
        let mut queue = split(path.as_bytes());
        let mut stack: Vec<(OsString, Found)> = Vec::new();
        let mut links = 0;
        while let Some(comp) = queue.pop_front() {
            if comp == ".." {
                stack.pop();
                continue;
            }
            let parent = stack.last().map(|(_, f)| f).unwrap_or(&root);
            if !parent.meta.is_dir() {
                return Ok(None);
            }
            let Some(found) = self.child(parent, &comp)? else {
                return Ok(None);
            };
            let is_last = queue.is_empty();
            if found.meta.file_type().is_symlink() && (!is_last || follow_last) {
                follow_link(&found, path, &mut links, &mut stack, &mut queue)?;
                continue;
            }
            stack.push((comp, found));
        }
        if let Some((_, f)) = stack.last()
            && !f.meta.is_dir()
            && path.as_bytes().ends_with(b"/")
        {
            return Ok(None);
        }
        let comps: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
        let found = stack.pop().map(|(_, f)| f).unwrap_or(root);
        Ok(Some((comps, found)))
    }

    /// Walks `path` as far as it exists, following every symlink (including the last) inside
    /// the root; a component that exists but is not a directory while more follow is an error.
    pub(crate) fn walk_partial(&self, path: &OsStr) -> Result<Partial, SnapshotError> {
        let mut queue = split(path.as_bytes());
        let Some(root) = self.root()? else {
            return Ok(Partial {
                existing: Vec::new(),
                found: None,
                missing: clean_rest(queue),
            });
        };
        let mut stack: Vec<(OsString, Found)> = Vec::new();
        let mut links = 0;
        while let Some(comp) = queue.pop_front() {
            if comp == ".." {
                stack.pop();
                continue;
            }
            let comps: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
            let parent = stack.last().map(|(_, f)| f).unwrap_or(&root);
            if !parent.meta.is_dir() {
                return Err(SnapshotError::DestNotDirectory {
                    path: abs_display(&comps),
                });
            }
            let Some(found) = self.child(parent, &comp)? else {
                queue.push_front(comp);
                let missing = clean_rest(queue);
                let found = Some(stack.pop().map(|(_, f)| f).unwrap_or(root));
                return Ok(Partial {
                    existing: comps,
                    found,
                    missing,
                });
            };
            if found.meta.file_type().is_symlink() {
                follow_link(&found, path, &mut links, &mut stack, &mut queue)?;
                continue;
            }
            stack.push((comp, found));
        }
        let comps: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
        let found = Some(stack.pop().map(|(_, f)| f).unwrap_or(root));
        Ok(Partial {
            existing: comps,
            found,
            missing: Vec::new(),
        })
    }

    /// Looks up already-resolved components without following any symlink: `None` unless every
    /// intermediate component is a directory in the merged view.
    pub(crate) fn lookup_exact(&self, comps: &[OsString]) -> Result<Option<Found>, SnapshotError> {
        let Some(mut cur) = self.root()? else {
            return Ok(None);
        };
        for name in comps {
            if !cur.meta.is_dir() {
                return Ok(None);
            }
            match self.child(&cur, name)? {
                Some(f) => cur = f,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }
}

/// Splits a path into components, dropping empty ones and `.`.
/// Replaces a symlink met during a walk by its target's components, inside the root: an
/// absolute target restarts from the root. Counts links to refuse loops.
fn follow_link(
    found: &Found,
    path: &OsStr,
    links: &mut usize,
    stack: &mut Vec<(OsString, Found)>,
    queue: &mut VecDeque<OsString>,
) -> Result<(), SnapshotError> {
    *links += 1;
    if *links > MAX_SYMLINKS {
        return Err(SnapshotError::SymlinkLoop {
            path: path.to_string_lossy().into_owned(),
        });
    }
    let target = fs::read_link(&found.host).ctx("read link", &found.host)?;
    let target = target.as_os_str().as_bytes();
    if target.first() == Some(&b'/') {
        stack.clear();
    }
    for part in split(target).into_iter().rev() {
        queue.push_front(part);
    }
    Ok(())
}

fn split(path: &[u8]) -> VecDeque<OsString> {
    path.split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .map(|p| OsStr::from_bytes(p).to_os_string())
        .collect()
}

/// Lexically cleans the not-yet-existing rest of a path (`..` pops within it, clamped).
fn clean_rest(queue: VecDeque<OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    for c in queue {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// `/a/b` for components `[a, b]`, `/` for none.
pub(crate) fn abs_display(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}
