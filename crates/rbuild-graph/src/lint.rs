//! BuildKit's Dockerfile lint rules (`docker buildx build --check`).
//!
//! Rules that need the state of a stage (ENV in scope, SHELL, earlier CMDs) are checked
//! by the lowering pass as it goes; rules about the file as a whole (casing, stage
//! names, FROM lines) are checked here on the syntax tree. [`crate::check`] runs both over every
//! stage and applies the `# check=skip=...;error=true` directive.

use crate::LowerOptions;
use crate::args::platform_args;
use rbuild_dockerfile::{Args, Diagnostic, Dockerfile, Expander, Instruction, Keyword, Severity};
use std::collections::{BTreeMap, BTreeSet};

/// One lint finding: the rule's name and a warning diagnostic whose message starts with
/// it (`Dockerfile:3:1: warning: JSONArgsRecommended: JSON arguments ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// BuildKit's rule name, e.g. `UndefinedVar`.
    pub rule: &'static str,
    /// Where and what, as a warning.
    pub diagnostic: Diagnostic,
}

impl Lint {
    /// A finding about `inst`.
    pub fn at(file: &str, inst: &Instruction, rule: &'static str, message: String) -> Lint {
        let line = inst.original.lines().next().unwrap_or_default();
        Lint {
            rule,
            diagnostic: Diagnostic::warning(
                file,
                inst.span,
                inst.keyword_text.chars().count(),
                line,
                format!("{rule}: {message}"),
            ),
        }
    }

    /// The documentation page of the rule.
    pub fn url(&self) -> String {
        let chars: Vec<char> = self.rule.chars().collect();
        let mut slug = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let acronym_end = i > 0
                && chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if c.is_ascii_uppercase() && (prev_lower || acronym_end) {
                slug.push('-');
            }
            slug.push(c.to_ascii_lowercase());
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
    }
}

/// The `# check=` directive: `skip=Rule1,Rule2` (or `skip=all`) and `error=true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintConfig {
    /// Rules not to report.
    pub skip: BTreeSet<String>,
    /// Report nothing.
    pub skip_all: bool,
    /// Treat any finding as a build failure.
    pub error: bool,
}

impl LintConfig {
    /// Reads the directive's value (`skip=JSONArgsRecommended;error=true`).
    pub fn parse(value: Option<&str>) -> Result<LintConfig, String> {
        let mut c = LintConfig::default();
        let Some(value) = value else {
            return Ok(c);
        };
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid check option {part:?}: expected key=value"))?;
            match k.trim() {
                "skip" => {
                    for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if r.eq_ignore_ascii_case("all") {
                            c.skip_all = true;
                        } else {
                            c.skip.insert(r.to_string());
                        }
                    }
                }
                "error" => {
                    c.error = match v.trim() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        x => return Err(format!("invalid check option error={x:?}")),
                    }
                }
                "experimental" => {}
                other => return Err(format!("unknown check option {other:?}")),
            }
        }
        Ok(c)
    }

    /// Whether findings of `rule` are reported.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.contains(rule)
    }
}

/// The `# check=` settings of `df`, or the error the directive's value gives.
pub(crate) fn config_of(df: &Dockerfile) -> Result<LintConfig, Box<Diagnostic>> {
    LintConfig::parse(df.directives.check.as_deref()).map_err(|e| {
        Box::new(Diagnostic::error(
            &df.file,
            rbuild_dockerfile::Span {
                line: 1,
                col: 1,
                end_line: 1,
            },
            1,
            "",
            format!("failed to parse check options: {e}"),
        ))
    })
}

/// Filters by the config, orders by position and drops duplicates.
pub(crate) fn finish(mut lints: Vec<Lint>, config: &LintConfig) -> Vec<Lint> {
    lints.retain(|l| config.enabled(l.rule));
    lints.sort_by(|a, b| {
        (a.diagnostic.span.line, a.diagnostic.span.col)
            .cmp(&(b.diagnostic.span.line, b.diagnostic.span.col))
    });
    lints.dedup();
    lints
}

/// The rules about the file as a whole.
pub(crate) fn file_rules(df: &Dockerfile, opts: &LowerOptions) -> Vec<Lint> {
    let mut out = Vec::new();
    casing(df, &mut out);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let globals = global_defaults(df, opts);
    let known: BTreeMap<String, String> = globals
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    for inst in &df.instructions {
        match inst.keyword {
            Keyword::From => from_rules(df, inst, (&globals, &known), &mut seen, &mut out),
            Keyword::Maintainer => out.push(Lint::at(
                &df.file,
                inst,
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label".into(),
            )),
            _ => {}
        }
    }
    out
}

