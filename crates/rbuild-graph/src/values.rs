//! Instruction values checked and parsed as BuildKit does: modes, checksums, URLs,
//! signals, durations, ports, paths.

use rbuild_core::Digest;
use rbuild_dockerfile::{Args, Instruction};

/// Whether `m` is a chmod(1) symbolic mode: comma-separated `[ugoa]*` followed by one or
/// more `[-+=]` actions, each with `[rwxXst]*` or one of `u`, `g`, `o`.
pub(crate) fn is_symbolic_mode(m: &str) -> bool {
    m.split(',').all(|clause| {
        let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        if !rest.starts_with(['+', '-', '=']) {
            return false;
        }
        rest.split(['+', '-', '='])
            .skip(1)
            .all(|p| p.chars().all(|c| "rwxXst".contains(c)) || matches!(p, "u" | "g" | "o"))
    })
}

/// Quotes a word for /bin/sh when it needs it.
pub(crate) fn sh_quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Whether `w` is a heredoc marker such as `<<EOF`, `<<-EOF`, `<<"EOF"` or `3<<EOF`.
pub(crate) fn is_heredoc_word(w: &str) -> bool {
    let rest = w.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    !rest.is_empty() && !rest.contains(char::is_whitespace) && !rest.contains('<')
}

/// Parses a `--checksum` value: `sha256:` and 64 hex digits.
pub(crate) fn parse_checksum(sum: &str) -> Result<Digest, String> {
    match sum.split_once(':') {
        Some(("sha256", _)) => sum
            .parse::<Digest>()
            .map_err(|e| format!("invalid checksum: {e}")),
        Some((algo, _)) => Err(format!(
            "unsupported checksum algorithm {algo:?} in {sum:?}: rbuild verifies sha256 only"
        )),
        None => Err(format!(
            "invalid checksum {sum:?}: expected sha256:<64 hex digits>"
        )),
    }
}

/// Whether an ADD source is fetched over HTTP(S).
pub(crate) fn is_http_url(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Why a COPY/ADD source cannot be used: URLs for COPY and git repositories.
pub(crate) fn remote_source_error(add: bool, src: &str) -> Option<String> {
    let lower = src.to_ascii_lowercase();
    let git = lower.starts_with("git@")
        || lower.starts_with("git://")
        || ((lower.starts_with("http://") || lower.starts_with("https://"))
            && (lower.contains(".git#") || lower.ends_with(".git") || lower.contains('#')));
    let http = lower.starts_with("http://") || lower.starts_with("https://");
    match (add, git, http) {
        (false, true, _) => Some("source can't be a git ref for COPY".into()),
        (false, _, true) => Some("source can't be a URL for COPY".into()),
        (true, true, _) => Some(format!(
            "ADD from a git repository ({src}) is not supported by rbuild"
        )),
        _ => None,
    }
}

/// Whether ENV/LABEL used the legacy `KEY value` form (no `=` in the first word).
pub(crate) fn is_legacy_pairs(inst: &Instruction) -> bool {
    let text = inst.original.trim_start();
    let rest = text
        .get(inst.keyword_text.len()..)
        .unwrap_or_default()
        .trim_start();
    if let Args::Pairs(p) = &inst.args
        && p.len() != 1
    {
        return false;
    }
    // The key, quotes included: `"a b"=c` is the new form.
    let mut quote = None;
    for c in rest.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '=') => return false,
            (None, c) if c.is_whitespace() => return true,
            _ => {}
        }
    }
    true
}

/// Signal names and numbers `STOPSIGNAL` accepts (moby's signal.ParseSignal).
pub(crate) fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    let rt = |p: &str| {
        name.strip_prefix(p)
            .map(|n| n.is_empty() || n.parse::<u32>().is_ok_and(|n| n <= 30))
    };
    rt("RTMIN+").unwrap_or(false)
        || rt("RTMAX-").unwrap_or(false)
        || name == "RTMIN"
        || name == "RTMAX"
}

/// HEALTHCHECK durations: zero (inherit) or at least 1ms, never negative.
pub(crate) fn check_interval(flag: &str, text: &str, ns: i64) -> Result<i64, String> {
    if ns < 0 {
        return Err(format!("--{flag} {text:?} cannot be negative"));
    }
    if ns != 0 && ns < 1_000_000 {
        return Err(format!("--{flag} {text:?} cannot be less than 1ms"));
    }
    Ok(ns)
}

/// An ARG word `NAME[=VALUE]`: the name and, when given, the default.
pub(crate) fn split_arg(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    }
}

/// Lexically cleans an absolute path (`//`, `.`, `..`), as Go's path.Clean does.
pub fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

/// EXPOSE values as BuildKit's parsePortSpec reads them: `[ip:][host:]port[-end][/proto]`,
/// each becoming `port/proto`.
pub(crate) fn expose_ports(word: &str) -> Result<Vec<String>, String> {
    let word = word.rsplit(':').next().unwrap_or(word);
    let (ports, proto) = word.split_once('/').unwrap_or((word, ""));
    let proto = if proto.is_empty() { "tcp" } else { proto };
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol in EXPOSE {word:?}"));
    }
    let bad = || format!("invalid port in EXPOSE {word:?}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Parses Go-style durations (`30s`, `1m30s`, `500ms`) into nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| "expected a number".to_string())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("unknown unit {u:?}")),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_must_be_sha256_digests() {
        assert!(parse_checksum("sha512:00").is_err());
        assert!(parse_checksum("sha256:00").is_err());
    }

    #[test]
    fn symbolic_modes_are_recognised() {
        for m in ["u+x", "u+x,go-w", "a=r", "=r", "go=", "g=u", "u-x+w", "+t"] {
            assert!(is_symbolic_mode(m), "{m}");
        }
        for m in ["", "u", "u+y", "x+r", "u+x,", "+ur", "u+x y"] {
            assert!(!is_symbolic_mode(m), "{m}");
        }
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/a//b/./c/../d"), "/a/b/d");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn expose_forms() {
        assert_eq!(expose_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expose_ports("53/udp").unwrap(), vec!["53/udp"]);
        assert_eq!(
            expose_ports("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expose_ports("x").is_err());
        assert!(expose_ports("80/foo").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("10").is_err());
    }
}
