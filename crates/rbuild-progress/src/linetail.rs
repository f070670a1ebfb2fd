//! The last lines of a stream of output, bounded whatever its shape.
//!
//! Linear in the output: a chunk is scanned once, a kept line is capped at
//! [`LineTail::MAX_LINE`] bytes and only the last `capacity` lines are kept, so 200 MB
//! without a newline (or a progress bar redrawn with `\r`) costs what scanning it costs.

use std::collections::VecDeque;

/// The last complete lines of some output, plus the line being written.
#[derive(Debug, Clone)]
pub struct LineTail {
    capacity: usize,
    /// The current line, at most [`LineTail::MAX_LINE`] bytes of it.
    partial: Vec<u8>,
    /// The current line was longer than what `partial` keeps.
    cut: bool,
    lines: VecDeque<String>,
}

impl LineTail {
    /// The longest line kept; longer ones keep their start and say so.
    pub const MAX_LINE: usize = 4096;

    /// Keeps the last `capacity` lines.
    pub fn new(capacity: usize) -> LineTail {
        LineTail {
            capacity: capacity.max(1),
            partial: Vec::new(),
            cut: false,
            lines: VecDeque::new(),
        }
    }

    /// Takes the next chunk of output.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            self.keep(&rest[..pos]);
            self.end_line();
            rest = &rest[pos + 1..];
        }
        self.keep(rest);
    }

    /// Ends the output: a last line without a newline still counts.
    pub fn flush(&mut self) {
        if !self.partial.is_empty() || self.cut {
            self.end_line();
        }
    }

    /// The kept complete lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// The line being written, lossily decoded (empty when the last line ended).
    pub fn partial(&self) -> String {
        String::from_utf8_lossy(&self.partial).into_owned()
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.partial.is_empty() && !self.cut
    }

    /// Adds bytes of the current line; a `\r` starts it over, as a terminal shows it.
    fn keep(&mut self, mut bytes: &[u8]) {
        if let Some(pos) = memchr::memrchr(b'\r', bytes) {
            self.partial.clear();
            self.cut = false;
            bytes = &bytes[pos + 1..];
        }
        let room = Self::MAX_LINE.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.cut = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if self.cut {
            line.push_str(" [line cut]");
        }
        self.partial.clear();
        self.cut = false;
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(t: &LineTail) -> Vec<&str> {
        t.lines().collect()
    }

    #[test]
    fn keeps_the_last_lines() {
        let mut t = LineTail::new(20);
        for i in 0..30 {
            t.feed(format!("line {i}\n").as_bytes());
        }
        t.feed(b"partial");
        t.flush();
        let l = all(&t);
        assert_eq!(l.len(), 20);
        assert_eq!(l[0], "line 11");
        assert_eq!(l[19], "partial");
    }

    #[test]
    fn a_huge_line_is_kept_bounded() {
        let mut t = LineTail::new(20);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..100 {
            t.feed(&chunk);
        }
        assert!(t.partial.len() <= LineTail::MAX_LINE);
        t.feed(b"\nend\n");
        let l = all(&t);
        assert!(l[0].ends_with("[line cut]"));
        assert_eq!(l[1], "end");
    }

    #[test]
    fn carriage_returns_keep_the_last_redraw() {
        let mut t = LineTail::new(20);
        t.feed(b"10%\r20%\r");
        t.feed(b"100%\ndone\n");
        assert_eq!(all(&t), ["100%", "done"]);
    }

    #[test]
    fn lines_split_across_chunks_join() {
        let mut t = LineTail::new(20);
        t.feed(b"hel");
        t.feed(b"lo\nwor");
        t.feed(b"ld");
        assert_eq!(t.partial(), "world");
        t.flush();
        assert_eq!(all(&t), ["hello", "world"]);
    }
}
