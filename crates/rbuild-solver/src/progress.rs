//! The solver's side of the event stream: the vertices a stage's steps are shown as, and
//! the events that start and end them. The solver reports here and never prints.

use crate::{SolveError, Solver, StageResult};
use rbuild_graph::{Base, OpKind, Stage};
use rbuild_progress::{Event, Vertex, VertexId, Warning};
use rbuild_sandbox::PlatformSupport;
use std::time::SystemTime;

/// The longest line of a step's name that is shown, in characters.
const MAX_NAME_LINE: usize = 4096;

/// The vertices of one stage: its `FROM` (for an image base) and one per instruction
/// (those of metadata-only instructions are never shown).
pub(crate) struct StageVertices {
    pub from: Option<Vertex>,
    pub ops: Vec<Vertex>,
    shown: Vec<bool>,
}

impl StageVertices {
    /// Names them as BuildKit does: `[platform stage n/total] INSTRUCTION`, the `FROM`
    /// counting as step 1.
    pub fn new(solver: &Solver, stage: &Stage) -> StageVertices {
        let total = stage.ops.len() + 1;
        let platform = stage.platform.to_string();
        let stage_name = stage
            .name
            .clone()
            .unwrap_or_else(|| stage.index.to_string());
        let emulated = matches!(
            solver.emulation.support(&stage.platform),
            Some(PlatformSupport::Emulated { .. })
        );
        let vertex = |n: usize, text: &str, emulated: bool| {
            let label = format!(
                "[{platform} {}{n}/{total}]",
                stage
                    .name
                    .as_deref()
                    .map(|s| format!("{s} "))
                    .unwrap_or_default(),
            );
            let index = stage.index.to_string();
            let step = n.to_string();
            Vertex {
                id: VertexId::of(&[
                    platform.as_bytes(),
                    index.as_bytes(),
                    step.as_bytes(),
                    text.as_bytes(),
                ]),
                // The instruction is the Dockerfile's text: no escape sequence of it reaches
                // a terminal.
                name: rbuild_core::text::sanitize_lines(&format!("{label} {text}"), MAX_NAME_LINE),
                stage: Some(stage_name.clone()),
                platform: Some(platform.clone()),
                emulated,
            }
        };
        let from = match &stage.base {
            Base::Image(r) => Some(vertex(1, &format!("FROM {r}"), false)),
            _ => None,
        };
        let ops = stage
            .ops
            .iter()
            .enumerate()
            .map(|(n, op)| {
                let text = op.created_by.trim_end_matches(" # buildkit");
                vertex(n + 2, text, emulated && matches!(op.kind, OpKind::Run(_)))
            })
            .collect();
        let shown = stage
            .ops
            .iter()
            .map(|op| !matches!(op.kind, OpKind::Meta))
            .collect();
        StageVertices { from, ops, shown }
    }

    /// Announces every vertex of the stage.
    pub fn announce(&self, solver: &Solver) {
        let shown = self.ops.iter().zip(&self.shown).filter(|(_, s)| **s);
        for v in self.from.iter().chain(shown.map(|(v, _)| v)) {
            solver.events.event(&Event::Vertex(v));
        }
    }
}

impl Solver<'_> {
    /// Runs one step as vertex `v`: started, then cached, done or failed.
    pub(crate) fn step(
        &self,
        v: &Vertex,
        result: &mut StageResult,
        work: impl FnOnce(&mut StageResult) -> Result<(), SolveError>,
    ) -> Result<(), SolveError> {
        self.started(v.id);
        result.cached = false;
        let r = work(result);
        self.finished(v.id, &r, result.cached);
        r
    }

    /// Reports that vertex `id` started.
    pub(crate) fn started(&self, id: VertexId) {
        self.events.event(&Event::Started {
            vertex: id,
            at: SystemTime::now(),
        });
    }

    /// Reports how vertex `id` ended.
    pub(crate) fn finished<T>(&self, id: VertexId, r: &Result<T, SolveError>, cached: bool) {
        let at = SystemTime::now();
        match r {
            Ok(_) if cached => self.events.event(&Event::Cached { vertex: id, at }),
            Ok(_) => self.events.event(&Event::Done { vertex: id, at }),
            Err(e) => {
                let message = error_line(e);
                self.events.event(&Event::Error {
                    vertex: id,
                    message: &message,
                    at,
                });
            }
        }
    }

    /// Reports a warning about vertex `id`.
    pub(crate) fn warn(&self, id: VertexId, short: String) {
        self.events.event(&Event::Warning(&Warning {
            vertex: Some(id),
            short,
            detail: Vec::new(),
            url: None,
        }));
    }
}

/// A step's error in one line, as BuildKit's `ERROR:` line shows it; the full message
/// (with the output's last lines) is the build's error.
fn error_line(e: &SolveError) -> String {
    let line = match e {
        SolveError::StepFailed(f) => format!(
            "process \"{}\" did not complete successfully: exit code: {}",
            f.command, f.code
        ),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    rbuild_core::text::sanitize_middle(&line, MAX_NAME_LINE)
}
