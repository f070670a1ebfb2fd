//! rbuild's Dockerfile frontend: bytes to a syntax tree with spans, parser
//! directives, heredocs, BuildKit-compatible word expansion and diagnostics that
//! point at the source.
//!
//! Everything here is pure: no file system, no network, no environment. The same
//! bytes always give the same tree or the same errors.
//!
//! ```
//! let df = rbuild_dockerfile::parse("Dockerfile", b"FROM alpine\nRUN echo hi\n").unwrap();
//! assert_eq!(df.instructions.len(), 2);
//! ```

mod ast;
mod debug_json;
mod diag;
mod glob;
mod heredoc;
mod lex;
mod parser;
mod words;

pub use ast::{Args, Directives, Dockerfile, Flag, Heredoc, Instruction, Keyword, Span};
pub use debug_json::to_debug_json;
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use lex::{ExpandError, ExpandErrorKind, Expander, Expansion};
pub use parser::parse;
