//! How long a registry (or `ADD` URL) request may take, so a silent or trickling server
//! cannot hold a build forever. Defaults follow containerd's and buildx's transport:
//! 30 s to connect, 60 s without a byte ([`Timeouts::idle`]), and one hour for a whole
//! request ([`Timeouts::total`]: the answer and its body, so one blob; a download that
//! is cut off by it resumes where it stopped).

use std::time::Duration;

/// The limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The longest wait for any data (connecting, the answer, each part of the body);
    /// `--registry-timeout`, `RBUILD_REGISTRY_TIMEOUT`.
    pub idle: Duration,
    /// The longest a whole request may take, body included;
    /// `--registry-total-timeout`, `RBUILD_REGISTRY_TOTAL_TIMEOUT`.
    pub total: Duration,
}

/// The connect limit when the idle limit is longer.
const CONNECT: Duration = Duration::from_secs(30);

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(60),
            total: Duration::from_secs(3600),
        }
    }
}

impl Timeouts {
    /// The connect limit: 30 s, or the idle limit when that is shorter.
    pub fn connect(&self) -> Duration {
        CONNECT.min(self.idle)
    }

    /// The limits in words, for a timeout's message.
    pub fn describe(&self) -> String {
        format!(
            "no data for {} (--registry-timeout), or not done after {} (--registry-total-timeout)",
            show(self.idle),
            show(self.total)
        )
    }
}

/// A duration as `500ms`, `30s`, `5m` or `1h`.
pub fn show(d: Duration) -> String {
    let secs = d.as_secs();
    match (d.subsec_millis(), secs) {
        (ms, _) if ms != 0 => format!("{}ms", d.as_millis()),
        (_, s) if s != 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        (_, s) if s != 0 && s % 60 == 0 => format!("{}m", s / 60),
        (_, s) => format!("{s}s"),
    }
}

/// Parses a timeout: a positive number with an optional unit `ms`, `s` (the default),
/// `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is no duration (examples: 30s, 5m, 1h)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if d.is_zero() {
        return Err(format!("{text:?}: a timeout must be longer than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_show() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(show(Duration::from_secs(3600)), "1h");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_secs(120)), "2m");
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn connect_is_capped_by_idle() {
        let t = Timeouts {
            idle: Duration::from_secs(2),
            ..Timeouts::default()
        };
        assert_eq!(t.connect(), Duration::from_secs(2));
        assert_eq!(Timeouts::default().connect(), Duration::from_secs(30));
    }
}
