//! Diagnostics that point at the source: `file:line:col: message`, the line, a caret.

use std::fmt;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file works but something in it is suspicious or deprecated.
    Warning,
}

/// One finding about the source, carrying everything needed to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Display name of the file.
    pub file: String,
    /// Where the offending text starts.
    pub span: Span,
    /// What is wrong, lowercase, no final period.
    pub message: String,
    /// The source line `span.line` refers to, without its line ending.
    pub line_text: String,
    /// Error or warning.
    pub severity: Severity,
    /// How many characters to underline (at least 1).
    pub width: usize,
    /// An optional hint such as `did you mean FROM?`; not part of `Display`.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error diagnostic.
    pub fn error(file: &str, span: Span, width: usize, line_text: &str, message: String) -> Self {
        Diagnostic {
            file: file.to_string(),
            span,
            message,
            line_text: line_text.to_string(),
            severity: Severity::Error,
            width: width.max(1),
            help: None,
        }
    }

    /// A warning diagnostic.
    pub fn warning(file: &str, span: Span, width: usize, line_text: &str, message: String) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, width, line_text, message)
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        writeln!(
            f,
            "{}:{}:{}: {}{}",
            self.file, self.span.line, self.span.col, kind, self.message
        )?;
        let number = self.span.line.to_string();
        let pad = " ".repeat(number.len());
        writeln!(f, "  {number} | {}", self.line_text)?;
        // Keep tabs so the caret lines up however the terminal renders them.
        let indent: String = self
            .line_text
            .chars()
            .take(self.span.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "  {pad} | {indent}{}", "^".repeat(self.width.max(1)))
    }
}

/// Every error found in a file; `Display` renders each one, separated by newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Where something is in the source, so every later error can point back at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// 1-based line of the first character.
    pub line: usize,
    /// 1-based column (in characters) of the first character.
    pub col: usize,
    /// 1-based last line (continuations and heredoc bodies included).
    pub end_line: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_spec() {
        let d = Diagnostic::error(
            "Dockerfile",
            Span {
                line: 3,
                col: 1,
                end_line: 3,
            },
            4,
            "FORM busybox",
            "unknown instruction: FORM".into(),
        );
        assert_eq!(
            d.to_string(),
            "Dockerfile:3:1: unknown instruction: FORM\n  3 | FORM busybox\n    | ^^^^"
        );
    }

    #[test]
    fn caret_follows_tabs_and_column() {
        let d = Diagnostic::warning(
            "x",
            Span {
                line: 12,
                col: 3,
                end_line: 12,
            },
            1,
            "\tab",
            "m".into(),
        );
        assert_eq!(
            d.to_string(),
            "x:12:3: warning: m\n  12 | \tab\n     | \t ^"
        );
    }
}
