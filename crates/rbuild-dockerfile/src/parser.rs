//! Bytes to [`Dockerfile`]: physical lines, parser directives, continuation lines,
//! instructions and heredoc bodies, following BuildKit's parser line for line in
//! behaviour, and collecting every error instead of stopping at the first.

use crate::ast::{Args, Directives, Dockerfile, Flag, Heredoc, Instruction, Keyword, Span};
use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::heredoc::{self, HeredocStart};
use crate::words::{self, Json, PairsError, is_token_space};

/// Parses a Dockerfile. `file` is the name diagnostics show. On success the result
/// carries the warnings; on failure every error found is returned, in source order.
pub fn parse(file: &str, source: &[u8]) -> Result<Dockerfile, Diagnostics> {
    let mut p = Parser::new(file, source);
    p.run();
    if !p.errors.is_empty() {
        return Err(Diagnostics(p.errors));
    }
    Ok(Dockerfile {
        file: file.to_string(),
        directives: p.directives,
        instructions: p.instructions,
        warnings: p.warnings,
    })
}

/// One physical line.
struct Line {
    /// Without its line ending (all trailing `\r` and `\n` removed).
    text: String,
    /// As read, line ending included; heredoc bodies are built from this.
    raw: String,
}

/// A piece of a logical line and where it came from.
struct Seg {
    /// Byte offset in the logical text where the piece starts.
    logical: usize,
    /// 0-based physical line.
    line: usize,
    /// Byte offset in that physical line's text where the piece starts.
    phys: usize,
}

/// An instruction's text with its continuation lines joined, and the map back to the
/// physical lines so any byte of it can be pointed at.
struct Logical {
    text: String,
    segs: Vec<Seg>,
}

impl Logical {
    fn seg_index(&self, off: usize) -> usize {
        self.segs
            .iter()
            .rposition(|s| s.logical <= off)
            .unwrap_or_default()
    }

    /// Logical byte offset where the piece holding `off` ends.
    fn seg_end(&self, off: usize) -> usize {
        let i = self.seg_index(off);
        self.segs.get(i + 1).map_or(self.text.len(), |s| s.logical)
    }
}

/// A parsed instruction plus the heredocs it announced (bodies not read yet).
struct Parsed {
    instr: Instruction,
    heredocs: Vec<(HeredocStart, usize)>,
}

/// Where the pieces of an instruction are in its logical line.
struct Ctx<'a> {
    lg: &'a Logical,
    keyword: Keyword,
    kw_off: usize,
    kw_len: usize,
    args_off: usize,
    args: &'a str,
}

struct Parser<'f> {
    file: &'f str,
    lines: Vec<Line>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    directives: Directives,
    directives_done: bool,
    seen_directives: Vec<String>,
    instructions: Vec<Instruction>,
    saw_instruction: bool,
}

/// Splits the source into lines (keeping line endings), dropping a UTF-8 BOM. Lines
/// that are not UTF-8 are decoded lossily; their indexes are returned.
fn split_lines(source: &[u8]) -> (Vec<Line>, Vec<usize>) {
    let source = source.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(source);
    let mut lines = Vec::new();
    let mut invalid = Vec::new();
    for (i, chunk) in source.split_inclusive(|b| *b == b'\n').enumerate() {
        let raw = match std::str::from_utf8(chunk) {
            Ok(s) => s.to_string(),
            Err(_) => {
                invalid.push(i);
                String::from_utf8_lossy(chunk).into_owned()
            }
        };
        let text = raw.trim_end_matches(['\r', '\n']).to_string();
        lines.push(Line { text, raw });
    }
    (lines, invalid)
}

