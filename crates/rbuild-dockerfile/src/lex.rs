//! Word expansion with the semantics of BuildKit's shell lexer: `$v`, `${v}`, the
//! `${v:-w}` family, pattern trimming and replacement, quote removal and escapes.
//!
//! This is not a shell: there is no command substitution, no arithmetic and no
//! globbing of file names. It is exactly what Dockerfile instructions such as ENV,
//! COPY or WORKDIR do to their arguments before using them.

use crate::glob;

/// Why a word could not be expanded; carries the input so the message stands alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {input:?}: {reason}")]
pub struct ExpandError {
    /// The word that was being expanded.
    pub input: String,
    /// What went wrong in it.
    pub reason: ExpandErrorKind,
}

/// The ways expansion fails, worded as BuildKit words them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandErrorKind {
    /// `${` without its closing brace.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}` or `${{x}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${v/pattern` without the separator before the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// A `'` without its partner.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` without its partner.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// The input ended while a nested word waited for this character.
    #[error("unexpected end of statement while looking for matching {0}")]
    UnexpectedEnd(char),
    /// `${v?msg}` / `${v:?msg}` with `v` unset (or empty).
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The user's message, or the default one.
        message: String,
    },
    /// An operator other than the supported ones, e.g. `${v=x}`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// A pattern with a backslash before something other than `*`, `?` or `\`.
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern {
        /// The pattern as written after expansion.
        pattern: String,
        /// What followed the backslash (empty at the end of the pattern).
        escaped: String,
    },
}

/// Everything one expansion produced; [`Expander`]'s other methods are views of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word with no field splitting.
    pub result: String,
    /// The fields, split on unquoted whitespace (including whitespace coming from
    /// variable values).
    pub words: Vec<String>,
    /// Names that were looked up and found, in first-use order.
    pub matched: Vec<String>,
    /// Names that were looked up and not found, in first-use order.
    pub unmatched: Vec<String>,
    /// Every name looked up, found or not, in first-use order.
    pub used: Vec<String>,
}

/// Lexer switches; the public [`Expander`] exposes the useful ones, the parser uses the
/// raw modes to find heredoc words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LexOptions {
    pub escape: char,
    pub raw_quotes: bool,
    pub raw_escapes: bool,
    pub skip_unset: bool,
    pub skip_quotes: bool,
}

impl LexOptions {
    pub(crate) fn new(escape: char) -> Self {
        LexOptions {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }
}

/// Expands Dockerfile words against variables supplied by a lookup function.
///
/// The lookup returns `None` for an unset variable and `Some("")` for a set but empty
/// one; the difference matters for `${v-w}` versus `${v:-w}`.
pub struct Expander<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    opts: LexOptions,
}

impl<'a> Expander<'a> {
    /// An expander using `escape` (`\` or the backtick chosen by `# escape=`).
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>, escape: char) -> Self {
        Expander {
            lookup,
            opts: LexOptions::new(escape),
        }
    }

    /// Leave references to unset variables as written (`$x`, `${x:-y}`) instead of
    /// replacing them; BuildKit does this where expansion happens in two passes.
    pub fn skip_unset(mut self, skip: bool) -> Self {
        self.opts.skip_unset = skip;
        self
    }

    /// Treat quotes as ordinary characters, as BuildKit does when it expands the body
    /// of an expanding heredoc.
    pub fn skip_quotes(mut self, skip: bool) -> Self {
        self.opts.skip_quotes = skip;
        self
    }

    /// Expands `s` as one word: quotes removed, no field splitting. For ENV and LABEL
    /// values, WORKDIR, USER, FROM and flag values.
    pub fn word(&self, s: &str) -> Result<String, ExpandError> {
        Ok(self.expand(s)?.result)
    }

    /// Expands `s` and splits it into fields on unquoted whitespace. For the shell
    /// form of COPY, ADD, EXPOSE and VOLUME.
    pub fn words(&self, s: &str) -> Result<Vec<String>, ExpandError> {
        Ok(self.expand(s)?.words)
    }

    /// Every variable name `s` refers to, in first-use order, found or not.
    pub fn used_names(&self, s: &str) -> Result<Vec<String>, ExpandError> {
        Ok(self.expand(s)?.used)
    }

    /// The full result of expanding `s`: the word, the fields and the names used.
    pub fn expand(&self, s: &str) -> Result<Expansion, ExpandError> {
        process(s, self.lookup, self.opts)
    }
}

