//! The build's event stream: what the solver reports (steps defined, started, their
//! output, cached, done, failed, warnings, byte progress) as typed events to an
//! [`EventSink`], and the renderers the CLI shows them with: [`Plain`] (BuildKit's line
//! format), [`Tty`] (a live view), [`RawJson`] (BuildKit's `SolveStatus` JSON lines) and
//! [`Quiet`].
//!
//! Events borrow their payload (an output chunk is a `&[u8]` of what the step wrote), so
//! emitting one costs a clock read and a virtual call; renderers keep bounded state.

mod event;
mod linetail;
mod meter;
mod plain;
mod rawjson;
mod summary;
#[cfg(test)]
mod testbuf;
mod time;
mod tty;

pub use event::{Event, EventSink, NoEvents, Status, Stream, Vertex, VertexId, Warning};
pub use linetail::LineTail;
pub use meter::{Meter, MeteredRead};
pub use plain::Plain;
pub use rawjson::RawJson;
pub use rbuild_core::rfc3339_nanos;
pub use summary::{PlatformTally, Tally};
pub use tty::Tty;

/// A sink the CLI owns: it takes events and, at the end, closes the display.
pub trait Renderer: EventSink {
    /// Ends the display: a summary on success, the failing steps' output on failure.
    fn finish(&self, success: bool);
}

/// Shows nothing (`--progress=quiet`, `-q`): errors are printed by the caller.
#[derive(Debug, Default)]
pub struct Quiet;

impl EventSink for Quiet {
    fn event(&self, _event: &Event<'_>) {}
}

impl Renderer for Quiet {
    fn finish(&self, _success: bool) {}
}
