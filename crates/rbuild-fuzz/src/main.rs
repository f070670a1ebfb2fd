//! `rbuild-fuzz`: the fuzz driver (`cargo xtask fuzz` builds and runs it).
//!
//! ```text
//! rbuild-fuzz --list
//! rbuild-fuzz <target> [--seconds N] [--seed S] [--hang-ms MS] [--fuzz-dir DIR]
//! rbuild-fuzz --replay <target|all> FILE...
//! rbuild-fuzz --make-seeds [--fuzz-dir DIR]
//! ```
//!
//! A fuzz run is supervised: the process re-runs itself as a child with a private `TMPDIR`,
//! so that a child killed outright (stack overflow, abort) still leaves its last input,
//! which the parent saves as a crash. `--seconds` is CPU time (user + system).

use rbuild_fuzz::runner::{self, CrashKind, FuzzOptions, InFlight};
use rbuild_fuzz::{FuzzError, Target, all_targets, target};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: rbuild-fuzz --list
       rbuild-fuzz <target> [--seconds N] [--seed S] [--hang-ms MS] [--keep-going] [--fuzz-dir DIR]
       rbuild-fuzz --replay <target|all> FILE...
       rbuild-fuzz --make-seeds [--fuzz-dir DIR]

--seconds is CPU time (user + system, default 60); the corpus is read from
DIR/corpus/<target>/ and DIR/regressions/<target>/, crashes go to DIR/crashes/<target>/
(DIR defaults to ./fuzz). --keep-going saves the first input of each distinct panic and
goes on instead of stopping at the first. Scratch files go to /dev/shm when it exists.";

const IN_FLIGHT_ENV: &str = "RBUILD_FUZZ_IN_FLIGHT";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rbuild-fuzz: error: {e}");
            ExitCode::from(2)
        }
    }
}

struct Args {
    target: Option<String>,
    seconds: f64,
    seed: Option<u64>,
    hang_ms: u64,
    fuzz_dir: PathBuf,
    child: bool,
    keep_going: bool,
    list: bool,
    make_seeds: bool,
    replay: Option<(String, Vec<PathBuf>)>,
}

fn parse_args(raw: &[String]) -> Result<Args, FuzzError> {
    let mut a = Args {
        target: None,
        seconds: 60.0,
        seed: None,
        hang_ms: 2000,
        fuzz_dir: PathBuf::from("fuzz"),
        child: false,
        keep_going: false,
        list: false,
        make_seeds: false,
        replay: None,
    };
    let usage = |m: String| FuzzError::Usage(format!("{m}\n{USAGE}"));
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--list" => a.list = true,
            "--make-seeds" => a.make_seeds = true,
            "--child" => a.child = true,
            "--keep-going" => a.keep_going = true,
            "--seconds" => {
                let v = value("--seconds")?;
                a.seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| usage(format!("--seconds {v:?}: not a positive number")))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                a.seed = Some(
                    v.parse()
                        .map_err(|_| usage(format!("--seed {v:?}: not a number")))?,
                );
            }
            "--hang-ms" => {
                let v = value("--hang-ms")?;
                a.hang_ms = v
                    .parse()
                    .map_err(|_| usage(format!("--hang-ms {v:?}: not a number")))?;
            }
            "--fuzz-dir" => a.fuzz_dir = PathBuf::from(value("--fuzz-dir")?),
            "--replay" => {
                let t = value("--replay")?;
                let files: Vec<PathBuf> = it.by_ref().map(PathBuf::from).collect();
                if files.is_empty() {
                    return Err(usage("--replay needs files".into()));
                }
                a.replay = Some((t, files));
            }
            "-h" | "--help" => return Err(FuzzError::Usage(USAGE.into())),
            s if s.starts_with('-') => return Err(usage(format!("unknown option {s:?}"))),
            s if a.target.is_none() => a.target = Some(s.to_string()),
            s => return Err(usage(format!("unexpected argument {s:?}"))),
        }
    }
    Ok(a)
}

