//! Lowering: a parsed Dockerfile plus build args and a target platform become a
//! [`BuildGraph`]: stages with their base, the operations that produce layers (RUN,
//! COPY) and the image config each stage ends with.
//!
//! Lowering does no I/O. The one thing it needs from outside — the config of a base
//! image, for ENV expansion and inherited settings — comes through [`BaseResolver`], so
//! the same Dockerfile, args, platform and base configs always give the same graph.

mod args;
mod lower;
mod run_flags;

pub use lower::lower;
pub use run_flags::{NetworkMode, RunMount, Sharing};

use rbuild_core::Platform;
use rbuild_dockerfile::Diagnostic;
use rbuild_image::ImageConfig;
use std::collections::BTreeMap;

/// Where an operation came from, for messages and history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// The Dockerfile's display name.
    pub file: String,
    /// First line (1-based).
    pub line: usize,
    /// Column of the instruction (1-based).
    pub col: usize,
    /// Last line.
    pub end_line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Inputs of lowering that come from the command line.
#[derive(Debug, Clone)]
pub struct LowerOptions {
    /// The platform the image is for.
    pub target_platform: Platform,
    /// The platform rbuild runs on.
    pub build_platform: Platform,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target` stage name, or the last stage.
    pub target: Option<String>,
}

/// Supplies the config of a base image (`FROM <image>`) for a platform. Implemented by the
/// solver, which does the I/O; errors are plain messages that lowering attaches to the
/// FROM line.
pub trait BaseResolver {
    /// The config of `reference` for `platform`.
    fn resolve(&mut self, reference: &str, platform: &Platform) -> Result<ImageConfig, String>;
}

/// The lowered build for one target platform.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildGraph {
    /// Every stage of the Dockerfile, in order; `needed` marks the ones the target uses.
    pub stages: Vec<Stage>,
    /// Index of the target stage.
    pub target: usize,
    /// Non-fatal findings (unused build args, ...).
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
}

/// One `FROM` section.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stage {
    /// Position in the Dockerfile.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// What the stage starts from.
    pub base: Base,
    /// The platform the stage's steps run as.
    pub platform: Platform,
    /// Its operations, in order.
    pub ops: Vec<Op>,
    /// The image config the stage ends with (rootfs and history are filled by the solver).
    #[serde(skip)]
    pub config: ImageConfig,
    /// Whether the target depends on this stage.
    pub needed: bool,
    /// The FROM line.
    pub location: Location,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An image reference, as written after expansion.
    Image(String),
    /// An earlier stage.
    Stage(usize),
}

/// One step of a stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Op {
    /// What it does.
    pub kind: OpKind,
    /// Its instruction.
    pub location: Location,
    /// The history `created_by` text.
    pub created_by: String,
}

/// The operations lowering produces.
#[derive(Debug, Clone, serde::Serialize)]
pub enum OpKind {
    /// Run a command in the sandbox; its changes become a layer.
    Run(RunOp),
    /// Copy files into the stage; they become a layer.
    Copy(CopyOp),
    /// Change only the config (ENV, LABEL, CMD, ...): an empty-layer history entry.
    Meta,
}

/// A RUN step, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunOp {
    /// The command, shell form already wrapped in the SHELL.
    pub argv: Vec<String>,
    /// The environment, `K=V`: the config's ENV plus the stage's ARGs.
    pub env: Vec<String>,
    /// USER at this point ("" = root).
    pub user: String,
    /// WORKDIR at this point.
    pub cwd: String,
    /// `--mount` flags, in order.
    pub mounts: Vec<RunMount>,
    /// `--network`.
    pub network: NetworkMode,
}

/// A COPY step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyOp {
    /// Where sources come from.
    pub from: CopyFrom,
    /// Source paths or patterns, expanded.
    pub srcs: Vec<String>,
    /// Destination, expanded (relative to `workdir` when not absolute).
    pub dest: String,
    /// `--chown` value, expanded, resolved against the stage's /etc/passwd at run time.
    pub chown: Option<String>,
    /// `--chmod` as octal bits.
    pub chmod: Option<u32>,
    /// WORKDIR at this point.
    pub workdir: String,
}

/// The source of a COPY.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum CopyFrom {
    /// The build context directory.
    Context,
    /// An earlier stage's result.
    Stage(usize),
    /// An image or named build context (`--from=<ref>`).
    Image(String),
}

/// Lowering failed; every error found is here.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.0))]
pub struct LowerError(pub Vec<Diagnostic>);

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
