//! Replays every committed corpus and regression file through every fuzz target, so that
//! inputs which once crashed stay fixed and the seeds keep working. Fast and deterministic.

use rbuild_fuzz::{all_targets, runner};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// `<fuzz>/<kind>/<target>/` for every target directory that exists.
fn dirs(kind: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fuzz_dir().join(kind))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let files = runner::load_files(&dirs(kind)).expect("corpus files are readable");
    let mut failures = Vec::new();
    for (path, data) in &files {
        for t in all_targets() {
            if let Err(msg) = runner::run_one(t, data) {
                failures.push(format!("{} on {}: {msg}", t.name, path.display()));
            }
        }
    }
    rbuild_fuzz::targets::shutdown_tar_worker();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn corpus_and_regressions_replay_cleanly_through_every_target() {
    let seeds = replay("corpus");
    assert!(
        seeds >= 20,
        "expected the committed seed corpus, found {seeds} files"
    );
    replay("regressions");
}

#[test]
fn every_target_has_seeds() {
    for t in all_targets() {
        let files = runner::load_files(&[fuzz_dir().join("corpus").join(t.name)]).unwrap();
        assert!(!files.is_empty(), "no seeds for {}", t.name);
    }
}

/// Known, not yet fixed crashes live in `fuzz/regressions/<target>/open/` (the replay above
/// and the fuzzer's seeds skip them). Run with `--ignored`: once one stops failing, move it
/// up into `fuzz/regressions/<target>/` so it is replayed on every test run.
#[test]
#[ignore = "known open crashes; see fuzz/README.md"]
fn open_regressions_still_fail() {
    for dir in dirs("regressions") {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let t = rbuild_fuzz::target(name).expect("regression dirs are named after targets");
        for (path, data) in runner::load_files(&[dir.join("open")]).unwrap() {
            assert!(
                runner::run_one(t, &data).is_err(),
                "{} no longer fails: move it to {}",
                path.display(),
                dir.display()
            );
        }
    }
    rbuild_fuzz::targets::shutdown_tar_worker();
}
