//! End-to-end tests of the Dockerfile frontend through the real binary: image config and
//! history as BuildKit writes them, ONBUILD triggers, ADD archives, COPY heredocs, WORKDIR
//! creation, `--check` and `--call`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

/// Builds for linux/amd64 and returns the image config and the output layout.
fn build_amd64(dir: &Path, extra: &[&str]) -> (Value, OciLayout, String) {
    let out = dir.join("out.tar");
    let res = build(
        &dir.join("state"),
        &dir.join("ctx"),
        "linux/amd64",
        &out,
        extra,
    );
    assert!(res.status.success(), "build failed");
    let layout = OciLayout::open_tar(&out);
    let manifest = layout.manifest_for("linux/amd64");
    (layout.config(&manifest), layout, manifest)
}

fn targz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o640);
        h.set_uid(123);
        h.set_gid(456);
        h.set_mtime(1_000_000);
        h.set_cksum();
        builder.append_data(&mut h, name, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

const ALL: &str = r#"# syntax=docker/dockerfile:1
FROM busybox AS final
ARG VERSION=1.0
MAINTAINER Jane Doe <jane@example.com>
LABEL org.opencontainers.image.title="demo" version=$VERSION
ENV APP_DIR=/opt/app MODE=prod
WORKDIR $APP_DIR
COPY --chmod=755 app.sh $APP_DIR/bin/app
ADD data.tar.gz /opt/app/data/
RUN echo $VERSION > version.txt
SHELL ["/bin/sh", "-eu", "-c"]
EXPOSE 80 53/udp 8000-8001
VOLUME ["/data", "/logs"]
WORKDIR bin
USER 1000:1000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --start-interval=1s --retries=3 CMD wget -q -O- http://localhost/ || exit 1
ONBUILD RUN echo downstream
ENTRYPOINT exec app
CMD ["--help"]
"#;

#[test]
fn all_18_instructions_give_buildkits_config_and_history() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        ALL,
        &[("app.sh", "#!/bin/sh\necho app\n")],
    );
    std::fs::write(
        ctx.join("data.tar.gz"),
        targz(&[("inside.txt", b"from the archive\n")]),
    )
    .unwrap();
    let (cfg, layout, manifest) = build_amd64(tmp.path(), &[]);
    let c = &cfg["config"];
    assert_eq!(cfg["author"], "Jane Doe <jane@example.com>");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/opt/app/bin");
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_DIR=/opt/app",
            "MODE=prod"
        ])
    );
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-eu", "-c", "exec app"]));
    assert_eq!(c["Cmd"], json!(["--help"]));
    assert_eq!(
        c["ExposedPorts"],
        json!({"53/udp": {}, "80/tcp": {}, "8000/tcp": {}, "8001/tcp": {}})
    );
    assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}}));
    assert_eq!(
        c["Labels"],
        json!({"org.opencontainers.image.title": "demo", "version": "1.0"})
    );
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Shell"], json!(["/bin/sh", "-eu", "-c"]));
    assert_eq!(c["OnBuild"], json!(["RUN echo downstream"]));
    assert_eq!(c["ArgsEscaped"], true);
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"], "Interval": 30_000_000_000i64,
               "Timeout": 5_000_000_000i64, "StartPeriod": 10_000_000_000i64, "StartInterval": 1_000_000_000i64, "Retries": 3})
    );
    // History: the base image's entries, then one per instruction (ONBUILD writes none);
    // metadata-only steps are empty layers, WORKDIR/COPY/ADD/RUN have a layer each.
    let history = cfg["history"].as_array().unwrap();
    let ours: Vec<(String, bool)> = history[history.len() - 17..]
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap().to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let expected: Vec<(&str, bool)> = vec![
        ("ARG VERSION=1.0", true),
        ("MAINTAINER Jane Doe <jane@example.com>", true),
        (
            "LABEL org.opencontainers.image.title=demo version=1.0",
            true,
        ),
        ("ENV APP_DIR=/opt/app MODE=prod", true),
        ("WORKDIR /opt/app", false),
        ("COPY --chmod=755 app.sh /opt/app/bin/app # buildkit", false),
        ("ADD data.tar.gz /opt/app/data/ # buildkit", false),
        (
            "RUN |1 VERSION=1.0 /bin/sh -c echo $VERSION > version.txt # buildkit",
            false,
        ),
        ("SHELL [/bin/sh -eu -c]", true),
        ("EXPOSE [80/tcp 53/udp 8000/tcp 8001/tcp]", true),
        ("VOLUME [/data /logs]", true),
        ("WORKDIR /opt/app/bin", false),
        ("USER 1000:1000", true),
        ("STOPSIGNAL SIGTERM", true),
        (
            "HEALTHCHECK {Test:[CMD-SHELL wget -q -O- http://localhost/ || exit 1] Interval:30s Timeout:5s StartPeriod:10s StartInterval:1s Retries:3}",
            true,
        ),
        ("ENTRYPOINT [\"/bin/sh\" \"-eu\" \"-c\" \"exec app\"]", true),
        ("CMD [\"--help\"]", true),
    ];
    let expected: Vec<(String, bool)> = expected
        .into_iter()
        .map(|(a, b)| (a.to_string(), b))
        .collect();
    assert_eq!(ours, expected);
    let layers = history
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .count();
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), layers);
    assert_eq!(
        layout.file(&manifest, "opt/app/version.txt").unwrap(),
        b"1.0\n"
    );
    assert_eq!(
        layout.file(&manifest, "opt/app/data/inside.txt").unwrap(),
        b"from the archive\n"
    );
}

