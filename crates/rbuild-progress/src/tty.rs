//! `--progress=tty`: a live view on a terminal. A header line counts the steps done; below
//! it every running step of every platform has a line with its name (emulated steps
//! marked), its elapsed time and its last output lines. A finished step leaves the view.
//! At the end the view collapses to a summary; on failure the failing steps' last output
//! lines are printed before it.

use crate::Renderer;
use crate::event::{Event, EventSink, Status, VertexId, Warning};
use crate::linetail::LineTail;
use crate::plain::status_text;
use crate::summary::{PlatformTally, Tally};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How many output lines a running step shows.
const SHOWN_LINES: usize = 3;
/// How many a failed step keeps for the closing report.
const KEPT_LINES: usize = 20;
/// How often a step's shown lines are redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

/// The live terminal view.
pub struct Tty {
    inner: Arc<Inner>,
}

struct Inner {
    multi: MultiProgress,
    header: ProgressBar,
    state: Mutex<State>,
    began: Instant,
    finished: AtomicBool,
}

struct Running {
    bar: ProgressBar,
    tail: LineTail,
    status: Option<String>,
    redrawn: Instant,
    /// Output came since the last redraw.
    dirty: bool,
}

struct Vtx {
    name: String,
    emulated: bool,
    running: Option<Running>,
    failed: Option<(String, LineTail)>,
}

#[derive(Default)]
struct State {
    vertices: HashMap<VertexId, Vtx>,
    order: Vec<VertexId>,
    complete: usize,
    tally: Tally,
}

fn seconds_key(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key("secs", seconds_key)
}

fn width() -> usize {
    let (_, cols) = console::Term::stderr().size();
    usize::from(cols).max(40)
}

