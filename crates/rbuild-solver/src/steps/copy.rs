//! COPY steps: files from the context, a stage or an image into a new layer.

use super::{push_layer, step_err, try_cache};
use crate::layers::{commit, ensure_unpacked, temp_dir};
use crate::{SolveError, Solver, StageResult, cache};
use rbuild_core::{Digest, Platform};
use rbuild_graph::{BuildGraph, CopyFrom, CopyOp, Op};
use rbuild_snapshot::{CopyOptions, CopySource, LayerStack};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// Runs a COPY step (or reuses its cached layer).
pub fn copy(
    solver: &Solver,
    result: &mut StageResult,
    copy: &CopyOp,
    op: &Op,
    done: &BTreeMap<usize, StageResult>,
    platform: &Platform,
    _graph: &BuildGraph,
) -> Result<(), SolveError> {
    let source = CopyInput::new(solver, copy, op, done, platform)?;
    let identity = source.identity(op)?;
    let spec_key = serde_json::to_vec(copy).unwrap_or_default();
    let key = cache::chain(
        &result.key,
        &[b"copy", &spec_key, identity.to_string().as_bytes()],
    );
    if try_cache(solver, result, &key, op)? {
        return Ok(());
    }
    let lowers = result.lowers();
    let dest_stack = LayerStack::new(lowers.clone());
    let chown = match &copy.chown {
        Some(spec) => Some(resolve_chown(&dest_stack, spec).map_err(|m| step_err(op, m))?),
        None => None,
    };
    let tmp = temp_dir(solver.state, "copy-")?;
    let out = tmp.path().join("layer");
    fs::create_dir(&out).map_err(|e| SolveError::Io(out.clone(), e))?;
    let opts = CopyOptions {
        chown,
        chmod: copy.chmod,
        workdir: copy.workdir.clone(),
    };
    let stack;
    let src = match &source {
        CopyInput::Dir(p) => CopySource::Context(p),
        CopyInput::Stack(dirs, _) => {
            stack = LayerStack::new(dirs.clone());
            CopySource::Stack(&stack)
        }
    };
    rbuild_snapshot::copy(src, &copy.srcs, &copy.dest, &dest_stack, &out, &opts)
        .map_err(|e| step_err(op, e.to_string()))?;
    let (blob, dir) = commit(solver, &out, &lowers)?;
    cache::put(solver.state, &key, &blob);
    push_layer(solver, result, blob, dir, &key, op);
    Ok(())
}

enum CopyInput {
    Dir(PathBuf),
    Stack(Vec<PathBuf>, Digest),
}

impl CopyInput {
    fn new(
        solver: &Solver,
        copy: &CopyOp,
        op: &Op,
        done: &BTreeMap<usize, StageResult>,
        platform: &Platform,
    ) -> Result<CopyInput, SolveError> {
        Ok(match &copy.from {
            CopyFrom::Context => CopyInput::Dir(solver.sources.context().to_path_buf()),
            CopyFrom::Stage(i) => {
                let r = done
                    .get(i)
                    .ok_or_else(|| step_err(op, format!("stage {i} was not built")))?;
                CopyInput::Stack(r.lowers(), r.key.clone())
            }
            CopyFrom::Image(name) => match solver.sources.named(name) {
                Some(rbuild_source::NamedContext::Dir(p)) => CopyInput::Dir(p.clone()),
                _ => {
                    let image = solver
                        .sources
                        .image(name, platform, solver.store)
                        .map_err(|m| step_err(op, m))?;
                    let dirs = image
                        .layers
                        .iter()
                        .map(|l| ensure_unpacked(solver, l))
                        .collect::<Result<Vec<_>, _>>()?;
                    CopyInput::Stack(dirs.into_iter().rev().collect(), image.manifest_digest)
                }
            },
        })
    }

    fn identity(&self, op: &Op) -> Result<Digest, SolveError> {
        match self {
            CopyInput::Dir(p) => cache::hash_tree(p)
                .map_err(|e| step_err(op, format!("reading build context {}: {e}", p.display()))),
            CopyInput::Stack(_, key) => Ok(key.clone()),
        }
    }
}

/// Resolves `--chown=user[:group]` against the destination's /etc/passwd and /etc/group.
fn resolve_chown(stack: &LayerStack, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |path: &str| -> String {
        stack
            .resolve(path)
            .ok()
            .flatten()
            .and_then(|e| fs::read_to_string(e.host_path).ok())
            .unwrap_or_default()
    };
    let lookup = |db: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        db.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                let id = f.get(field).and_then(|x| x.parse().ok())?;
                Some((id, f.get(3).and_then(|x| x.parse().ok())))
            })?
        })
    };
    let passwd = read("/etc/passwd");
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => lookup(&passwd, user, 2)
            .ok_or_else(|| format!("--chown: user {user:?} is not in the image's /etc/passwd"))?,
    };
    let gid = match group {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&read("/etc/group"), g, 2)
                .map(|x| x.0)
                .ok_or_else(|| format!("--chown: group {g:?} is not in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

