//! The state directory for commands other than `build`: where it is, entering the build
//! namespace over it, and its image store.

use crate::cli::Cli;
use anyhow::{Context, Result};
use rbuild_images::ImageStore;
use rbuild_store::Store;
use std::path::{Path, PathBuf};

/// The state directory (created if missing, refused when it is not rbuild's), canonical.
pub fn root_dir(cli: &Cli) -> Result<PathBuf> {
    let root = cli.root.clone().unwrap_or_else(crate::build::default_root);
    let state = rbuild_solver::StateDir::create(&root)
        .with_context(|| format!("opening state directory {}", root.display()))?;
    Ok(state.root().to_path_buf())
}

/// [`root_dir`], then re-executes inside the build's user namespace (where files of
/// subordinate ids can be read and removed). Must be called single-threaded.
pub fn enter(cli: &Cli) -> Result<PathBuf> {
    let root = root_dir(cli)?;
    // SAFETY: single-threaded until the namespace is entered.
    unsafe { std::env::set_var("RBUILD_ROOT", &root) };
    rbuild_sandbox::enter_build_namespace().context("entering the build's user namespace")?;
    Ok(root)
}

/// The image store of the state directory `root`.
pub fn images(root: &Path) -> Result<ImageStore> {
    let blobs = Store::open(&root.join("store"))?;
    Ok(ImageStore::open(root, blobs)?)
}