/// `s` cut to `max` characters.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Tty {
    /// A view drawn on stderr (nothing is drawn when stderr is not a terminal; the closing
    /// summary is printed either way).
    pub fn new() -> Tty {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(style("[+] Building {secs} ({msg})"));
        header.set_message("0/0");
        header.enable_steady_tick(REDRAW);
        let inner = Arc::new(Inner {
            multi,
            header,
            state: Mutex::new(State::default()),
            began: Instant::now(),
            finished: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::spawn(move || redraw_dirty_until_finished(weak));
        Tty { inner }
    }
}

/// Redraws steps whose output came too soon after their last redraw to be shown then.
fn redraw_dirty_until_finished(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(REDRAW);
        let Some(inner) = inner.upgrade() else { return };
        if inner.finished.load(Ordering::SeqCst) {
            return;
        }
        let mut s = inner.lock();
        for r in s.vertices.values_mut().filter_map(|v| v.running.as_mut()) {
            if r.dirty {
                redraw(r);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, s: &mut State, id: VertexId) {
        let Some(v) = s.vertices.get_mut(&id) else {
            return;
        };
        if v.running.is_some() {
            return;
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(style(" {spinner} {prefix} {secs}{msg}"));
        let mark = if v.emulated { " (emulated)" } else { "" };
        bar.set_prefix(format!(
            "{}{mark}",
            clip(&v.name, width().saturating_sub(20))
        ));
        bar.enable_steady_tick(REDRAW);
        v.running = Some(Running {
            bar,
            tail: LineTail::new(KEPT_LINES),
            status: None,
            redrawn: Instant::now(),
            dirty: false,
        });
    }

    fn complete(&self, s: &mut State, id: VertexId, error: Option<&str>) {
        let Some(v) = s.vertices.get_mut(&id) else {
            return;
        };
        let running = v.running.take();
        if let Some(r) = &running {
            r.bar.finish_and_clear();
            self.multi.remove(&r.bar);
        }
        if let Some(message) = error {
            let mut tail = running.map(|r| r.tail).unwrap_or_else(|| LineTail::new(1));
            tail.flush();
            v.failed = Some((message.to_string(), tail));
        }
        s.complete += 1;
        self.header
            .set_message(format!("{}/{}", s.complete, s.order.len()));
    }

    fn output(s: &mut State, id: VertexId, data: &[u8]) {
        let Some(r) = s.vertices.get_mut(&id).and_then(|v| v.running.as_mut()) else {
            return;
        };
        r.tail.feed(data);
        r.dirty = true;
        if r.redrawn.elapsed() >= REDRAW {
            redraw(r);
        }
    }

    fn status(s: &mut State, st: &Status) {
        let Some(r) = s
            .vertices
            .get_mut(&st.vertex)
            .and_then(|v| v.running.as_mut())
        else {
            return;
        };
        r.status = Some(status_text(st));
        redraw(r);
    }

    fn warning(&self, w: &Warning) {
        let mut text = format!("WARNING: {}", w.short);
        for d in &w.detail {
            let _ = write!(text, "\n{d}");
        }
        if let Some(url) = &w.url {
            let _ = write!(text, "\n  see {url}");
        }
        if self.multi.println(&text).is_err() || self.header.is_hidden() {
            eprintln!("{text}");
        }
    }
}

impl Default for Tty {
    fn default() -> Self {
        Tty::new()
    }
}

/// Sets a running step's shown lines: its byte progress and last output lines.
fn redraw(r: &mut Running) {
    r.redrawn = Instant::now();
    r.dirty = false;
    let max = width().saturating_sub(6);
    let mut msg = String::new();
    if let Some(st) = &r.status {
        let _ = write!(msg, "\n    {}", clip(st, max));
    }
    let partial = r.tail.partial();
    let mut lines: Vec<&str> = r.tail.lines().collect();
    if !partial.is_empty() {
        lines.push(&partial);
    }
    for l in &lines[lines.len().saturating_sub(SHOWN_LINES)..] {
        let _ = write!(msg, "\n    {}", clip(l, max));
    }
    r.bar.set_message(msg);
}

impl EventSink for Tty {
    fn event(&self, event: &Event<'_>) {
        self.inner.event(event);
    }
}

impl Renderer for Tty {
    fn finish(&self, success: bool) {
        self.inner.finished.store(true, Ordering::SeqCst);
        self.inner.finish(success);
    }
}

impl Inner {
    fn event(&self, event: &Event<'_>) {
        let mut s = self.lock();
        s.tally.record(event);
        match *event {
            Event::Vertex(v) => {
                if !s.vertices.contains_key(&v.id) {
                    s.order.push(v.id);
                    let vtx = Vtx {
                        name: v.name.clone(),
                        emulated: v.emulated,
                        running: None,
                        failed: None,
                    };
                    s.vertices.insert(v.id, vtx);
                    self.header
                        .set_message(format!("{}/{}", s.complete, s.order.len()));
                }
            }
            Event::Started { vertex, .. } => self.start(&mut s, vertex),
            Event::Output { vertex, data, .. } => Inner::output(&mut s, vertex, data),
            Event::Cached { vertex, .. } | Event::Done { vertex, .. } => {
                self.complete(&mut s, vertex, None)
            }
            Event::Error {
                vertex, message, ..
            } => self.complete(&mut s, vertex, Some(message)),
            Event::Warning(w) => self.warning(w),
            Event::Progress(st) => Inner::status(&mut s, st),
        }
    }
}

impl Inner {
    fn finish(&self, success: bool) {
        let s = self.lock();
        for v in s.vertices.values() {
            if let Some(r) = &v.running {
                r.bar.finish_and_clear();
            }
        }
        self.header.finish_and_clear();
        let _ = self.multi.clear();
        let mut out = String::new();
        if !success {
            for v in s.order.iter().filter_map(|id| s.vertices.get(id)) {
                let Some((message, tail)) = &v.failed else {
                    continue;
                };
                let _ = writeln!(out, "------\n > {}:", v.name);
                for l in tail.lines() {
                    let _ = writeln!(out, "   {l}");
                }
                let _ = writeln!(out, "------\n ERROR: {message}");
            }
        }
        let _ = writeln!(
            out,
            "[+] Building {:.1}s ({}/{}) {}",
            self.began.elapsed().as_secs_f64(),
            s.complete,
            s.order.len(),
            if success { "FINISHED" } else { "FAILED" }
        );
        for p in &s.tally.platforms() {
            let _ = writeln!(out, " => {}", PlatformTally::line(p));
        }
        eprint!("{out}");
    }
}
