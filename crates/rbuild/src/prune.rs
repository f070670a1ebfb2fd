//! `rbuild prune`: removes the build cache (layers, blobs, cache index, cache mounts);
//! what the local image store's names need stays.

use anyhow::{Context, Result};
use rbuild_solver::StateDir;
use std::path::Path;
use std::process::ExitCode;

/// Runs `rbuild prune` on the state directory `state`. Must run inside the build namespace
/// (files there may belong to subordinate ids).
pub fn run(state: &StateDir, only_cache_mounts: bool) -> Result<ExitCode> {
    let _lock = crate::build::lock_state_exclusive(state)?;
    let mut freed = 0u64;
    let keeps_images = !only_cache_mounts && crate::image::prune::has_images(state);
    for path in state.prunable(only_cache_mounts) {
        if !path.exists() {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if keeps_images && ["store", "layers"].contains(&name) {
            // Named images stay: only what no name needs goes.
            continue;
        }
        freed += du(&path);
        crate::image::prune::make_writable(&path);
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    if keeps_images {
        freed += crate::image::prune::remove_unneeded(state, false)?;
    }
    println!("Total: {:.1} MB reclaimed", freed as f64 / 1e6);
    Ok(ExitCode::SUCCESS)
}

fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let children = std::fs::read_dir(path).into_iter().flatten().flatten();
    meta.blocks() * 512 + children.map(|e| du(&e.path())).sum::<u64>()
}
