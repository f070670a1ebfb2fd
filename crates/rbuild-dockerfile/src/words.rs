//! Splitting an instruction's text the way BuildKit's line parsers do: flags, quoted
//! words, whitespace-delimited words, JSON arrays and `key=value` pairs.

/// A flag word found before the arguments, and its byte offset in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFlag {
    pub text: String,
    pub offset: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// Takes the leading `--flag` words off `line`; returns them and the byte offset at
/// which the arguments begin. Quotes are removed and `\` escapes the next character
/// (always the backslash, whatever the escape directive says). A bare `--` ends the
/// flags and is dropped.
pub(crate) fn extract_flags(line: &str) -> (Vec<RawFlag>, usize) {
    let cs: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        if phase == Phase::Spaces {
            let Some(&(off, ch)) = cs.get(i) else { break };
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let is_flag = ch == '-' && cs.get(i + 1).is_some_and(|&(_, c)| c == '-');
            if !is_flag {
                return (flags, off);
            }
            phase = Phase::Word;
            start = off;
        }
        let Some(&(off, ch)) = cs.get(i) else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                flags.push(RawFlag {
                    text: word,
                    offset: start,
                });
            }
            break;
        };
        i += 1;
        let mut ch = ch;
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (flags, off);
                }
                if blank_ok || !word.is_empty() {
                    flags.push(RawFlag {
                        text: std::mem::take(&mut word),
                        offset: start,
                    });
                }
                word.clear();
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                continue;
            }
            if ch == '\\' {
                let Some(&(_, next)) = cs.get(i) else {
                    continue;
                };
                i += 1;
                ch = next;
            }
            word.push(ch);
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
            continue;
        }
        if ch == '\\' {
            let Some(&(_, next)) = cs.get(i) else {
                phase = Phase::Word;
                continue;
            };
            i += 1;
            ch = next;
        }
        word.push(ch);
    }
    (flags, line.len())
}

/// Splits into words on whitespace outside quotes, keeping quotes and escapes in the
/// words (they are removed later, by expansion). Used by ENV, LABEL and ARG.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        if phase == Phase::Spaces {
            let Some(&ch) = chars.get(i) else { break };
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        let Some(&first) = chars.get(i) else {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        };
        let mut ch = first;
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == n {
                    // An escape at the very end is dropped.
                    i += 1;
                    continue;
                }
                // Outside quotes the escape and the next character both stay.
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == n {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            word.push(ch);
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// BuildKit's instruction whitespace: space, tab, vertical tab, form feed, CR.
pub(crate) fn is_token_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Splits on runs of instruction whitespace, keeping everything else verbatim.
pub(crate) fn split_whitespace(rest: &str) -> Vec<String> {
    rest.split(is_token_space)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The result of trying the JSON array form.
pub(crate) enum Json {
    /// A JSON array of strings.
    Strings(Vec<String>),
    /// A JSON array holding something other than strings: an error in BuildKit.
    NotStrings,
    /// Not a JSON array at all: use the other form.
    Other,
}

/// Tries to read `rest` as a JSON array of strings.
pub(crate) fn parse_json(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::Other;
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(rest)
    else {
        return Json::Other;
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            serde_json::Value::String(s) => out.push(s),
            _ => return Json::NotStrings,
        }
    }
    Json::Strings(out)
}

/// Why ENV or LABEL arguments could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PairsError {
    /// Nothing at all.
    Empty,
    /// Legacy `KEY value` form with no value.
    NeedsTwo,
    /// `k=v word`: a later word without `=`.
    MissingEquals(String),
}

/// ENV/LABEL arguments: `key value` (the legacy form, when the first word has no `=`;
/// the value is the rest of the line) or `k=v k2="v 2" ...`. Quotes stay in place.
pub(crate) fn parse_pairs(rest: &str, escape: char) -> Result<Vec<(String, String)>, PairsError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(PairsError::Empty);
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, is_token_space);
        let key = parts.next().unwrap_or_default();
        let value = parts.next().map(|v| v.trim_start_matches(is_token_space));
        return match value {
            Some(v) => Ok(vec![(key.to_string(), v.to_string())]),
            None => Err(PairsError::NeedsTwo),
        };
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(PairsError::MissingEquals(w)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(line: &str) -> (Vec<String>, &str) {
        let (f, off) = extract_flags(line);
        (f.into_iter().map(|f| f.text).collect(), &line[off..])
    }

    #[test]
    fn flags_then_args() {
        assert_eq!(
            flags("--from=a --chown=\"x y\" src dst"),
            (vec!["--from=a".into(), "--chown=x y".into()], "src dst")
        );
        assert_eq!(flags("-- --notflag x"), (vec![], " --notflag x"));
        assert_eq!(flags("--link"), (vec!["--link".into()], ""));
        assert_eq!(flags("-x y"), (vec![], "-x y"));
        assert_eq!(flags("--a=b\\ c d"), (vec!["--a=b c".into()], "d"));
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d=e\ f 'g h'"#, '\\'),
            vec![r#"a="b c""#, r"d=e\ f", "'g h'"]
        );
        assert_eq!(parse_words("x=\"\"", '\\'), vec!["x=\"\""]);
        assert_eq!(parse_words("a\\", '\\'), vec!["a"]);
        assert_eq!(parse_words("a` b", '`'), vec!["a` b"]);
    }

    #[test]
    fn pairs_both_forms() {
        assert_eq!(
            parse_pairs("A b  c", '\\'),
            Ok(vec![("A".into(), "b  c".into())])
        );
        assert_eq!(
            parse_pairs("A=1 B=\"2 3\"", '\\'),
            Ok(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"2 3\"".into())
            ])
        );
        assert_eq!(parse_pairs("A", '\\'), Err(PairsError::NeedsTwo));
        assert_eq!(
            parse_pairs("A=1 B", '\\'),
            Err(PairsError::MissingEquals("B".into()))
        );
        assert_eq!(parse_pairs("", '\\'), Err(PairsError::Empty));
    }

    #[test]
    fn json_forms() {
        assert!(matches!(parse_json(r#"["a", "b"]"#), Json::Strings(v) if v == ["a", "b"]));
        assert!(matches!(parse_json(r#"["a", 1]"#), Json::NotStrings));
        assert!(matches!(parse_json(r#"["a", "b""#), Json::Other));
        assert!(matches!(parse_json("echo [x]"), Json::Other));
    }
}
