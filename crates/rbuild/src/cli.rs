//! Command-line surface, modelled on `docker buildx build`.

use clap::{Args, Parser, Subcommand};
use rbuild_core::Platform;
use std::path::PathBuf;

/// rbuild: a daemonless, rootless builder of multi-architecture OCI images.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about)]
pub struct Cli {
    /// State directory (layers, cache, blobs). Default: /var/lib/rbuild as root,
    /// $XDG_DATA_HOME/rbuild (or ~/.local/share/rbuild) otherwise; env RBUILD_ROOT.
    #[arg(long, global = true, env = "RBUILD_ROOT")]
    pub root: Option<PathBuf>,
    /// Log verbosely.
    #[arg(long, short = 'D', global = true)]
    pub debug: bool,
    /// The longest a registry or ADD URL request may wait for data, e.g. 30s, 5m
    /// (default 60s); env RBUILD_REGISTRY_TIMEOUT.
    #[arg(long, global = true, env = "RBUILD_REGISTRY_TIMEOUT", value_name = "DURATION",
          value_parser = rbuild_registry::timeouts::parse_duration)]
    pub registry_timeout: Option<std::time::Duration>,
    /// The longest one registry or ADD URL request (one blob) may take (default 1h); env
    /// RBUILD_REGISTRY_TOTAL_TIMEOUT.
    #[arg(long, global = true, env = "RBUILD_REGISTRY_TOTAL_TIMEOUT", value_name = "DURATION",
          value_parser = rbuild_registry::timeouts::parse_duration)]
    pub registry_total_timeout: Option<std::time::Duration>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// List the platforms this machine can build for and how (native, emulated, unavailable).
    #[command(alias = "ls")]
    Platforms,
    /// Remove build cache: cached layers, blobs, cache mounts.
    Prune {
        /// Remove only the contents of RUN --mount=type=cache directories.
        #[arg(long)]
        cache_mounts: bool,
    },
    /// Developer tools.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Run a command in a container of an image from the local store (or an archive).
    Run(Box<crate::cli_images::RunArgs>),
    /// List the images in the local store (= image ls).
    Images(crate::cli_images::LsArgs),
    /// Manage the images in the local store.
    #[command(subcommand)]
    Image(crate::cli_images::ImageCommand),
    /// Manage local manifest lists (docker manifest).
    #[command(subcommand)]
    Manifest(crate::cli_images::ManifestCommand),
    /// Pull an image from a registry into the local store.
    Pull(crate::cli_images::PullArgs),
    /// Push an image of the local store to a registry.
    Push(crate::cli_images::PushArgs),
    /// State directory maintenance.
    #[command(subcommand)]
    System(crate::cli_images::SystemCommand),
    /// Log in to a registry: check the credentials, then save them in Docker's config.json.
    Login(LoginArgs),
    /// Remove the saved credentials of a registry.
    Logout {
        /// The registry (default: docker.io).
        registry: Option<String>,
    },
    /// Inspect and assemble images in registries (as `docker buildx imagetools`).
    #[command(subcommand)]
    Imagetools(ImagetoolsCommand),
}

/// `rbuild login` flags (as `docker login`).
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (default: docker.io).
    pub registry: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The password (prefer --password-stdin: a command line is visible to other users).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
}

/// `rbuild imagetools ...`.
#[derive(Debug, Subcommand)]
pub enum ImagetoolsCommand {
    /// Show an image: registry REF, oci-layout:PATH[:TAG] or oci-archive:PATH.
    Inspect {
        /// The image.
        reference: String,
        /// Print the manifest or index exactly as stored.
        #[arg(long)]
        raw: bool,
        /// Output format: '{{json .}}' prints a JSON description.
        #[arg(long)]
        format: Option<String>,
    },
    /// Create an index from images (or indexes) and push it.
    Create {
        /// The names the index is pushed under.
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// Add the manifests of the existing first tag to the new index.
        #[arg(long)]
        append: bool,
        /// Print the index instead of pushing it.
        #[arg(long)]
        dry_run: bool,
        /// Annotations: KEY=VALUE or index:KEY=VALUE.
        #[arg(long = "annotation")]
        annotations: Vec<String>,
        /// Source images or indexes.
        sources: Vec<String>,
    },
}

/// `rbuild debug ...`.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print how rbuild parses a Dockerfile.
    Parse {
        /// The Dockerfile.
        #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
        file: PathBuf,
        /// Print JSON (one object per instruction).
        #[arg(long)]
        json: bool,
    },
}

