//! The CLI's side of the event stream: which renderer `--progress` picks, the warnings
//! the CLI itself reports (lints, parser warnings, a missing output) and the export
//! vertex.

use anyhow::{Result, bail};
use rbuild_progress::{
    Event, EventSink, Meter, Plain, Quiet, RawJson, Renderer, Tty, Vertex, VertexId, Warning,
};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::SystemTime;

/// The renderer for `--progress` (`auto`: tty on a terminal, else plain) and `-q`.
pub fn renderer(progress: &str, quiet: bool) -> Result<Arc<dyn Renderer>> {
    if quiet {
        return Ok(Arc::new(Quiet));
    }
    Ok(match progress {
        "auto" if std::io::stderr().is_terminal() => Arc::new(Tty::new()),
        "auto" | "plain" => Arc::new(Plain::new(std::io::stderr())),
        "tty" => Arc::new(Tty::new()),
        "rawjson" => Arc::new(RawJson::new(std::io::stderr())),
        "quiet" => Arc::new(Quiet),
        other => bail!("--progress {other:?}: expected auto, plain, tty, rawjson or quiet"),
    })
}

/// Reports a multi-line diagnostic (a lint finding, a parser warning) as a warning: its
/// first line is the message, the rest the detail.
pub fn diagnostic(sink: &dyn EventSink, text: &str, url: Option<String>) {
    let mut lines = text.lines();
    let short = lines.next().unwrap_or_default().to_string();
    sink.event(&Event::Warning(&Warning {
        vertex: None,
        short,
        detail: lines.map(str::to_string).collect(),
        url,
    }));
}

/// The lint findings of a build and the build args nothing consumed (once, from the first
/// platform's graph).
pub fn lints(sink: &dyn EventSink, graphs: &[rbuild_graph::BuildGraph]) {
    if let Some(g) = graphs.first() {
        for l in &g.lints {
            diagnostic(sink, &l.diagnostic.to_string(), Some(l.url()));
        }
        for name in &g.unused_args {
            diagnostic(
                sink,
                &format!("build arg {name:?} was never consumed by an ARG"),
                None,
            );
        }
    }
}

/// A vertex for rbuild's own work outside the steps: an export (`exporting to oci image
/// format`), a pull (`[internal] pull REF for PLATFORM`), a download.
pub struct Task<'a> {
    sink: &'a dyn EventSink,
    vertex: Vertex,
}

impl<'a> Task<'a> {
    /// Announces and starts the export vertex for an output of kind `what`
    /// (`exporting to WHAT`).
    pub fn start(sink: &'a dyn EventSink, what: &str) -> Task<'a> {
        Task::named(sink, format!("exporting to {what}"), None)
    }

    /// Announces and starts a vertex called `name` (unique in the build), for `platform`.
    pub fn named(sink: &'a dyn EventSink, name: String, platform: Option<String>) -> Task<'a> {
        let vertex = Vertex {
            id: VertexId::of(&[b"export", name.as_bytes()]),
            name,
            stage: None,
            platform,
            emulated: false,
        };
        sink.event(&Event::Vertex(&vertex));
        sink.event(&Event::Started {
            vertex: vertex.id,
            at: SystemTime::now(),
        });
        Task { sink, vertex }
    }

    /// Byte progress of writing an archive (`sending tarball`).
    pub fn meter(&self) -> Meter<'a> {
        Meter::start(self.sink, self.vertex.id, "sending tarball".into(), None)
    }

    /// The vertex's id, for progress reported from elsewhere ([`upload_progress`]).
    pub fn id(&self) -> VertexId {
        self.vertex.id
    }

    /// A line of the export's output.
    pub fn say(&self, line: &str) {
        let data = format!("{line}\n");
        self.sink.event(&Event::Output {
            vertex: self.vertex.id,
            stream: rbuild_progress::Stream::Stdout,
            data: data.as_bytes(),
            at: SystemTime::now(),
        });
    }

    /// Ends the export: done, or failed with `error`.
    pub fn finish(self, error: Option<&anyhow::Error>) {
        self.finish_with(error.map(|e| format!("{e:#}")).as_deref());
    }

    /// Ends the vertex: done, or failed with the one-line `error`.
    pub fn finish_with(self, error: Option<&str>) {
        let at = SystemTime::now();
        let vertex = self.vertex.id;
        match error {
            None => self.sink.event(&Event::Done { vertex, at }),
            Some(message) => self.sink.event(&Event::Error {
                vertex,
                message,
                at,
            }),
        }
    }
}

/// A callback reporting blob uploads as byte statuses (`pushing sha256:…`) of `vertex`,
/// at most every 100 ms per blob and once when a blob is complete.
pub fn upload_progress(
    sink: Arc<dyn EventSink>,
    vertex: VertexId,
) -> rbuild_registry::push::OnUploadBytes {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let seen: Mutex<HashMap<rbuild_core::Digest, (SystemTime, Instant)>> = Mutex::default();
    rbuild_registry::push::OnUploadBytes(Arc::new(move |digest, sent, total| {
        let now = SystemTime::now();
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let first = !seen.contains_key(digest);
        let (started, last) = seen.entry(digest.clone()).or_insert((now, Instant::now()));
        let done = sent >= total;
        if !(first || done || last.elapsed() >= Duration::from_millis(100)) {
            return;
        }
        *last = Instant::now();
        sink.event(&Event::Progress(&rbuild_progress::Status {
            vertex,
            id: format!("pushing {digest}"),
            current: sent,
            total: Some(total),
            started: *started,
            completed: done.then_some(now),
            timestamp: now,
        }));
    }))
}
