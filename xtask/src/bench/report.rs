//! Medians of the samples and the result table.

use std::time::Duration;

/// One timed build: its wall time and the peak resident set size of the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Wall time of the build (and of its export, when that is a separate command).
    pub wall: Duration,
    /// Peak RSS in KiB, when it could be measured.
    pub rss_kib: Option<u64>,
}

/// Cold: a fresh state. Warm: the same build again on the state the cold one left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Fresh state directory (or a pruned daemon).
    Cold,
    /// A no-op rebuild.
    Warm,
}

impl Mode {
    /// `cold` or `warm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cold => "cold",
            Mode::Warm => "warm",
        }
    }
}

/// The median of some durations (the mean of the middle two for an even count).
pub fn median_duration(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2),
    }
}

/// The median of some integers (the mean of the middle two, rounded down, for an even count).
pub fn median_u64(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some(
            sorted[mid - 1] / 2 + sorted[mid] / 2 + (sorted[mid - 1] % 2 + sorted[mid] % 2) / 2,
        ),
    }
}

/// Median wall time and median peak RSS over the runs of one builder on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Median wall time.
    pub wall: Duration,
    /// Median peak RSS in KiB, over the runs where it was measured.
    pub rss_kib: Option<u64>,
    /// How many runs the medians are over.
    pub runs: usize,
}

impl Summary {
    /// The medians of `samples`; `None` when there are none.
    pub fn of(samples: &[Sample]) -> Option<Summary> {
        let walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
        let rss: Vec<u64> = samples.iter().filter_map(|s| s.rss_kib).collect();
        Some(Summary {
            wall: median_duration(&walls)?,
            rss_kib: median_u64(&rss),
            runs: samples.len(),
        })
    }
}

/// What one builder gave on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The builder is not available on this machine.
    Absent,
    /// At least one of its builds failed.
    Failed,
    /// Medians of its runs.
    Done(Summary),
}

impl Outcome {
    fn wall(&self) -> Option<Duration> {
        match self {
            Outcome::Done(s) => Some(s.wall),
            _ => None,
        }
    }
}

/// One line of the table: a case on a platform set, cold or warm, every builder's outcome
/// in the order of the table's builder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Case name.
    pub case: String,
    /// Platform set label, e.g. `amd64+arm64`.
    pub platforms: String,
    /// Cold or warm.
    pub mode: Mode,
    /// One outcome per builder; the first is rbuild's.
    pub outcomes: Vec<Outcome>,
}

/// Seconds with two decimals, e.g. `1.25s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// KiB as MiB, e.g. `45MiB` (one decimal below 10 MiB).
pub fn mebibytes(kib: u64) -> String {
    let mib = kib as f64 / 1024.0;
    if mib < 10.0 {
        format!("{mib:.1}MiB")
    } else {
        format!("{mib:.0}MiB")
    }
}

/// The ratio `ours / theirs` with two decimals, `-` when either is missing.
fn ratio(ours: Option<Duration>, theirs: Option<Duration>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    }
}

fn outcome_cells(outcome: &Outcome) -> [String; 2] {
    match outcome {
        Outcome::Absent => ["-".into(), "-".into()],
        Outcome::Failed => ["failed".into(), "-".into()],
        Outcome::Done(s) => [
            seconds(s.wall),
            s.rss_kib.map(mebibytes).unwrap_or_else(|| "-".into()),
        ],
    }
}

fn header(builders: &[&str]) -> Vec<String> {
    let mut cells: Vec<String> = ["case", "platforms", "state"].map(String::from).to_vec();
    for b in builders {
        cells.push((*b).to_string());
        cells.push(format!("{b} RSS"));
    }
    if let Some((ours, peers)) = builders.split_first() {
        cells.extend(peers.iter().map(|p| format!("{ours}/{p}")));
    }
    cells
}

fn row_cells(row: &Row) -> Vec<String> {
    let mut cells = vec![
        row.case.clone(),
        row.platforms.clone(),
        row.mode.as_str().to_string(),
    ];
    cells.extend(row.outcomes.iter().flat_map(outcome_cells));
    if let Some((ours, peers)) = row.outcomes.split_first() {
        cells.extend(peers.iter().map(|p| ratio(ours.wall(), p.wall())));
    }
    cells
}

