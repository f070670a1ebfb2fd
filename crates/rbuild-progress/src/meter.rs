//! Byte progress for long work: a [`Meter`] sends [`Status`] events at most every
//! 100 ms, and [`MeteredRead`] counts what passes through a reader.

use crate::event::{Event, EventSink, Status, VertexId};
use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

const EVERY: Duration = Duration::from_millis(100);

/// Reports the progress of one piece of work inside a vertex.
pub struct Meter<'a> {
    sink: &'a dyn EventSink,
    status: Status,
    last: Instant,
}

impl<'a> Meter<'a> {
    /// Starts reporting work `id` of `vertex`, `total` bytes when known.
    pub fn start(
        sink: &'a dyn EventSink,
        vertex: VertexId,
        id: String,
        total: Option<u64>,
    ) -> Meter<'a> {
        let now = SystemTime::now();
        let meter = Meter {
            sink,
            status: Status {
                vertex,
                id,
                current: 0,
                total,
                started: now,
                completed: None,
                timestamp: now,
            },
            last: Instant::now(),
        };
        meter.sink.event(&Event::Progress(&meter.status));
        meter
    }

    /// Counts `n` more bytes done; reports when the last report is old enough.
    pub fn add(&mut self, n: u64) {
        self.status.current += n;
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            self.status.timestamp = SystemTime::now();
            self.sink.event(&Event::Progress(&self.status));
        }
    }

    /// Sets the bytes done and in all; reports when the last report is old enough.
    pub fn set(&mut self, current: u64, total: Option<u64>) {
        self.status.total = total;
        self.add(current.saturating_sub(self.status.current));
    }

    /// Reports the work complete.
    pub fn finish(mut self) {
        let now = SystemTime::now();
        self.status.timestamp = now;
        self.status.completed = Some(now);
        if self.status.total.is_none() {
            self.status.total = Some(self.status.current);
        }
        self.sink.event(&Event::Progress(&self.status));
    }
}

/// A reader that counts the bytes read through it on a [`Meter`], and reports the work
/// complete when it reaches the end.
pub struct MeteredRead<'a, R> {
    inner: R,
    meter: Option<Meter<'a>>,
}

impl<'a, R: Read> MeteredRead<'a, R> {
    /// Counts what is read from `inner` on `meter` (nothing when `None`).
    pub fn new(inner: R, meter: Option<Meter<'a>>) -> Self {
        MeteredRead { inner, meter }
    }

    /// Reports the work complete.
    pub fn finish(self) {
        if let Some(m) = self.meter {
            m.finish();
        }
    }
}

impl<R: Read> Read for MeteredRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(m) = self.meter.take() {
                m.finish();
            }
        } else if let Some(m) = &mut self.meter {
            m.add(n as u64);
        }
        Ok(n)
    }
}
