//! `rbuild prune`: removes the build cache (layers, blobs, cache index, cache mounts).

use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// What `prune` may remove, each a directory under the state directory.
const CACHE_DIRS: &[&str] = &["cache", "cache-mounts", "layers", "store", "tmp"];

/// Runs `rbuild prune` on the state directory `root`. Must run inside the build namespace
/// (files there may belong to subordinate ids).
pub fn run(root: &Path, only_cache_mounts: bool) -> Result<ExitCode> {
    let _lock = crate::build::lock_state_exclusive(root)?;
    let dirs: &[&str] = if only_cache_mounts {
        &["cache-mounts"]
    } else {
        CACHE_DIRS
    };
    let mut freed = 0u64;
    for d in dirs {
        let path = root.join(d);
        if !path.exists() {
            continue;
        }
        freed += du(&path);
        make_writable(&path);
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
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

/// overlayfs work dirs are left mode 000; let the owner remove what it owns.
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
        );
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            make_writable(&e.path());
        }
    }
}