/// Global ARGs with their default values (no `--build-arg`), plus the automatic ones.
fn global_defaults(df: &Dockerfile, opts: &LowerOptions) -> BTreeMap<String, Option<String>> {
    let mut known: BTreeMap<String, String> =
        platform_args(&opts.target_platform, &opts.build_platform);
    let mut m: BTreeMap<String, Option<String>> = known
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    for inst in df
        .instructions
        .iter()
        .take_while(|i| i.keyword != Keyword::From)
    {
        if let Args::Words(words) = &inst.args {
            for w in words {
                let (k, v) = match w.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (w.as_str(), None),
                };
                let lookup = |n: &str| known.get(n).cloned();
                let v = v.map(|v| {
                    Expander::new(&lookup, df.directives.escape)
                        .word(v)
                        .unwrap_or_else(|_| v.to_string())
                });
                // `known` holds the names of `m` that have a value.
                match &v {
                    Some(v) => known.insert(k.to_string(), v.clone()),
                    None => known.remove(k),
                };
                m.insert(k.to_string(), v);
            }
        }
    }
    m
}

/// The rules about one FROM line. `globals` are the global ARGs as declared, and those
/// of them that have a value.
fn from_rules(
    df: &Dockerfile,
    inst: &Instruction,
    (globals, known): (&BTreeMap<String, Option<String>>, &BTreeMap<String, String>),
    seen: &mut BTreeMap<String, usize>,
    out: &mut Vec<Lint>,
) {
    let Args::Words(words) = &inst.args else {
        return;
    };
    let lint = |rule: &'static str, msg: String| Lint::at(&df.file, inst, rule, msg);
    if let [_, as_kw, name] = words.as_slice() {
        let from_kw = &inst.keyword_text;
        let from_lower = from_kw.chars().all(|c| !c.is_ascii_uppercase());
        let from_upper = from_kw.chars().all(|c| !c.is_ascii_lowercase());
        let mismatch = (from_lower && as_kw.chars().any(|c| c.is_ascii_uppercase()))
            || (from_upper && as_kw.chars().any(|c| c.is_ascii_lowercase()));
        if mismatch {
            out.push(lint(
                "FromAsCasing",
                format!("'{as_kw}' and '{from_kw}' keywords' casing do not match"),
            ));
        }
        if name.to_lowercase() != *name {
            out.push(lint(
                "StageNameCasing",
                format!("Stage name '{name}' should be lowercase"),
            ));
        }
        let lower = name.to_lowercase();
        if lower == "scratch" || lower == "context" {
            out.push(lint(
                "ReservedStageName",
                format!("Stage name should not use the same name as reserved stage {lower:?}"),
            ));
        }
        if seen.insert(lower.clone(), inst.span.line).is_some() {
            out.push(lint(
                "DuplicateStageName",
                format!("Duplicate stage name {lower:?}, stage names should be unique"),
            ));
        }
    }
    let image = &words[0];
    let none = |_: &str| None;
    let used = Expander::new(&none, df.directives.escape)
        .used_names(image)
        .unwrap_or_default();
    for name in used.iter().filter(|n| !globals.contains_key(*n)) {
        let suggestion = suggest(name, globals.keys());
        let mut msg = format!("FROM argument '{name}' is not declared");
        if let Some(s) = suggestion {
            msg.push_str(&format!(" (did you mean {s}?)"));
        }
        out.push(lint("UndefinedArgInFrom", msg));
    }
    if !used.is_empty() && used.iter().all(|n| globals.contains_key(n)) {
        let lookup = |n: &str| known.get(n).cloned();
        let value = Expander::new(&lookup, df.directives.escape)
            .word(image)
            .unwrap_or_default();
        if !valid_image_name(&value) {
            out.push(lint(
                "InvalidDefaultArgInFrom",
                format!(
                    "Default value for ARG {image} results in empty or invalid base image name"
                ),
            ));
        }
    }
    if let Some(p) = inst.flag("platform").and_then(|f| f.value.as_deref()) {
        let none = |_: &str| None;
        let names = Expander::new(&none, df.directives.escape)
            .used_names(p)
            .unwrap_or_default();
        let stage = words.get(2).map(|s| s.to_lowercase()).unwrap_or_default();
        let arch = p.split('/').nth(1).unwrap_or_default().to_lowercase();
        if names.is_empty() && (arch.is_empty() || !stage.contains(&arch)) {
            out.push(lint(
                "FromPlatformFlagConstDisallowed",
                format!("FROM --platform flag should not use constant value {p:?}"),
            ));
        }
    }
}