#[test]
fn add_extracts_local_tar_gz_keeping_owners_and_copies_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nADD rootfs.tar.gz plain.txt /dst/\nADD rootfs.tar.gz /kept.tar.gz.d\n",
        &[("plain.txt", "plain\n")],
    );
    std::fs::write(
        ctx.join("rootfs.tar.gz"),
        targz(&[("etc/hello", b"hi\n"), ("bin/tool", b"tool")]),
    )
    .unwrap();
    let (_, layout, manifest) = build_amd64(tmp.path(), &[]);
    let entries = layout.layer_entries(&manifest);
    let hello = entries
        .iter()
        .find(|e| e.1 == "dst/etc/hello")
        .expect("extracted file");
    assert_eq!(hello.3, b"hi\n");
    assert_eq!((hello.4, hello.5), (123, 456), "archive ownership is kept");
    assert_eq!(layout.file(&manifest, "dst/plain.txt").unwrap(), b"plain\n");
    assert_eq!(
        layout.file(&manifest, "kept.tar.gz.d/bin/tool").unwrap(),
        b"tool"
    );
    assert!(layout.file(&manifest, "dst/rootfs.tar.gz").is_none());
}

#[test]
fn copy_heredocs_write_files_expanded_unless_quoted() {
    let tmp = tempfile::tempdir().unwrap();
    let df = "FROM busybox\nARG WHO=world\nCOPY <<EOF /etc/greeting\nhello $WHO\nEOF\nCOPY --chmod=700 --chown=1000:1000 <<'RAW' <<two /opt/\nraw $WHO\nRAW\nsecond\ntwo\n";
    context(&tmp.path().join("ctx"), df, &[]);
    let (_, layout, manifest) = build_amd64(tmp.path(), &[]);
    assert_eq!(
        layout.file(&manifest, "etc/greeting").unwrap(),
        b"hello world\n"
    );
    assert_eq!(layout.file(&manifest, "opt/RAW").unwrap(), b"raw $WHO\n");
    assert_eq!(layout.file(&manifest, "opt/two").unwrap(), b"second\n");
    let entries = layout.layer_entries(&manifest);
    let raw = entries.iter().find(|e| e.1 == "opt/RAW").unwrap();
    assert_eq!((raw.4, raw.5), (1000, 1000));
}

#[test]
fn workdir_is_created_owned_by_the_user_and_empty_when_it_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let df = "FROM busybox\nUSER user\nWORKDIR /home/user/work\nUSER root\nWORKDIR /tmp\nRUN test -d /home/user/work\n";
    context(&tmp.path().join("ctx"), df, &[]);
    let (cfg, layout, manifest) = build_amd64(tmp.path(), &[]);
    let m = layout.json(&manifest);
    let layers = m["layers"].as_array().unwrap();
    // busybox + WORKDIR (new dirs) + WORKDIR (existing: empty layer) + RUN.
    assert_eq!(layers.len(), 4);
    let entries = layout.layer_entries(&manifest);
    let work = entries
        .iter()
        .find(|e| e.1.trim_end_matches('/') == "home/user/work")
        .expect("workdir entry");
    assert_eq!((work.4, work.5), (1000, 1000));
    assert_eq!(work.2, tar::EntryType::Directory);
    assert!(
        entries.iter().all(|e| e.0 != 2),
        "WORKDIR of an existing directory adds nothing"
    );
    assert_eq!(cfg["config"]["WorkingDir"], "/tmp");
}

