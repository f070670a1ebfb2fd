//! `cargo xtask bench`: rbuild against buildah and BuildKit on the cases in
//! `Dockerfiles/bench/<case>/`, cold (fresh state) and warm (no-op rebuild), for amd64
//! and for amd64 with arm64. Builders take turns within each run; the table shows the
//! median wall time and peak RSS over the runs and rbuild's time over each peer's. The
//! machine's hashing and compression limits follow.

mod builders;
mod cases;
mod limits;
mod measure;
mod rawjson;
mod registry;
mod report;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::layout::Platform;
use crate::{demo, fixtures, hostbinfmt, util};
use builders::{Buildah, Builder, Buildkit, Rbuild, out_path};
use cases::{Case, Prepared};
use measure::{combine, max_option, run_measured};
use report::{Mode, Outcome, Row, Sample, Summary};

/// The table's builder columns; rbuild first, the ratios are against it.
const BUILDERS: [&str; 3] = ["rbuild", "buildah", "buildkit"];
const DEFAULT_RUNS: usize = 3;

/// Command-line options of `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The smoke version: the quick cases, amd64 only, one run, smaller limit data.
    pub quick: bool,
    /// Only these cases (all when empty; the quick ones with `quick`).
    pub cases: Vec<String>,
    /// Runs per case, platform set and builder.
    pub runs: usize,
    /// Also write the report to this file.
    pub save: Option<PathBuf>,
}

const USAGE: &str = "usage: cargo xtask bench [--quick] [--case NAME]... [--runs N] [--save FILE]";

/// Parses the arguments after `bench`.
pub fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options {
        quick: false,
        cases: Vec::new(),
        runs: 0,
        save: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--case" => options.cases.push(value()?.clone()),
            "--runs" => {
                let v = value()?;
                options.runs = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--runs takes a positive number, not {v:?}"))?;
            }
            "--save" => options.save = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    if options.runs == 0 {
        options.runs = if options.quick { 1 } else { DEFAULT_RUNS };
    }
    Ok(options)
}

/// Runs the selected cases and prints (and with `--save` writes) the report.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = parse_args(args)?;
    let all_cases = cases::find_cases(&root.join("Dockerfiles/bench"))?;
    let cases = select_cases(&all_cases, &options)?;
    if cases.is_empty() {
        util::info("no benchmark cases: Dockerfiles/bench/<case>/Dockerfile does not exist yet");
        return Ok(());
    }
    util::step("fixture images");
    let platforms = fixtures::run(root, false)?;
    let have_arm64 = platforms.contains(&Platform::linux("arm64", None));
    let rbuild = demo::build_rbuild(root)?;
    let commit = commit_id(root);
    let load_before = measure::load_average();
    let setup = Setup::new(root, rbuild, have_arm64 && !options.quick)?;
    let jobs = prepare_jobs(&cases, have_arm64, options.quick)?;
    let warm_up = all_cases.iter().find(|c| c.name == WARM_UP_CASE);
    let results = run_all(&setup.builders, &jobs, options.runs, warm_up);
    if let Some(Some(buildkit)) = setup.builders.get(2) {
        let _ = buildkit.forget();
    }
    util::step("machine limits");
    let (mib, reps) = if options.quick { (64, 1) } else { (256, 3) };
    let mut limits = limits::measure(mib, reps)?;
    if !results.bigfile_steps.is_empty() {
        limits.bigfile_command = limits::bigfile_command_seconds(cases::BIGFILE_BYTES);
    }
    let text = report_text(&ReportInput {
        commit: &commit,
        options: &options,
        jobs: &jobs,
        present: setup.present(),
        results: &results,
        limits: &limits,
        load_before: &load_before,
    });
    println!("\n{text}");
    if let Some(path) = &options.save {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if results.rbuild_failed {
        bail!("some rbuild builds failed");
    }
    Ok(())
}

/// The cases the options name (every one, or the quick ones); unknown names are errors.
fn select_cases(all: &[Case], options: &Options) -> Result<Vec<Case>> {
    let wanted: Vec<String> = match (&options.cases[..], options.quick) {
        ([], false) => return Ok(all.to_vec()),
        ([], true) => cases::QUICK.iter().map(|s| s.to_string()).collect(),
        (named, _) => named.to_vec(),
    };
    wanted
        .iter()
        .map(|name| {
            all.iter()
                .find(|c| &c.name == name)
                .cloned()
                .with_context(|| {
                    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
                    format!(
                        "no case {name:?} in Dockerfiles/bench (have: {})",
                        names.join(", ")
                    )
                })
        })
        .collect()
}