/// Runs the lexer over `input`.
pub(crate) fn process(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    opts: LexOptions,
) -> Result<Expansion, ExpandError> {
    let mut sw = ShellWord {
        chars: input.chars().collect(),
        pos: 0,
        lookup,
        opts,
        raw_escapes: opts.raw_escapes,
        matched: Vec::new(),
        unmatched: Vec::new(),
        used: Vec::new(),
    };
    match sw.process_stop_on(None, opts.raw_escapes) {
        Ok((result, words)) => Ok(Expansion {
            result,
            words,
            matched: sw.matched,
            unmatched: sw.unmatched,
            used: sw.used,
        }),
        Err(reason) => Err(ExpandError {
            input: input.to_string(),
            reason,
        }),
    }
}

/// Accumulates fields while a word is scanned.
#[derive(Default)]
struct Fields {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

type LexResult<T> = Result<T, ExpandErrorKind>;

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    opts: LexOptions,
    raw_escapes: bool,
    matched: Vec<String>,
    unmatched: Vec<String>,
    used: Vec<String>,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = (self.lookup)(name);
        let list = if v.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !list.iter().any(|n| n == name) {
            list.push(name.to_string());
        }
        if !self.used.iter().any(|n| n == name) {
            self.used.push(name.to_string());
        }
        v
    }

    /// Scans until `stop` (consumed) or the end of input; returns the word and fields.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> LexResult<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.scan_until(stop);
        self.raw_escapes = saved;
        r
    }

    fn scan_until(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, fields.finish()));
            }
            let quotes = !self.opts.skip_quotes;
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                fields.add_string(&tmp);
            } else if quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                fields.add_raw_string(&tmp);
            } else if quotes && ch == '"' {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                fields.add_raw_string(&tmp);
            } else {
                self.next();
                if ch == self.opts.escape {
                    if self.raw_escapes {
                        fields.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape escapes the next character; at the end it vanishes.
                    let Some(escaped) = self.next() else { break };
                    fields.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    fields.add_char(ch);
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(c) => Err(ExpandErrorKind::UnexpectedEnd(c)),
            None => Ok((result, fields.finish())),
        }
    }

    fn process_single_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.next();
        if self.opts.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.opts.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.next();
        if self.opts.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.opts.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the very end is dropped; the loop then
                            // reports the missing quote.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.opts.escape => {
                                self.next();
                                ch = n;
                            }
                            // Inside double quotes other escapes stay literal.
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> LexResult<String> {
        self.next(); // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.opts.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the '{'
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(ExpandErrorKind::MissingBrace);
        };
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.opts.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => {
                let Some(op) = self.next() else {
                    return Err(ExpandErrorKind::MissingBrace);
                };
                self.modifier(&name, op, true, format!(":{op}"))
            }
            '+' | '-' | '?' | '#' | '%' => self.modifier(&name, ch, false, ch.to_string()),
            '/' => self.replace(&name),
            other => Err(ExpandErrorKind::UnsupportedModifier(other.to_string())),
        }
    }

    /// `${name<op>word}` and `${name:<op>word}` after the operator was read.
    fn modifier(
        &mut self,
        name: &str,
        op: char,
        null_is_unset: bool,
        op_text: String,
    ) -> LexResult<String> {
        let raw = op == '#' || op == '%';
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.get_env(name);
        if self.opts.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{op_text}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' => Ok(if unset_or_null {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset_or_null { String::new() } else { word }),
            '?' => {
                let default = if value.is_none() {
                    "is not allowed to be unset"
                } else {
                    "is not allowed to be empty"
                };
                if unset_or_null {
                    let message = if word.is_empty() {
                        default.to_string()
                    } else {
                        word
                    };
                    return Err(ExpandErrorKind::Required {
                        name: name.to_string(),
                        message,
                    });
                }
                Ok(value.unwrap_or_default())
            }
            '#' | '%' => {
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(p) => (true, p.to_string()),
                    None => (false, word),
                };
                let value = value.unwrap_or_default();
                let tokens =
                    glob::compile(&pattern).map_err(|escaped| ExpandErrorKind::InvalidPattern {
                        pattern: pattern.clone(),
                        escaped,
                    })?;
                Ok(if op == '#' {
                    glob::trim_prefix(&tokens, &value, greedy)
                } else {
                    glob::trim_suffix(&tokens, &value, greedy)
                })
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(op_text)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> LexResult<String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingSlash),
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.get_env(name);
        let Some(value) = value else {
            if self.opts.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let tokens =
            glob::compile(&pattern).map_err(|escaped| ExpandErrorKind::InvalidPattern {
                pattern: pattern.clone(),
                escaped,
            })?;
        Ok(glob::replace(&tokens, &value, &replacement, all))
    }

    /// A variable name: letters, digits and `_`; or a run of digits; or one special
    /// parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`).
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
