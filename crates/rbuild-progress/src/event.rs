//! The event types and the sink they go to.

use std::time::SystemTime;

/// A vertex's (step's) stable identity: a sha256 over what names it in the build, shown as
/// its `digest` in rawjson output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexId([u8; 32]);

impl VertexId {
    /// The id of the vertex named by `parts` (e.g. platform, stage index, step index).
    pub fn of(parts: &[&[u8]]) -> VertexId {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        VertexId(h.finalize().into())
    }

    /// `sha256:<hex>`, as BuildKit writes vertex digests.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for VertexId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VertexId({})", hex::encode(&self.0[..6]))
    }
}

/// A step of the build as the display names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertex {
    /// Its stable id.
    pub id: VertexId,
    /// The display name, e.g. `[linux/arm64 build 2/4] RUN make`.
    pub name: String,
    /// The stage it belongs to (its name, or its index when unnamed), if any.
    pub stage: Option<String>,
    /// The platform it builds for, if any (exporting has none).
    pub platform: Option<String>,
    /// Whether it runs under CPU emulation.
    pub emulated: bool,
}

/// Which output stream a chunk came from (BuildKit's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (1); also the combined output of a step.
    Stdout = 1,
    /// Standard error (2).
    Stderr = 2,
}

/// Byte progress of long work inside a vertex (a layer unpacked, an archive written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The vertex it belongs to.
    pub vertex: VertexId,
    /// What is being done, e.g. `extracting sha256:…` (unique within the vertex).
    pub id: String,
    /// Bytes done.
    pub current: u64,
    /// Bytes in all, when known.
    pub total: Option<u64>,
    /// When the work started.
    pub started: SystemTime,
    /// When it completed (the last status of the work).
    pub completed: Option<SystemTime>,
    /// When this status was taken.
    pub timestamp: SystemTime,
}

/// A warning: a lint finding, a base image of another platform, a missing output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The vertex it is about, if any.
    pub vertex: Option<VertexId>,
    /// The one-line message.
    pub short: String,
    /// Further lines (a source excerpt, an explanation).
    pub detail: Vec<String>,
    /// Where to read more.
    pub url: Option<String>,
}

/// One thing that happened in the build.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A vertex exists (sent before any other event about it).
    Vertex(&'a Vertex),
    /// A vertex started.
    Started {
        /// Which.
        vertex: VertexId,
        /// When.
        at: SystemTime,
    },
    /// A chunk of a vertex's output, as it came (not split into lines).
    Output {
        /// Whose.
        vertex: VertexId,
        /// Which stream.
        stream: Stream,
        /// The bytes.
        data: &'a [u8],
        /// When they arrived.
        at: SystemTime,
    },
    /// A vertex's result came from the cache; it is complete.
    Cached {
        /// Which.
        vertex: VertexId,
        /// When.
        at: SystemTime,
    },
    /// A vertex completed.
    Done {
        /// Which.
        vertex: VertexId,
        /// When.
        at: SystemTime,
    },
    /// A vertex failed; it is complete.
    Error {
        /// Which.
        vertex: VertexId,
        /// Why, in one line.
        message: &'a str,
        /// When.
        at: SystemTime,
    },
    /// A warning.
    Warning(&'a Warning),
    /// Byte progress of work inside a vertex.
    Progress(&'a Status),
}

/// Where events go. Shared by the threads that build platforms in parallel.
pub trait EventSink: Send + Sync {
    /// Takes one event; must not block for long.
    fn event(&self, event: &Event<'_>);
}

/// A sink that drops everything (library callers that show nothing).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: &Event<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_tell_parts_apart() {
        let a = VertexId::of(&[b"linux/amd64", b"1"]);
        assert_eq!(a, VertexId::of(&[b"linux/amd64", b"1"]));
        assert_ne!(a, VertexId::of(&[b"linux/amd641", b""]));
        assert!(a.digest().starts_with("sha256:"));
        assert_eq!(a.digest().len(), 7 + 64);
    }
}