/// The builders and what they need while the benchmark runs (dropped in this order).
struct Setup {
    /// One slot per [`BUILDERS`] column, `None` when that builder is not available.
    builders: Vec<Option<Box<dyn Builder>>>,
    _handlers: Option<hostbinfmt::HostHandlers>,
    _registry: Option<registry::Registry>,
}

impl Setup {
    fn new(root: &Path, rbuild: PathBuf, foreign: bool) -> Result<Setup> {
        let layout = fixtures::Paths::new(root).multi;
        let ours: Box<dyn Builder> = Box::new(Rbuild {
            binary: rbuild,
            layout: layout.clone(),
        });
        let buildah = if util::on_path("buildah") {
            Some(Box::new(Buildah::probe(&layout)?) as Box<dyn Builder>)
        } else {
            util::info("buildah is not installed: no buildah columns");
            None
        };
        let (buildkit, registry) = match std::env::var("BUILDKIT_HOST") {
            Ok(addr) if !addr.is_empty() => {
                let (b, r) = set_up_buildkit(&layout, addr)?;
                (Some(Box::new(b) as Box<dyn Builder>), Some(r))
            }
            _ => {
                util::info("BUILDKIT_HOST is not set: no BuildKit columns");
                (None, None)
            }
        };
        let peers = buildah.is_some() || buildkit.is_some();
        let handlers = if foreign && peers {
            Some(register_handlers()?)
        } else {
            None
        };
        Ok(Setup {
            builders: vec![Some(ours), buildah, buildkit],
            _handlers: handlers,
            _registry: registry,
        })
    }

    fn present(&self) -> Vec<bool> {
        self.builders.iter().map(Option::is_some).collect()
    }
}

fn set_up_buildkit(layout: &Path, addr: String) -> Result<(Buildkit, registry::Registry)> {
    let buildctl = Buildkit::find_buildctl()?;
    let registry = registry::Registry::ensure()?;
    let base = registry.push(layout, "busybox")?;
    let process = if addr.starts_with("unix://") {
        measure::DaemonPeak::find("buildkitd")
    } else {
        None
    };
    match &process {
        Some(p) => util::info(&format!("buildkitd peak RSS from pid {}", p.pid())),
        None => util::info("buildkitd's peak RSS cannot be read here: the client's is shown"),
    }
    let buildkit = Buildkit {
        buildctl,
        addr,
        base,
        process,
    };
    buildkit.check()?;
    Ok((buildkit, registry))
}

/// Host binfmt_misc handlers for arm64, which buildah and BuildKit need (rbuild does not).
fn register_handlers() -> Result<hostbinfmt::HostHandlers> {
    let handlers = hostbinfmt::HostHandlers::register(&[Platform::linux("arm64", None)], "bench")?;
    if handlers.count() > 0 {
        util::info(&format!(
            "registered {} host binfmt_misc handler(s) for buildah and BuildKit (removed afterwards)",
            handlers.count()
        ));
    }
    Ok(handlers)
}

/// A case ready to build and the platform sets it is built for.
struct Job {
    prepared: Prepared,
    sets: Vec<Vec<Platform>>,
}

fn prepare_jobs(cases: &[Case], have_arm64: bool, quick: bool) -> Result<Vec<Job>> {
    cases
        .iter()
        .map(|case| {
            Ok(Job {
                prepared: Prepared::new(case)?,
                sets: cases::platform_sets(&case.name, have_arm64, quick),
            })
        })
        .collect()
}

/// The samples of one builder on one case and platform set.
#[derive(Default)]
struct Cell {
    cold: Vec<Sample>,
    warm: Vec<Sample>,
    failed: bool,
}

/// Case name, platform label, builder column.
type CellKey = (String, String, usize);

/// Everything the runs measured.
#[derive(Default)]
struct Results {
    cells: BTreeMap<CellKey, Cell>,
    failures: Vec<String>,
    rbuild_failed: bool,
    /// rbuild's RUN step durations in cold amd64-only bigfile builds.
    bigfile_steps: Vec<Duration>,
}

