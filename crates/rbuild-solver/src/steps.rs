//! What RUN and COPY steps share: cache look-ups, layer bookkeeping, messages.

pub mod copy;
pub mod mkdir;
pub mod mounts;
pub mod run;

use crate::layers::ensure_unpacked;
use crate::{SolveError, Solver, StageResult, cache};
use rbuild_core::Digest;
use rbuild_graph::Op;
use rbuild_image::LayerBlob;
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
        .map_err(|m| step_err(op, m))?;
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
pub(crate) fn step_err(op: &Op, message: impl Into<String>) -> SolveError {
    let instruction = op.created_by.trim_end_matches(" # buildkit");
    SolveError::Step {
        location: op.location.clone(),
        message: format!("{instruction}: {}", message.into()),
    }
}

/// Applies a cached layer if the key has one; returns whether it did.
pub(crate) fn try_cache(
    solver: &Solver,
    result: &mut StageResult,
    key: &Digest,
    op: &Op,
) -> Result<bool, SolveError> {
    if solver.no_cache {
        return Ok(false);
    }
    let Some(blob) = cache::get(solver.state, solver.store, key) else {
        return Ok(false);
    };
    let dir = ensure_unpacked(solver, &blob)?;
    push_layer(solver, result, blob, dir, key, op);
    result.cached = true;
    Ok(true)
}

pub(crate) fn push_layer(
    solver: &Solver,
    result: &mut StageResult,
    blob: LayerBlob,
    dir: PathBuf,
    key: &Digest,
    op: &Op,
) {
    result.layers.push(blob);
    result.dirs.push(dir);
    result.history.push(solver.history(&op.created_by, false));
    result.key = key.clone();
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
