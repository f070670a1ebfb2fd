//! The state directory for commands other than `build`: where it is, entering the build
//! namespace over it, and its image store.

use crate::cli::Cli;
use anyhow::{Context, Result};
use rbuild_images::ImageStore;
use rbuild_solver::StateDir;
use rbuild_store::Store;

/// The state directory (created if missing, refused when it is not rbuild's), canonical.
pub fn root_dir(cli: &Cli) -> Result<StateDir> {
    let root = cli.root.clone().unwrap_or_else(crate::build::default_root);
    StateDir::create(&root).with_context(|| format!("opening state directory {}", root.display()))
}

/// [`root_dir`], then re-executes inside the build's user namespace (where files of
/// subordinate ids can be read and removed). Must be called single-threaded.
pub fn enter(cli: &Cli) -> Result<StateDir> {
    let state = root_dir(cli)?;
    // SAFETY: single-threaded until the namespace is entered.
    unsafe { std::env::set_var("RBUILD_ROOT", state.root()) };
    rbuild_sandbox::enter_build_namespace().context("entering the build's user namespace")?;
    Ok(state)
}

/// The image store of the state directory.
pub fn images(state: &StateDir) -> Result<ImageStore> {
    let blobs = Store::open(&state.store())?;
    Ok(ImageStore::open(state, blobs)?)
}