/// Runs every job `runs` times; within a run each case and platform set is built by
/// every builder in turn, so slow phases of the machine hit all of them.
fn run_all(
    builders: &[Option<Box<dyn Builder>>],
    jobs: &[Job],
    runs: usize,
    warm_up: Option<&Case>,
) -> Results {
    let mut results = Results::default();
    for run in 1..=runs {
        for job in jobs {
            for set in &job.sets {
                let label = cases::platform_label(set);
                util::step(&format!(
                    "run {run}/{runs}: {} on {label}",
                    job.prepared.case.name
                ));
                for (column, builder) in builders.iter().enumerate() {
                    if let Some(builder) = builder {
                        let cell = CellJob {
                            column,
                            job,
                            set,
                            warm_up,
                        };
                        measure_cell(&mut results, builder.as_ref(), &cell);
                    }
                }
            }
        }
    }
    results
}

/// One builder's turn on a case and platform set.
struct CellJob<'a> {
    column: usize,
    job: &'a Job,
    set: &'a [Platform],
    /// The small build run (untimed) before the cold one; see [`settle_disk`].
    warm_up: Option<&'a Case>,
}

fn measure_cell(results: &mut Results, builder: &dyn Builder, cell_job: &CellJob<'_>) {
    let (column, set) = (cell_job.column, cell_job.set);
    let case = &cell_job.job.prepared.case;
    let key = (case.name.clone(), cases::platform_label(set), column);
    let cell = results.cells.entry(key).or_default();
    if cell.failed {
        return;
    }
    match cold_and_warm(builder, case, set, cell_job.warm_up) {
        Ok(pair) => {
            util::info(&format!(
                "{}: cold {}, warm {}",
                builder.name(),
                show_sample(&pair.cold),
                show_sample(&pair.warm)
            ));
            cell.cold.push(pair.cold);
            cell.warm.push(pair.warm);
            if case.name == cases::BIGFILE && set.len() == 1 && column == 0 {
                results.bigfile_steps.extend(pair.run_steps);
            }
        }
        Err(err) => {
            util::info(&format!("{}: failed", builder.name()));
            cell.failed = true;
            results.rbuild_failed |= column == 0;
            let label = cases::platform_label(set);
            results.failures.push(format!(
                "{} on {} ({label}): {err:#}",
                builder.name(),
                case.name
            ));
        }
    }
}

fn show_sample(s: &Sample) -> String {
    let rss = s
        .rss_kib
        .map(report::mebibytes)
        .unwrap_or_else(|| "-".into());
    format!("{} {rss}", report::seconds(s.wall))
}

/// The case built (untimed) after [`settle_disk`], so that each builder's binaries, daemon
/// and base image are back in the page cache before its cold build.
const WARM_UP_CASE: &str = "hello";

/// Writes back and drops the kernel's clean caches before a cold build, so that no builder
/// pays for the previous one's deletions. On ext4 without a journal (this kind of VM disk),
/// inodes freed in the last minutes are skipped by the allocator while their inode-table
/// blocks are cached, one lookup each: right after another builder's state was deleted,
/// creating a file costs up to ~0.6 ms instead of ~10 µs, whoever creates it. A small
/// untimed build ([`WARM_UP_CASE`]) then brings each builder's own files back into the
/// cache. Needs root; otherwise only syncs.
fn settle_disk() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// A cold build and the warm rebuild after it.
struct ColdWarm {
    cold: Sample,
    warm: Sample,
    /// RUN step durations of the cold build, when the builder reports them.
    run_steps: Vec<Duration>,
}

fn cold_and_warm(
    builder: &dyn Builder,
    case: &Case,
    set: &[Platform],
    warm_up: Option<&Case>,
) -> Result<ColdWarm> {
    builder.forget()?;
    settle_disk();
    // Kept until the measured builds are done: deleting it would be the next build's cost.
    let scratch = util::TempDir::new("bench-warm-up")?;
    if let Some(small) = warm_up {
        build_once(builder, scratch.path(), small, set, Mode::Cold)?;
        builder.forget()?;
    }
    let state = util::TempDir::new("bench-state")?;
    let cold = build_once(builder, state.path(), case, set, Mode::Cold)?;
    let run_steps = builder.run_steps(&log_path(state.path(), Mode::Cold));
    let warm = build_once(builder, state.path(), case, set, Mode::Warm)?;
    Ok(ColdWarm {
        cold,
        warm,
        run_steps,
    })
}

