//! `image prune`: removes the blobs and layer directories that no image name and no
//! build-cache entry needs (under the state directory's exclusive lock).

use crate::cli::Cli;
use anyhow::{Context, Result};
use rbuild_core::Digest;
use rbuild_core::walk::Budget;
use rbuild_images::walk;
use rbuild_solver::StateDir;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

/// Runs `image prune`.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    let state = crate::state::enter(cli)?;
    let _lock = crate::build::lock_state_exclusive(&state)?;
    let freed = remove_unneeded(&state, true)?;
    println!(
        "Total reclaimed space: {}",
        crate::image::inspect::human_size(freed)
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether the state directory has named images.
pub fn has_images(state: &StateDir) -> bool {
    std::fs::read_dir(state.images()).is_ok_and(|mut d| d.next().is_some())
}

/// Removes the blobs and layer directories no name (and, with `keep_cache`, no cache
/// entry) needs; returns the bytes of blobs freed. The caller holds the exclusive lock.
pub fn remove_unneeded(state: &StateDir, keep_cache: bool) -> Result<u64> {
    let images = crate::state::images(state)?;
    let (blobs, layers) = needed(state, &images, keep_cache)?;
    let mut freed = 0u64;
    let blob_dir = images.blobs().root().join("blobs/sha256");
    for entry in
        std::fs::read_dir(&blob_dir).with_context(|| format!("reading {}", blob_dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = format!("sha256:{name}")
            .parse::<Digest>()
            .is_ok_and(|d| blobs.contains(&d));
        if !keep {
            freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(entry.path())?;
        }
    }
    let layer_dir = state.layers();
    for entry in std::fs::read_dir(&layer_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !layers.contains(&name) {
            make_writable(&entry.path());
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(freed)
}

/// The layer directories (diff id hex) the config at the end of `path` names; none for
/// a config that is not an image's (an attestation's or artifact's, whose layers are
/// never unpacked).
fn diff_ids(
    images: &rbuild_images::ImageStore,
    budget: &mut Budget,
    path: &[Digest],
) -> Result<Vec<String>> {
    let data = images.blobs().read_config(budget, path)?;
    let Ok(config) = rbuild_image::ImageConfig::from_json(&data) else {
        return Ok(Vec::new());
    };
    Ok(config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.hex().to_string())
        .collect())
}

/// The blobs and layer directories (diff id hex) that names and cache entries need.
fn needed(
    state: &StateDir,
    images: &rbuild_images::ImageStore,
    with_cache: bool,
) -> Result<(BTreeSet<Digest>, BTreeSet<String>)> {
    let mut blobs = BTreeSet::new();
    let mut layers = BTreeSet::new();
    // One pass: a graph several names share is walked once, an image named several
    // times is read once.
    let mut budget = Budget::new();
    let mut read = BTreeSet::new();
    for record in images.list()? {
        if !read.insert(record.target.digest.clone()) {
            continue;
        }
        let closure =
            walk::closure_in(images.blobs(), &record.target, &mut budget).with_context(|| {
                format!(
                    "{} is damaged (see rbuild system check); nothing was removed",
                    record.name
                )
            })?;
        for n in closure {
            if n.kind == "config" && !blobs.contains(&n.digest) {
                let path = [record.target.digest.clone(), n.digest.clone()];
                let ids = diff_ids(images, &mut budget, &path).with_context(|| {
                    format!(
                        "{} is damaged (see rbuild system check); nothing was removed",
                        record.name
                    )
                })?;
                layers.extend(ids);
            }
            blobs.insert(n.digest);
        }
    }
    let cache_entries = std::fs::read_dir(state.cache_index())
        .into_iter()
        .flatten()
        .flatten();
    for entry in cache_entries.filter(|_| with_cache) {
        let Ok(data) = std::fs::read(entry.path()) else {
            continue;
        };
        if let Ok(blob) = serde_json::from_slice::<rbuild_image::LayerBlob>(&data) {
            layers.insert(blob.diff_id.hex().to_string());
            blobs.insert(blob.digest);
        }
    }
    Ok((blobs, layers))
}

/// overlayfs work dirs are left mode 000; let the owner remove what it owns. What a step left
/// in a cache mount may hold symlinks, so the tree is walked through `rbuild-fsroot`.
pub(crate) fn make_writable(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    if let Ok(root) = rbuild_fsroot::Root::open(parent) {
        make_entry_writable(&root, Path::new(name));
    }
}

/// Gives a directory entry of `root` owner rwx, then does the same for its children.
fn make_entry_writable(root: &rbuild_fsroot::Root, name: &Path) {
    let Ok(entry) = root.at(name) else {
        return;
    };
    let Ok(Some(st)) = entry.stat() else {
        return;
    };
    if st.kind != rbuild_fsroot::FileKind::Dir {
        return;
    }
    let _ = entry.chmod(st.mode | 0o700);
    let Ok(dir) = entry.open_dir() else {
        return;
    };
    for child in dir.list().into_iter().flatten() {
        make_entry_writable(&dir, Path::new(&child));
    }
}
