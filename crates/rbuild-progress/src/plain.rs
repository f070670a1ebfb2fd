//! `--progress=plain`: BuildKit's line format. A vertex is introduced by `#N name`; its
//! output lines read `#N 0.532 text` (seconds since it started), byte progress
//! `#N id 1.20MB / 3.40MB 0.3s done`, and it ends with `#N DONE 1.2s`, `#N CACHED` or
//! `#N ERROR: why`. N counts vertices in the order they are first shown. When another
//! vertex's event comes while one is open, the open one is left with `#N ...` and the
//! other's header is printed again, so interleaved platforms stay attributable.

use crate::Renderer;
use crate::event::{Event, EventSink, Status, VertexId, Warning};
use crate::summary::{PlatformTally, Tally};
use crate::time::{bytes, since};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Prints events in BuildKit's plain format to a writer (stderr in the CLI).
pub struct Plain<W: Write + Send> {
    state: Mutex<State<W>>,
}

struct Vtx {
    name: String,
    number: Option<u32>,
    started: Option<SystemTime>,
    complete: bool,
}

struct State<W: Write> {
    out: BufWriter<W>,
    vertices: HashMap<VertexId, Vtx>,
    next: u32,
    /// The vertex whose header was printed last and which is not complete.
    current: Option<VertexId>,
    /// The current vertex's last output line has no newline yet.
    mid_line: bool,
    printed_any: bool,
    tally: Tally,
    /// When each status was last printed: (bytes, time).
    last_status: HashMap<(VertexId, String), (u64, SystemTime)>,
    began: SystemTime,
}

