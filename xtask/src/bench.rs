//! `cargo xtask bench`: wall time of rbuild against buildah on the cases in
//! `Dockerfiles/bench/<case>/Dockerfile`, cold (fresh state) and warm (cached),
//! for amd64 alone and for every platform of the fixture. Best of three.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::layout::Platform;
use crate::{demo, fixtures, util};

const RUNS: usize = 3;

/// One benchmark case: a directory with a Dockerfile, also its build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The directory name.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
}

/// Runs every case and prints the table.
pub fn run(root: &Path) -> Result<()> {
    let cases = find_cases(&root.join("Dockerfiles/bench"))?;
    if cases.is_empty() {
        util::info("no benchmark cases: Dockerfiles/bench/<case>/Dockerfile does not exist yet");
        return Ok(());
    }
    util::step("fixture images");
    let platforms = fixtures::run(root, false)?;
    let rbuild = demo::build_rbuild(root)?;
    let paths = fixtures::Paths::new(root);
    let buildah = if util::on_path("buildah") {
        Some(Buildah::probe(&paths.multi)?)
    } else {
        util::info("buildah is not installed: measuring rbuild only");
        None
    };
    let rbuild = Rbuild {
        binary: rbuild,
        layout: paths.multi.clone(),
    };

    let mut sets = vec![vec![Platform::linux("amd64", None)]];
    let arm64 = Platform::linux("arm64", None);
    if platforms.contains(&arm64) {
        sets.push(vec![Platform::linux("amd64", None), arm64]);
    }
    if platforms.len() > 2 {
        sets.push(platforms.clone());
    }
    // buildah needs host binfmt_misc handlers for foreign platforms; rbuild does not.
    let _handlers = match &buildah {
        Some(_) => {
            let h = crate::hostbinfmt::HostHandlers::register(&platforms, "bench")?;
            if h.count() > 0 {
                util::info(&format!(
                    "registered {} host binfmt_misc handlers for buildah (removed afterwards)",
                    h.count()
                ));
            }
            Some(h)
        }
        None => None,
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        for set in &sets {
            let label = platform_label(set);
            util::step(&format!("{} on {label}", case.name));
            let ours = measure(&rbuild, case, set);
            let theirs = buildah.as_ref().map(|b| measure(b, case, set));
            let row = Row {
                case: case.name.clone(),
                platforms: label,
                rbuild: record(&mut failures, "rbuild", case, &ours),
                buildah: theirs.map(|t| record(&mut failures, "buildah", case, &t)),
            };
            rows.push(row);
        }
    }
    println!();
    print!("{}", table(&rows));
    for failure in &failures {
        println!("\n{failure}");
    }
    if rows.iter().any(|r| r.rbuild.is_none()) {
        bail!("some rbuild builds failed");
    }
    Ok(())
}

/// Subdirectories of `dir` holding a `Dockerfile`, by name; none when `dir` is absent.
pub fn find_cases(dir: &Path) -> Result<Vec<Case>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut cases: Vec<Case> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            Some(Case { name, dir })
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

fn platform_label(set: &[Platform]) -> String {
    match set {
        [_, _, _, ..] => format!("all {}", set.len()),
        few => few
            .iter()
            .map(|p| p.architecture.as_str())
            .collect::<Vec<_>>()
            .join("+"),
    }
}

