//! Fuzzing of rbuild's input-facing code on the stable toolchain, without libFuzzer.
//!
//! Each [`Target`] is a plain `fn(&[u8]) -> u64` that feeds arbitrary bytes to one part of
//! rbuild (layer tar unpacking, the Dockerfile parser and lowering, the word expander, the
//! OCI JSON readers) and panics when a property it checks does not hold. The returned value
//! is an *outcome fingerprint* (which error, how many instructions, ...): the engine keeps an
//! input in its corpus when its fingerprint is new, which steers a coverage-free mutator
//! towards inputs that behave differently.
//!
//! [`runner`] drives a target: mutation ([`engine`]), `catch_unwind` around every input, a
//! watchdog for inputs that take too long, and crash files named by the input's sha256.
//! [`seeds`] generates the hostile tar seeds committed under `fuzz/corpus/tar-unpack/`.

pub mod engine;
pub mod runner;
pub mod seeds;
pub mod targets;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

/// One fuzz target: a name for the command line, the function, and hints for the mutator.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name used by `cargo xtask fuzz <name>` and as the corpus directory name.
    pub name: &'static str,
    /// One line saying what the target exercises.
    pub about: &'static str,
    /// Runs one input; panics on a violated property, returns an outcome fingerprint.
    pub run: fn(&[u8]) -> u64,
    /// Tokens the mutator inserts or writes over the input (keywords, tar fields, ...).
    pub dictionary: &'static [&'static [u8]],
    /// Inputs are cut to at most this many bytes.
    pub max_len: usize,
    /// Alignment of the input's records (512 for tar), used by block-wise mutations.
    pub block: usize,
}

/// Every fuzz target, in the order `--list` prints them.
pub fn all_targets() -> &'static [Target] {
    targets::ALL
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    all_targets().iter().find(|t| t.name == name)
}

/// Errors of the fuzz driver itself (not of the code under test, which panics).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FuzzError {
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// No target has this name.
    #[error("unknown fuzz target {0:?} (see --list)")]
    UnknownTarget(String),
    /// The command line could not be understood.
    #[error("{0}")]
    Usage(String),
    /// A worker thread or child process could not be started or went away.
    #[error("{0}")]
    Worker(String),
}

impl FuzzError {
    /// Wraps an `io::Error` with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FuzzError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A deterministic 64-bit hash of `value`, for outcome fingerprints.
pub fn fingerprint(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}
