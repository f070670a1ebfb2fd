//! BuildKit writes history `created_by` strings with Go's `fmt` verbs (`%q` and `%v` of
//! string slices, `%+v` of the healthcheck struct, `time.Duration` values). These helpers
//! reproduce those renderings so rbuild's history reads exactly like BuildKit's.

use rbuild_core::config::HealthConfig;
use std::fmt::Write;

/// Go's `%v` of a `[]string`: `[a b c]`.
pub fn list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// Go's `%q` of a `[]string`: `["a" "b c"]`.
pub fn quoted_list(v: &[String]) -> String {
    let parts: Vec<String> = v.iter().map(|s| quote(s)).collect();
    format!("[{}]", parts.join(" "))
}

/// Go's `strconv.Quote`: double quotes, backslash escapes for quotes, backslashes and
/// control characters; printable Unicode kept as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.Duration.String()` for a number of nanoseconds: `0s`, `1.5s`, `500ms`,
/// `1m30s`, `1h0m0s`.
pub fn duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(u, div));
    }
    let secs_total = u / 1_000_000_000;
    let frac = u % 1_000_000_000;
    let h = secs_total / 3600;
    let m = secs_total % 3600 / 60;
    let s = secs_total % 60;
    let secs = fraction(s * 1_000_000_000 + frac, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// `v / div` with the fraction's trailing zeros removed, as Go prints durations.
fn fraction(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `%+v` of BuildKit's `HealthcheckConfig` value, as in `HEALTHCHECK {Test:[...] ...}`.
pub fn healthcheck(h: &HealthConfig) -> String {
    format!(
        "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        list(h.test.as_deref().unwrap_or_default()),
        duration(h.interval.unwrap_or(0)),
        duration(h.timeout.unwrap_or(0)),
        duration(h.start_period.unwrap_or(0)),
        duration(h.start_interval.unwrap_or(0)),
        h.retries.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(30_000_000_000), "30s");
        assert_eq!(duration(90_000_000_000), "1m30s");
        assert_eq!(duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(duration(1_500_000_000), "1.5s");
        assert_eq!(duration(500_000_000), "500ms");
        assert_eq!(duration(1_000), "1µs");
        assert_eq!(duration(2), "2ns");
    }

    #[test]
    fn quoting_matches_strconv() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(quoted_list(&["a".into(), "b c".into()]), r#"["a" "b c"]"#);
        assert_eq!(list(&["/bin/sh".into(), "-c".into()]), "[/bin/sh -c]");
    }
}