/// The table: one line per row, medians of wall time and peak RSS per builder, then the
/// wall-time ratio of the first builder (rbuild) to each other one.
pub fn table(builders: &[&str], rows: &[Row]) -> String {
    let mut lines = vec![header(builders)];
    lines.extend(rows.iter().map(row_cells));
    align(&lines)
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
pub fn align(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .filter_map(|l| l.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn medians_of_odd_even_and_empty_sets() {
        assert_eq!(median_duration(&[]), None);
        assert_eq!(median_duration(&[ms(30), ms(10), ms(20)]), Some(ms(20)));
        assert_eq!(
            median_duration(&[ms(40), ms(10), ms(30), ms(20)]),
            Some(ms(25))
        );
        assert_eq!(median_u64(&[]), None);
        assert_eq!(median_u64(&[7]), Some(7));
        assert_eq!(median_u64(&[9, 1, 5]), Some(5));
        assert_eq!(median_u64(&[u64::MAX, u64::MAX]), Some(u64::MAX));
        assert_eq!(median_u64(&[3, 4]), Some(3));
    }

    #[test]
    fn summary_takes_medians_and_skips_unmeasured_rss() {
        let samples = [
            Sample {
                wall: ms(300),
                rss_kib: Some(10_000),
            },
            Sample {
                wall: ms(100),
                rss_kib: None,
            },
            Sample {
                wall: ms(200),
                rss_kib: Some(30_000),
            },
        ];
        let summary = Summary::of(&samples).unwrap();
        assert_eq!(summary.wall, ms(200));
        assert_eq!(summary.rss_kib, Some(20_000));
        assert_eq!(summary.runs, 3);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn table_shows_times_ratios_and_failures() {
        let done = |wall: u64, rss: Option<u64>| {
            Outcome::Done(Summary {
                wall: ms(wall),
                rss_kib: rss,
                runs: 3,
            })
        };
        let rows = [
            Row {
                case: "copy".into(),
                platforms: "amd64".into(),
                mode: Mode::Cold,
                outcomes: vec![
                    done(500, Some(8 * 1024)),
                    done(2000, Some(50 * 1024)),
                    done(1000, None),
                ],
            },
            Row {
                case: "copy".into(),
                platforms: "amd64+arm64".into(),
                mode: Mode::Warm,
                outcomes: vec![Outcome::Failed, Outcome::Failed, done(1000, None)],
            },
            Row {
                case: "run".into(),
                platforms: "amd64".into(),
                mode: Mode::Warm,
                outcomes: vec![done(250, Some(1536)), Outcome::Absent, Outcome::Absent],
            },
        ];
        let text = table(&["rbuild", "buildah", "buildkit"], &rows);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            [
                "case",
                "platforms",
                "state",
                "rbuild",
                "rbuild",
                "RSS",
                "buildah",
                "buildah",
                "RSS",
                "buildkit",
                "buildkit",
                "RSS",
                "rbuild/buildah",
                "rbuild/buildkit"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "copy", "amd64", "cold", "0.50s", "8.0MiB", "2.00s", "50MiB", "1.00s", "-", "0.25",
                "0.50"
            ]
        );
        assert_eq!(
            lines[2],
            [
                "copy",
                "amd64+arm64",
                "warm",
                "failed",
                "-",
                "failed",
                "-",
                "1.00s",
                "-",
                "-",
                "-"
            ]
        );
        assert_eq!(
            lines[3],
            [
                "run", "amd64", "warm", "0.25s", "1.5MiB", "-", "-", "-", "-", "-", "-"
            ]
        );
    }

    #[test]
    fn columns_are_aligned_without_trailing_blanks() {
        let lines = vec![
            vec!["a".to_string(), "long".to_string()],
            vec!["wider".to_string(), "x".to_string()],
        ];
        assert_eq!(align(&lines), "a      long\nwider  x\n");
    }
}
