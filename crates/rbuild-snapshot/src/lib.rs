//! Layer snapshots: image layer tars become overlay-format directories (to be stacked as
//! overlay lowerdirs), the upper dir of a step becomes a deterministic layer tar again, and
//! COPY writes its files into a fresh layer directory.
//!
//! Everything here is plain filesystem work: no namespaces and no mounts. Directories use the
//! overlayfs `userxattr` format: a whiteout is a 0:0 character device and an opaque directory
//! carries `user.overlay.opaque=y`.

mod copy;
mod diff;
mod error;
mod extract;
mod ignore;
mod mode;
mod pattern;
mod skipped;
mod sparse;
mod stack;
mod sys;
mod tarwrite;
mod unpack;

pub use copy::{CopyOptions, CopySource, CopyStats, copy, expand_sources, source_paths};
pub use diff::{DiffOptions, DiffStats, write_layer_tar};
pub use error::{SnapshotError, SparseError};
pub use extract::extract_archive;
pub use ignore::{FilterStats, filtered_context, ignore_file, parse_ignore};
pub use mode::{BadMode, Chmod, SymbolicMode};
pub use skipped::{SkippedDevices, UnmappedOwners};
pub use stack::{Entry, LayerStack};
pub use unpack::{UnpackStats, unpack_layer};
