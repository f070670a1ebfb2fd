//! RUN step durations from rbuild's `--progress=rawjson` output (BuildKit's
//! `SolveStatus` lines: each vertex line repeats the vertex's whole state).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// The duration of every completed `RUN` vertex, in the order they were first seen.
pub fn run_step_durations(log: &str) -> Vec<Duration> {
    let mut order = Vec::new();
    let mut latest: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for vertex in log.lines().filter_map(vertexes).flatten() {
        let (Some(digest), Some(name)) = (text(&vertex, "digest"), text(&vertex, "name")) else {
            continue;
        };
        if !name.contains("] RUN ") {
            continue;
        }
        if !latest.contains_key(&digest) {
            order.push(digest.clone());
        }
        latest.insert(
            digest,
            (text(&vertex, "started"), text(&vertex, "completed")),
        );
    }
    order
        .iter()
        .filter_map(|d| {
            let (started, completed) = latest.get(d)?;
            let start = parse_time(started.as_deref()?)?;
            let end = parse_time(completed.as_deref()?)?;
            end.checked_sub(start)
        })
        .collect()
}

fn vertexes(line: &str) -> Option<Vec<Value>> {
    let value: Value = serde_json::from_str(line).ok()?;
    value.get("vertexes")?.as_array().cloned()
}

fn text(value: &Value, key: &str) -> Option<String> {
    Some(value.get(key)?.as_str()?.to_string())
}

/// An RFC 3339 UTC time (`2026-12-01T10:25:53.491803382Z`) as time since the epoch.
pub fn parse_time(s: &str) -> Option<Duration> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.splitn(3, ':').map(str::parse::<i64>);
    let (h, m, sec) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    let nanos = fraction_nanos(fraction)?;
    let days = days_from_civil(year, month, day)?;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    Some(Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// Digits after the decimal point as nanoseconds (up to 9 digits).
fn fraction_nanos(fraction: &str) -> Option<u32> {
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.is_empty() {
        return Some(0);
    }
    let value: u32 = fraction.parse().ok()?;
    Some(value * 10u32.pow(9 - fraction.len() as u32))
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_the_epoch() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            parse_time("2000-03-01T00:00:01.5Z"),
            Some(Duration::new(951_868_801, 500_000_000))
        );
        assert_eq!(
            parse_time("2026-12-01T10:25:53.491803382Z"),
            Some(Duration::new(1_796_120_753, 491_803_382))
        );
        assert_eq!(parse_time("2026-12-01T10:25:53+01:00"), None);
        assert_eq!(parse_time("2026-13-01T10:25:53Z"), None);
        assert_eq!(parse_time("2026-12-01T10:25:53.1234567890Z"), None);
    }

    #[test]
    fn run_steps_take_the_last_state_of_each_vertex() {
        let log = r#"{"vertexes":[{"digest":"sha256:a","name":"[linux/amd64 1/2] FROM busybox"}]}
{"vertexes":[{"digest":"sha256:b","name":"[linux/amd64 2/2] RUN head","started":"2026-12-01T10:00:00Z"}]}
{"logs":[{"vertex":"sha256:b","stream":1,"data":"aGkK"}]}
{"vertexes":[{"digest":"sha256:a","name":"[linux/amd64 1/2] FROM busybox","started":"2026-12-01T09:59:00Z","completed":"2026-12-01T10:00:00Z"}]}
{"vertexes":[{"digest":"sha256:b","name":"[linux/amd64 2/2] RUN head","started":"2026-12-01T10:00:00Z","completed":"2026-12-01T10:00:02.25Z"}]}
{"vertexes":[{"digest":"sha256:c","name":"[linux/arm64 2/2] RUN head","started":"2026-12-01T10:00:00Z"}]}
not json
"#;
        assert_eq!(run_step_durations(log), [Duration::from_millis(2250)]);
    }
}
