//! A step's output: echoed as it arrives (with the step's label at each line start) and its
//! last lines kept for the error message of a failing step.
//!
//! Both in time and memory this is linear in the output and bounded whatever its shape: a
//! chunk is scanned once, echoed without waiting for a line end, and a kept line is capped, so
//! 200 MB without a newline (or a progress bar redrawn with `\r`) costs what copying it costs.

use std::collections::VecDeque;
use std::io::Write;

/// How many output lines a failed step shows.
pub(crate) const TAIL_LINES: usize = 20;

/// The longest line kept for an error message; longer ones keep their start and say so.
const MAX_KEPT_LINE: usize = 4096;

/// Streams a step's output with its label and keeps the last lines for error messages.
pub(crate) struct Tail {
    label: String,
    /// Print output as it comes (else only keep the last lines).
    echo: bool,
    /// Whether the next echoed byte starts a line (and so gets the label).
    at_line_start: bool,
    /// The current line, at most [`MAX_KEPT_LINE`] bytes of it.
    partial: Vec<u8>,
    /// The current line was longer than what `partial` keeps.
    cut: bool,
    lines: VecDeque<String>,
}

impl Tail {
    /// A tail for the step labelled `label`, printing to stderr when `echo` is set.
    pub(crate) fn new(label: &str, echo: bool) -> Tail {
        Tail {
            label: label.to_string(),
            echo,
            at_line_start: true,
            partial: Vec::new(),
            cut: false,
            lines: VecDeque::new(),
        }
    }

    /// Takes the next chunk of output.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.echo {
            self.echo_chunk(chunk);
        }
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            self.keep(&rest[..pos]);
            self.end_line();
            rest = &rest[pos + 1..];
        }
        self.keep(rest);
    }

    /// Ends the output: a last line without a newline still counts.
    pub(crate) fn flush(&mut self) {
        if self.echo && !self.at_line_start {
            let _ = writeln!(std::io::stderr());
            self.at_line_start = true;
        }
        if !self.partial.is_empty() || self.cut {
            self.end_line();
        }
    }

    fn echo_chunk(&mut self, chunk: &[u8]) {
        let mut err = std::io::stderr().lock();
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.at_line_start {
                let _ = write!(err, "{} ", self.label);
                self.at_line_start = false;
            }
            match memchr::memchr(b'\n', rest) {
                Some(pos) => {
                    let _ = err.write_all(&rest[..=pos]);
                    self.at_line_start = true;
                    rest = &rest[pos + 1..];
                }
                None => {
                    let _ = err.write_all(rest);
                    rest = &[];
                }
            }
        }
    }

    /// Adds bytes of the current line; a `\r` starts it over, as a terminal shows it.
    fn keep(&mut self, mut bytes: &[u8]) {
        if let Some(pos) = memchr::memrchr(b'\r', bytes) {
            self.partial.clear();
            self.cut = false;
            bytes = &bytes[pos + 1..];
        }
        let room = MAX_KEPT_LINE.saturating_sub(self.partial.len());
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
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, indented, for an error message.
    pub(crate) fn render(&self) -> String {
        if self.lines.is_empty() {
            return "    (no output)".into();
        }
        self.lines
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::new("[t]", false);
        for i in 0..30 {
            t.feed(format!("line {i}\n").as_bytes());
        }
        t.feed(b"partial");
        t.flush();
        let r = t.render();
        assert!(r.starts_with("    line 11\n"));
        assert!(r.ends_with("    partial"));
        assert_eq!(r.lines().count(), TAIL_LINES);
    }

    #[test]
    fn a_huge_line_is_kept_bounded() {
        let mut t = Tail::new("[t]", false);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..100 {
            t.feed(&chunk);
        }
        assert!(t.partial.len() <= MAX_KEPT_LINE);
        t.feed(b"\nend\n");
        let r = t.render();
        assert!(r.contains("[line cut]"));
        assert!(r.ends_with("    end"));
        assert!(r.len() < 2 * MAX_KEPT_LINE);
    }

    #[test]
    fn carriage_returns_keep_the_last_redraw() {
        let mut t = Tail::new("[t]", false);
        t.feed(b"10%\r20%\r");
        t.feed(b"100%\ndone\n");
        assert_eq!(t.render(), "    100%\n    done");
    }

    #[test]
    fn lines_split_across_chunks_join() {
        let mut t = Tail::new("[t]", false);
        t.feed(b"hel");
        t.feed(b"lo\nwor");
        t.feed(b"ld");
        t.flush();
        assert_eq!(t.render(), "    hello\n    world");
    }
}