fn run() -> Result<ExitCode, FuzzError> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&raw)?;
    if args.list {
        for t in all_targets() {
            println!("{:<18} {}", t.name, t.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.make_seeds {
        return make_seeds(&args.fuzz_dir);
    }
    if let Some((name, files)) = &args.replay {
        return replay(name, files);
    }
    let Some(name) = &args.target else {
        return Err(FuzzError::Usage(USAGE.into()));
    };
    let t = target(name).ok_or_else(|| FuzzError::UnknownTarget(name.clone()))?;
    if args.child {
        child(t, &args)
    } else {
        supervise(t, &args, &raw)
    }
}

fn make_seeds(fuzz_dir: &Path) -> Result<ExitCode, FuzzError> {
    let dir = fuzz_dir.join("corpus/tar-unpack");
    std::fs::create_dir_all(&dir).map_err(|e| FuzzError::io("create", &dir, e))?;
    for (name, data) in rbuild_fuzz::seeds::tar_seeds() {
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(|e| FuzzError::io("write", &path, e))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(name: &str, files: &[PathBuf]) -> Result<ExitCode, FuzzError> {
    let targets: Vec<&Target> = if name == "all" {
        all_targets().iter().collect()
    } else {
        vec![target(name).ok_or_else(|| FuzzError::UnknownTarget(name.into()))?]
    };
    let mut failed = 0;
    for path in files {
        let data = std::fs::read(path).map_err(|e| FuzzError::io("read", path, e))?;
        for t in &targets {
            match runner::run_one(t, &data) {
                Ok(_) => println!("ok      {} {}", t.name, path.display()),
                Err(msg) => {
                    failed += 1;
                    println!("PANIC   {} {}: {msg}", t.name, path.display());
                }
            }
        }
    }
    rbuild_fuzz::targets::shutdown_tar_worker();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn crash_dir(args: &Args, t: &Target) -> PathBuf {
    args.fuzz_dir.join("crashes").join(t.name)
}

/// Runs the fuzz loop in a child process and saves the input that killed it, if one did.
fn supervise(t: &Target, args: &Args, raw: &[String]) -> Result<ExitCode, FuzzError> {
    use std::os::unix::process::ExitStatusExt;
    // tmpfs: directory operations on a disk file system cost 20 times more.
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let tmp = tempfile::Builder::new()
        .prefix("rbuild-fuzz.")
        .tempdir_in(&scratch)
        .map_err(|e| FuzzError::io("create", &scratch, e))?;
    let in_flight = tmp.path().join("in-flight");
    let exe = std::env::current_exe().map_err(|e| FuzzError::io("find", "/proc/self/exe", e))?;
    let status = std::process::Command::new(&exe)
        .args(raw)
        .arg("--child")
        .env("TMPDIR", tmp.path())
        .env(IN_FLIGHT_ENV, &in_flight)
        .status()
        .map_err(|e| FuzzError::io("run", &exe, e))?;
    if let Some(signal) = status.signal() {
        let input = InFlight::read(&in_flight)?;
        let path = runner::save_crash(&crash_dir(args, t), &input)?;
        eprintln!(
            "crash: Killed: the fuzz process died of signal {signal} (stack overflow or abort; see above)\n\
             input: {}\nreplay: cargo xtask fuzz --replay {} {}",
            path.display(),
            t.name,
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn child(t: &'static Target, args: &Args) -> Result<ExitCode, FuzzError> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let opts = FuzzOptions {
        cpu_seconds: args.seconds,
        seed,
        corpus_dirs: vec![
            args.fuzz_dir.join("corpus").join(t.name),
            args.fuzz_dir.join("regressions").join(t.name),
        ],
        crash_dir: crash_dir(args, t),
        hang_after: Duration::from_millis(args.hang_ms),
        in_flight: std::env::var_os(IN_FLIGHT_ENV).map(PathBuf::from),
        max_corpus: 4096,
        keep_going: args.keep_going,
    };
    println!(
        "fuzzing {} for {} CPU seconds, seed {seed}",
        t.name, args.seconds
    );
    let report = runner::fuzz(t, &opts)?;
    println!("{report}");
    match report.crashes.last() {
        None => {
            rbuild_fuzz::targets::shutdown_tar_worker();
            Ok(ExitCode::SUCCESS)
        }
        Some(c) if args.keep_going && c.kind != CrashKind::Hang => {
            rbuild_fuzz::targets::shutdown_tar_worker();
            Ok(ExitCode::FAILURE)
        }
        Some(c) => {
            let what = if c.kind == CrashKind::Hang {
                "hang"
            } else {
                "panic"
            };
            eprintln!(
                "crash: {what}: {}\ninput: {}\nreplay: cargo xtask fuzz --replay {} {}",
                c.message,
                c.path.display(),
                t.name,
                c.path.display()
            );
            // The executor may still be stuck in a hanging input: leave without joining it.
            std::process::exit(1);
        }
    }
}