#[test]
fn onbuild_triggers_run_when_the_image_is_used_as_a_base() {
    let tmp = tempfile::tempdir().unwrap();
    let a_ctx = context(
        &tmp.path().join("a"),
        "FROM busybox\nONBUILD COPY marker.txt /from-trigger.txt\nONBUILD RUN echo ran > /trigger-ran\n",
        &[],
    );
    let a_dir = tmp.path().join("a-oci");
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build")
        .args(["--platform", "linux/amd64"])
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            busybox_layout().display()
        ))
        .arg("-o")
        .arg(format!("type=oci,dest={},tar=false", a_dir.display()))
        .args(["-t", "a:latest"])
        .arg(&a_ctx);
    run_ok(&mut c);
    let a = OciLayout::open_dir(&a_dir);
    let a_cfg = a.config(&a.manifest_for("linux/amd64"));
    assert_eq!(
        a_cfg["config"]["OnBuild"],
        json!([
            "COPY marker.txt /from-trigger.txt",
            "RUN echo ran > /trigger-ran"
        ])
    );

    context(
        &tmp.path().join("ctx"),
        "FROM a\nRUN cat /trigger-ran\n",
        &[("marker.txt", "marker\n")],
    );
    let a_ref = format!("a=oci-layout://{}", a_dir.display());
    let (cfg, layout, manifest) = build_amd64(tmp.path(), &["--build-context", &a_ref]);
    assert_eq!(
        layout.file(&manifest, "from-trigger.txt").unwrap(),
        b"marker\n"
    );
    assert_eq!(layout.file(&manifest, "trigger-ran").unwrap(), b"ran\n");
    assert!(
        cfg["config"].get("OnBuild").is_none_or(|v| v.is_null()),
        "triggers are consumed: {cfg}"
    );
    let created: Vec<&str> = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert!(
        created.contains(&"COPY marker.txt /from-trigger.txt # buildkit"),
        "{created:?}"
    );
}

#[test]
fn check_reports_lint_warnings_and_fails_with_check_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox AS Build\nCMD echo hi\n",
        &[],
    );
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build")
        .arg("--check")
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            busybox_layout().display()
        ))
        .arg(&ctx);
    let out = run(&mut c);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "Dockerfile:1:1: warning: StageNameCasing: Stage name 'Build' should be lowercase"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Dockerfile:2:1: warning: JSONArgsRecommended:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Check complete, 2 warning(s) found."),
        "{stdout}"
    );

    std::fs::write(
        ctx.join("Dockerfile"),
        "# check=error=true\nFROM busybox\nCMD echo hi\n",
    )
    .unwrap();
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lint violations found"));
}

#[test]
fn call_outline_and_targets_describe_the_dockerfile() {
    let tmp = tempfile::tempdir().unwrap();
    let df = "# VERSION the release\nARG VERSION=1.2\n# base the common base\nFROM busybox AS base\n\n# release the shipped image\nFROM base AS release\nARG VERSION\n";
    let ctx = context(&tmp.path().join("ctx"), df, &[]);
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build").args(["--call", "targets"]).arg(&ctx);
    let out = run_ok(&mut c);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "TARGET              DESCRIPTION\nbase                the common base\nrelease (default)   the shipped image\n"
    );
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build")
        .args(["--call", "outline", "--build-arg", "VERSION=2.0"])
        .arg(&ctx);
    let out = run_ok(&mut c);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "TARGET:      release\nDESCRIPTION: the shipped image\n\nBUILD ARG   VALUE   DESCRIPTION\nVERSION     2.0     the release\n\n"
    );
}

#[test]
fn lowering_errors_are_all_reported_with_locations() {
    let tmp = tempfile::tempdir().unwrap();
    context(
        &tmp.path().join("ctx"),
        "FROM busybox\nEXPOSE 70000\nADD --checksum=md5:00 https://example.com/x /x\n",
        &[],
    );
    let out = build(
        &tmp.path().join("state"),
        &tmp.path().join("ctx"),
        "linux/amd64",
        &tmp.path().join("o.tar"),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:2:1: invalid port in EXPOSE \"70000\""),
        "{err}"
    );
    assert!(
        err.contains("Dockerfile:3:1: unsupported checksum algorithm \"md5\""),
        "{err}"
    );
    assert!(
        err.contains("  3 | ADD --checksum=md5:00 https://example.com/x /x"),
        "{err}"
    );
}

