//! `rbuild pull`, `rbuild push` and `rbuild manifest push`: images between the local image
//! store and registries, through the registry client (verified blobs, cross-repository
//! mounts, credentials as `rbuild login` saved them).

use anyhow::{Context, Result, bail};
use rbuild_core::{Digest, Platform, Reference};
use rbuild_images::{ImageStore, Target};
use rbuild_registry::{Registry, Root};
use std::collections::HashMap;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::cli_images::{PullArgs, PushArgs};

fn registry() -> Result<Registry> {
    Ok(Registry::new(crate::registry::load_config()?))
}

fn remote(text: &str) -> Result<Reference> {
    text.parse::<Reference>()
        .map_err(|e| anyhow::anyhow!("{text}: {e}"))
}

/// `rbuild pull [--platform P | --all-platforms] REF`: the host's platform by default, as
/// docker and podman do; the name then points at what was pulled.
pub fn pull(cli: &Cli, args: &PullArgs) -> Result<ExitCode> {
    let (images, _lock) = crate::image::cmd::open_store(cli)?;
    let r = remote(&args.image)?;
    let registry = registry()?;
    let target = if args.all_platforms {
        let root = registry
            .pull_all(images.blobs(), &r)
            .with_context(|| format!("pulling {r}"))?;
        Target {
            media_type: root.media_type,
            digest: root.digest,
            size: root.bytes.len() as u64,
        }
    } else {
        let platform = args.platform.clone().unwrap_or_else(Platform::host);
        let image = registry
            .pull(images.blobs(), &r, &platform)
            .with_context(|| format!("pulling {r} for {platform}"))?;
        stored_target(&images, &image.manifest_digest)?
    };
    let name = Reference::parse(&args.image)?;
    images.set(&name, &target)?;
    println!("{}", target.digest);
    Ok(ExitCode::SUCCESS)
}

/// The target a stored manifest or index blob makes.
fn stored_target(images: &ImageStore, digest: &Digest) -> Result<Target> {
    let data = images.blobs().read_verified(digest)?;
    Ok(Target {
        media_type: rbuild_images::walk::media_type_of(digest, &data)?,
        digest: digest.clone(),
        size: data.len() as u64,
    })
}

/// `rbuild push IMAGE [DEST]`: every platform the name holds.
pub fn push(cli: &Cli, args: &PushArgs) -> Result<ExitCode> {
    push_named(cli, &args.image, args.destination.as_deref())
}

/// `rbuild manifest push LIST [DEST]`: a local manifest list is a name like any other.
pub fn manifest_push(cli: &Cli, list: &str, destination: Option<&str>) -> Result<ExitCode> {
    push_named(cli, list, destination)
}

fn push_named(cli: &Cli, name: &str, destination: Option<&str>) -> Result<ExitCode> {
    let (images, _lock) = crate::image::cmd::open_store(cli)?;
    let target = images.resolve(name)?;
    let dest = remote(destination.unwrap_or(name))?;
    if dest.tag().is_none() && dest.digest().is_some() {
        bail!("{dest}: push to a tag (or a plain name), not a digest");
    }
    let root = Root {
        media_type: target.media_type.clone(),
        digest: target.digest.clone(),
    };
    let report = registry()?
        .push(
            images.blobs(),
            &root,
            std::slice::from_ref(&dest),
            false,
            &HashMap::new(),
        )
        .with_context(|| format!("pushing {name} to {dest}"))?;
    eprintln!(
        "pushed {dest} ({}): {} blob(s) uploaded ({} bytes), {} already there, {} mounted",
        target.digest, report.uploaded, report.uploaded_bytes, report.present, report.mounted
    );
    println!("{}", target.digest);
    Ok(ExitCode::SUCCESS)
}
