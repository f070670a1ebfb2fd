//! Text that came from outside (registry bodies and headers, archive names, server
//! messages) made safe to print: no terminal control sequences, no control or bidi
//! characters, bounded length.

/// The longest outside text [`sanitize`] keeps, in characters.
pub const MAX_CHARS: usize = 512;

/// `text` with every terminal escape sequence (ESC/CSI/OSC/DCS and their C1 forms),
/// every other control character, and every bidi override removed; newlines and tabs
/// become spaces; cut to [`MAX_CHARS`] characters (marked with `…`). Use it on any
/// text a server, archive or file supplied before it reaches a message or a log.
pub fn sanitize(text: &str) -> String {
    sanitize_to(text, MAX_CHARS)
}

/// [`sanitize`] of bytes that may not be UTF-8 (invalid sequences become U+FFFD).
pub fn sanitize_bytes(bytes: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(bytes))
}

/// [`sanitize_to`] of each line of `text`, the line breaks kept: for messages of several
/// lines (a Dockerfile excerpt under an error, a heredoc in a step's name) that hold text
/// from outside.
pub fn sanitize_lines(text: &str, max_line: usize) -> String {
    let lines: Vec<String> = text.lines().map(|l| sanitize_middle(l, max_line)).collect();
    lines.join("\n")
}

/// [`sanitize`] without the length cap, then, when longer than `max` characters, its
/// start and end with `…` between: for a line quoting a huge instruction, whose end (the
/// reason it failed) matters as much as its start.
pub fn sanitize_middle(text: &str, max: usize) -> String {
    let clean: Vec<char> = sanitize_to(text, usize::MAX).chars().collect();
    if clean.len() <= max {
        return clean.into_iter().collect();
    }
    let half = max / 2;
    let head: String = clean[..half].iter().collect();
    let tail: String = clean[clean.len() - half..].iter().collect();
    format!("{head}…{tail}")
}

/// An error and its causes on one line, `: `-separated, each cause once (a cause whose text
/// the message already holds, as typed errors often show their source, is not repeated).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        src = s.source();
    }
    text
}

/// [`sanitize`] with a limit of `max` characters.
pub fn sanitize_to(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut kept = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let keep = match c {
            '\u{1b}' => {
                skip_escape(&mut chars);
                None
            }
            '\u{9b}' => {
                skip_csi(&mut chars);
                None
            }
            '\u{90}' | '\u{9d}' | '\u{9e}' | '\u{9f}' | '\u{98}' => {
                skip_string(&mut chars);
                None
            }
            '\n' | '\t' => Some(' '),
            c if is_unsafe(c) => None,
            c => Some(c),
        };
        let Some(c) = keep else { continue };
        if kept == max {
            out.push('…');
            break;
        }
        out.push(c);
        kept += 1;
    }
    out
}

/// Control characters (C0, DEL, C1) and the bidi embedding, override and isolate marks.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// After ESC: a CSI (`[`), a string sequence (OSC `]`, DCS `P`, SOS `X`, PM `^`, APC
/// `_`), or a two-character escape.
fn skip_escape(chars: &mut Chars<'_>) {
    match chars.next() {
        Some('[') => skip_csi(chars),
        Some(']' | 'P' | 'X' | '^' | '_') => skip_string(chars),
        _ => {}
    }
}

/// CSI parameters and intermediates up to and including the final byte (`@`..`~`).
fn skip_csi(chars: &mut Chars<'_>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
    }
}

/// A string sequence up to its terminator: BEL, ST (`ESC \` or U+009C), or the end.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => break,
            '\u{1b}' => {
                chars.next_if_eq(&'\\');
                break;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn lines_are_sanitised_one_by_one() {
        let text = "RUN true \u{1b}]0;PWN\u{7} \u{1b}[2J\nsecond\u{0}line\r";
        assert_eq!(sanitize_lines(text, 100), "RUN true  \nsecondline");
        assert_eq!(sanitize_lines("abcdef", 4), "ab…ef");
    }

    use super::*;

    #[test]
    fn escape_sequences_are_removed() {
        let hostile = "a\u{1b}]0;pwned\u{7}b\u{1b}[2Jc\rd\u{1b}[1;31me\u{1b}\\f";
        assert_eq!(sanitize(hostile), "abcdef");
        assert_eq!(
            sanitize("x\u{1b}]8;;http://e\u{1b}\\link\u{1b}]8;;\u{1b}\\y"),
            "xlinky"
        );
        assert_eq!(sanitize("p\u{1b}P1;2|data\u{1b}\\q"), "pq");
        assert_eq!(sanitize("c1\u{9b}31mcsi\u{9d}0;t\u{9c}ok"), "c1csiok");
    }

    #[test]
    fn controls_and_bidi_overrides_are_removed() {
        assert_eq!(sanitize("a\u{0}b\u{8}c\u{7f}d\u{85}e"), "abcde");
        assert_eq!(
            sanitize("user\u{202e}gpj.exe\u{2066}x\u{2069}"),
            "usergpj.exex"
        );
        assert_eq!(sanitize("line 1\nline 2\ttab"), "line 1 line 2 tab");
        assert_eq!(
            sanitize("plain text: ünïcödé 1/2"),
            "plain text: ünïcödé 1/2"
        );
    }

    #[test]
    fn length_is_capped() {
        assert_eq!(sanitize_to("abcdef", 3), "abc…");
        assert_eq!(sanitize_to("abc", 3), "abc");
        assert_eq!(sanitize(&"x".repeat(10_000)).chars().count(), MAX_CHARS + 1);
        assert_eq!(sanitize_bytes(b"ok\xff\x1b[2J"), "ok\u{fffd}");
    }
}