fn log_path(state: &Path, mode: Mode) -> PathBuf {
    state.join(format!("{}.log", mode.as_str()))
}

/// One build (plus its export command, if separate), timed, with its peak RSS.
fn build_once(
    builder: &dyn Builder,
    state: &Path,
    case: &Case,
    set: &[Platform],
    mode: Mode,
) -> Result<Sample> {
    let out = out_path(state);
    if out.exists() {
        std::fs::remove_file(&out).with_context(|| format!("cannot remove {}", out.display()))?;
    }
    let log = log_path(state, mode);
    let daemon = builder.daemon();
    if let Some(d) = &daemon {
        d.reset();
    }
    let mut sample = run_measured(&mut builder.command(state, case, set), &log)?;
    if let Some(mut export) = builder.export(state, case, set) {
        sample = combine(sample, run_measured(&mut export, &log)?);
    }
    if let Some(d) = &daemon {
        sample.rss_kib = max_option(sample.rss_kib, d.peak_kib());
    }
    if !out.is_file() {
        bail!("{} wrote no {}", builder.name(), out.display());
    }
    Ok(sample)
}

/// The table rows: per case, platform set and mode, every builder's outcome.
fn rows(jobs: &[Job], present: &[bool], results: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for job in jobs {
        let case = &job.prepared.case.name;
        for set in &job.sets {
            let label = cases::platform_label(set);
            for mode in [Mode::Cold, Mode::Warm] {
                let outcomes = (0..BUILDERS.len())
                    .map(|column| {
                        let key = (case.clone(), label.clone(), column);
                        outcome(
                            present.get(column) == Some(&true),
                            results.cells.get(&key),
                            mode,
                        )
                    })
                    .collect();
                rows.push(Row {
                    case: case.clone(),
                    platforms: label.clone(),
                    mode,
                    outcomes,
                });
            }
        }
    }
    rows
}

fn outcome(present: bool, cell: Option<&Cell>, mode: Mode) -> Outcome {
    let Some(cell) = cell.filter(|_| present) else {
        return Outcome::Absent;
    };
    if cell.failed {
        return Outcome::Failed;
    }
    let samples = match mode {
        Mode::Cold => &cell.cold,
        Mode::Warm => &cell.warm,
    };
    Summary::of(samples).map_or(Outcome::Failed, Outcome::Done)
}

struct ReportInput<'a> {
    commit: &'a str,
    options: &'a Options,
    jobs: &'a [Job],
    present: Vec<bool>,
    results: &'a Results,
    limits: &'a limits::Limits,
    load_before: &'a str,
}

fn report_text(input: &ReportInput) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{}", header_text(input));
    text.push_str(&report::table(
        &BUILDERS,
        &rows(input.jobs, &input.present, input.results),
    ));
    if let Some(line) = bigfile_text(input.results, input.limits) {
        let _ = writeln!(text, "\n{line}");
    }
    let _ = writeln!(
        text,
        "\nmachine limits ({} MiB of mixed data: 1/3 random, 2/3 text; and of random data):",
        input.limits.mib
    );
    text.push_str(&limits::table(input.limits));
    for failure in &input.results.failures {
        let _ = writeln!(text, "\n{failure}");
    }
    text
}

/// The short commit id of the tree at `root`, `?` when git cannot say.
fn commit_id(root: &Path) -> String {
    let mut git = Command::new("git");
    git.arg("-C")
        .arg(root)
        .args(["rev-parse", "--short", "HEAD"]);
    util::output_text(&mut git).unwrap_or_else(|_| "?".into())
}

fn header_text(input: &ReportInput) -> String {
    let commit = input.commit;
    let date = util::output_text(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "rbuild bench at {commit}, {date}, {cores} cores; load average (1/5/15 min) {} before, {} after\n\
         median of {} run(s); builders take turns within a run; every build writes an OCI archive \
         (rbuild -o type=oci, buildctl --output type=oci, buildah build + push oci-archive: timed together)\n\
         cold: fresh state (BuildKit: after buildctl prune --all), after sync, dropping the page cache and an untimed hello build; warm: the same build again; \
         RSS: peak of the largest process in the builder's tree (wait4 ru_maxrss; BuildKit: buildkitd's VmHWM)\n",
        input.load_before,
        measure::load_average(),
        input.options.runs,
    )
}

