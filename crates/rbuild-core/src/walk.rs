//! The budget of every walk over an image graph (index → indexes or manifests → configs
//! and layers). Image graphs come from outside (archives, layouts, registries) and a
//! hostile one can nest indexes whose entries repeat, so a naive walk does N^depth work.
//! A walker asks its [`Budget`] before it reads a document: each digest is entered once,
//! indexes nest at most [`Limits::depth`] deep, and the descriptors seen and document bytes
//! read are bounded in total; past a limit the walk stops with a [`WalkLimit`] naming the
//! limit and the digests from the root down to where it was hit.

use crate::Digest;
use std::collections::HashSet;
use std::fmt;

/// The largest single manifest or index rbuild reads (containerd's limit too).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// How far one walk may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Levels of indexes below the root (real images nest two or three).
    pub depth: usize,
    /// Descriptors of every document read, in all.
    pub entries: usize,
    /// Bytes of every manifest and index read, in all.
    pub bytes: u64,
    /// Bytes of one manifest or index.
    pub document: u64,
}

impl Limits {
    /// The limits rbuild walks with: far above any real image, low enough that a walk
    /// holds a few MiB at most.
    pub const DEFAULT: Limits = Limits {
        depth: 8,
        entries: 10_000,
        bytes: 64 << 20,
        document: MAX_DOCUMENT,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// Which limit a walk hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Indexes nested deeper than this.
    Depth(usize),
    /// More descriptors than this.
    Entries(usize),
    /// More document bytes than this.
    Bytes(u64),
    /// One document of `size` bytes, more than `max`.
    Document {
        /// The document's size.
        size: u64,
        /// The most one document may have.
        max: u64,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Depth(n) => write!(f, "indexes nested more than {n} deep"),
            Limit::Entries(n) => write!(f, "more than {n} index and manifest entries"),
            Limit::Bytes(n) => write!(f, "more than {n} bytes of manifests and indexes"),
            Limit::Document { size, max } => write!(
                f,
                "a manifest or index of {size} bytes (at most {max} are read)"
            ),
        }
    }
}

/// The digests from a walk's root down to one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestPath(pub Vec<Digest>);

impl fmt::Display for DigestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A walk stopped at a limit: which one and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image refused: {limit}{}", at(path))]
pub struct WalkLimit {
    /// The limit hit.
    pub limit: Limit,
    /// Where: the root first.
    pub path: DigestPath,
}

/// `, at <path>` for a path inside an image graph; nothing for its top (an archive's
/// own list of images).
fn at(path: &DigestPath) -> String {
    if path.0.is_empty() {
        String::new()
    } else {
        format!(", at {path}")
    }
}

/// The state of one walk: digests entered and what was counted so far.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    limits: Limits,
    seen: HashSet<Digest>,
    entries: usize,
    bytes: u64,
    documents: usize,
}

impl Budget {
    /// A walk with [`Limits::DEFAULT`].
    pub fn new() -> Budget {
        Budget::with_limits(Limits::DEFAULT)
    }

    /// A walk with other limits.
    pub fn with_limits(limits: Limits) -> Budget {
        Budget {
            limits,
            ..Budget::default()
        }
    }

    /// The limits of this walk.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Enters `digest`, referred to by the last document of `parent` (empty for the root):
    /// its path when it is new to the walk, `None` when the walk has entered it already.
    /// Fails when it lies deeper than [`Limits::depth`].
    pub fn enter(
        &mut self,
        parent: &[Digest],
        digest: &Digest,
    ) -> Result<Option<Vec<Digest>>, WalkLimit> {
        if self.seen.contains(digest) {
            return Ok(None);
        }
        let path = self.descend(parent, digest)?;
        self.seen.insert(digest.clone());
        Ok(Some(path))
    }

    /// The path of `digest` below `parent`, for a walker that keeps what it has read
    /// itself and so may pass a digest again; fails deeper than [`Limits::depth`] as
    /// [`Budget::enter`] does.
    pub fn descend(&self, parent: &[Digest], digest: &Digest) -> Result<Vec<Digest>, WalkLimit> {
        let mut path = parent.to_vec();
        path.push(digest.clone());
        if parent.len() > self.limits.depth {
            return Err(self.refuse(Limit::Depth(self.limits.depth), &path));
        }
        Ok(path)
    }

    /// Starts walking another root in the same pass (several images of one archive or
    /// store): the counts start again, digests entered stay entered, so a graph that
    /// several roots share is read once.
    pub fn next_root(&mut self) {
        self.entries = 0;
        self.bytes = 0;
    }

