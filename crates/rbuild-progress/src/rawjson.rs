//! `--progress=rawjson`: one JSON object per line in the shape of BuildKit's
//! `client.SolveStatus` (`vertexes`, `statuses`, `logs`, `warnings`), as
//! `docker buildx build --progress=rawjson` writes it. Byte strings (`data`, `short`,
//! `detail`) are base64, timestamps RFC 3339 with nanoseconds, digests `sha256:…`.
//! Every line about a vertex repeats its whole state, as BuildKit's stream does.

use crate::Renderer;
use crate::event::{Event, EventSink, Status, VertexId, Warning};
use base64::Engine as _;
use rbuild_core::rfc3339_nanos;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::SystemTime;

/// Writes events as BuildKit `SolveStatus` JSON lines.
pub struct RawJson<W: Write + Send> {
    state: Mutex<State<W>>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct JsonVertex {
    digest: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cached: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

#[derive(Serialize)]
struct JsonStatus<'a> {
    id: &'a str,
    vertex: &'a str,
    name: &'a str,
    current: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    timestamp: String,
    started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
}

#[derive(Serialize)]
struct JsonLog<'a> {
    vertex: &'a str,
    stream: u8,
    data: &'a str,
    timestamp: String,
}

#[derive(Serialize)]
struct JsonWarning {
    #[serde(skip_serializing_if = "Option::is_none")]
    vertex: Option<String>,
    level: u8,
    short: String,
    detail: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// One output line; only the non-empty lists are written.
#[derive(Serialize, Default)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vertexes: Vec<&'a JsonVertex>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    statuses: Vec<JsonStatus<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logs: Vec<JsonLog<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<JsonWarning>,
}

struct State<W: Write> {
    out: BufWriter<W>,
    vertices: HashMap<VertexId, JsonVertex>,
    /// Reused for the base64 form of output chunks.
    encoded: String,
}

impl<W: Write + Send> RawJson<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> RawJson<W> {
        RawJson {
            state: Mutex::new(State {
                out: BufWriter::with_capacity(64 * 1024, out),
                vertices: HashMap::new(),
                encoded: String::new(),
            }),
        }
    }
}

impl<W: Write + Send> EventSink for RawJson<W> {
    fn event(&self, event: &Event<'_>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Write errors (a closed stderr) leave nothing to report them on.
        let _ = s.handle(event);
        let _ = s.out.flush();
    }
}

impl<W: Write + Send> Renderer for RawJson<W> {
    fn finish(&self, _success: bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s.out.flush();
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl<W: Write> State<W> {
    fn handle(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        match *event {
            Event::Vertex(v) => {
                let jv = self.vertices.entry(v.id).or_insert_with(|| JsonVertex {
                    digest: v.id.digest(),
                    name: v.name.clone(),
                    ..Default::default()
                });
                let jv = jv.clone();
                self.write_vertex(&jv)
            }
            Event::Started { vertex, at } => self.update(vertex, |v| {
                v.started = Some(rfc3339_nanos(at));
            }),
            Event::Cached { vertex, at } => self.update(vertex, |v| {
                let t = rfc3339_nanos(at);
                v.started.get_or_insert_with(|| t.clone());
                v.completed = Some(t);
                v.cached = true;
            }),
            Event::Done { vertex, at } => self.update(vertex, |v| {
                v.completed = Some(rfc3339_nanos(at));
            }),
            Event::Error {
                vertex,
                message,
                at,
            } => self.update(vertex, |v| {
                v.completed = Some(rfc3339_nanos(at));
                v.error = message.to_string();
            }),
            Event::Output {
                vertex,
                stream,
                data,
                at,
            } => self.log(vertex, stream as u8, data, at),
            Event::Warning(w) => self.warning(w),
            Event::Progress(st) => self.status(st),
        }
    }

    fn update(&mut self, id: VertexId, f: impl FnOnce(&mut JsonVertex)) -> std::io::Result<()> {
        let Some(v) = self.vertices.get_mut(&id) else {
            return Ok(());
        };
        f(v);
        let v = v.clone();
        self.write_vertex(&v)
    }

    fn write_vertex(&mut self, v: &JsonVertex) -> std::io::Result<()> {
        self.write(&Line {
            vertexes: vec![v],
            ..Default::default()
        })
    }

    fn log(
        &mut self,
        id: VertexId,
        stream: u8,
        data: &[u8],
        at: SystemTime,
    ) -> std::io::Result<()> {
        let digest = id.digest();
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut encoded);
        let r = self.write(&Line {
            logs: vec![JsonLog {
                vertex: &digest,
                stream,
                data: &encoded,
                timestamp: rfc3339_nanos(at),
            }],
            ..Default::default()
        });
        // Keep the buffer for the next chunk, unless one huge chunk grew it.
        if encoded.capacity() <= 1 << 20 {
            self.encoded = encoded;
        }
        r
    }

    fn status(&mut self, st: &Status) -> std::io::Result<()> {
        let digest = st.vertex.digest();
        self.write(&Line {
            statuses: vec![JsonStatus {
                id: &st.id,
                vertex: &digest,
                name: &st.id,
                current: st.current,
                total: st.total,
                timestamp: rfc3339_nanos(st.timestamp),
                started: rfc3339_nanos(st.started),
                completed: st.completed.map(rfc3339_nanos),
            }],
            ..Default::default()
        })
    }

    fn warning(&mut self, w: &Warning) -> std::io::Result<()> {
        self.write(&Line {
            warnings: vec![JsonWarning {
                vertex: w.vertex.map(|v| v.digest()),
                level: 1,
                short: b64(w.short.as_bytes()),
                detail: w.detail.iter().map(|d| b64(d.as_bytes())).collect(),
                url: w.url.clone(),
            }],
            ..Default::default()
        })
    }

    fn write(&mut self, line: &Line<'_>) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Stream, Vertex};

    use crate::testbuf::Buf;

    #[test]
    fn lines_have_buildkit_field_names() {
        let buf = Buf::default();
        let r = RawJson::new(buf.clone());
        let v = Vertex {
            id: VertexId::of(&[b"x"]),
            name: "[linux/amd64 2/2] RUN x".into(),
            stage: None,
            platform: Some("linux/amd64".into()),
            emulated: false,
        };
        let at = SystemTime::UNIX_EPOCH;
        r.event(&Event::Vertex(&v));
        r.event(&Event::Started { vertex: v.id, at });
        r.event(&Event::Output {
            vertex: v.id,
            stream: Stream::Stdout,
            data: b"hi\n",
            at,
        });
        r.event(&Event::Done { vertex: v.id, at });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["vertexes"][0]["name"], v.name.as_str());
        assert_eq!(lines[0]["vertexes"][0]["digest"], v.id.digest().as_str());
        assert_eq!(lines[2]["logs"][0]["data"], "aGkK");
        assert_eq!(lines[2]["logs"][0]["stream"], 1);
        assert!(lines[3]["vertexes"][0]["completed"].is_string());
    }
}
