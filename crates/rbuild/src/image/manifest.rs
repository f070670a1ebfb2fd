//! `rbuild manifest create|add|annotate|inspect|rm|push`: docker manifest's workflow on
//! manifest lists kept as named images in the local store.

use crate::cli::Cli;
use crate::cli_images::ManifestCommand;
use anyhow::{Context, Result, bail};
use rbuild_core::{Reference, media_type};
use rbuild_images::{ImageStore, Target, walk};
use serde_json::{Value, json};
use std::process::ExitCode;

/// Runs one `manifest` subcommand.
pub fn run(cli: &Cli, cmd: &ManifestCommand) -> Result<ExitCode> {
    let state = crate::state::root_dir(cli)?;
    let _lock = state.lock_for_build()?;
    let images = crate::state::images(&state)?;
    match cmd {
        ManifestCommand::Create {
            amend,
            list,
            images: refs,
        } => create(&images, list, refs, *amend)?,
        ManifestCommand::Add { list, images: refs } => {
            let mut entries = entries_of(&images, list)?;
            for r in refs {
                merge(&mut entries, descriptors(&images, r)?);
            }
            store_list(&images, list, entries)?;
        }
        ManifestCommand::Annotate {
            os,
            arch,
            variant,
            list,
            image,
        } => annotate(&images, list, image, [os, arch, variant])?,
        ManifestCommand::Inspect { list } => inspect(&images, list)?,
        ManifestCommand::Rm { lists } => {
            for l in lists {
                if images.remove(&Reference::parse(l)?)?.is_none() {
                    bail!("no manifest list {l}");
                }
            }
        }
        ManifestCommand::Push { list, destination } => {
            drop(images);
            return crate::image::transfer::manifest_push(cli, list, destination.as_deref());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create(images: &ImageStore, list: &str, refs: &[String], amend: bool) -> Result<()> {
    let name = Reference::parse(list)?;
    let mut entries = Vec::new();
    if let Some(existing) = images.get(&name)? {
        if !amend {
            bail!("refusing to amend an existing manifest list with no --amend flag: {list}");
        }
        entries = entries_of_target(images, &existing.target)?;
    }
    for r in refs {
        merge(&mut entries, descriptors(images, r)?);
    }
    store_list(images, list, entries)?;
    println!("Created manifest list {}", name.familiar());
    Ok(())
}

/// The per-platform manifest descriptors of an image (every platform it has).
fn descriptors(images: &ImageStore, text: &str) -> Result<Vec<Value>> {
    let target = images.resolve(text)?;
    let mut out = Vec::new();
    for (p, m) in walk::platforms(images.blobs(), &target)? {
        let mut platform = json!({"architecture": p.architecture(), "os": p.os()});
        if let (Some(v), Some(o)) = (p.variant(), platform.as_object_mut()) {
            o.insert("variant".into(), v.into());
        }
        out.push(json!({
            "mediaType": m.media_type,
            "digest": m.digest.to_string(),
            "size": m.size,
            "platform": platform,
        }));
    }
    Ok(out)
}

/// Adds entries, replacing those with the same digest.
fn merge(entries: &mut Vec<Value>, new: Vec<Value>) {
    for n in new {
        entries.retain(|e| e["digest"] != n["digest"]);
        entries.push(n);
    }
}

fn entries_of(images: &ImageStore, list: &str) -> Result<Vec<Value>> {
    let rec = images.get(&Reference::parse(list)?)?.with_context(|| {
        format!("no manifest list {list} (create it with rbuild manifest create)")
    })?;
    entries_of_target(images, &rec.target)
}

fn entries_of_target(images: &ImageStore, target: &Target) -> Result<Vec<Value>> {
    if !target.is_index() {
        bail!("{} is an image, not a manifest list", target.digest);
    }
    let index: Value = serde_json::from_slice(&images.blobs().read_verified(&target.digest)?)?;
    Ok(index["manifests"].as_array().cloned().unwrap_or_default())
}

fn store_list(images: &ImageStore, list: &str, entries: Vec<Value>) -> Result<Target> {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries,
    });
    let (digest, size) = images.blobs().put_bytes(&serde_json::to_vec(&index)?)?;
    let target = Target {
        media_type: media_type::OCI_INDEX.into(),
        digest,
        size,
    };
    images.set(&Reference::parse(list)?, &target)?;
    Ok(target)
}

fn annotate(
    images: &ImageStore,
    list: &str,
    image: &str,
    [os, arch, variant]: [&Option<String>; 3],
) -> Result<()> {
    let mut entries = entries_of(images, list)?;
    let wanted: Vec<String> = match image.parse::<rbuild_core::Digest>() {
        Ok(d) => vec![d.to_string()],
        Err(_) => descriptors(images, image)?
            .iter()
            .filter_map(|d| d["digest"].as_str().map(String::from))
            .collect(),
    };
    let mut found = false;
    for e in entries.iter_mut() {
        if !e["digest"]
            .as_str()
            .is_some_and(|d| wanted.iter().any(|w| w == d))
        {
            continue;
        }
        found = true;
        let p = &mut e["platform"];
        if !p.is_object() {
            *p = json!({});
        }
        for (key, value) in [("os", os), ("architecture", arch), ("variant", variant)] {
            if let (Some(v), Some(o)) = (value, p.as_object_mut()) {
                o.insert(key.into(), v.clone().into());
            }
        }
    }
    if !found {
        bail!("{image} is not in manifest list {list}");
    }
    store_list(images, list, entries)?;
    Ok(())
}

fn inspect(images: &ImageStore, list: &str) -> Result<()> {
    let target = images.resolve(list)?;
    let doc: Value = serde_json::from_slice(&images.blobs().read_verified(&target.digest)?)?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
