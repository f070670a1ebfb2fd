//! The error type of this crate.

use std::io;
use std::path::PathBuf;

pub use crate::sparse::SparseError;

/// Everything that can go wrong while unpacking, diffing, looking up or copying layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A filesystem operation failed on a path.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The layer tar stream could not be read.
    #[error("reading layer tar: {0}")]
    TarRead(#[source] io::Error),
    /// The layer tar stream could not be written.
    #[error("writing layer tar: {0}")]
    TarWrite(#[source] io::Error),
    /// A tar entry tries to leave the destination directory.
    #[error("unsafe path {path:?} in layer: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    /// A tar entry is of a kind this crate does not unpack.
    #[error("unsupported tar entry {path:?}: {reason}")]
    UnsupportedEntry { path: String, reason: String },
    /// A hardlink in a layer points at nothing unpacked before it.
    #[error(
        "hardlink {path:?} points to missing or invalid target {target:?} (a hard link's \
         target must be an earlier file of the same layer)"
    )]
    BadHardlink { path: String, target: String },
    /// The overlay upper dir uses a feature that cannot be expressed as a layer tar.
    #[error("unsupported overlay feature at {path}: {what}")]
    UnsupportedOverlay { path: PathBuf, what: &'static str },
    /// Symlink resolution inside a root went round in circles.
    #[error("too many levels of symbolic links resolving {path:?}")]
    SymlinkLoop { path: String },
    /// A directory listing was asked for something that is not a directory.
    #[error("{path:?} is not a directory")]
    NotADirectory { path: String },
    /// A file name is not valid UTF-8 where a string is required.
    #[error("file name {name:?} is not valid utf-8")]
    NonUtf8Name { name: String },
    /// A COPY source (or wildcard) matched nothing.
    #[error("{pattern:?}: not found")]
    SourceNotFound { pattern: String },
    /// A COPY source pattern is malformed.
    #[error("bad wildcard pattern {pattern:?}")]
    BadPattern { pattern: String },
    /// Several COPY sources need a directory destination spelled with a trailing slash.
    #[error(
        "When using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    MultipleSourcesNeedDir,
    /// An entry of an ADD archive could not be placed; `path` is where it went, as seen
    /// from the destination directory.
    #[error("ADD archive entry {entry:?}: {op} {path}: {source}")]
    AddEntry {
        entry: String,
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The destination directory of an ADD archive could not be made or opened.
    #[error("ADD destination: {op} {path}: {source}")]
    AddDest {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// A sparse tar entry cannot be read as a file.
    #[error("sparse file {path:?}: {reason}")]
    Sparse {
        path: String,
        #[source]
        reason: SparseError,
    },
    /// A COPY destination (or one of its parents) exists and is not a directory.
    #[error("cannot copy to {path:?}: it is not a directory")]
    DestNotDirectory { path: String },
}

impl SnapshotError {
    /// Wraps an `io::Error` with the operation and path it came from.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Adds `.ctx(op, path)` to io results.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, SnapshotError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, SnapshotError> {
        self.map_err(|e| SnapshotError::io(op, path, e))
    }
}
