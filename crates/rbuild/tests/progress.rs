//! The build's progress output through the real binary: BuildKit's plain format and
//! rawjson shape (golden files under `testdata/progress/`, rewritten with UPDATE_GOLDEN=1),
//! the live tty view in a real terminal (tmux), and `-q`.
//!
//! Platforms build in parallel, so the interleaving of their lines differs from run to run:
//! the goldens hold the output grouped by vertex, and the numbering and attribution rules
//! are checked on the raw output.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DOCKERFILE: &str = "FROM busybox
ENV GREETING=hello
RUN echo \"$GREETING from $(uname -m)\" && echo second line
COPY f /f
RUN printf 'no newline at the end'
CMD echo done
";

const PLATFORMS: &str = "linux/amd64,linux/arm64";

fn golden_dir() -> PathBuf {
    repo().join("testdata/progress")
}

/// Compares `actual` with the golden file `name`, or rewrites it under UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

/// The goldens name x86_64's output and assume arm64 is the emulated platform.
fn on_amd64_host() -> bool {
    precondition(
        std::env::consts::ARCH == "x86_64",
        "progress goldens are recorded on an x86_64 host",
    )
}

/// A fresh two-platform build of [`DOCKERFILE`] with `progress`; returns its stderr.
fn golden_build(tmp: &Path, progress: &str) -> String {
    let ctx = context(&tmp.join("ctx"), DOCKERFILE, &[("f", "file\n")]);
    let dest = tmp.join("out.tar");
    let out = run(&mut build_command(
        &tmp.join("state"),
        &ctx,
        PLATFORMS,
        Some(&dest),
        &[&format!("--progress={progress}")],
    ));
    assert!(out.status.success(), "the build succeeds");
    mask_dest(&String::from_utf8(out.stderr).unwrap(), tmp)
}

/// `text` with the build's output path shown as `<dest>`.
fn mask_dest(text: &str, tmp: &Path) -> String {
    text.replace(&tmp.join("out.tar").display().to_string(), "<dest>")
}

/// A plain-format line: `#N rest`.
fn vertex_line(line: &str) -> Option<(u32, &str)> {
    let (n, rest) = line.strip_prefix('#')?.split_once(' ')?;
    Some((n.parse().ok()?, rest))
}

/// Whether `rest` starts with an output stamp (`0.532 `), and the text after it.
fn stamped(rest: &str) -> Option<(f64, &str)> {
    let (t, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let (whole, frac) = t.split_once('.')?;
    let prec = match whole.len() {
        1 => 3,
        2 => 2,
        _ => 1,
    };
    (frac.len() == prec && t.parse::<f64>().is_ok()).then(|| (t.parse().unwrap(), text))
}

/// The rules of the plain format that hold whatever the interleaving: every `#N` line
/// follows a header of N (so it is attributable), N names one vertex, numbers are given
/// in order of first appearance, and output stamps never go back within a vertex.
fn check_plain_rules(text: &str) {
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    let mut open: Option<u32> = None;
    let mut last_stamp: BTreeMap<u32, f64> = BTreeMap::new();
    let mut prev_blank = true;
    for line in text.lines() {
        if line.is_empty() {
            open = None;
            prev_blank = true;
            continue;
        }
        let Some((n, rest)) = vertex_line(line) else {
            open = None;
            prev_blank = false;
            continue;
        };
        if prev_blank && open.is_none() {
            match names.get(&n) {
                Some(name) => assert_eq!(name, rest, "#{n} names one vertex"),
                None => {
                    assert_eq!(n as usize, names.len() + 1, "numbers in order: {line}");
                    names.insert(n, rest.to_string());
                }
            }
            open = Some(n);
        } else {
            assert_eq!(open, Some(n), "line under another vertex's header: {line}");
            if let Some((t, _)) = stamped(rest) {
                let last = last_stamp.entry(n).or_insert(0.0);
                assert!(t >= *last, "stamps go forward: {line}");
                *last = t;
            }
        }
        prev_blank = false;
    }
    let mut unique: Vec<&String> = names.values().collect();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "a vertex has one number: {names:?}"
    );
}