    /// Marks a blob the walk does not descend into (a config, a layer): whether it is new
    /// to the walk. Lets a walker fetch each such blob once.
    pub fn mark(&mut self, digest: &Digest) -> bool {
        self.seen.insert(digest.clone())
    }

    /// Whether the walk has entered `digest`.
    pub fn has_entered(&self, digest: &Digest) -> bool {
        self.seen.contains(digest)
    }

    /// Counts one document of `size` bytes read at `path` (before its bytes are taken in,
    /// when the size is known, and with the size read otherwise).
    pub fn document(&mut self, path: &[Digest], size: u64) -> Result<(), WalkLimit> {
        if size > self.limits.document {
            let max = self.limits.document;
            return Err(self.refuse(Limit::Document { size, max }, path));
        }
        self.bytes = self.bytes.saturating_add(size);
        self.documents += 1;
        if self.bytes > self.limits.bytes {
            return Err(self.refuse(Limit::Bytes(self.limits.bytes), path));
        }
        Ok(())
    }

    /// Counts an image config of `size` bytes read at `path`: configs may be larger than
    /// one manifest or index, but count toward the walk's bytes.
    pub fn config(&mut self, path: &[Digest], size: u64) -> Result<(), WalkLimit> {
        self.bytes = self.bytes.saturating_add(size);
        self.documents += 1;
        if self.bytes > self.limits.bytes {
            return Err(self.refuse(Limit::Bytes(self.limits.bytes), path));
        }
        Ok(())
    }

    /// Counts `n` descriptors of the document at `path`.
    pub fn entries(&mut self, path: &[Digest], n: usize) -> Result<(), WalkLimit> {
        self.entries = self.entries.saturating_add(n);
        if self.entries > self.limits.entries {
            return Err(self.refuse(Limit::Entries(self.limits.entries), path));
        }
        Ok(())
    }

    /// Documents counted so far.
    pub fn documents_read(&self) -> usize {
        self.documents
    }

    /// Descriptors counted so far.
    pub fn entries_seen(&self) -> usize {
        self.entries
    }

    /// Document bytes counted so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn refuse(&self, limit: Limit, path: &[Digest]) -> WalkLimit {
        WalkLimit {
            limit,
            path: DigestPath(path.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> Digest {
        Digest::sha256(&n.to_le_bytes())
    }

    #[test]
    fn each_digest_is_entered_once() {
        let mut b = Budget::new();
        let root = b.enter(&[], &d(0)).unwrap().unwrap();
        assert_eq!(root, vec![d(0)]);
        let child = b.enter(&root, &d(1)).unwrap().unwrap();
        assert_eq!(child, vec![d(0), d(1)]);
        assert_eq!(b.enter(&root, &d(1)).unwrap(), None);
        assert_eq!(b.enter(&child, &d(0)).unwrap(), None);
        assert!(b.has_entered(&d(1)));
    }

    #[test]
    fn depth_past_the_limit_is_refused_with_the_path() {
        let mut b = Budget::new();
        let mut path = Vec::new();
        for i in 0..=8 {
            path = b.enter(&path, &d(i)).unwrap().unwrap();
        }
        let err = b.enter(&path, &d(9)).unwrap_err();
        assert_eq!(err.limit, Limit::Depth(8));
        assert_eq!(err.path.0.len(), 10);
        assert_eq!(err.path.0[9], d(9));
        let text = err.to_string();
        assert!(text.contains("indexes nested more than 8 deep"), "{text}");
        assert!(text.contains(&format!("{} > {}", d(0), d(1))), "{text}");
    }

    #[test]
    fn entries_bytes_and_documents_are_bounded() {
        let mut b = Budget::with_limits(Limits {
            depth: 8,
            entries: 10,
            bytes: 100,
            document: 60,
        });
        let p = vec![d(0)];
        b.entries(&p, 10).unwrap();
        assert_eq!(b.entries(&p, 1).unwrap_err().limit, Limit::Entries(10));
        b.document(&p, 60).unwrap();
        assert_eq!(
            b.document(&p, 61).unwrap_err().limit,
            Limit::Document { size: 61, max: 60 }
        );
        assert_eq!(b.document(&p, 41).unwrap_err().limit, Limit::Bytes(100));
        assert_eq!(b.documents_read(), 2);
        assert_eq!(b.bytes_read(), 101);
        b.enter(&[], &d(0)).unwrap();
        b.next_root();
        b.entries(&p, 10).unwrap();
        b.document(&p, 60).unwrap();
        assert_eq!(b.enter(&[], &d(0)).unwrap(), None);
        b.next_root();
        b.config(&p, 100).unwrap();
        assert_eq!(b.config(&p, 1).unwrap_err().limit, Limit::Bytes(100));
    }
}
