//! Durations and byte counts as BuildKit's display shows them.

use std::time::{Duration, SystemTime};

/// `later - earlier`, or zero when the clock went back.
pub(crate) fn since(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// Bytes as BuildKit shows them: `1.23MB`, `512B` (decimal units).
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.2}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_decimal_units() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1_234_567), "1.23MB");
    }
}
