//! Wildcard matching with the rules of Go's `path/filepath.Match`, which Docker uses for COPY
//! sources: `*` (any run of non-`/` characters), `?` (one non-`/` character), `[...]` classes
//! with ranges and `^` negation, and `\` escapes.

/// The pattern is malformed (unclosed class, trailing backslash, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Whether a path component contains wildcard syntax (and so must be matched, not looked up).
pub(crate) fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// Reports whether `name` matches `pattern`, exactly as Go's `filepath.Match` on Unix.
pub(crate) fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern;
    let mut name = name;
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains('/'));
        }
        let (t, ok, err) = match_chunk(chunk, name);
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if err {
            return Err(BadPattern);
        }
        if star {
            for (i, c) in name.char_indices() {
                if c == '/' {
                    break;
                }
                let skip = i + c.len_utf8();
                let (t, ok, err) = match_chunk(chunk, &name[skip..]);
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
                if err {
                    return Err(BadPattern);
                }
            }
        }
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            if match_chunk(chunk, "").2 {
                return Err(BadPattern);
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next star outside a class.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let trimmed = pattern.trim_start_matches('*');
    let star = trimmed.len() != pattern.len();
    let bytes = trimmed.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &trimmed[..i], &trimmed[i..])
}

/// Matches one chunk at the start of `s`: (rest of s, matched, pattern error).
fn match_chunk<'a>(chunk: &str, s: &'a str) -> (&'a str, bool, bool) {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(c0) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c0 {
            '[' => {
                let mut r = '\0';
                if !failed && let Some(c) = s.chars().next() {
                    r = c;
                    s = &s[c.len_utf8()..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.starts_with('^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.starts_with(']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let Some((lo, rest)) = get_esc(chunk) else {
                        return ("", false, true);
                    };
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(after_dash) = chunk.strip_prefix('-') {
                        let Some((h, rest)) = get_esc(after_dash) else {
                            return ("", false, true);
                        };
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed && let Some(c) = s.chars().next() {
                    if c == '/' {
                        failed = true;
                    }
                    s = &s[c.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let mut lit = chunk;
                if c0 == '\\' {
                    lit = &chunk[1..];
                    if lit.is_empty() {
                        return ("", false, true);
                    }
                }
                let Some(c) = lit.chars().next() else {
                    return ("", false, true);
                };
                if !failed {
                    match s.chars().next() {
                        Some(sc) if sc == c => s = &s[sc.len_utf8()..],
                        _ => failed = true,
                    }
                }
                chunk = &lit[c.len_utf8()..];
            }
        }
    }
    if failed {
        ("", false, false)
    } else {
        (s, true, false)
    }
}

/// Reads one possibly escaped character of a class; `None` on malformed syntax.
fn get_esc(chunk: &str) -> Option<(char, &str)> {
    let mut chunk = chunk;
    match chunk.chars().next() {
        None | Some('-') | Some(']') => return None,
        Some('\\') => {
            chunk = &chunk[1..];
        }
        Some(_) => {}
    }
    let c = chunk.chars().next()?;
    let rest = &chunk[c.len_utf8()..];
    if rest.is_empty() {
        return None;
    }
    Some((c, rest))
}

/// `COPY --exclude` patterns with `.dockerignore` rules: `/`-separated Go wildcards, `**`
/// for any number of directories, `!` to re-include; the last matching pattern wins and a
/// pattern that matches a directory also covers everything below it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Excludes {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Excludes {
    /// Compiles the patterns; a malformed one is returned as the error.
    pub(crate) fn new(patterns: &[String]) -> Result<Excludes, String> {
        let mut out = Vec::new();
        for p in patterns {
            let (negated, body) = match p.trim().strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, p.trim()),
            };
            let segs: Vec<String> = body
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect();
            if segs.is_empty() {
                continue;
            }
            for s in &segs {
                if s != "**" && matches(s, "").is_err() {
                    return Err(p.clone());
                }
            }
            out.push((negated, segs));
        }
        Ok(Excludes { patterns: out })
    }

    /// Whether there are no patterns at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern re-includes paths (so excluded directories must still be walked).
    pub(crate) fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.0)
    }

    /// Whether `path` (components relative to the copy root) is excluded.
    pub(crate) fn excluded(&self, path: &[&str]) -> bool {
        let mut excluded = false;
        for (negated, segs) in &self.patterns {
            let hit = (1..=path.len()).any(|n| match_segments(segs, &path[..n]));
            if hit {
                excluded = !negated;
            }
        }
        excluded
    }
}

/// Matches whole path segments, `**` standing for zero or more of them.
fn match_segments(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, tail)) => {
                let seg = if first.contains("**") {
                    first.replace("**", "*")
                } else {
                    first.clone()
                };
                matches(&seg, name).unwrap_or(false) && match_segments(rest, tail)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from Go's path/filepath match_test.go.
    #[test]
    fn go_match_cases() {
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[x-]", "-", Err(BadPattern)),
            ("[x-]", "z", Err(BadPattern)),
            ("[-x]", "x", Err(BadPattern)),
            ("[-x]", "-", Err(BadPattern)),
            ("[-x]", "a", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("a[", "x", Err(BadPattern)),
            ("a/b[", "x", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                &matches(pattern, name),
                want,
                "pattern {pattern:?} name {name:?}"
            );
        }
    }

    #[test]
    fn wildcard_detection() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("a?"));
        assert!(has_wildcards("[ab]"));
        assert!(!has_wildcards("plain.txt"));
    }

    #[test]
    fn excludes_follow_dockerignore_rules() {
        let ex = Excludes::new(&[
            "*.txt".to_string(),
            "**/*.md".into(),
            "build".into(),
            "docs/**/keep.md".into(),
            "!docs/**/keep.md".into(),
        ])
        .unwrap();
        assert!(ex.excluded(&["a.txt"]));
        assert!(!ex.excluded(&["sub", "a.txt"]));
        assert!(ex.excluded(&["README.md"]));
        assert!(ex.excluded(&["x", "y", "z.md"]));
        assert!(ex.excluded(&["build", "out", "bin"]));
        assert!(!ex.excluded(&["docs", "a", "keep.md"]));
        assert!(!ex.excluded(&["src", "main.rs"]));
        assert!(ex.has_exceptions());
        assert!(Excludes::new(&["[".to_string()]).is_err());
    }
}
