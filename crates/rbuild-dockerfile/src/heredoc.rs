//! Finding `<<EOF` words on RUN, COPY and ADD lines, the way BuildKit does: the line
//! is split into shell words (quotes and escapes kept, unset variables left alone) and
//! every word of the form `[fd]<<[-]WORD` starts a here-document.

use crate::lex::{self, LexOptions};

/// A here-document announced on an instruction line, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocStart {
    /// Delimiter with quotes removed.
    pub name: String,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// `<<-`.
    pub chomp: bool,
    /// The `3` of `3<<EOF`.
    pub fd: Option<u32>,
    /// The word as it appears on the line (used to point at it).
    pub word: String,
}

fn no_vars(_: &str) -> Option<String> {
    None
}

fn lex_words(s: &str, raw_quotes: bool, raw_escapes: bool) -> Option<Vec<String>> {
    let opts = LexOptions {
        raw_quotes,
        raw_escapes,
        skip_unset: true,
        ..LexOptions::new('\\')
    };
    lex::process(s, &no_vars, opts).ok().map(|e| e.words)
}

/// Reads one word as a heredoc start, or `None` when it is not one.
pub(crate) fn parse_heredoc_word(word: &str) -> Option<HeredocStart> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let after = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let plain = lex_words(rest, false, false)?;
    let [name] = plain.as_slice() else {
        return None;
    };
    let raw = lex_words(rest, true, false)?;
    let [raw_name] = raw.as_slice() else {
        return None;
    };
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Some(HeredocStart {
        name: name.clone(),
        expand: quotes(name) == quotes(raw_name),
        chomp,
        fd: word[..digits].parse().ok(),
        word: word.to_string(),
    })
}

/// Every heredoc start on `line`, in order. A line that does not lex (an unbalanced
/// quote, say) has none, as in BuildKit.
pub(crate) fn heredocs_in_line(line: &str) -> Vec<HeredocStart> {
    if !line.contains("<<") {
        return Vec::new();
    }
    lex_words(line, true, true)
        .unwrap_or_default()
        .iter()
        .filter_map(|w| parse_heredoc_word(w))
        .collect()
}

/// Removes leading tabs from every line, for `<<-`.
pub(crate) fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool, Option<u32>)> {
        heredocs_in_line(line)
            .into_iter()
            .map(|h| (h.name, h.expand, h.chomp, h.fd))
            .collect()
    }

    #[test]
    fn finds_heredoc_words() {
        assert_eq!(names("RUN <<EOF"), vec![("EOF".into(), true, false, None)]);
        assert_eq!(
            names("RUN <<-'A' 3<<\"B\" cat"),
            vec![
                ("A".into(), false, true, None),
                ("B".into(), false, false, Some(3))
            ]
        );
        assert_eq!(names("RUN E\"O\"F<<x"), vec![]);
        assert_eq!(
            names("RUN <<E\"O\"F"),
            vec![("EOF".into(), false, false, None)]
        );
        assert_eq!(names("RUN echo '<<EOF'"), vec![]);
        assert_eq!(names("RUN echo \"unbalanced <<EOF"), vec![]);
        assert_eq!(names("RUN a << b"), vec![]);
        assert_eq!(names("RUN <<$X"), vec![("$X".into(), true, false, None)]);
    }

    #[test]
    fn chomps_tabs_per_line() {
        assert_eq!(chomp("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
    }
}
