//! Lowering: a parsed Dockerfile plus build args and a target platform become a
//! [`BuildGraph`]: stages with their base, the operations that produce layers (RUN,
//! COPY) and the image config each stage ends with.
//!
//! The same pass runs BuildKit's Dockerfile lint rules ([`check`], the `lint` module):
//! rules that need a stage's state (ENV in scope, SHELL, earlier CMDs) are checked while
//! lowering, rules about the whole file (casing, stage names, FROM lines) on the syntax
//! tree; findings land in [`BuildGraph::lints`], filtered by `# check=`.
//!
//! Lowering does no I/O. The one thing it needs from outside — the config of a base
//! image, for ENV expansion and inherited settings — comes through [`BaseResolver`], so
//! the same Dockerfile, args, platform and base configs always give the same graph.

mod args;
mod gofmt;
mod lint;
mod lower;
mod run_flags;
mod stage_state;
pub mod url_name;
mod values;

pub use lint::{Lint, LintConfig, render as render_lints};
pub use lower::{check, lower};
pub use run_flags::{NetworkMode, RunMount, SecurityMode, Sharing};
pub use stage_state::DEFAULT_PATH;
pub use values::clean_path;

use rbuild_core::Platform;
use rbuild_core::config::ImageConfig;
use rbuild_dockerfile::Diagnostic;
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

/// Set (by a signal handler) to stop lowering and linting: they check it before each
/// instruction and then end with an "interrupted" error instead of finishing.
pub static CANCELLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`CANCELLED`] was set.
pub(crate) fn cancelled() -> bool {
    CANCELLED.load(std::sync::atomic::Ordering::SeqCst)
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
    /// Lower every stage, not only the ones the target needs (for `--check`).
    pub all_stages: bool,
}

/// Why a [`BaseResolver`] could not supply a config: the resolver's own error, which
/// lowering renders into a diagnostic at the FROM line.
pub type ResolveFailure = Box<dyn std::error::Error + Send + Sync>;

/// Supplies the config of a base image (`FROM <image>`) for a platform. Implemented by the
/// solver, which does the I/O; lowering attaches its errors to the FROM line.
pub trait BaseResolver {
    /// The config of `reference` for `platform`.
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, ResolveFailure>;
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
    /// Lint rule findings (BuildKit's rule names), already filtered by `# check=`.
    #[serde(skip)]
    pub lints: Vec<Lint>,
    /// `--build-arg` names no ARG of the build consumed, for the caller to warn about.
    #[serde(skip)]
    pub unused_args: Vec<String>,
}

impl BuildGraph {
    /// The needed stages in an order where every stage comes after the stages it uses
    /// (its base, `COPY --from` and `RUN --mount=from=` sources). Lowering has already
    /// refused cycles, so every needed stage is listed exactly once.
    pub fn build_order(&self) -> Vec<usize> {
        let mut order = Vec::new();
        let mut state = vec![0u8; self.stages.len()];
        for s in self.stages.iter().filter(|s| s.needed) {
            visit(&self.stages, s.index, &mut state, &mut order);
        }
        order
    }
}

fn visit(stages: &[Stage], i: usize, state: &mut [u8], order: &mut Vec<usize>) {
    if state[i] != 0 {
        return;
    }
    state[i] = 1;
    for d in stages[i].deps() {
        if d < stages.len() {
            visit(stages, d, state, order);
        }
    }
    state[i] = 2;
    order.push(i);
}

impl Stage {
    /// The stages this stage reads from: its base and every stage source of its ops.
    pub fn deps(&self) -> Vec<usize> {
        let mut out = Vec::new();
        if let Base::Stage(i) = self.base {
            out.push(i);
        }
        for op in &self.ops {
            match &op.kind {
                OpKind::Copy(c) => {
                    if let CopyFrom::Stage(i) = c.from {
                        out.push(i);
                    }
                }
                OpKind::Run(r) => {
                    for m in &r.mounts {
                        let from = match m {
                            RunMount::Cache { from, .. } => from.as_ref(),
                            RunMount::Bind { from, .. } => Some(from),
                            _ => None,
                        };
                        if let Some(CopyFrom::Stage(i)) = from {
                            out.push(*i);
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
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
    /// Create a directory (WORKDIR): a layer, empty when the directory already exists.
    Mkdir(MkdirOp),
}

/// A WORKDIR step: BuildKit creates the directory (and missing parents, mode 0755)
/// owned by the USER in effect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MkdirOp {
    /// Absolute, cleaned path.
    pub path: String,
    /// USER at this point ("" = root), resolved against the stage's /etc/passwd.
    pub user: String,
}

/// A file written from a heredoc (`COPY <<EOF /dest`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InlineFile {
    /// The file name (the heredoc delimiter).
    pub name: String,
    /// The content, already expanded when the delimiter was unquoted.
    pub content: String,
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
    /// `--security`; part of the cache key when not the default.
    #[serde(skip_serializing_if = "SecurityMode::is_sandbox")]
    pub security: SecurityMode,
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
    /// `--chmod`: octal bits or a symbolic mode.
    pub chmod: Option<CopyChmod>,
    /// `--exclude` patterns (`.dockerignore` syntax), expanded, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `--parents`: sources keep their paths (from the root or a `/./` pivot) below `dest`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
    /// `--link`: the files become a layer of their own, independent of the stage below
    /// (missing parent directories get default metadata), so it stays cached when the
    /// stage below changes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    /// WORKDIR at this point.
    pub workdir: String,
    /// ADD: local tar archives (plain or gzip) are extracted into the destination.
    pub add: bool,
    /// Heredoc sources, copied after `srcs` (mode 0644 unless `--chmod`).
    pub contents: Vec<InlineFile>,
    /// ADD sources that are `http(s)://` URLs, downloaded and copied after `srcs`
    /// (never extracted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<UrlSource>,
}

/// An ADD source fetched over HTTP(S).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UrlSource {
    /// The URL, expanded.
    pub url: String,
    /// `--checksum`: the content digest the download must have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<rbuild_core::Digest>,
    /// The file name it gets: the last component of the URL's path, as BuildKit's
    /// Dockerfile frontend names it (`__unnamed__` when the path has none).
    pub filename: String,
}

/// A COPY `--chmod` value. Serialised as the number or the string, so octal modes keep
/// the form (and cache keys) they always had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum CopyChmod {
    /// Octal permission bits, given to every copied file and directory.
    Octal(u32),
    /// A symbolic mode (`u+x,go-w`), applied to each file's own mode.
    Symbolic(String),
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
