//! Why a step could not be carried out, typed by cause. [`crate::SolveError::Step`] adds
//! the instruction and its location.

use std::path::PathBuf;

/// What went wrong inside one step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The sandbox could not run the step.
    #[error(transparent)]
    Sandbox(#[from] rbuild_sandbox::SandboxError),
    /// Copying files failed.
    #[error(transparent)]
    Copy(#[from] rbuild_snapshot::SnapshotError),
    /// WORKDIR could not create its directory.
    #[error("WORKDIR {path}: {source}")]
    Workdir {
        /// The directory.
        path: String,
        /// Why.
        source: rbuild_snapshot::SnapshotError,
    },
    /// An image the step reads could not be resolved.
    #[error(transparent)]
    Image(#[from] crate::resolve::ResolveError),
    /// `--chown` names an unknown user or group.
    #[error(transparent)]
    Chown(#[from] ChownError),
    /// `--chmod` is not a mode.
    #[error(transparent)]
    Chmod(#[from] rbuild_snapshot::BadMode),
    /// An ADD archive could not be read or extracted.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Hashing build-context files for the cache key failed.
    #[error("reading build context {}: {source}", dir.display())]
    Context {
        /// The context directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An ADD URL could not be downloaded.
    #[error(transparent)]
    Url(#[from] crate::steps::url::UrlError),
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// A required secret was not given.
    #[error("secret {id:?} is required but was not provided (use --secret id={id},src=FILE)")]
    SecretRequired {
        /// The secret id.
        id: String,
    },
    /// A required SSH agent was not given.
    #[error(
        "ssh agent {id:?} is required but was not provided (use --ssh {id}=PATH or --ssh default)"
    )]
    SshRequired {
        /// The agent id.
        id: String,
    },
    /// A secret's file could not be written for the step.
    #[error("secret {id:?}: {source}")]
    SecretFile {
        /// The secret id.
        id: String,
        /// Why.
        source: std::io::Error,
    },
    /// A bind mount's source path is unusable.
    #[error(transparent)]
    BindPath(#[from] BindPathError),
    /// A bind mount's source could not be materialised.
    #[error("bind mount source {path}: {source}")]
    BindCopy {
        /// The source path.
        path: String,
        /// Why.
        source: rbuild_snapshot::SnapshotError,
    },
    /// A cache mount could not be seeded.
    #[error("seeding cache mount from {path}: {source}")]
    Seed {
        /// The source path.
        path: String,
        /// Why.
        source: rbuild_snapshot::SnapshotError,
    },
    /// A mount reads from the build context where only a stage or image can be given.
    #[error("mount source must be a stage or image here")]
    MountFromContext,
    /// A stage the step reads was not built first.
    #[error("stage {0} was not built")]
    StageNotBuilt(usize),
}

/// `--chown` (or USER for WORKDIR) names an id the image does not have.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChownError {
    /// No such user in /etc/passwd.
    #[error("--chown: user {0:?} is not in the image's /etc/passwd")]
    User(String),
    /// No such group in /etc/group.
    #[error("--chown: group {0:?} is not in the image's /etc/group")]
    Group(String),
}

/// An ADD source archive could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A compression rbuild does not extract.
    #[error(
        "ADD {}: {kind}-compressed archives are not supported; rbuild extracts plain and gzip tar archives",
        path.display()
    )]
    Unsupported {
        /// The archive.
        path: PathBuf,
        /// Its compression.
        kind: &'static str,
    },
    /// The archive could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Extracting it failed.
    #[error("extracting {}: {source}", path.display())]
    Extract {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: rbuild_snapshot::SnapshotError,
    },
    /// The stage's tree could not be mounted to extract into.
    #[error(transparent)]
    Mount(rbuild_sandbox::SandboxError),
    /// A wildcard source could not be expanded.
    #[error(transparent)]
    Expand(rbuild_snapshot::SnapshotError),
}

/// A bind mount's source path is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindPathError {
    /// The context directory itself cannot be resolved.
    #[error("{}: {source}", dir.display())]
    Root {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The source does not resolve.
    #[error("bind source {path}: {source}")]
    Resolve {
        /// The source path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The source resolves outside the context.
    #[error("bind source {0} points outside the build context")]
    Escapes(String),
}