#[test]
fn run_heredocs_run_as_scripts_including_shebang_interpreters() {
    let tmp = tempfile::tempdir().unwrap();
    let df = "FROM busybox\nRUN <<EOF\necho plain > /plain-out\nEOF\nRUN <<EOF\n#!/bin/sh -e\necho \"sh $0\" > /sh-out\nEOF\nRUN <<EOF\n#!/bin/awk -f\nBEGIN { print \"awk ran\" > \"/awk-out\" }\nEOF\nRUN cat <<A > /a-out && cat <<B > /b-out\nfirst\nA\nsecond\nB\n";
    context(&tmp.path().join("ctx"), df, &[]);
    let (cfg, layout, manifest) = build_amd64(tmp.path(), &[]);
    assert_eq!(layout.file(&manifest, "plain-out").unwrap(), b"plain\n");
    assert_eq!(layout.file(&manifest, "sh-out").unwrap(), b"sh /bin/sh\n");
    assert_eq!(layout.file(&manifest, "awk-out").unwrap(), b"awk ran\n");
    assert_eq!(layout.file(&manifest, "a-out").unwrap(), b"first\n");
    assert_eq!(layout.file(&manifest, "b-out").unwrap(), b"second\n");
    let created: Vec<&str> = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert!(
        created.contains(&"RUN /bin/sh -c /dev/pipes/EOF # buildkit"),
        "{created:?}"
    );
}

#[test]
fn copy_parents_exclude_and_symbolic_chmod() {
    let tmp = tempfile::tempdir().unwrap();
    let df = "FROM busybox\nCOPY --parents --exclude=**/*.md src/./pkg/a/*.go src/pkg/b/ /out/\nCOPY --exclude=**/*.log --chmod=go-w,a+X tree /t/\n";
    let ctx = context(
        &tmp.path().join("ctx"),
        df,
        &[
            ("src/pkg/a/x.go", "x"),
            ("src/pkg/a/y.txt", "y"),
            ("src/pkg/b/z.go", "z"),
            ("src/pkg/b/doc.md", "d"),
            ("tree/run.sh", "#!/bin/sh\n"),
            ("tree/data", "data"),
            ("tree/sub/debug.log", "log"),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &str, m: u32| {
        std::fs::set_permissions(ctx.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    set("tree/run.sh", 0o775);
    set("tree/data", 0o666);
    let (_, layout, manifest) = build_amd64(tmp.path(), &[]);
    assert_eq!(layout.file(&manifest, "out/pkg/a/x.go").unwrap(), b"x");
    assert!(layout.file(&manifest, "out/pkg/a/y.txt").is_none());
    assert_eq!(layout.file(&manifest, "out/src/pkg/b/z.go").unwrap(), b"z");
    assert!(layout.file(&manifest, "out/src/pkg/b/doc.md").is_none());
    assert!(layout.file(&manifest, "t/sub/debug.log").is_none());
    let modes = layer_modes(&layout, &manifest);
    let mode = |p: &str| {
        modes
            .iter()
            .rev()
            .find(|e| e.0.trim_end_matches('/') == p)
            .unwrap_or_else(|| panic!("{p} in a layer"))
            .1
            & 0o7777
    };
    assert_eq!(mode("t/run.sh"), 0o755);
    assert_eq!(mode("t/data"), 0o644);
    assert_eq!(mode("t/sub"), 0o755);
}

#[test]
fn add_extracts_archives_matched_by_a_wildcard() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nADD --exclude=skip* *.tgz notes.txt /dst/\n",
        &[("notes.txt", "n\n")],
    );
    std::fs::write(ctx.join("one.tgz"), targz(&[("a/one", b"1")])).unwrap();
    std::fs::write(ctx.join("two.tgz"), targz(&[("b/two", b"2")])).unwrap();
    std::fs::write(ctx.join("skip.tgz"), targz(&[("c/skip", b"3")])).unwrap();
    let (_, layout, manifest) = build_amd64(tmp.path(), &[]);
    assert_eq!(layout.file(&manifest, "dst/a/one").unwrap(), b"1");
    assert_eq!(layout.file(&manifest, "dst/b/two").unwrap(), b"2");
    assert_eq!(layout.file(&manifest, "dst/notes.txt").unwrap(), b"n\n");
    assert!(layout.file(&manifest, "dst/one.tgz").is_none());
    assert!(layout.file(&manifest, "dst/c/skip").is_none());
    assert!(layout.file(&manifest, "dst/skip.tgz").is_none());
}

#[test]
fn call_outline_lists_secrets_and_ssh_and_prints_json() {
    let tmp = tempfile::tempdir().unwrap();
    let df = "# app the application\nFROM busybox AS app\nARG MODE=dev\nRUN --mount=type=secret,id=token,required=true --mount=type=ssh,id=git true\n";
    let ctx = context(&tmp.path().join("ctx"), df, &[]);
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build").args(["--call", "outline"]).arg(&ctx);
    let out = run_ok(&mut c);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "TARGET:      app\nDESCRIPTION: the application\n\nBUILD ARG   VALUE   DESCRIPTION\nMODE        dev\n\nSECRET   REQUIRED\ntoken    true\n\nSSH   REQUIRED\ngit\n\n"
    );
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build")
        .args(["--call", "outline,format=json"])
        .arg(&ctx);
    let out = run_ok(&mut c);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({
            "name": "app",
            "description": "the application",
            "args": [{"name": "MODE", "value": "dev"}],
            "secrets": [{"name": "token", "required": true}],
            "ssh": [{"name": "git"}]
        })
    );
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build")
        .args(["--call", "targets,format=json"])
        .arg(&ctx);
    let out = run_ok(&mut c);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"targets": [{"name": "app", "default": true, "description": "the application", "base": "busybox"}]})
    );
}

