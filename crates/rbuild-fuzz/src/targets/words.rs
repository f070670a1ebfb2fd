//! `word-expand`: [`rbuild_dockerfile::Expander`] on arbitrary words and variables.
//!
//! Input layout: the first byte chooses the escape character and the `skip_unset` /
//! `skip_quotes` switches; the word runs up to the first NUL byte; after it come variables,
//! one `NAME=VALUE` per line (a line without `=` is a variable that is unset on purpose).

use rbuild_dockerfile::Expander;
use std::collections::BTreeMap;

/// Tokens of BuildKit's word syntax.
pub(crate) static DICTIONARY: &[&[u8]] = &[
    b"$",
    b"${",
    b"}",
    b"${A}",
    b"$A",
    b"${A:-",
    b"${A-",
    b"${A:+",
    b"${A+",
    b"${A:?",
    b"${A?",
    b"${A#",
    b"${A##",
    b"${A%",
    b"${A%%",
    b"${A/",
    b"${A//",
    b"${#A}",
    b"${A=x}",
    b"\\",
    b"`",
    b"'",
    b"\"",
    b"\\$",
    b"*",
    b"?",
    b"[a-z]",
    b"\\*",
    b" ",
    b"\t",
    b"\n",
    b"\0",
    b"A=",
    b"B=",
    b"\0A=1\nB=x y\n",
    b"${B:-${A}}",
    b"$$",
    b"${",
];

/// Runs one input; see the module docs for its layout.
pub fn word_expand(data: &[u8]) -> u64 {
    let (flags, rest) = data.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
    let (word, env) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let word = String::from_utf8_lossy(word);
    let mut vars = BTreeMap::new();
    for line in String::from_utf8_lossy(env).lines() {
        if let Some((k, v)) = line.split_once('=') {
            vars.insert(k.to_string(), v.to_string());
        }
    }
    let lookup = |name: &str| vars.get(name).cloned();
    let escape = if flags & 1 == 0 { '\\' } else { '`' };
    let ex = Expander::new(&lookup, escape)
        .skip_unset(flags & 2 != 0)
        .skip_quotes(flags & 4 != 0);
    let result = ex.expand(&word);
    // Deterministic, and the convenience methods are views of the same expansion.
    assert_eq!(result, ex.expand(&word), "expansion is not deterministic");
    match &result {
        Ok(e) => {
            assert_eq!(ex.word(&word).ok().as_ref(), Some(&e.result));
            assert_eq!(ex.words(&word).ok().as_ref(), Some(&e.words));
            for name in &e.matched {
                assert!(
                    vars.contains_key(name),
                    "{name:?} reported as found but is unset"
                );
                assert!(
                    e.used.contains(name),
                    "{name:?} found but not listed as used"
                );
            }
            for name in &e.unmatched {
                assert!(
                    !vars.contains_key(name),
                    "{name:?} reported as missing but is set"
                );
                assert!(
                    e.used.contains(name),
                    "{name:?} missing but not listed as used"
                );
            }
            crate::fingerprint((flags & 7, 0u8, e.words.len().min(8), e.used.len().min(8)))
        }
        Err(err) => {
            let _ = err.to_string();
            crate::fingerprint((flags & 7, 1u8, std::mem::discriminant(&err.reason)))
        }
    }
}