/// rbuild's bigfile RUN step against the LayerWriter limit on random data.
fn bigfile_text(results: &Results, limits: &limits::Limits) -> Option<String> {
    let step = report::median_duration(&results.bigfile_steps)?;
    let mib = (cases::BIGFILE_BYTES >> 20) as f64;
    let (generate, what) = match limits.bigfile_command {
        Some(secs) => (secs, "for the command itself (busybox head, run directly)"),
        None if limits.urandom > 0.0 => (mib / limits.urandom, "to read it from /dev/urandom"),
        None => (0.0, "to read it from /dev/urandom"),
    };
    let commit = step.as_secs_f64() - generate;
    let limit = limits
        .lines
        .iter()
        .find(|l| l.name.contains("LayerWriter gzip"))
        .map(|l| l.random)?;
    let mut line = format!(
        "bigfile, amd64 cold: rbuild's RUN step (median) {:.1}s = {:.0} MiB/s for 1 GiB",
        step.as_secs_f64(),
        mib / step.as_secs_f64()
    );
    if commit > 0.0 {
        let _ = write!(
            line,
            "; less {generate:.1}s {what}, the layer commit ran at ~{:.0} MiB/s, \
             {:.0}% of LayerWriter gzip-6 on random data ({limit:.0} MiB/s)",
            mib / commit,
            100.0 * mib / commit / limit
        );
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_default_to_three_runs_and_quick_to_one() {
        let full = parse_args(&[]).unwrap();
        assert_eq!((full.quick, full.runs, full.cases.len()), (false, 3, 0));
        let quick = parse_args(&args(&["--quick"])).unwrap();
        assert_eq!((quick.quick, quick.runs), (true, 1));
        let named = parse_args(&args(&["--case", "hello", "--runs", "5", "--save", "/t"])).unwrap();
        assert_eq!(named.cases, ["hello"]);
        assert_eq!(named.runs, 5);
        assert_eq!(named.save, Some(PathBuf::from("/t")));
        assert!(parse_args(&args(&["--runs", "0"])).is_err());
        assert!(parse_args(&args(&["--case"])).is_err());
        assert!(parse_args(&args(&["--fast"])).is_err());
    }

    #[test]
    fn cases_are_selected_by_name_or_quick() {
        let all: Vec<Case> = ["bigfile", "hello", "manysteps"]
            .iter()
            .map(|n| Case {
                name: n.to_string(),
                dir: PathBuf::from(n),
            })
            .collect();
        let names = |o: &Options| -> Vec<String> {
            select_cases(&all, o)
                .unwrap()
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        let mut options = parse_args(&[]).unwrap();
        assert_eq!(names(&options), ["bigfile", "hello", "manysteps"]);
        options.quick = true;
        assert_eq!(names(&options), ["hello", "manysteps"]);
        options.cases = vec!["bigfile".into()];
        assert_eq!(names(&options), ["bigfile"]);
        options.cases = vec!["nope".into()];
        let err = select_cases(&all, &options).unwrap_err().to_string();
        assert!(err.contains("have: bigfile, hello, manysteps"), "{err}");
    }

    #[test]
    fn outcomes_are_absent_failed_or_medians() {
        let sample = |ms| Sample {
            wall: Duration::from_millis(ms),
            rss_kib: Some(100),
        };
        let cell = Cell {
            cold: vec![sample(300), sample(100), sample(200)],
            warm: vec![sample(10)],
            failed: false,
        };
        assert_eq!(outcome(false, Some(&cell), Mode::Cold), Outcome::Absent);
        assert_eq!(outcome(true, None, Mode::Cold), Outcome::Absent);
        let Outcome::Done(cold) = outcome(true, Some(&cell), Mode::Cold) else {
            panic!("no summary");
        };
        assert_eq!((cold.wall, cold.runs), (Duration::from_millis(200), 3));
        let failed = Cell {
            failed: true,
            ..Cell::default()
        };
        assert_eq!(outcome(true, Some(&failed), Mode::Warm), Outcome::Failed);
    }
}
