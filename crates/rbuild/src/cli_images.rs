//! Command-line surface of the local image store: `run`, `images`, `image ...`,
//! `manifest ...`, `pull`, `push`, `system check` (docker's and podman's names and flags).

use clap::{Args, Subcommand};
use rbuild_core::Platform;
use std::path::PathBuf;

/// `rbuild run` flags (docker run's).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Accepted for docker command lines: rbuild keeps no containers, so every run is --rm.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open and pass it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (K=V, or K to take it from rbuild's environment).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Bind a host path: HOST:CONTAINER[:ro|rw].
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network: host (the default, as rootless containers without a network helper) or none.
    #[arg(long, default_value = "host", value_parser = ["host", "none", "default"])]
    pub network: String,
    /// Platform of the image to run (default: the host's).
    #[arg(long, value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Container hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Image: a name or id from the local store, or oci-archive:PATH.
    pub image: String,
    /// The command and its arguments (default: the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `rbuild images` / `image ls` flags.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only show image ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show full image ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only images of this repository (NAME[:TAG]).
    pub repository: Option<String>,
}

/// `rbuild image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove names (and, by `image prune`, the data no name needs any more).
    #[command(alias = "remove", alias = "rmi")]
    Rm {
        /// Accepted for docker command lines.
        #[arg(short = 'f', long)]
        force: bool,
        /// Images (names or ids).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Give an image another name.
    Tag {
        /// The image (name or id).
        source: String,
        /// The new name.
        target: String,
    },
    /// Show an image's details as JSON, or formatted by a Go template.
    Inspect {
        /// Go template, e.g. '{{.Os}}/{{.Architecture}}' or '{{json .}}'.
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// Which platform of a multi-platform image (default: the host's, else the first).
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
        /// Images (names or ids).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove blobs and layer directories that no image name and no cache entry needs.
    Prune {
        /// Accepted for docker command lines (rbuild has no dangling images to tell apart).
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not ask (rbuild never asks).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Write images to an archive (OCI, or docker-archive for one platform).
    Save(SaveArgs),
    /// Load images from an OCI or Docker archive.
    Load {
        /// The archive.
        #[arg(short = 'i', long)]
        input: PathBuf,
        /// Print only the loaded names.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Verify every image of the store (= system check).
    Fsck,
}

/// `rbuild image save` flags.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The archive to write.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Keep only these platforms (comma-separated; default: every platform).
    #[arg(long, value_delimiter = ',', value_parser = parse_platform)]
    pub platform: Vec<Platform>,
    /// oci-archive (default) or docker-archive (one platform).
    #[arg(long, default_value = "oci-archive", value_parser = ["oci-archive", "docker-archive"])]
    pub format: String,
    /// Save every base image this Dockerfile's target needs instead of named images.
    #[arg(long)]
    pub from_dockerfile: Option<PathBuf>,
    /// Build arguments for --from-dockerfile.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Target stage for --from-dockerfile.
    #[arg(long)]
    pub target: Option<String>,
    /// Images (names or ids).
    pub images: Vec<String>,
}

/// `rbuild manifest ...` (docker manifest's workflow on local lists).
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Create a local manifest list from images.
    Create {
        /// Replace the list if it exists.
        #[arg(long)]
        amend: bool,
        /// The list's name.
        list: String,
        /// Images whose platforms it lists.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Add images to a local manifest list.
    Add {
        /// The list.
        list: String,
        /// Images to add.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Set the platform of an entry of a local manifest list.
    Annotate {
        /// Operating system.
        #[arg(long)]
        os: Option<String>,
        /// Architecture.
        #[arg(long)]
        arch: Option<String>,
        /// Variant.
        #[arg(long)]
        variant: Option<String>,
        /// The list.
        list: String,
        /// The entry (an image name or manifest digest).
        image: String,
    },
    /// Print a local manifest list (or an image's index or manifest) as JSON.
    Inspect {
        /// The list or image.
        list: String,
    },
    /// Remove local manifest lists.
    Rm {
        /// The lists.
        #[arg(required = true)]
        lists: Vec<String>,
    },
    /// Push a manifest list to a registry.
    Push {
        /// The list.
        list: String,
        /// Where to (default: the list's name).
        destination: Option<String>,
    },
}

/// `rbuild pull` flags.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Pull this platform only.
    #[arg(long, value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Pull every platform.
    #[arg(short = 'a', long)]
    pub all_platforms: bool,
    /// The image.
    pub image: String,
}

/// `rbuild push` flags.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image.
    pub image: String,
    /// Where to (default: the image's name).
    pub destination: Option<String>,
}

/// `rbuild system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Verify every image of the local store: each name's index, manifests, configs and
    /// layers exist, have their descriptor's size and hash to their digest. Exit 1 if not.
    Check,
}

/// A `--platform` value.
fn parse_platform(s: &str) -> Result<Platform, String> {
    s.trim().parse().map_err(|e| format!("{e}"))
}
