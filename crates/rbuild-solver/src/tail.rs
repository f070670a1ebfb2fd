//! A step's last output lines, kept for the error message of a failing step (the output
//! itself goes to the event stream as it comes). Bounded whatever the output's shape:
//! see [`rbuild_progress::LineTail`].

use rbuild_progress::LineTail;

/// How many output lines a failed step shows.
pub(crate) const TAIL_LINES: usize = 20;

/// Keeps the last lines of a step's output for error messages.
pub(crate) struct Tail {
    kept: LineTail,
}

impl Tail {
    /// An empty tail.
    pub(crate) fn new() -> Tail {
        Tail {
            kept: LineTail::new(TAIL_LINES),
        }
    }

    /// Takes the next chunk of output.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        self.kept.feed(chunk);
    }

    /// Ends the output: a last line without a newline still counts.
    pub(crate) fn flush(&mut self) {
        self.kept.flush();
    }

    /// The kept lines, indented, for an error message.
    pub(crate) fn render(&self) -> String {
        if self.kept.is_empty() {
            return "    (no output)".into();
        }
        self.kept
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_last_lines_indented() {
        let mut t = Tail::new();
        for i in 0..30 {
            t.feed(format!("line {i}\n").as_bytes());
        }
        t.feed(b"10%\r100%");
        t.flush();
        let r = t.render();
        assert!(r.starts_with("    line 11\n"), "{r}");
        assert!(r.ends_with("    100%"), "{r}");
        assert_eq!(r.lines().count(), TAIL_LINES);
    }

    #[test]
    fn no_output_says_so() {
        assert_eq!(Tail::new().render(), "    (no output)");
    }
}