/// Timings masked: `DONE 1.2s`, status durations, the summary's times become `<t>`.
fn mask_times(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let core = w
                .trim_start_matches('(')
                .trim_end_matches(':')
                .trim_end_matches(')')
                .trim_end_matches('s');
            if core.contains('.') && core.parse::<f64>().is_ok() {
                "<t>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plain output grouped by vertex (sorted by name), numbers and timings masked;
/// byte progress only as completed, archive sizes masked.
fn group_plain(text: &str) -> String {
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rest_lines = Vec::new();
    let mut open: Option<u32> = None;
    for line in text.lines() {
        match vertex_line(line) {
            Some((n, rest)) if open != Some(n) => {
                names.entry(n).or_insert_with(|| rest.to_string());
                open = Some(n);
            }
            Some((n, rest)) => {
                let body = match stamped(rest) {
                    Some((_, text)) => format!("<t> {text}"),
                    None if rest == "..." => continue,
                    None if rest.starts_with("sending tarball") => {
                        if !rest.ends_with(" done") {
                            continue;
                        }
                        "sending tarball <bytes> done".into()
                    }
                    None if rest.starts_with("extracting ") && !rest.ends_with(" done") => continue,
                    None => mask_times(rest),
                };
                lines.entry(names[&n].clone()).or_default().push(body);
            }
            None => {
                open = None;
                if !line.is_empty() {
                    rest_lines.push(mask_times(line));
                }
            }
        }
    }
    let mut out = String::new();
    for (name, body) in &lines {
        out.push_str(name);
        out.push('\n');
        for l in body {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out.push_str("--- other lines\n");
    for l in rest_lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[test]
fn plain_output_matches_buildkit_format_for_two_platforms() {
    if !on_amd64_host() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = golden_build(tmp.path(), "plain");
    check_plain_rules(&text);
    assert!(
        text.lines()
            .any(|l| l.ends_with(" CACHED") || l.contains(" DONE ")),
        "{text}"
    );
    golden("plain.txt", &group_plain(&text));
}

#[test]
fn a_cached_rebuild_says_cached_per_step() {
    let tmp = tempfile::tempdir().unwrap();
    golden_build(tmp.path(), "plain");
    let again = golden_build(tmp.path(), "plain");
    check_plain_rules(&again);
    let cached = cached_steps(&again);
    assert_eq!(cached.len(), 6, "{again}");
    assert!(
        again.contains("linux/amd64: 4 steps, 0 ran, 4 cached")
            && again.contains("linux/arm64: 4 steps, 0 ran, 4 cached"),
        "{again}"
    );
}

/// The keys BuildKit's `SolveStatus` JSON uses, per list.
fn allowed_keys(list: &str) -> &'static [&'static str] {
    match list {
        "vertexes" => &["digest", "name", "started", "completed", "cached", "error"],
        "statuses" => &[
            "id",
            "vertex",
            "name",
            "current",
            "total",
            "timestamp",
            "started",
            "completed",
        ],
        "logs" => &["vertex", "stream", "data", "timestamp"],
        "warnings" => &["vertex", "level", "short", "detail", "url"],
        _ => &[],
    }
}

fn b64(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("valid base64");
    String::from_utf8(bytes).unwrap()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

/// Checks every line's shape and folds the stream into each vertex's final state.
fn fold_rawjson(text: &str, tmp: &Path) -> Value {
    let mut vertices: BTreeMap<String, Value> = BTreeMap::new();
    let mut logs: BTreeMap<String, String> = BTreeMap::new();
    let mut done_statuses: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for line in text.lines() {
        let obj: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let obj = obj.as_object().expect("an object per line");
        for (list, items) in obj {
            let allowed = allowed_keys(list);
            assert!(!allowed.is_empty(), "unknown list {list}");
            for item in items.as_array().expect("lists") {
                for k in item.as_object().unwrap().keys() {
                    assert!(allowed.contains(&k.as_str()), "{list}: unknown field {k}");
                }
                match list.as_str() {
                    "vertexes" => {
                        let d = item["digest"].as_str().unwrap().to_string();
                        assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
                        for t in ["started", "completed"] {
                            assert!(item.get(t).is_none_or(is_rfc3339), "{item}");
                        }
                        vertices.insert(d, item.clone());
                    }
                    "logs" => {
                        assert!(is_rfc3339(&item["timestamp"]), "{item}");
                        assert_eq!(item["stream"], 1);
                        let v = item["vertex"].as_str().unwrap().to_string();
                        let data = mask_dest(&b64(&item["data"]), tmp);
                        logs.entry(v).or_default().push_str(&data);
                    }
                    "statuses" => {
                        assert!(is_rfc3339(&item["timestamp"]) && is_rfc3339(&item["started"]));
                        assert!(item["current"].is_u64(), "{item}");
                        if item.get("completed").is_some() {
                            let v = item["vertex"].as_str().unwrap().to_string();
                            let id = item["id"].as_str().unwrap();
                            let total = match id {
                                "sending tarball" => json!("<bytes>"),
                                _ => item["total"].clone(),
                            };
                            let s = json!({"id": id, "total": total});
                            done_statuses.entry(v).or_default().push(s);
                        }
                    }
                    _ => {
                        let detail: Vec<String> =
                            item["detail"].as_array().unwrap().iter().map(b64).collect();
                        warnings.push(json!({
                            "level": item["level"],
                            "short": b64(&item["short"]),
                            "detail": detail,
                            "url": item["url"],
                        }));
                    }
                }
            }
        }
    }
    let mut folded: Vec<Value> = vertices
        .iter()
        .map(|(d, v)| {
            assert!(
                v.get("started").is_some() && v.get("completed").is_some(),
                "{v}"
            );
            json!({
                "name": v["name"],
                "digest": d,
                "cached": v.get("cached").cloned().unwrap_or(json!(false)),
                "error": v.get("error").cloned().unwrap_or(json!("")),
                "logs": logs.get(d).cloned().unwrap_or_default(),
                "statuses": done_statuses.get(d).cloned().unwrap_or_default(),
            })
        })
        .collect();
    folded.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({"vertexes": folded, "warnings": warnings})
}

#[test]
fn rawjson_has_buildkits_solve_status_shape() {
    if !on_amd64_host() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = golden_build(tmp.path(), "rawjson");
    let folded = fold_rawjson(&text, tmp.path());
    golden(
        "rawjson.json",
        &format!("{}\n", serde_json::to_string_pretty(&folded).unwrap()),
    );
}

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let t = Tmux {
            socket: format!("rbuild-test-{name}-{}", std::process::id()),
        };
        run_ok(Command::new("tmux").args([
            "-L",
            &t.socket,
            "new-session",
            "-d",
            "-x",
            "150",
            "-y",
            "50",
            command,
        ]));
        t
    }

    fn screen(&self) -> String {
        let out = run_ok(Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits up to two minutes for the screen to satisfy `ok`; returns the last screen.
    fn wait_for(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.screen();
            if ok(&s) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn have_tmux() -> bool {
    precondition(
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "tmux is installed (cargo xtask deps)",
    )
}

/// Runs a two-platform tty build of `dockerfile` in tmux; the pane stays after it ends
/// and `EXIT=<code>` marks the end.
fn tty_build(tmp: &Path, name: &str, dockerfile: &str) -> Tmux {
    let ctx = context(&tmp.join("ctx"), dockerfile, &[]);
    let cmd = build_command(
        &tmp.join("state"),
        &ctx,
        PLATFORMS,
        None,
        &["--progress=tty"],
    );
    let mut line = String::new();
    for part in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
        line.push_str(&format!("'{}' ", part.to_string_lossy()));
    }
    Tmux::start(name, &format!("{line} 2>&1; echo EXIT=$?; sleep 600"))
}

#[test]
fn tty_shows_running_steps_live_and_collapses_to_a_summary() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tmux = tty_build(
        tmp.path(),
        "live",
        "FROM busybox\nRUN echo step-is-running; sleep 3\n",
    );
    let live = tmux.wait_for(|s| s.matches("step-is-running").count() >= 4);
    eprintln!("--- live view\n{live}");
    assert!(live.contains("[+] Building"), "{live}");
    for p in ["linux/amd64", "linux/arm64"] {
        assert!(
            live.contains(&format!("[{p} 2/2] RUN /bin/sh -c echo step-is-running")),
            "{p} runs: {live}"
        );
    }
    assert!(
        live.contains("(emulated)"),
        "the emulated step is marked: {live}"
    );
    assert_eq!(
        live.matches("step-is-running").count(),
        4,
        "name and output line per platform: {live}"
    );
    let end = tmux.wait_for(|s| s.contains("EXIT="));
    eprintln!("--- end\n{end}");
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(end.contains("FINISHED"), "{end}");
    assert!(
        end.contains("linux/amd64: 2 steps, 2 ran, 0 cached")
            && end.contains("linux/arm64: 2 steps, 2 ran, 0 cached, 1 emulated took"),
        "{end}"
    );
    assert!(
        !end.contains("step-is-running"),
        "the live view is gone: {end}"
    );
}

#[test]
fn tty_keeps_the_failing_steps_last_lines() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tmux = tty_build(
        tmp.path(),
        "fail",
        "FROM busybox\nRUN for i in 1 2 3 4 5; do echo failing-line-$i; done; exit 7\n",
    );
    let end = tmux.wait_for(|s| s.contains("EXIT="));
    eprintln!("--- end\n{end}");
    assert!(end.contains("EXIT=1"), "{end}");
    let kept = end
        .split("------")
        .nth(1)
        .unwrap_or_else(|| panic!("a ------ block: {end}"));
    assert!(kept.trim_start().starts_with("> [linux/"), "{kept}");
    for i in 1..=5 {
        assert!(kept.contains(&format!("failing-line-{i}")), "{kept}");
    }
    assert!(end.contains("ERROR: process"), "{end}");
    assert!(end.contains("FAILED"), "{end}");
}

/// `-q` for `platforms`: stdout is exactly the digest index.json names, stderr is empty.
fn quiet_build(platforms: &str) -> (String, OciLayout) {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN echo noisy-step-output\n",
        &[],
    );
    let dest = tmp.path().join("out.tar");
    let out = build(&tmp.path().join("state"), &ctx, platforms, &dest, &["-q"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing but errors"
    );
    let layout = OciLayout::open_tar(&dest);
    let entries = layout.index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "index.json names one image");
    let root = entries[0]["digest"].as_str().unwrap().to_string();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{root}\n"));
    (root, layout)
}

#[test]
fn quiet_prints_exactly_the_written_digest() {
    let (root, layout) = quiet_build("linux/amd64");
    assert_eq!(
        layout.index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(layout.platform_manifests(), [("linux/amd64".into(), root)]);
    let (root, layout) = quiet_build(PLATFORMS);
    assert_eq!(
        layout.index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(layout.json(&root)["manifests"].as_array().unwrap().len(), 2);
}