impl<W: Write + Send> Plain<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Plain<W> {
        Plain {
            state: Mutex::new(State {
                out: BufWriter::with_capacity(64 * 1024, out),
                vertices: HashMap::new(),
                next: 1,
                current: None,
                mid_line: false,
                printed_any: false,
                tally: Tally::default(),
                last_status: HashMap::new(),
                began: SystemTime::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<W>> {
        // A panic while printing leaves nothing inconsistent worth refusing output for.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<W: Write + Send> EventSink for Plain<W> {
    fn event(&self, event: &Event<'_>) {
        let mut s = self.lock();
        s.tally.record(event);
        // Write errors (a closed stderr) leave nothing to report them on.
        let _ = s.handle(event);
        let _ = s.out.flush();
    }
}

impl<W: Write + Send> Renderer for Plain<W> {
    fn finish(&self, _success: bool) {
        let mut s = self.lock();
        let _ = s.summary();
        let _ = s.out.flush();
    }
}

impl<W: Write> State<W> {
    fn handle(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        match *event {
            Event::Vertex(v) => {
                self.vertices.entry(v.id).or_insert_with(|| Vtx {
                    name: v.name.clone(),
                    number: None,
                    started: None,
                    complete: false,
                });
            }
            Event::Started { vertex, at } => {
                if let Some(v) = self.vertices.get_mut(&vertex) {
                    v.started = Some(at);
                }
                self.switch_to(vertex)?;
            }
            Event::Output {
                vertex, data, at, ..
            } => self.output(vertex, data, at)?,
            Event::Cached { vertex, .. } => self.complete(vertex, |_, n| format!("#{n} CACHED"))?,
            Event::Done { vertex, at } => self.complete(vertex, |v, n| {
                let took = v.started.map(|s| since(s, at)).unwrap_or_default();
                format!("#{n} DONE {:.1}s", took.as_secs_f64())
            })?,
            Event::Error {
                vertex, message, ..
            } => self.complete(vertex, |_, n| format!("#{n} ERROR: {message}"))?,
            Event::Warning(w) => self.warning(w)?,
            Event::Progress(st) => self.status(st)?,
        }
        Ok(())
    }

    /// Makes `id` the vertex being printed: leaves the open one and prints the header.
    fn switch_to(&mut self, id: VertexId) -> std::io::Result<Option<u32>> {
        if self.current == Some(id) {
            return Ok(self.vertices.get(&id).and_then(|v| v.number));
        }
        self.leave_current()?;
        let next = self.next;
        let Some(v) = self.vertices.get_mut(&id) else {
            return Ok(None);
        };
        let n = *v.number.get_or_insert(next);
        if n == next {
            self.next += 1;
        }
        if self.printed_any {
            writeln!(self.out)?;
        }
        self.printed_any = true;
        writeln!(self.out, "#{n} {}", v.name)?;
        if !v.complete {
            self.current = Some(id);
        }
        Ok(Some(n))
    }

    fn leave_current(&mut self) -> std::io::Result<()> {
        self.end_line()?;
        if let Some(old) = self.current.take()
            && let Some(n) = self.vertices.get(&old).and_then(|v| v.number)
        {
            writeln!(self.out, "#{n} ...")?;
        }
        Ok(())
    }

    fn end_line(&mut self) -> std::io::Result<()> {
        if self.mid_line {
            writeln!(self.out)?;
            self.mid_line = false;
        }
        Ok(())
    }

    /// Output as it comes, each line prefixed with the vertex number and its time.
    fn output(&mut self, id: VertexId, data: &[u8], at: SystemTime) -> std::io::Result<()> {
        let Some(n) = self.switch_to(id)? else {
            return Ok(());
        };
        let secs = self
            .vertices
            .get(&id)
            .and_then(|v| v.started)
            .map(|s| since(s, at).as_secs_f64())
            .unwrap_or(0.0);
        let mut rest = data;
        while !rest.is_empty() {
            if !self.mid_line {
                write_stamp(&mut self.out, n, secs)?;
                self.mid_line = true;
            }
            match memchr::memchr(b'\n', rest) {
                Some(pos) => {
                    self.out.write_all(&rest[..=pos])?;
                    self.mid_line = false;
                    rest = &rest[pos + 1..];
                }
                None => {
                    self.out.write_all(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    fn complete(
        &mut self,
        id: VertexId,
        line: impl FnOnce(&Vtx, u32) -> String,
    ) -> std::io::Result<()> {
        let Some(n) = self.switch_to(id)? else {
            return Ok(());
        };
        self.end_line()?;
        if let Some(v) = self.vertices.get_mut(&id) {
            v.complete = true;
            writeln!(self.out, "{}", line(v, n))?;
        }
        self.current = None;
        Ok(())
    }

    /// Byte progress, printed when it completes or moved by 5% or 5 s since last shown.
    fn status(&mut self, st: &Status) -> std::io::Result<()> {
        let key = (st.vertex, st.id.clone());
        if st.completed.is_none()
            && let Some(&(last_bytes, last_at)) = self.last_status.get(&key)
        {
            let moved = st
                .total
                .filter(|t| *t > 0)
                .map(|t| (st.current - last_bytes.min(st.current)) as f64 / t as f64)
                .unwrap_or(0.0);
            if moved < 0.05 && since(last_at, st.timestamp) < Duration::from_secs(5) {
                return Ok(());
            }
        }
        self.last_status.insert(key, (st.current, st.timestamp));
        let Some(n) = self.switch_to(st.vertex)? else {
            return Ok(());
        };
        self.end_line()?;
        writeln!(self.out, "#{n} {}", status_text(st))
    }

    fn warning(&mut self, w: &Warning) -> std::io::Result<()> {
        self.leave_current()?;
        if self.printed_any {
            writeln!(self.out)?;
        }
        self.printed_any = true;
        writeln!(self.out, "WARNING: {}", w.short)?;
        for d in &w.detail {
            writeln!(self.out, "{d}")?;
        }
        if let Some(url) = &w.url {
            writeln!(self.out, "  see {url}")?;
        }
        Ok(())
    }

    fn summary(&mut self) -> std::io::Result<()> {
        self.leave_current()?;
        if self.printed_any {
            writeln!(self.out)?;
        }
        let took = since(self.began, SystemTime::now());
        writeln!(self.out, "Summary ({:.1}s):", took.as_secs_f64())?;
        for p in &self.tally.platforms() {
            writeln!(self.out, "  {}", PlatformTally::line(p))?;
        }
        Ok(())
    }
}

/// `#N 0.532 ` with BuildKit's precision: 3 decimals below 10 s, 2 below 100 s, else 1.
fn write_stamp(out: &mut impl Write, n: u32, secs: f64) -> std::io::Result<()> {
    let prec = if secs < 10.0 {
        3
    } else if secs < 100.0 {
        2
    } else {
        1
    };
    write!(out, "#{n} {secs:.prec$} ")
}

/// `id 1.20MB / 3.40MB 0.3s done`.
pub(crate) fn status_text(st: &Status) -> String {
    let mut s = st.id.clone();
    match st.total {
        Some(t) if t > 0 => s.push_str(&format!(" {} / {}", bytes(st.current), bytes(t))),
        _ if st.current > 0 => s.push_str(&format!(" {}", bytes(st.current))),
        _ => {}
    }
    let end = st.completed.unwrap_or(st.timestamp);
    let took = since(st.started, end).as_secs_f64();
    if took > 0.01 {
        s.push_str(&format!(" {took:.1}s"));
    }
    if st.completed.is_some() {
        s.push_str(" done");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Stream, Vertex};

    use crate::testbuf::Buf;

    fn vertex(name: &str) -> Vertex {
        Vertex {
            id: VertexId::of(&[name.as_bytes()]),
            name: name.into(),
            stage: None,
            platform: Some("linux/amd64".into()),
            emulated: false,
        }
    }

    #[test]
    fn interleaved_vertices_stay_attributable() {
        let buf = Buf::default();
        let p = Plain::new(buf.clone());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let (a, b) = (vertex("[a 1/2] RUN x"), vertex("[b 1/2] RUN y"));
        for v in [&a, &b] {
            p.event(&Event::Vertex(v));
        }
        let out = |v: &Vertex, data: &'static [u8], ms| Event::Output {
            vertex: v.id,
            stream: Stream::Stdout,
            data,
            at: t0 + Duration::from_millis(ms),
        };
        p.event(&Event::Started {
            vertex: a.id,
            at: t0,
        });
        p.event(&out(&a, b"one\ntw", 532));
        p.event(&Event::Started {
            vertex: b.id,
            at: t0,
        });
        p.event(&out(&b, b"hi\n", 10));
        p.event(&out(&a, b"o\n", 1200));
        p.event(&Event::Done {
            vertex: a.id,
            at: t0 + Duration::from_millis(1250),
        });
        p.event(&Event::Cached {
            vertex: b.id,
            at: t0,
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "#1 [a 1/2] RUN x\n#1 0.532 one\n#1 0.532 tw\n#1 ...\n\n\
             #2 [b 1/2] RUN y\n#2 0.010 hi\n#2 ...\n\n\
             #1 [a 1/2] RUN x\n#1 1.200 o\n#1 DONE 1.2s\n\n\
             #2 [b 1/2] RUN y\n#2 CACHED\n"
        );
    }

    #[test]
    fn statuses_show_bytes_and_completion() {
        let t0 = SystemTime::UNIX_EPOCH;
        let st = Status {
            vertex: VertexId::of(&[]),
            id: "extracting sha256:ab".into(),
            current: 1_200_000,
            total: Some(3_400_000),
            started: t0,
            completed: Some(t0 + Duration::from_millis(300)),
            timestamp: t0,
        };
        assert_eq!(
            status_text(&st),
            "extracting sha256:ab 1.20MB / 3.40MB 0.3s done"
        );
    }
}
