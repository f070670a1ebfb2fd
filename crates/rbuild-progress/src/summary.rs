//! Per-platform counts for the closing summary: steps run, cached, failed, and the time
//! emulated steps took.

use crate::event::{Event, VertexId};
use crate::time::since;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// What one platform's build did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformTally {
    /// The platform.
    pub platform: String,
    /// Steps defined.
    pub steps: usize,
    /// Steps that ran.
    pub ran: usize,
    /// Steps whose result came from the cache.
    pub cached: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Emulated steps that ran.
    pub emulated_steps: usize,
    /// How long the emulated steps that ran took, together.
    pub emulated: Duration,
}

impl PlatformTally {
    /// One line: `linux/arm64: 4 steps, 3 ran, 1 cached, 2 emulated took 4.2s`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{}: {} steps, {} ran, {} cached",
            self.platform, self.steps, self.ran, self.cached
        );
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
        }
        if self.emulated_steps > 0 {
            s.push_str(&format!(
                ", {} emulated took {:.1}s",
                self.emulated_steps,
                self.emulated.as_secs_f64()
            ));
        }
        s
    }
}

#[derive(Debug)]
struct Entry {
    platform: usize,
    emulated: bool,
    started: Option<SystemTime>,
}

/// Collects [`PlatformTally`]s from events.
#[derive(Debug, Default)]
pub struct Tally {
    vertices: HashMap<VertexId, Entry>,
    platforms: Vec<PlatformTally>,
}

impl Tally {
    /// Takes an event into account.
    pub fn record(&mut self, event: &Event<'_>) {
        match *event {
            Event::Vertex(v) => {
                let Some(p) = &v.platform else { return };
                if self.vertices.contains_key(&v.id) {
                    return;
                }
                let platform = self.platform_index(p);
                self.platforms[platform].steps += 1;
                let entry = Entry {
                    platform,
                    emulated: v.emulated,
                    started: None,
                };
                self.vertices.insert(v.id, entry);
            }
            Event::Started { vertex, at } => {
                if let Some(e) = self.vertices.get_mut(&vertex) {
                    e.started = Some(at);
                }
            }
            Event::Cached { vertex, .. } => self.count(vertex, |t, _| t.cached += 1),
            Event::Error { vertex, .. } => self.count(vertex, |t, _| t.failed += 1),
            Event::Done { vertex, at } => self.count(vertex, |t, e| {
                t.ran += 1;
                if e.emulated {
                    t.emulated_steps += 1;
                    t.emulated += e.started.map(|s| since(s, at)).unwrap_or_default();
                }
            }),
            _ => {}
        }
    }

    /// The platforms, sorted by name: the summary reads the same however the platforms'
    /// threads were scheduled.
    pub fn platforms(&self) -> Vec<PlatformTally> {
        let mut out = self.platforms.clone();
        out.sort_by(|a, b| a.platform.cmp(&b.platform));
        out
    }

    fn platform_index(&mut self, p: &str) -> usize {
        if let Some(i) = self.platforms.iter().position(|t| t.platform == p) {
            return i;
        }
        self.platforms.push(PlatformTally {
            platform: p.to_string(),
            ..Default::default()
        });
        self.platforms.len() - 1
    }

    fn count(&mut self, vertex: VertexId, f: impl FnOnce(&mut PlatformTally, &Entry)) {
        if let Some(e) = self.vertices.get(&vertex) {
            f(&mut self.platforms[e.platform], e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Vertex;

    #[test]
    fn counts_per_platform() {
        let mut t = Tally::default();
        let t0 = SystemTime::UNIX_EPOCH;
        let v = |n: &str, p: &str, emulated| Vertex {
            id: VertexId::of(&[n.as_bytes(), p.as_bytes()]),
            name: n.into(),
            stage: None,
            platform: Some(p.into()),
            emulated,
        };
        let (a, b, c) = (
            v("a", "linux/amd64", false),
            v("b", "linux/arm64", true),
            v("c", "linux/arm64", true),
        );
        for x in [&a, &b, &c] {
            t.record(&Event::Vertex(x));
            t.record(&Event::Started {
                vertex: x.id,
                at: t0,
            });
        }
        t.record(&Event::Cached {
            vertex: a.id,
            at: t0,
        });
        t.record(&Event::Done {
            vertex: b.id,
            at: t0 + Duration::from_millis(2500),
        });
        t.record(&Event::Error {
            vertex: c.id,
            message: "x",
            at: t0,
        });
        let lines: Vec<String> = t.platforms().iter().map(PlatformTally::line).collect();
        assert_eq!(
            lines,
            [
                "linux/amd64: 1 steps, 0 ran, 1 cached",
                "linux/arm64: 2 steps, 1 ran, 0 cached, 1 failed, 1 emulated took 2.5s"
            ]
        );
    }
}