/// Removes a trailing line-continuation escape. Returns the remaining text and whether
/// the line continues. An escape preceded by another escape does not continue the line
/// (BuildKit's rule); an escape alone on a line does.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    let Some(before) = t.strip_suffix(escape) else {
        return (line, false);
    };
    if before.is_empty() {
        return ("", true);
    }
    if before.ends_with(escape) {
        return (line, false);
    }
    (before, true)
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest keyword to a misspelt one, within edit distance 2.
fn suggest(word: &str) -> Option<Keyword> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, Keyword)> = None;
    for k in Keyword::ALL {
        let d = distance(&lower, k.as_str());
        if d < 3 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

/// `^[a-z][a-z0-9-_.]*$` on the lowercased name, as BuildKit checks stage names.
fn valid_stage_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    let mut chars = lower.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// ASCII whitespace as RE2's `\s` knows it.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}

/// Splits a directive body (`key = value` after the `#`) into key and value offsets.
/// Mirrors `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn directive_parts(s: &str) -> Option<(&str, usize, &str)> {
    let key_len = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(s.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let after_key = s[key_len..].trim_start_matches(is_re_space);
    let after_eq = after_key.strip_prefix('=')?;
    if after_eq.is_empty() {
        return None;
    }
    let value_part = after_eq.trim_start_matches(is_re_space);
    let value = value_part.trim_end_matches(is_re_space);
    if value.is_empty() {
        // Only whitespace after `=`: the lazy group still takes one character.
        let last = after_eq.len() - after_eq.chars().last().map_or(0, char::len_utf8);
        return Some((
            &s[..key_len],
            s.len() - after_eq.len() + last,
            &after_eq[last..],
        ));
    }
    Some((&s[..key_len], s.len() - value_part.len(), value))
}

impl<'f> Parser<'f> {
    fn new(file: &'f str, source: &[u8]) -> Self {
        let (lines, invalid) = split_lines(source);
        let mut p = Parser {
            file,
            lines,
            errors: Vec::new(),
            warnings: Vec::new(),
            directives: Directives::default(),
            directives_done: false,
            seen_directives: Vec::new(),
            instructions: Vec::new(),
            saw_instruction: false,
        };
        for i in invalid {
            p.warn_line(i, "line is not valid UTF-8; invalid bytes replaced");
        }
        p
    }

    /// A diagnostic on physical line `idx` at byte `off`, `width` characters wide.
    fn line_diag(&self, idx: usize, off: usize, width: usize, message: String) -> Diagnostic {
        let text = self.lines.get(idx).map_or("", |l| l.text.as_str());
        let mut off = off.min(text.len());
        while !text.is_char_boundary(off) {
            off -= 1;
        }
        let span = Span {
            line: idx + 1,
            col: text[..off].chars().count() + 1,
            end_line: idx + 1,
        };
        Diagnostic::error(self.file, span, width, text, message)
    }

    /// Where logical byte `off` is in the file.
    fn span_at(&self, lg: &Logical, off: usize) -> Span {
        let seg = &lg.segs[lg.seg_index(off)];
        let text = self.lines.get(seg.line).map_or("", |l| l.text.as_str());
        let mut phys = (seg.phys + off - seg.logical).min(text.len());
        while !text.is_char_boundary(phys) {
            phys -= 1;
        }
        Span {
            line: seg.line + 1,
            col: text[..phys].chars().count() + 1,
            end_line: seg.line + 1,
        }
    }

    /// An error pointing at `len` bytes of the logical line from `off`.
    fn error_at(&mut self, lg: &Logical, off: usize, len: usize, message: String) {
        let span = self.span_at(lg, off);
        let end = (off + len).min(lg.seg_end(off)).min(lg.text.len());
        let width = lg.text.get(off..end).map_or(1, |s| s.chars().count());
        let text = self
            .lines
            .get(span.line - 1)
            .map_or("", |l| l.text.as_str());
        let d = Diagnostic::error(self.file, span, width, text, message);
        self.errors.push(d);
    }

    fn error_kw(&mut self, c: &Ctx<'_>, message: String) {
        self.error_at(c.lg, c.kw_off, c.kw_len, message);
    }

    /// Points at `token`, searched for in the arguments (falls back to the keyword).
    fn error_token(&mut self, c: &Ctx<'_>, token: &str, message: String) {
        match c.args.rfind(token).filter(|_| !token.is_empty()) {
            Some(p) => self.error_at(c.lg, c.args_off + p, token.len(), message),
            None => self.error_kw(c, message),
        }
    }

    fn run(&mut self) {
        let mut i = 0;
        while i < self.lines.len() {
            if let Some(lg) = self.logical_line(&mut i) {
                self.saw_instruction = true;
                if let Some(parsed) = self.parse_instruction(&lg, 0, false) {
                    self.finish_instruction(&lg, parsed, &mut i);
                }
            }
            i += 1;
        }
        if !self.saw_instruction && self.errors.is_empty() {
            let d = self.line_diag(0, 0, 1, "file with no instructions".into());
            self.errors.push(d);
        }
    }

    /// Reads the logical line starting at line `*i` (directives, comments and blank
    /// lines give `None`), joining continuation lines; `*i` ends on its last line.
    fn logical_line(&mut self, i: &mut usize) -> Option<Logical> {
        let text = self.lines[*i].text.clone();
        let lead = text.len() - text.trim_start().len();
        let token = &text[lead..];
        self.directive_line(*i, token, lead);
        if token.starts_with('#') {
            return None;
        }
        let escape = self.directives.escape;
        let (first, mut cont) = trim_continuation(token, escape);
        if !cont && first.is_empty() {
            return None;
        }
        let mut lg = Logical {
            text: first.to_string(),
            segs: vec![Seg {
                logical: 0,
                line: *i,
                phys: lead,
            }],
        };
        let mut empty_line = None;
        while cont && *i + 1 < self.lines.len() {
            *i += 1;
            let t = &self.lines[*i].text;
            let trimmed = t.trim_start();
            // Comment lines inside a continuation are skipped; so are empty lines,
            // which BuildKit warns about.
            if trimmed.starts_with('#') {
                continue;
            }
            if trimmed.is_empty() {
                empty_line.get_or_insert(*i);
                continue;
            }
            let (piece, more) = trim_continuation(t, escape);
            cont = more;
            lg.segs.push(Seg {
                logical: lg.text.len(),
                line: *i,
                phys: 0,
            });
            lg.text.push_str(piece);
        }
        if let Some(e) = empty_line {
            self.warn_line(e, "empty continuation line");
        }
        Some(lg)
    }

    fn warn_line(&mut self, idx: usize, message: &str) {
        let d = self.line_diag(idx, 0, 1, message.to_string());
        self.warnings.push(Diagnostic {
            severity: Severity::Warning,
            ..d
        });
    }

    /// Reads the heredoc bodies that follow line `*i`, attaches them and stores the
    /// instruction.
    fn finish_instruction(&mut self, lg: &Logical, parsed: Parsed, i: &mut usize) {
        let Parsed {
            mut instr,
            heredocs,
        } = parsed;
        let mut docs = Vec::new();
        for (start, off) in heredocs {
            match self.read_heredoc(&start, i) {
                Some(doc) => docs.push(doc),
                None => {
                    self.error_at(lg, off, start.word.len(), "unterminated heredoc".into());
                    break;
                }
            }
        }
        let end_line = *i + 1;
        instr.span.end_line = end_line;
        match &mut instr.args {
            Args::Onbuild(inner) => {
                inner.heredocs = docs;
                inner.span.end_line = end_line;
            }
            _ => instr.heredocs = docs,
        }
        self.instructions.push(instr);
    }

    /// Reads lines after `*i` up to the delimiter; `None` when the file ends first.
    fn read_heredoc(&self, start: &HeredocStart, i: &mut usize) -> Option<Heredoc> {
        let mut content = String::new();
        while *i + 1 < self.lines.len() {
            *i += 1;
            let line = &self.lines[*i];
            let candidate = if start.chomp {
                line.text.trim_start_matches('\t')
            } else {
                line.text.as_str()
            };
            if candidate == start.name {
                if start.chomp {
                    content = heredoc::chomp(&content);
                }
                return Some(Heredoc {
                    name: start.name.clone(),
                    content,
                    expand: start.expand,
                    chomp: start.chomp,
                    file_descriptor: start.fd,
                });
            }
            content.push_str(&line.raw);
        }
        None
    }

    /// Handles a possible `# key=value` directive on line `idx` (already left-trimmed;
    /// `lead` bytes of whitespace precede `token`).
    fn directive_line(&mut self, idx: usize, token: &str, lead: usize) {
        if self.directives_done {
            return;
        }
        let Some(after_hash) = token.strip_prefix('#') else {
            self.directives_done = true;
            return;
        };
        let body = after_hash.trim_start();
        let body_off = lead + token.len() - body.len();
        let Some((key, value_off, value)) = directive_parts(body) else {
            self.directives_done = true;
            return;
        };
        let name = key.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.directives_done = true;
            return;
        }
        if self.seen_directives.contains(&name) {
            let d = self.line_diag(
                idx,
                body_off,
                key.chars().count(),
                format!("only one {name} parser directive can be used"),
            );
            self.errors.push(d);
            return;
        }
        self.seen_directives.push(name.clone());
        match name.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                _ => {
                    let d = self.line_diag(
                        idx,
                        body_off + value_off,
                        value.chars().count(),
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    );
                    self.errors.push(d);
                }
            },
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => self.directives.check = Some(value.to_string()),
        }
    }

    /// Parses the instruction starting at logical byte `off` (0, or the trigger of an
    /// ONBUILD). Errors are recorded; `None` when no instruction can be built.
    fn parse_instruction(&mut self, lg: &Logical, off: usize, nested: bool) -> Option<Parsed> {
        let s = &lg.text[off..];
        let body_off = off + (s.len() - s.trim_start().len());
        let body = lg.text[body_off..].trim_end();
        let kw_len = body.find(is_token_space).unwrap_or(body.len());
        let cmd = &body[..kw_len];
        let after_kw = &body[kw_len..];
        let after_off = body_off
            + kw_len
            + (after_kw.len() - after_kw.trim_start_matches(is_token_space).len());
        let after = &lg.text[after_off..body_off + body.len()];
        let (raw_flags, rest_off) = words::extract_flags(after);
        let rest = &after[rest_off..];
        let args_off = after_off + rest_off + (rest.len() - rest.trim_start().len());
        let args = rest.trim();

        let Some(keyword) = Keyword::from_name(cmd) else {
            self.unknown_instruction(lg, body_off, cmd);
            return None;
        };
        let flags = raw_flags
            .iter()
            .map(|f| {
                let text = f.text.strip_prefix("--").unwrap_or(&f.text);
                let (name, value) = match text.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (text.to_string(), None),
                };
                Flag {
                    name,
                    value,
                    span: self.span_at(lg, after_off + f.offset),
                }
            })
            .collect();
        let ctx = Ctx {
            lg,
            keyword,
            kw_off: body_off,
            kw_len,
            args_off,
            args,
        };
        let mut inner_heredocs = Vec::new();
        let parsed_args = match keyword {
            Keyword::Onbuild => {
                let inner = self.parse_onbuild(&ctx)?;
                inner_heredocs = inner.heredocs;
                Args::Onbuild(Box::new(inner.instr))
            }
            _ => self.parse_args(&ctx),
        };
        let heredocs = if matches!(keyword, Keyword::Run | Keyword::Copy | Keyword::Add)
            && !parsed_args.is_exec()
        {
            let mut cursor = body_off;
            heredoc::heredocs_in_line(&lg.text[body_off..])
                .into_iter()
                .map(|h| {
                    let at = lg.text[cursor..]
                        .find(&h.word)
                        .map_or(body_off, |p| cursor + p);
                    cursor = (at + h.word.len()).min(lg.text.len());
                    (h, at)
                })
                .collect()
        } else {
            inner_heredocs
        };
        let span = self.span_at(lg, body_off);
        let original = if nested {
            body.to_string()
        } else {
            lg.text[body_off..].to_string()
        };
        Some(Parsed {
            instr: Instruction {
                keyword,
                keyword_text: cmd.to_string(),
                flags,
                args: parsed_args,
                heredocs: Vec::new(),
                span,
                original,
            },
            heredocs,
        })
    }

    fn unknown_instruction(&mut self, lg: &Logical, off: usize, cmd: &str) {
        self.error_at(lg, off, cmd.len(), format!("unknown instruction: {cmd}"));
        if let (Some(k), Some(last)) = (suggest(cmd), self.errors.last_mut()) {
            last.help = Some(format!("did you mean {k}?"));
        }
    }

    fn parse_onbuild(&mut self, c: &Ctx<'_>) -> Option<Parsed> {
        if c.args.is_empty() {
            self.error_kw(c, "ONBUILD requires at least one argument".into());
            return None;
        }
        let inner = self.parse_instruction(c.lg, c.args_off, true)?;
        let trigger = inner.instr.keyword;
        let message = match trigger {
            Keyword::Onbuild => Some("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
            Keyword::From | Keyword::Maintainer => {
                Some(format!("{trigger} isn't allowed as an ONBUILD trigger"))
            }
            _ => None,
        };
        if let Some(m) = message {
            let len = inner.instr.keyword_text.len();
            self.error_at(c.lg, c.args_off, len, m);
        }
        Some(inner)
    }

    /// Arguments of every instruction but ONBUILD, with BuildKit's argument checks.
    fn parse_args(&mut self, c: &Ctx<'_>) -> Args {
        let kw = c.keyword;
        match kw {
            Keyword::From => self.parse_from(c),
            Keyword::Run | Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell => {
                let args = self.maybe_json(c, c.args);
                self.check_command(c, &args);
                args
            }
            Keyword::Copy | Keyword::Add | Keyword::Volume => self.parse_list(c),
            Keyword::Expose => {
                let w = words::split_whitespace(c.args);
                if w.is_empty() {
                    self.error_kw(c, format!("{kw} requires at least one argument"));
                }
                Args::Words(w)
            }
            Keyword::Env | Keyword::Label => self.parse_pairs(c),
            Keyword::Arg => self.parse_arg(c),
            Keyword::Maintainer => {
                if c.args.is_empty() {
                    self.error_kw(c, format!("{kw} requires exactly one argument"));
                }
                Args::Shell(c.args.to_string())
            }
            Keyword::User | Keyword::Workdir | Keyword::Stopsignal => {
                if c.args.is_empty() {
                    self.error_kw(c, format!("{kw} requires exactly one argument"));
                    return Args::Words(Vec::new());
                }
                Args::Words(vec![c.args.to_string()])
            }
            Keyword::Healthcheck => self.parse_healthcheck(c),
            Keyword::Onbuild => Args::Shell(c.args.to_string()),
        }
    }

    fn parse_from(&mut self, c: &Ctx<'_>) -> Args {
        let w = words::split_whitespace(c.args);
        let staged = w.len() == 3 && w[1].eq_ignore_ascii_case("as");
        if w.len() != 1 && !staged {
            self.error_kw(c, "FROM requires either one or three arguments".into());
        } else if staged && !valid_stage_name(&w[2]) {
            let message = format!(
                "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                w[2]
            );
            self.error_token(c, &w[2], message);
        }
        Args::Words(w)
    }

    /// JSON array of strings, else the shell form.
    fn maybe_json(&mut self, c: &Ctx<'_>, text: &str) -> Args {
        match words::parse_json(text) {
            Json::Strings(v) => Args::Exec(v),
            Json::NotStrings => {
                self.error_token(
                    c,
                    text,
                    "when using JSON array syntax, arrays must be comprised of strings only".into(),
                );
                Args::Shell(text.to_string())
            }
            Json::Other => Args::Shell(text.to_string()),
        }
    }

    fn check_command(&mut self, c: &Ctx<'_>, args: &Args) {
        let empty = match args {
            Args::Exec(v) => v.is_empty(),
            Args::Shell(s) => s.is_empty(),
            _ => false,
        };
        let kw = c.keyword;
        match kw {
            Keyword::Run if empty => {
                self.error_kw(c, format!("{kw} requires at least one argument"));
            }
            Keyword::Shell if empty => {
                self.error_kw(c, format!("{kw} requires at least one argument"));
            }
            Keyword::Shell if !args.is_exec() => {
                self.error_token(
                    c,
                    c.args,
                    format!("{kw} requires the arguments to be in JSON form"),
                );
            }
            _ => {}
        }
    }

    /// COPY, ADD and VOLUME: JSON array, else whitespace-separated words.
    fn parse_list(&mut self, c: &Ctx<'_>) -> Args {
        let kw = c.keyword;
        let (args, items) = match words::parse_json(c.args) {
            Json::Strings(v) => (Args::Exec(v.clone()), v),
            Json::NotStrings => {
                self.error_token(
                    c,
                    c.args,
                    "when using JSON array syntax, arrays must be comprised of strings only".into(),
                );
                return Args::Shell(c.args.to_string());
            }
            Json::Other => {
                let w = words::split_whitespace(c.args);
                (Args::Words(w.clone()), w)
            }
        };
        if kw == Keyword::Volume {
            if items.is_empty() {
                self.error_kw(c, format!("{kw} requires at least one argument"));
            } else if items.iter().any(|v| v.trim().is_empty()) {
                self.error_token(
                    c,
                    c.args,
                    "VOLUME specified can not be an empty string".into(),
                );
            }
            return args;
        }
        match items.last() {
            Some(dest) if items.len() >= 2 => {
                if heredoc::parse_heredoc_word(dest).is_some() {
                    self.error_token(c, dest, format!("{kw} cannot accept a heredoc as a destination"));
                }
            }
            _ => self.error_kw(
                c,
                format!(
                    "{kw} requires at least two arguments, but only one was provided. Destination could not be determined"
                ),
            ),
        }
        args
    }

    fn parse_pairs(&mut self, c: &Ctx<'_>) -> Args {
        let kw = c.keyword;
        match words::parse_pairs(c.args, self.directives.escape) {
            Ok(pairs) => {
                if pairs.iter().any(|(k, _)| k.is_empty()) {
                    self.error_kw(c, format!("{kw} names can not be blank"));
                }
                Args::Pairs(pairs)
            }
            Err(e) => {
                match e {
                    PairsError::Empty => {
                        self.error_kw(c, format!("{kw} requires at least one argument"))
                    }
                    PairsError::NeedsTwo => {
                        self.error_kw(c, format!("{kw} must have two arguments"))
                    }
                    PairsError::MissingEquals(w) => {
                        let message = format!(
                            "syntax error - can't find = in {w:?}. Must be of the form: name=value"
                        );
                        self.error_token(c, &w, message);
                    }
                }
                Args::Pairs(Vec::new())
            }
        }
    }

    fn parse_arg(&mut self, c: &Ctx<'_>) -> Args {
        let w = words::parse_words(c.args, self.directives.escape);
        if w.is_empty() {
            self.error_kw(c, "ARG requires at least one argument".into());
        } else if w.iter().any(|a| a.starts_with('=')) {
            self.error_kw(c, "ARG names can not be blank".into());
        }
        Args::Words(w)
    }

    fn parse_healthcheck(&mut self, c: &Ctx<'_>) -> Args {
        if c.args.is_empty() {
            self.error_kw(c, "HEALTHCHECK requires at least one argument".into());
            return Args::Healthcheck(None);
        }
        let typ_len = c.args.find(char::is_whitespace).unwrap_or(c.args.len());
        let typ = &c.args[..typ_len];
        let rest = c.args[typ_len..].trim_start();
        match typ.to_uppercase().as_str() {
            "NONE" => {
                if !rest.is_empty() {
                    self.error_token(c, rest, "HEALTHCHECK NONE takes no arguments".into());
                }
                Args::Healthcheck(None)
            }
            "CMD" => {
                let cmd = self.maybe_json(c, rest);
                let empty = match &cmd {
                    Args::Exec(v) => v.is_empty(),
                    Args::Shell(s) => s.is_empty(),
                    _ => false,
                };
                if empty {
                    self.error_kw(c, "missing command after HEALTHCHECK CMD".into());
                }
                Args::Healthcheck(Some(Box::new(cmd)))
            }
            other => {
                let message = format!("unknown type {other:?} in HEALTHCHECK (try CMD)");
                self.error_at(c.lg, c.args_off, typ_len, message);
                Args::Healthcheck(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", true));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", true));
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", true));
        assert_eq!(trim_continuation("c:\\", '`'), ("c:\\", false));
    }

    #[test]
    fn directive_regex() {
        assert_eq!(directive_parts("escape=`"), Some(("escape", 7, "`")));
        assert_eq!(
            directive_parts("syntax = a/b:1  "),
            Some(("syntax", 9, "a/b:1"))
        );
        assert_eq!(directive_parts("escape="), None);
        assert_eq!(directive_parts("1x=y"), None);
        assert_eq!(directive_parts("hello world"), None);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("FORM"), Some(Keyword::From));
        assert_eq!(suggest("cpy"), Some(Keyword::Copy));
        assert_eq!(suggest("XYZZYQ"), None);
    }
}