fn platform_arg(set: &[Platform]) -> String {
    set.iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A builder under test: how to run one build with a given state directory.
trait Builder {
    fn command(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Command;
}

struct Rbuild {
    binary: PathBuf,
    layout: PathBuf,
}

impl Builder for Rbuild {
    fn command(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(state)
            .arg("build")
            .args(["--platform", &platform_arg(platforms)])
            .arg("--build-context")
            .arg(format!("busybox=oci-layout://{}", self.layout.display()))
            .args(["-t", &format!("bench-{}:latest", case.name)])
            .arg("-f")
            .arg(case.dir.join("Dockerfile"))
            .arg(&case.dir);
        cmd
    }
}

/// buildah 1.28 has no `oci-layout://` build contexts, but it takes any image
/// reference through `container-image://`, including an `oci:` layout, and picks
/// each platform's image from the layout's index.
struct Buildah {
    driver: &'static str,
    layout: PathBuf,
}

impl Buildah {
    /// Chooses the storage driver: overlay when a trivial build works with it, else vfs.
    fn probe(layout: &Path) -> Result<Buildah> {
        let ctx = util::TempDir::new("buildah-probe")?;
        std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nRUN true\n")?;
        let case = Case {
            name: "probe".into(),
            dir: ctx.path().to_path_buf(),
        };
        let amd64 = [Platform::linux("amd64", None)];
        for driver in ["overlay", "vfs"] {
            let buildah = Buildah {
                driver,
                layout: layout.to_path_buf(),
            };
            let state = util::TempDir::new("buildah-state")?;
            if time_build(&mut buildah.command(state.path(), &case, &amd64)).is_ok() {
                util::info(&format!("buildah storage driver: {driver}"));
                return Ok(buildah);
            }
        }
        bail!("buildah cannot build with the overlay or the vfs storage driver")
    }
}

impl Builder for Buildah {
    fn command(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.arg("--root")
            .arg(state.join("root"))
            .arg("--runroot")
            .arg(state.join("run"))
            .args(["--storage-driver", self.driver])
            .arg("build")
            .args(["--runtime", "runc", "--network", "host", "--layers"])
            .args(["--platform", &platform_arg(platforms)])
            .arg("--build-context")
            .arg(format!(
                "busybox=container-image://oci:{}:latest",
                self.layout.display()
            ));
        let name = format!("bench-{}", case.name);
        if platforms.len() > 1 {
            cmd.args(["--manifest", &name]);
        } else {
            cmd.args(["-t", &name]);
        }
        cmd.arg("-f")
            .arg(case.dir.join("Dockerfile"))
            .arg(&case.dir);
        cmd
    }
}

/// Best cold and warm wall times of one builder on one case.
#[derive(Debug, Clone, Copy)]
struct Timing {
    cold: Duration,
    warm: Duration,
}

fn measure(builder: &dyn Builder, case: &Case, platforms: &[Platform]) -> Result<Timing> {
    let mut cold = Vec::new();
    for _ in 0..RUNS {
        let state = util::TempDir::new("bench-cold")?;
        cold.push(time_build(&mut builder.command(
            state.path(),
            case,
            platforms,
        ))?);
    }
    let state = util::TempDir::new("bench-warm")?;
    time_build(&mut builder.command(state.path(), case, platforms))?;
    let mut warm = Vec::new();
    for _ in 0..RUNS {
        warm.push(time_build(&mut builder.command(
            state.path(),
            case,
            platforms,
        ))?);
    }
    Ok(Timing {
        cold: best(&cold),
        warm: best(&warm),
    })
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

/// Runs one build with its output captured, returning its wall time.
fn time_build(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", util::show(cmd)))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{} failed: {}\n{}",
            util::show(cmd),
            out.status,
            tail.join("\n")
        );
    }
    Ok(elapsed)
}

fn record(
    failures: &mut Vec<String>,
    tool: &str,
    case: &Case,
    result: &Result<Timing>,
) -> Option<Timing> {
    match result {
        Ok(timing) => {
            util::info(&format!(
                "{tool}: cold {:.2}s, warm {:.2}s",
                timing.cold.as_secs_f64(),
                timing.warm.as_secs_f64()
            ));
            Some(*timing)
        }
        Err(err) => {
            util::info(&format!("{tool}: failed"));
            failures.push(format!("{tool} on {}: {err:#}", case.name));
            None
        }
    }
}

struct Row {
    case: String,
    platforms: String,
    rbuild: Option<Timing>,
    /// `None` when buildah is not installed.
    buildah: Option<Option<Timing>>,
}

fn table(rows: &[Row]) -> String {
    let header = [
        "case",
        "platforms",
        "rbuild cold",
        "rbuild warm",
        "buildah cold",
        "buildah warm",
        "cold ratio",
        "warm ratio",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let theirs = row.buildah.flatten();
        let seconds = |t: Option<Duration>| {
            t.map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        };
        let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) if !b.is_zero() => {
                format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
            }
            _ => "-".into(),
        };
        let failed_or = |installed: bool, t: Option<Duration>| {
            if installed && t.is_none() {
                "failed".to_string()
            } else {
                seconds(t)
            }
        };
        let ours_cold = row.rbuild.map(|t| t.cold);
        let ours_warm = row.rbuild.map(|t| t.warm);
        let theirs_cold = theirs.map(|t| t.cold);
        let theirs_warm = theirs.map(|t| t.warm);
        let has_buildah = row.buildah.is_some();
        lines.push(vec![
            row.case.clone(),
            row.platforms.clone(),
            failed_or(true, ours_cold),
            failed_or(true, ours_warm),
            failed_or(has_buildah, theirs_cold),
            failed_or(has_buildah, theirs_warm),
            ratio(ours_cold, theirs_cold),
            ratio(ours_warm, theirs_warm),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &lines {
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

    #[test]
    fn cases_are_directories_with_a_dockerfile() {
        let tmp = util::TempDir::new("bench-test").unwrap();
        assert!(find_cases(&tmp.path().join("absent")).unwrap().is_empty());
        for (name, dockerfile) in [("b-copy", true), ("a-run", true), ("empty", false)] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
            if dockerfile {
                std::fs::write(tmp.path().join(name).join("Dockerfile"), "FROM busybox\n").unwrap();
            }
        }
        std::fs::write(tmp.path().join("README.md"), "").unwrap();
        let names: Vec<String> = find_cases(tmp.path())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a-run", "b-copy"]);
    }

    #[test]
    fn table_shows_times_ratios_and_failures() {
        let timing = |cold: u64, warm: u64| Timing {
            cold: Duration::from_millis(cold),
            warm: Duration::from_millis(warm),
        };
        let rows = [
            Row {
                case: "copy".into(),
                platforms: "linux/amd64".into(),
                rbuild: Some(timing(500, 100)),
                buildah: Some(Some(timing(2000, 1000))),
            },
            Row {
                case: "copy".into(),
                platforms: "all 7".into(),
                rbuild: None,
                buildah: Some(None),
            },
            Row {
                case: "run".into(),
                platforms: "linux/amd64".into(),
                rbuild: Some(timing(1000, 250)),
                buildah: None,
            },
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("case"));
        let cells = |line: &str| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[1]),
            [
                "copy",
                "linux/amd64",
                "0.50s",
                "0.10s",
                "2.00s",
                "1.00s",
                "0.25",
                "0.10"
            ]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "copy", "all", "7", "failed", "failed", "failed", "failed", "-", "-"
            ]
        );
        assert_eq!(
            cells(lines[3]),
            ["run", "linux/amd64", "1.00s", "0.25s", "-", "-", "-", "-"]
        );
    }

    #[test]
    fn buildah_command_uses_the_layout_through_container_image() {
        let buildah = Buildah {
            driver: "overlay",
            layout: PathBuf::from("/repo/testdata/images/busybox"),
        };
        let case = Case {
            name: "copy".into(),
            dir: PathBuf::from("/repo/Dockerfiles/bench/copy"),
        };
        let platforms = [
            Platform::linux("amd64", None),
            Platform::linux("arm", Some("v7")),
        ];
        let shown = util::show(&buildah.command(Path::new("/s"), &case, &platforms));
        assert_eq!(
            shown,
            "buildah --root /s/root --runroot /s/run --storage-driver overlay build --runtime runc \
             --network host --layers --platform linux/amd64,linux/arm/v7 \
             --build-context busybox=container-image://oci:/repo/testdata/images/busybox:latest \
             --manifest bench-copy -f /repo/Dockerfiles/bench/copy/Dockerfile /repo/Dockerfiles/bench/copy"
        );
    }
}