/// A loose check of a reference: not empty, no whitespace, no trailing `:`/`@`, lowercase
/// repository.
pub(crate) fn valid_image_name(v: &str) -> bool {
    if v.is_empty() || v.contains(char::is_whitespace) || v.ends_with(':') || v.ends_with('@') {
        return false;
    }
    let repo = v.split(['@']).next().unwrap_or(v);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    let path = repo.split_once('/').map_or(repo, |(host, rest)| {
        if host.contains('.') || host.contains(':') || host == "localhost" {
            rest
        } else {
            repo
        }
    });
    !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
}

/// ConsistentInstructionCasing: every instruction of the stages should follow the casing
/// most of them use.
fn casing(df: &Dockerfile, out: &mut Vec<Lint>) {
    let in_stages: Vec<&Instruction> = df
        .instructions
        .iter()
        .skip_while(|i| i.keyword != Keyword::From)
        .collect();
    let (mut lower, mut upper) = (0, 0);
    for i in &in_stages {
        let t = &i.keyword_text;
        if *t == t.to_lowercase() {
            lower += 1;
        } else if *t == t.to_uppercase() {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for i in in_stages {
        let t = &i.keyword_text;
        let want = if majority_lower && *t != t.to_lowercase() {
            "lowercase"
        } else if !majority_lower && *t != t.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        out.push(Lint::at(
            &df.file,
            i,
            "ConsistentInstructionCasing",
            format!("Command '{t}' should match the case of the command majority ({want})"),
        ));
    }
}

/// The UndefinedVar message.
pub(crate) fn undefined_var(name: &str, suggestion: Option<String>) -> String {
    let mut msg = format!("Usage of undefined variable '${name}'");
    if let Some(s) = suggestion {
        msg.push_str(&format!(" (did you mean ${s}?)"));
    }
    msg
}

/// The closest known name (case-insensitive edit distance ≤ 2, or same letters in
/// another case), as BuildKit's suggestions.
pub(crate) fn suggest<'a>(
    name: &str,
    options: impl IntoIterator<Item = &'a String>,
) -> Option<String> {
    let lower = name.to_lowercase();
    let mut best: Option<(usize, String)> = None;
    for o in options {
        if o == name {
            continue;
        }
        let d = levenshtein(&lower, &o.to_lowercase());
        let limit = if lower.chars().count() <= 3 { 1 } else { 2 };
        if d <= limit && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, o.clone()));
        }
    }
    best.map(|b| b.1)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// SecretsUsedInArgOrEnv: a name with a secret-looking `_`-separated token
/// (`API_KEY`, `DB_PASSWORD`, `token`) unless one token is `public`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    const SECRET: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let tokens: Vec<String> = key.split('_').map(str::to_lowercase).collect();
    if tokens.iter().any(|t| t == "public") {
        return false;
    }
    tokens.iter().any(|t| SECRET.contains(&t.as_str()))
}

/// Renders findings for the terminal, each with its location, source line and caret.
pub fn render(lints: &[Lint]) -> String {
    lints
        .iter()
        .map(|l| format!("{}\n  see {}", l.diagnostic, l.url()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<&Lint> for Diagnostic {
    fn from(l: &Lint) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..l.diagnostic.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        assert!(is_secret_key("API_KEY"));
        assert!(is_secret_key("password"));
        assert!(is_secret_key("GITHUB_TOKEN"));
        assert!(!is_secret_key("PUBLIC_KEY"));
        assert!(!is_secret_key("KEYBOARD"));
        assert!(!is_secret_key("MONKEY"));
    }

    #[test]
    fn check_directive() {
        let c =
            LintConfig::parse(Some("skip=JSONArgsRecommended,StageNameCasing;error=true")).unwrap();
        assert!(c.error);
        assert!(!c.enabled("JSONArgsRecommended"));
        assert!(c.enabled("UndefinedVar"));
        assert!(LintConfig::parse(Some("skip=all")).unwrap().skip_all);
        assert!(LintConfig::parse(Some("bogus")).is_err());
    }

    #[test]
    fn urls_follow_docs() {
        let l = Lint {
            rule: "JSONArgsRecommended",
            diagnostic: Diagnostic::warning("f", Default::default(), 1, "", String::new()),
        };
        assert_eq!(
            l.url(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
    }

    #[test]
    fn suggestions() {
        let opts = vec!["VERSION".to_string(), "TARGETOS".to_string()];
        assert_eq!(suggest("VERSON", &opts), Some("VERSION".into()));
        assert_eq!(suggest("XYZ", &opts), None);
    }
}
