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
use std::collections::VecDeque;
use std::io::Write;
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
    Ok((dirs.into_iter().rev().collect(), image.manifest_digest))
}

/// How many output lines a failed step shows.
const TAIL_LINES: usize = 20;

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
    solver.say("  CACHED");
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

/// Streams a step's output with its label and keeps the last lines for error messages.
pub(crate) struct Tail {
    label: String,
    /// Print lines as they come (else only keep them for an error message).
    echo: bool,
    partial: Vec<u8>,
    lines: VecDeque<String>,
}

impl Tail {
    pub(crate) fn new(label: &str, echo: bool) -> Tail {
        Tail {
            label: label.to_string(),
            echo,
            partial: Vec::new(),
            lines: VecDeque::new(),
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        self.partial.extend_from_slice(chunk);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            self.line(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
    }

    pub(crate) fn flush(&mut self) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.line(line);
        }
    }

    fn line(&mut self, line: String) {
        if self.echo {
            let _ = writeln!(std::io::stderr(), "{} {line}", self.label);
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub(crate) fn render(&self) -> String {
        if self.lines.is_empty() {
            return "    (no output)".into();
        }
        self.lines
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::new("[t]", false);
        for i in 0..30 {
            t.feed(format!("line {i}\n").as_bytes());
        }
        t.feed(b"partial");
        t.flush();
        let r = t.render();
        assert!(r.starts_with("    line 11\n"));
        assert!(r.ends_with("    partial"));
        assert_eq!(r.lines().count(), TAIL_LINES);
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(shell_words(&argv), "/bin/sh -c 'exit 3'");
    }
}