/// `rbuild build` flags (the subset of `docker buildx build` rbuild implements).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory.
    pub context: PathBuf,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Target platforms, e.g. linux/amd64,linux/arm64 (default: the host's).
    #[arg(long, value_delimiter = ',', value_parser = parse_platform)]
    pub platform: Vec<Platform>,
    /// Name and optionally a tag (name:tag).
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Output destination: type=oci,dest=FILE[,tar=false][,compression=gzip|uncompressed][,compression-level=N].
    #[arg(short = 'o', long = "output")]
    pub output: Vec<String>,
    /// Push the image to the registry of every -t name (= --output type=registry).
    #[arg(long)]
    pub push: bool,
    /// Set a build-time variable (NAME=VALUE, or NAME to take it from the environment).
    #[arg(long = "build-arg", value_parser = parse_build_arg)]
    pub build_args: Vec<String>,
    /// Additional build contexts, NAME=oci-layout://PATH[:TAG|@DIGEST], NAME=docker-image://REF
    /// or NAME=DIR.
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// Build only this stage and what it needs.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache when building.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for these stages (by name; comma-separated or repeated).
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Progress output: auto (tty on a terminal, else plain), plain (BuildKit's step lines),
    /// tty (a live view), rawjson (BuildKit's SolveStatus JSON lines) or quiet.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "rawjson", "quiet"])]
    pub progress: String,
    /// Print nothing but errors and, at the end, the image digest (as --progress=quiet).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image digest (index, or manifest for one platform) to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write build result metadata (digest, descriptor, names) as JSON to this file.
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Set a label on the image (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Add an annotation: [TYPE[,TYPE]][[PLATFORM]]:KEY=VALUE, TYPE one of manifest (the
    /// default), manifest-descriptor, index, index-descriptor.
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// SSH agent for RUN --mount=type=ssh: default, or ID=SOCKET.
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// Network for RUN steps: default (the host's, as rootless BuildKit), none or host.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Grant an entitlement: security.insecure (lets RUN --security=insecure run with every
    /// capability and no seccomp filter) or network.host (accepted; steps use the host's
    /// network already).
    #[arg(long = "allow", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Run the Dockerfile lint rules and report, without building (= --call=check).
    #[arg(long)]
    pub check: bool,
    /// Instead of building: check, outline (build args) or targets (stages).
    #[arg(long)]
    pub call: Option<String>,
    /// Put the built image (every platform) in the local image store under its -t names
    /// (= -o type=image).
    #[arg(long)]
    pub load: bool,
    /// When to pull FROM images not bound by --build-context: missing (use the local
    /// store, pull what it lacks), always (--pull alone), never (the local store only).
    #[arg(long, num_args = 0..=1, default_value = "missing", default_missing_value = "always",
          require_equals = true, value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// Write the resolved base images to <Dockerfile>.lock (reference → index and
    /// per-platform manifest digests).
    #[arg(long)]
    pub lock: bool,
    /// Resolve base images only through <Dockerfile>.lock; fail on any that it does not pin.
    #[arg(long, conflicts_with = "lock")]
    pub locked: bool,
}

/// A `--platform` list element: a known Linux platform (`a,,b` and `bogus/arch` are refused
/// here, before anything is built).
fn parse_platform(s: &str) -> Result<Platform, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty platform in the list".into());
    }
    let p: Platform = s.parse().map_err(|e| format!("{e}"))?;
    if p.os() != "linux" {
        return Err(format!(
            "unsupported operating system {:?} in {s:?}: rbuild builds linux images",
            p.os()
        ));
    }
    if p.uname_machine().is_none() {
        return Err(format!(
            "unknown architecture {:?} in {s:?} (known: amd64, arm64, arm/v5, arm/v6, arm/v7, 386, ppc64le, s390x, riscv64, mips64le, loong64)",
            p.architecture()
        ));
    }
    Ok(p)
}

/// A `--build-arg`: `NAME=VALUE` or `NAME`, with a non-empty name.
fn parse_build_arg(s: &str) -> Result<String, String> {
    let name = s.split_once('=').map_or(s, |(k, _)| k);
    if name.is_empty() {
        return Err("a build arg needs a name (NAME=VALUE or NAME)".into());
    }
    Ok(s.to_string())
}
