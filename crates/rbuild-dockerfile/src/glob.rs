//! The shell patterns of `${v#p}`, `${v%p}` and `${v/p/r}`: `*` any run, `?` any one
//! character, `\*`, `\?` and `\\` literal; no bracket expressions (as in BuildKit).

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Star,
    Any,
    Lit(char),
}

/// Compiles `pattern`; the error is the text that followed an invalid backslash.
pub(crate) fn compile(pattern: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => match chars.get(i) {
                // `}` and `/` had to be escaped inside `${}`; the backslash is not
                // part of the pattern.
                Some('}' | '/') => {}
                Some(&e @ ('*' | '?' | '\\')) => {
                    out.push(Tok::Lit(e));
                    i += 1;
                }
                Some(&e) => return Err(e.to_string()),
                None => return Err(String::new()),
            },
            c => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// For each end position of `text`, whether `tokens` match `text[start..end]` exactly.
/// As in Go's regexp (which BuildKit compiles patterns to), `*` and `?` do not match
/// a newline.
fn ends_from(tokens: &[Tok], text: &[char], start: usize) -> Vec<bool> {
    let text = &text[start..];
    let n = text.len();
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    for tok in tokens {
        let mut next = vec![false; n + 1];
        match tok {
            Tok::Star => {
                let mut reach = false;
                for p in 0..=n {
                    reach |= cur[p];
                    next[p] = reach;
                    if text.get(p) == Some(&'\n') {
                        reach = false;
                    }
                }
            }
            Tok::Any => {
                for p in 0..n {
                    next[p + 1] = cur[p] && text[p] != '\n';
                }
            }
            Tok::Lit(c) => {
                for p in 0..n {
                    next[p + 1] = cur[p] && text[p] == *c;
                }
            }
        }
        if !next.contains(&true) {
            return next;
        }
        cur = next;
    }
    cur
}

/// The shortest (or with `greedy` the longest) length of a match at `start`.
fn prefix_len(tokens: &[Tok], text: &[char], start: usize, greedy: bool) -> Option<usize> {
    if let Some(Tok::Lit(c)) = tokens.first()
        && text.get(start) != Some(c)
    {
        return None;
    }
    let ends = ends_from(tokens, text, start);
    let mut hits = ends
        .iter()
        .enumerate()
        .filter(|(_, ok)| **ok)
        .map(|(i, _)| start + i);
    if greedy {
        hits.next_back()
    } else {
        hits.next()
    }
}

/// `${v#p}` (shortest) and `${v##p}` (greedy).
pub(crate) fn trim_prefix(tokens: &[Tok], value: &str, greedy: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    match prefix_len(tokens, &text, 0, greedy) {
        Some(end) => text[end..].iter().collect(),
        None => value.to_string(),
    }
}

/// `${v%p}` (shortest) and `${v%%p}` (greedy): a prefix match on the reversed text.
pub(crate) fn trim_suffix(tokens: &[Tok], value: &str, greedy: bool) -> String {
    let reversed_tokens: Vec<Tok> = tokens.iter().rev().copied().collect();
    let reversed: String = value.chars().rev().collect();
    trim_prefix(&reversed_tokens, &reversed, greedy)
        .chars()
        .rev()
        .collect()
}

/// The leftmost match at or after `from`, longest at its start.
fn find(tokens: &[Tok], text: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=text.len()).find_map(|s| prefix_len(tokens, text, s, true).map(|e| (s, e)))
}

/// `${v/p/r}` replaces the first match literally; `${v//p/r}` replaces every match the
/// way Go's `Regexp.ReplaceAllString` does (including its `$0`/`$$` template rules).
pub(crate) fn replace(tokens: &[Tok], value: &str, replacement: &str, all: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    if !all {
        return match find(tokens, &text, 0) {
            Some((a, b)) => {
                let mut out: String = text[..a].iter().collect();
                out.push_str(replacement);
                out.extend(&text[b..]);
                out
            }
            None => value.to_string(),
        };
    }
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((a, b)) = find(tokens, &text, search) else {
            break;
        };
        out.extend(&text[last_end..a]);
        // No replacement for an empty match right after a previous match.
        if b > last_end || a == 0 {
            let whole: String = text[a..b].iter().collect();
            out.push_str(&expand_template(replacement, &whole));
        }
        last_end = b;
        search = if b < search + 1 { search + 1 } else { b };
    }
    out.extend(&text[last_end..]);
    out
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0` the match,
/// other references are empty and a malformed one is kept literally.
fn expand_template(template: &str, whole: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        match template_ref(rest) {
            Some((name, after)) => {
                rest = after;
                // Only group 0 (the whole match) exists; `$0`, `$00`... name it.
                if name.chars().all(|c| c == '0') {
                    out.push_str(whole);
                }
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// Splits a `name` or `{name}` reference off the start of `s`.
fn template_ref(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let len: usize = body
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let after = &body[len..];
    if braced {
        let after = after.strip_prefix('}')?;
        return Some((name, after));
    }
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> Vec<Tok> {
        compile(p).unwrap()
    }

    #[test]
    fn compile_escapes() {
        assert_eq!(c("\\*"), vec![Tok::Lit('*')]);
        assert_eq!(c("a\\}"), vec![Tok::Lit('a'), Tok::Lit('}')]);
        assert!(compile("\\").is_err());
        assert!(compile("\\x").is_err());
        assert!(compile("\\\\\\").is_err());
    }

    #[test]
    fn trims() {
        assert_eq!(trim_prefix(&c("*x*y"), "xxyy", false), "y");
        assert_eq!(trim_prefix(&c("*x"), "xxyy", true), "yy");
        assert_eq!(trim_prefix(&c("*"), "xxyy", false), "xxyy");
        assert_eq!(trim_suffix(&c("\\**\\*"), "a***yy*", true), "a");
        assert_eq!(trim_suffix(&c("\\**"), "xx**", true), "xx");
        assert_eq!(trim_suffix(&c(".*"), "a.b.c", false), "a.b");
        assert_eq!(trim_suffix(&c(".*"), "a.b.c", true), "a");
        assert_eq!(trim_prefix(&c("*/"), "a\nb/c", true), "a\nb/c");
    }

    #[test]
    fn replaces_like_go() {
        assert_eq!(replace(&c(""), "xxyy", "ww", false), "wwxxyy");
        assert_eq!(replace(&c(""), "ab", "-", true), "-a-b-");
        assert_eq!(replace(&c("*"), "ab", "-", true), "-");
        assert_eq!(
            replace(&c("/?/"), "/a/foo/b/c.txt", "/", true),
            "/foo/c.txt"
        );
        assert_eq!(replace(&c("o"), "foo", "[$0$$]", true), "f[o$][o$]");
        assert_eq!(replace(&c("b*"), "abc\nbd", "X", true), "aX\nX");
    }
}
