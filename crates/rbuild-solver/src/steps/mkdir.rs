//! WORKDIR steps: BuildKit creates the directory and its missing parents (mode 0755,
//! owned by the USER in effect) as a file operation, which always makes a layer; the
//! layer is empty when the directory already exists.

use super::copy::resolve_chown;
use super::{push_layer, step_err, try_cache};
use crate::layers::{commit, temp_dir};
use crate::{SolveError, Solver, StageResult, cache};
use rbuild_graph::{MkdirOp, Op};
use rbuild_snapshot::{CopyOptions, CopySource, LayerStack};
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// Runs a WORKDIR step (or reuses its cached layer).
pub fn mkdir(
    solver: &Solver,
    result: &mut StageResult,
    mkdir: &MkdirOp,
    op: &Op,
) -> Result<(), SolveError> {
    let key = cache::chain(
        &result.key,
        &[b"mkdir", mkdir.path.as_bytes(), mkdir.user.as_bytes()],
    );
    if try_cache(solver, result, &key, op)? {
        return Ok(());
    }
    let lowers = result.lowers();
    let dest_stack = LayerStack::new(lowers.clone());
    let chown = match mkdir.user.as_str() {
        "" => None,
        user => Some(resolve_chown(&dest_stack, user).map_err(|m| step_err(op, m))?),
    };
    let tmp = temp_dir(solver.state, "mkdir-")?;
    // The new directory is copied from an empty 0755 directory: the copy code already
    // carries existing parents unchanged and creates missing ones as BuildKit's mkdir -p.
    let src = tmp.path().join("src");
    let empty = src.join("dir");
    fs::create_dir_all(&empty).map_err(|e| SolveError::Io(empty.clone(), e))?;
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o755))
        .map_err(|e| SolveError::Io(empty.clone(), e))?;
    let out = tmp.path().join("layer");
    fs::create_dir(&out).map_err(|e| SolveError::Io(out.clone(), e))?;
    let opts = CopyOptions {
        chown: Some(chown.unwrap_or((0, 0))),
        chmod: None,
        workdir: "/".into(),
        ..Default::default()
    };
    rbuild_snapshot::copy(
        CopySource::Context(&src),
        &["dir".to_string()],
        &mkdir.path,
        &dest_stack,
        &out,
        &opts,
    )
    .map_err(|e| step_err(op, format!("WORKDIR {}: {e}", mkdir.path)))?;
    let (blob, dir) = commit(solver, &out, &lowers)?;
    cache::put(solver.state, &key, &blob);
    push_layer(solver, result, blob, dir, &key, op);
    Ok(())
}
