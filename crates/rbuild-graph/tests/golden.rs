//! Golden files for lowering: `testdata/lower/<case>/Dockerfile`, an optional
//! `options.json` (`build_args`, `target`, `platform`, `build_platform`, `check`) and the
//! expected result: `expected.json` (the lowered graph: every stage's ops with their
//! history text and the image config it ends with, plus lint findings) or `expected.txt`
//! (the rendered errors). Set UPDATE_GOLDEN=1 to rewrite the expected files.
//!
//! Base images come from a fixed table (see `Bases`), so no case does I/O.

use rbuild_core::Platform;
use rbuild_core::config::ImageConfig;
use rbuild_graph::{BaseResolver, LowerOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lower")
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// The base images golden cases may use.
struct Bases;

impl BaseResolver for Bases {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, rbuild_graph::ResolveFailure> {
        let mut c = ImageConfig {
            architecture: platform.architecture().to_string(),
            os: platform.os().to_string(),
            ..Default::default()
        };
        c.set_env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        let name = match reference.rsplit_once(':') {
            Some((n, tag)) if !tag.contains('/') => n,
            _ => reference,
        };
        match name {
            "busybox" | "alpine" | "debian" | "golang" => {
                c.config.cmd = Some(vec!["sh".into()]);
            }
            "app-base" => {
                c.config.cmd = Some(vec!["serve".into()]);
                c.config.working_dir = Some("/srv".into());
                c.config.user = Some("app".into());
                c.set_env("APP_HOME", "/srv");
                c.config.exposed_ports =
                    Some(BTreeMap::from([("8080/tcp".into(), Default::default())]));
            }
            "onbuild-base" => {
                c.config.on_build = Some(vec![
                    "RUN echo triggered".into(),
                    "COPY . /app/src".into(),
                    "ENV FROM_TRIGGER=yes".into(),
                ]);
            }
            "nopath" => {
                c.config.env = Some(vec!["HOME=/root".into()]);
            }
            other => return Err(format!("{other}: image not found").into()),
        }
        Ok(c)
    }
}

fn options(dir: &Path) -> (LowerOptions, bool) {
    let o: Value = fs::read(dir.join("options.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(json!({}));
    let platform =
        |k: &str| -> Platform { o[k].as_str().unwrap_or("linux/amd64").parse().unwrap() };
    let build_args = o["build_args"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let opts = LowerOptions {
        target_platform: platform("platform"),
        build_platform: platform("build_platform"),
        build_args,
        target: o["target"].as_str().map(str::to_string),
        all_stages: false,
    };
    (opts, o["check"].as_bool().unwrap_or(false))
}

/// The lowered graph as the golden files show it.
fn dump(graph: &rbuild_graph::BuildGraph) -> Value {
    let stages: Vec<Value> = graph
        .stages
        .iter()
        .map(|s| {
            let ops: Vec<Value> = s
                .ops
                .iter()
                .map(|o| {
                    json!({
                        "line": o.location.line,
                        "created_by": o.created_by,
                        "kind": serde_json::to_value(&o.kind).unwrap(),
                    })
                })
                .collect();
            json!({
                "index": s.index,
                "name": s.name,
                "base": serde_json::to_value(&s.base).unwrap(),
                "platform": s.platform.to_string(),
                "needed": s.needed,
                "ops": ops,
                "config": serde_json::to_value(&s.config).unwrap(),
            })
        })
        .collect();
    json!({
        "target": graph.target,
        "build_order": graph.build_order(),
        "stages": stages,
        "lints": graph.lints.iter().map(|l| l.diagnostic.to_string()).collect::<Vec<_>>(),
    })
}

fn compare(dir: &Path, file: &str, actual: &str) -> Option<String> {
    let path = dir.join(file);
    if updating() {
        let other = if file == "expected.json" {
            "expected.txt"
        } else {
            "expected.json"
        };
        let _ = fs::remove_file(dir.join(other));
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

fn run_case(dir: &Path) -> Option<String> {
    let src = fs::read(dir.join("Dockerfile")).unwrap();
    let df = match rbuild_dockerfile::parse("Dockerfile", &src) {
        Ok(df) => df,
        Err(e) => return compare(dir, "expected.txt", &format!("{e}\n")),
    };
    let (opts, check) = options(dir);
    if check {
        let (lints, errors) = rbuild_graph::check(&df, &opts, &mut Bases);
        let mut text: Vec<String> = lints.iter().map(|l| l.diagnostic.to_string()).collect();
        text.extend(errors.iter().map(|e| e.to_string()));
        return compare(dir, "expected.txt", &(text.join("\n") + "\n"));
    }
    match rbuild_graph::lower(&df, &opts, &mut Bases) {
        Ok(g) => compare(
            dir,
            "expected.json",
            &(serde_json::to_string_pretty(&dump(&g)).unwrap() + "\n"),
        ),
        Err(e) => compare(dir, "expected.txt", &format!("{e}\n")),
    }
}

#[test]
fn lower_cases() {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 40, "only {} lowering cases", dirs.len());
    let failures: Vec<String> = dirs.iter().filter_map(|d| run_case(d)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} lowering cases failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

/// The image config of a Dockerfile using all 18 instructions, field by field as
/// BuildKit documents it (docker buildx build + `docker image inspect` / skopeo
/// inspect --config).
#[test]
fn all_instructions_config_matches_buildkit() {
    let dir = root().join("all-18-instructions");
    let src = fs::read(dir.join("Dockerfile")).unwrap();
    let df = rbuild_dockerfile::parse("Dockerfile", &src).unwrap();
    let (opts, _) = options(&dir);
    let g = rbuild_graph::lower(&df, &opts, &mut Bases).unwrap();
    let cfg = serde_json::to_value(&g.stages[g.target].config).unwrap();
    let expected = json!({
        "author": "Jane Doe <jane@example.com>",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "1000:1000",
            "ExposedPorts": {"53/udp": {}, "80/tcp": {}, "8000/tcp": {}, "8001/tcp": {}},
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "APP_DIR=/opt/app",
                "MODE=prod"
            ],
            "Entrypoint": ["/bin/sh", "-eu", "-c", "exec app"],
            "Cmd": ["--help"],
            "Volumes": {"/data": {}, "/logs": {}},
            "WorkingDir": "/opt/app/bin",
            "Labels": {"org.opencontainers.image.title": "demo", "version": "1.0"},
            "StopSignal": "SIGTERM",
            "Healthcheck": {
                "Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
                "Interval": 30_000_000_000i64,
                "Timeout": 5_000_000_000i64,
                "StartPeriod": 10_000_000_000i64,
                "StartInterval": 1_000_000_000i64,
                "Retries": 3
            },
            "OnBuild": ["RUN echo downstream"],
            "Shell": ["/bin/sh", "-eu", "-c"],
            "ArgsEscaped": true
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    assert_eq!(
        cfg,
        expected,
        "{}",
        serde_json::to_string_pretty(&cfg).unwrap()
    );
    let history: Vec<&str> = g.stages[g.target]
        .ops
        .iter()
        .map(|o| o.created_by.as_str())
        .collect();
    assert_eq!(
        history,
        vec![
            "ARG VERSION=1.0",
            "MAINTAINER Jane Doe <jane@example.com>",
            "LABEL org.opencontainers.image.title=demo version=1.0",
            "ENV APP_DIR=/opt/app MODE=prod",
            "WORKDIR /opt/app",
            "COPY --chmod=755 app.sh /opt/app/bin/app # buildkit",
            "ADD data.tar.gz /opt/app/data/ # buildkit",
            "RUN |1 VERSION=1.0 /bin/sh -c echo $VERSION > version.txt # buildkit",
            "SHELL [/bin/sh -eu -c]",
            "EXPOSE [80/tcp 53/udp 8000/tcp 8001/tcp]",
            "VOLUME [/data /logs]",
            "WORKDIR /opt/app/bin",
            "USER 1000:1000",
            "STOPSIGNAL SIGTERM",
            "HEALTHCHECK {Test:[CMD-SHELL wget -q -O- http://localhost/ || exit 1] Interval:30s Timeout:5s StartPeriod:10s StartInterval:1s Retries:3}",
            "ENTRYPOINT [\"/bin/sh\" \"-eu\" \"-c\" \"exec app\"]",
            "CMD [\"--help\"]",
        ]
    );
}
