//! The step protocol ([`Step`]: key, then exec) and the solver loop over it ([`solve`]):
//! cache look-ups, layer bookkeeping, messages.

pub mod copy;
pub mod mkdir;
pub mod mounts;
pub mod run;
pub mod url;

use crate::layers::{commit, ensure_unpacked};
use crate::{SolveError, Solver, StageResult, StepError, cache};
use rbuild_core::{Digest, Platform};
use rbuild_graph::Op;
use rbuild_image::LayerBlob;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The unpacked layer directories (top-most first) and manifest digest of an image used
/// by `COPY --from` or a `RUN --mount` source.
pub(crate) fn image_stack(
    solver: &Solver,
    name: &str,
    platform: &rbuild_core::Platform,
    op: &Op,
) -> Result<(Vec<PathBuf>, Digest), SolveError> {
    let image = solver
        .sources
        .image(name, platform, solver.store)
        .map_err(|e| step_err(op, e))?;
    let dirs = image
        .layers
        .iter()
        .map(|l| ensure_unpacked(solver, l))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        crate::layers::visible_lowers(dirs.into_iter().rev()),
        image.manifest_digest,
    ))
}

/// A step error naming the instruction as well as its location.
pub(crate) fn step_err(op: &Op, error: impl Into<StepError>) -> SolveError {
    SolveError::Step {
        location: op.location.clone(),
        instruction: op.created_by.trim_end_matches(" # buildkit").to_string(),
        source: Box::new(error.into()),
    }
}

/// What a step reads besides its op: the solver, the instruction, the stages built so far
/// and the platform.
pub(crate) struct StepContext<'a> {
    /// The solver (state directory, sources, settings).
    pub solver: &'a Solver<'a>,
    /// The instruction (for messages and history).
    pub op: &'a Op,
    /// The stages built so far.
    pub done: &'a BTreeMap<usize, StageResult>,
    /// The stage's platform.
    pub platform: &'a Platform,
    /// The step's vertex in the event stream.
    pub vertex: rbuild_progress::VertexId,
}

/// What a step's execution leaves for the solver to commit: a change directory in
/// overlay format and the lower directories it is diffed against.
pub(crate) struct Changes {
    /// Keeps the step's temporary directory alive until the commit.
    pub _tmp: tempfile::TempDir,
    /// The change directory (becomes the layer directory).
    pub dir: PathBuf,
    /// The directories below it (empty for a rebased layer).
    pub lowers: Vec<PathBuf>,
}

/// A layer-producing step, in two parts as BuildKit's ops split CacheMap from Exec: the
/// key is computed from the step's definition and inputs only, without running anything;
/// execution produces the changes. The solver loop is key → look-up → exec on a miss →
/// commit ([`solve`]).
pub(crate) trait Step {
    /// The cache key: everything that can change the step's layer, nothing else.
    fn key(&self, cx: &StepContext, parent: &StageResult) -> Result<Digest, SolveError>;

    /// Whether the layer is rebased (`COPY --link`): its content and key do not depend on
    /// the parent, which the next step's key then names separately.
    fn rebased(&self) -> bool {
        false
    }

    /// Runs the step over the parent's layers and returns its changes.
    fn exec(&self, cx: &StepContext, parent: &StageResult) -> Result<Changes, SolveError>;
}

/// Carries out one step: its key, the cached layer when there is one (and the cache is not
/// ignored), otherwise execution and commit.
pub(crate) fn solve(
    step: &dyn Step,
    cx: &StepContext,
    result: &mut StageResult,
    no_cache: bool,
) -> Result<(), SolveError> {
    let key = step.key(cx, result)?;
    if !no_cache && try_cache(cx, result, &key, step.rebased())? {
        return Ok(());
    }
    let changes = step.exec(cx, result)?;
    let (blob, dir) = commit(cx.solver, &changes.dir, &changes.lowers)?;
    cx.solver.cache.put(&key, &blob);
    push_layer(cx, result, blob, dir, &key, step.rebased());
    Ok(())
}

/// Applies a cached layer if the key has one; returns whether it did.
fn try_cache(
    cx: &StepContext,
    result: &mut StageResult,
    key: &Digest,
    rebased: bool,
) -> Result<bool, SolveError> {
    let Some(blob) = cx.solver.cache.get(key) else {
        return Ok(false);
    };
    let dir = ensure_unpacked(cx.solver, &blob)?;
    push_layer(cx, result, blob, dir, key, rebased);
    result.cached = true;
    Ok(true)
}

/// Stacks a layer onto the stage. The stage's key becomes the step key combined with the
/// layer's diff id, so a step that ran again (cache ignored) and produced other content
/// changes the keys after it; a rebased layer's key is combined with the parent's.
fn push_layer(
    cx: &StepContext,
    result: &mut StageResult,
    blob: LayerBlob,
    dir: PathBuf,
    key: &Digest,
    rebased: bool,
) {
    let diff_id = blob.diff_id.to_string();
    result.key = if rebased {
        cache::chain(
            &result.key,
            &[b"rebased", key.to_string().as_bytes(), diff_id.as_bytes()],
        )
    } else {
        cache::chain(key, &[b"layer", diff_id.as_bytes()])
    };
    result.layers.push(blob);
    result.dirs.push(dir);
    result
        .history
        .push(cx.solver.history(&cx.op.created_by, false));
}

/// The parts of the solver's settings that shape a stored blob (compression and the
/// `SOURCE_DATE_EPOCH` mtime clamp), for keys that do not chain from a stage's base.
pub(crate) fn blob_shape(solver: &Solver) -> Vec<u8> {
    // SOURCE_DATE_EPOCH shapes a layer only through the mtime clamp of rewrite-timestamp.
    let clamp = solver
        .source_date_epoch
        .filter(|_| solver.rewrite_timestamp);
    format!("{:?}\0{:?}", solver.compression, clamp).into_bytes()
}

/// Reports a chunk of a step's (combined) output.
pub(crate) fn output(solver: &Solver, vertex: rbuild_progress::VertexId, data: &[u8]) {
    solver.events.event(&rbuild_progress::Event::Output {
        vertex,
        stream: rbuild_progress::Stream::Stdout,
        data,
        at: std::time::SystemTime::now(),
    });
}

/// A command line as a user would type it, for messages.
pub(crate) fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) use crate::tail::Tail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_quote_what_needs_it() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(shell_words(&argv), "/bin/sh -c 'exit 3'");
    }
}
