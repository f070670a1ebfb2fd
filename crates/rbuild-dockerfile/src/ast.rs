//! The syntax tree a Dockerfile parses into. Arguments are kept as written (quotes,
//! escapes and `$` references intact) so lowering can expand them with the right
//! variables at the right time.

use crate::diag::Diagnostic;
pub use crate::diag::Span;

/// The 18 Dockerfile instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `FROM`
    From,
    /// `RUN`
    Run,
    /// `CMD`
    Cmd,
    /// `LABEL`
    Label,
    /// `MAINTAINER` (deprecated, still accepted)
    Maintainer,
    /// `EXPOSE`
    Expose,
    /// `ENV`
    Env,
    /// `ADD`
    Add,
    /// `COPY`
    Copy,
    /// `ENTRYPOINT`
    Entrypoint,
    /// `VOLUME`
    Volume,
    /// `USER`
    User,
    /// `WORKDIR`
    Workdir,
    /// `ARG`
    Arg,
    /// `ONBUILD`
    Onbuild,
    /// `STOPSIGNAL`
    Stopsignal,
    /// `HEALTHCHECK`
    Healthcheck,
    /// `SHELL`
    Shell,
}

impl Keyword {
    /// Every keyword, in the order suggestions for misspellings are tried.
    pub const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::Stopsignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// The lowercase name, as BuildKit's AST dump spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "from",
            Keyword::Run => "run",
            Keyword::Cmd => "cmd",
            Keyword::Label => "label",
            Keyword::Maintainer => "maintainer",
            Keyword::Expose => "expose",
            Keyword::Env => "env",
            Keyword::Add => "add",
            Keyword::Copy => "copy",
            Keyword::Entrypoint => "entrypoint",
            Keyword::Volume => "volume",
            Keyword::User => "user",
            Keyword::Workdir => "workdir",
            Keyword::Arg => "arg",
            Keyword::Onbuild => "onbuild",
            Keyword::Stopsignal => "stopsignal",
            Keyword::Healthcheck => "healthcheck",
            Keyword::Shell => "shell",
        }
    }

    /// The uppercase name used in messages.
    pub fn upper(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    /// Looks a keyword up case-insensitively.
    pub fn from_name(name: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Keyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.upper())
    }
}

/// A `--name=value` or `--name` flag written before an instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without the leading `--`.
    pub name: String,
    /// The text after the first `=`, with quotes and backslash escapes removed (as
    /// BuildKit's flag scanner does); `None` for a bare `--name`.
    pub value: Option<String>,
    /// Where the flag starts.
    pub span: Span,
}

impl Flag {
    /// The flag as BuildKit's AST dump shows it: `--name=value` or `--name`.
    pub fn to_arg(&self) -> String {
        match &self.value {
            Some(v) => format!("--{}={}", self.name, v),
            None => format!("--{}", self.name),
        }
    }
}

/// An instruction's arguments, in the form the instruction was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// JSON array form (RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD, VOLUME, HEALTHCHECK CMD).
    Exec(Vec<String>),
    /// Shell form: the rest of the logical line, verbatim (continuations joined).
    /// Also MAINTAINER's single string. Empty when nothing was written.
    Shell(String),
    /// Whitespace-separated words, verbatim: FROM, COPY/ADD/VOLUME shell form, EXPOSE,
    /// ARG (one `NAME[=default]` per word), and the single word of USER, WORKDIR and
    /// STOPSIGNAL (the whole rest of the line, as BuildKit keeps it).
    Words(Vec<String>),
    /// ENV and LABEL pairs in either form; values verbatim (quotes kept).
    Pairs(Vec<(String, String)>),
    /// HEALTHCHECK: `None` for `NONE`, otherwise the `CMD` command (Exec or Shell).
    Healthcheck(Option<Box<Args>>),
    /// ONBUILD: the trigger instruction, parsed.
    Onbuild(Box<Instruction>),
}

impl Args {
    /// Whether the JSON array form was used.
    pub fn is_exec(&self) -> bool {
        match self {
            Args::Exec(_) => true,
            Args::Healthcheck(Some(inner)) => inner.is_exec(),
            _ => false,
        }
    }
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (also the file name for COPY/ADD).
    pub name: String,
    /// The body: every line up to the delimiter line, each with its line ending.
    /// For `<<-` the leading tabs of every line are already removed.
    pub content: String,
    /// Whether `$` references in the body are to be expanded (delimiter unquoted).
    pub expand: bool,
    /// Whether `<<-` was used.
    pub chomp: bool,
    /// The file descriptor of `3<<EOF`, if one was written.
    pub file_descriptor: Option<u32>,
}

/// One instruction and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Which instruction.
    pub keyword: Keyword,
    /// The keyword as written (`run`, `Run`, ...).
    pub keyword_text: String,
    /// Flags before the arguments.
    pub flags: Vec<Flag>,
    /// The arguments.
    pub args: Args,
    /// Here-documents, in the order they appear on the line.
    pub heredocs: Vec<Heredoc>,
    /// From the keyword to the last line used (continuations and heredocs included).
    pub span: Span,
    /// The logical line as BuildKit keeps it: continuation lines joined, comment lines
    /// removed, leading whitespace trimmed; for an ONBUILD trigger, the trigger text.
    pub original: String,
}

impl Instruction {
    /// The flag called `name`, if given (the last one wins, as in BuildKit).
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().rev().find(|f| f.name == name)
    }
}

/// Parser directives from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=...`, recorded but never acted upon.
    pub syntax: Option<String>,
    /// The escape character: `\` by default, or the backtick.
    pub escape: char,
    /// `# check=...` for the linter.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The name diagnostics use for the file, e.g. `Dockerfile`.
    pub file: String,
    /// Parser directives.
    pub directives: Directives,
    /// Instructions in file order.
    pub instructions: Vec<Instruction>,
    /// Non-fatal findings (empty continuation lines, invalid UTF-8).
    pub warnings: Vec<Diagnostic>,
}
