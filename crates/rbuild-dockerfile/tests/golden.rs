//! Golden files: `testdata/dockerfile/parse/<case>/{Dockerfile,expected.json}` and
//! `testdata/dockerfile/errors/<case>/{Dockerfile,expected.txt}`. Set UPDATE_GOLDEN=1
//! to rewrite the expected files from the current output.

use rbuild_dockerfile::{Dockerfile, parse, to_debug_json};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dockerfile")
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// What a parse case is compared on: directives, rendered warnings and the AST dump.
fn dump(df: &Dockerfile) -> String {
    let v = json!({
        "directives": {
            "syntax": df.directives.syntax,
            "escape": df.directives.escape.to_string(),
            "check": df.directives.check,
        },
        "warnings": df.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "instructions": to_debug_json(df),
    });
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

/// Compares (or rewrites) one expected file; returns a failure description.
fn compare(dir: &Path, file: &str, actual: &str) -> Option<String> {
    let path = dir.join(file);
    if updating() {
        fs::write(&path, actual).unwrap();
        return None;
    }
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    match fs::read_to_string(&path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => Some(format!(
            "{name}: {file} differs\n--- expected\n{expected}\n--- actual\n{actual}"
        )),
        Err(_) => Some(format!("{name}: {file} missing\n--- actual\n{actual}")),
    }
}

fn run(kind: &str, check: impl Fn(&Path) -> Option<String>) {
    let dirs = cases(kind);
    assert!(!dirs.is_empty(), "no {kind} cases found");
    let failures: Vec<String> = dirs.iter().filter_map(|d| check(d)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} {kind} cases failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn parse_cases() {
    run("parse", |dir| {
        let src = fs::read(dir.join("Dockerfile")).unwrap();
        match parse("Dockerfile", &src) {
            Ok(df) => compare(dir, "expected.json", &dump(&df)),
            Err(e) => Some(format!(
                "{}: expected success, got errors:\n{e}",
                dir.display()
            )),
        }
    });
}

#[test]
fn error_cases() {
    run("errors", |dir| {
        let src = fs::read(dir.join("Dockerfile")).unwrap();
        match parse("Dockerfile", &src) {
            Ok(df) => Some(format!(
                "{}: expected errors, parsed fine:\n{}",
                dir.display(),
                dump(&df)
            )),
            Err(e) => compare(dir, "expected.txt", &format!("{e}\n")),
        }
    });
}

#[test]
fn enough_cases() {
    let n = cases("parse").len() + cases("errors").len();
    assert!(n >= 80, "only {n} golden cases");
}