/// Every layer entry's path and mode, in layer order.
fn layer_modes(layout: &OciLayout, manifest: &str) -> Vec<(String, u32)> {
    use std::io::Read;
    let mut out = Vec::new();
    for l in layout.json(manifest)["layers"].as_array().unwrap() {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(layout.blob(l["digest"].as_str().unwrap()))
            .read_to_end(&mut plain)
            .unwrap();
        for e in tar::Archive::new(&plain[..]).entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            out.push((path, e.header().mode().unwrap()));
        }
    }
    out
}

#[test]
fn dockerignore_hides_files_from_copy_and_from_cache_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nCOPY . /ctx/\nRUN --mount=type=bind,target=/b ls -a /b | sort | tr '\\n' ' ' > /bind-listing\n",
        &[
            (
                ".dockerignore",
                "# local junk\n*.log\nbuild\n!build/keep.txt\nsecret.txt\n",
            ),
            ("app.txt", "app\n"),
            ("debug.log", "noise\n"),
            ("secret.txt", "do-not-ship\n"),
            ("build/out.bin", "bin\n"),
            ("build/keep.txt", "keep\n"),
        ],
    );
    let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
    assert!(build(&state, &ctx, "linux/amd64", &a, &[]).status.success());
    let l = OciLayout::open_tar(&a);
    let m = l.manifest_for("linux/amd64");
    assert_eq!(l.file(&m, "ctx/app.txt").unwrap(), b"app\n");
    assert_eq!(l.file(&m, "ctx/build/keep.txt").unwrap(), b"keep\n");
    for gone in ["ctx/debug.log", "ctx/secret.txt", "ctx/build/out.bin"] {
        assert!(l.file(&m, gone).is_none(), "{gone} was copied");
    }
    let listing = String::from_utf8(l.file(&m, "bind-listing").unwrap()).unwrap();
    assert!(
        !listing.contains("secret.txt") && listing.contains("app.txt"),
        "{listing}"
    );
    // Changing an ignored file changes nothing: every step is cached.
    std::fs::write(ctx.join("debug.log"), "other noise\n").unwrap();
    let res = build(&state, &ctx, "linux/amd64", &b, &[]);
    assert!(res.status.success());
    assert_eq!(cached_steps(&String::from_utf8_lossy(&res.stderr)).len(), 2);
    // A Dockerfile-specific ignore file takes precedence.
    std::fs::write(ctx.join("Dockerfile.dockerignore"), "app.txt\n").unwrap();
    let c = tmp.path().join("c.tar");
    assert!(build(&state, &ctx, "linux/amd64", &c, &[]).status.success());
    let l = OciLayout::open_tar(&c);
    let m = l.manifest_for("linux/amd64");
    assert!(l.file(&m, "ctx/app.txt").is_none());
    assert_eq!(l.file(&m, "ctx/secret.txt").unwrap(), b"do-not-ship\n");
}
