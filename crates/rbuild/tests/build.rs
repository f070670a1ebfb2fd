//! End-to-end tests of `rbuild build`: the real binary, real namespaces, real QEMU, and
//! output checked by skopeo, umoci and an independent layout reader.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// Unpacks the image for `platform` with the host's umoci and returns the rootfs path.
fn umoci_unpack(out_tar: &Path, work: &Path, platform: &str) -> std::path::PathBuf {
    umoci_unpack_with(Path::new("umoci"), out_tar, work, platform)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn hello_builds_for_every_fixture_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.tar");
    let platforms = fixture_platforms();
    assert!(platforms.len() >= 7, "fixture has only {platforms:?}");
    let res = build(
        &tmp.path().join("state"),
        &repo().join("Dockerfiles/hello"),
        &platforms.join(","),
        &out,
        &["-t", "hello:1"],
    );
    assert!(res.status.success());

    // skopeo reads the archive by its tag and lists every platform.
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}:1", out.display())),
    );
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let mut listed: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    let mut expected = platforms.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    // Each manifest's config names its own platform, and the index agrees.
    let layout = OciLayout::open_tar(&out);
    assert_eq!(
        layout.index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    let mut from_configs: Vec<String> = layout
        .platform_manifests()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    from_configs.sort();
    assert_eq!(from_configs, expected);

    // umoci unpacks each image; RUN uname -m recorded the platform's machine.
    for p in &platforms {
        let rootfs = umoci_unpack(&out, tmp.path(), p);
        assert_eq!(
            read(&rootfs.join("arch")).trim(),
            expected_uname(p),
            "platform {p}"
        );
        assert_eq!(
            read(&rootfs.join("platform")).trim(),
            format!("built for {p}")
        );
        assert_eq!(read(&rootfs.join("etc/hello.txt")), "Hello from rbuild.\n");
        let cfg = layout.config(&layout.manifest_for(p));
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["cat", "/arch"]));
        assert_eq!(cfg["config"]["WorkingDir"], "/srv");
    }
}

#[test]
fn build_stage_on_buildplatform_runs_natively_and_feeds_each_target() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM --platform=$BUILDPLATFORM busybox AS build\n\
         ARG TARGETARCH\n\
         RUN uname -m > /build-machine && echo \"$TARGETARCH\" > /target-arch\n\
         FROM busybox\n\
         COPY --from=build /build-machine /target-arch /out/\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let res = build(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64,linux/arm64,linux/s390x",
        &out,
        &[],
    );
    assert!(res.status.success());
    let host = String::from_utf8(Command::new("uname").arg("-m").output().unwrap().stdout).unwrap();
    let layout = OciLayout::open_tar(&out);
    for (platform, arch) in [
        ("linux/amd64", "amd64"),
        ("linux/arm64", "arm64"),
        ("linux/s390x", "s390x"),
    ] {
        let m = layout.manifest_for(platform);
        assert_eq!(
            String::from_utf8(layout.file(&m, "out/target-arch").unwrap())
                .unwrap()
                .trim(),
            arch
        );
        assert_eq!(
            String::from_utf8(layout.file(&m, "out/build-machine").unwrap()).unwrap(),
            host,
            "the build stage of {platform} must run natively"
        );
    }
}

#[test]
fn deleting_a_base_file_writes_a_whiteout() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN rm /etc/group && rm -r /tmp\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    assert!(
        build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &[])
            .status
            .success()
    );
    let layout = OciLayout::open_tar(&out);
    let m = layout.manifest_for("linux/amd64");
    let entries = layout.layer_entries(&m);
    let last = entries.iter().map(|e| e.0).max().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .filter(|e| e.0 == last)
        .map(|e| e.1.as_str())
        .collect();
    assert!(names.contains(&"etc/.wh.group"), "last layer: {names:?}");
    assert!(names.contains(&".wh.tmp"), "last layer: {names:?}");
    assert!(layout.file(&m, "etc/group").is_none());
    assert!(layout.file(&m, "etc/passwd").is_some());
    let rootfs = umoci_unpack(&out, tmp.path(), "linux/amd64");
    assert!(!rootfs.join("etc/group").exists());
    assert!(!rootfs.join("tmp").exists());
    assert!(rootfs.join("etc/passwd").exists());
}

#[test]
fn failing_run_names_line_command_and_exit_code_and_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN echo first-step\nRUN echo about-to-fail && exit 3\n",
        &[],
    );
    let dest_dir = tmp.path().join("dest");
    std::fs::create_dir(&dest_dir).unwrap();
    let out = dest_dir.join("out.tar");
    let res = build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &[]);
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    assert!(err.contains("echo about-to-fail && exit 3"), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert!(err.contains("about-to-fail"), "{err}");
    assert_eq!(
        std::fs::read_dir(&dest_dir).unwrap().count(),
        0,
        "output left behind"
    );
}

#[test]
fn syntax_error_points_at_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\n\nRUNN echo hi\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let res = build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &[]);
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    assert!(err.contains("RUNN echo hi"), "{err}");
    assert!(err.to_lowercase().contains("unknown instruction"), "{err}");
    assert!(!out.exists());
}

#[test]
fn unknown_base_image_names_reference_and_places_searched() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM example.org/nosuch/image:1.0\nRUN true\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let res = build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &[]);
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("example.org/nosuch/image:1.0"), "{err}");
    assert!(err.contains("Dockerfile:1:1"), "{err}");
    assert!(err.contains("build contexts"), "{err}");
    assert!(
        err.contains("busybox"),
        "the given contexts are listed: {err}"
    );
    assert!(err.contains("registries"), "{err}");
    assert!(!out.exists());
}

#[test]
fn missing_emulator_fails_before_any_step() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN echo step-ran\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let state = tmp.path().join("state");
    let mut c = build_command(&state, &ctx, "linux/amd64,linux/arm64", Some(&out), &[]);
    let res = run(c.env("RBUILD_QEMU_PATH", &empty));
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("qemu-aarch64-static"), "{err}");
    assert!(err.contains("qemu-user-static"), "{err}");
    assert!(
        !err.contains("step-ran"),
        "a step ran before the check: {err}"
    );
    assert!(!out.exists());
}

#[test]
fn an_emulator_missing_from_rbuild_qemu_path_is_not_taken_from_host_handlers() {
    if !precondition(
        is_root(),
        "running as root (for a private view of binfmt_misc)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN echo step-ran\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let state = tmp.path().join("state");
    let handlers = tmp.path().join("binfmt");
    let mut c = build_command(&state, &ctx, "linux/amd64,linux/arm64", Some(&out), &[]);
    c.env("RBUILD_QEMU_PATH", &empty);
    let res = run(&mut with_host_aarch64_handler(&c, &handlers));
    assert!(!res.status.success());
    let err = stderr(&res);
    assert!(err.contains("qemu-aarch64-static"), "{err}");
    assert!(err.contains("qemu-user-static"), "{err}");
    assert!(
        !err.contains("step-ran"),
        "a step ran before the check: {err}"
    );
    assert!(!out.exists());

    let mut c = rbuild(&state);
    c.env("RBUILD_QEMU_PATH", &empty).arg("platforms");
    let text = stdout(&run_ok(&mut with_host_aarch64_handler(&c, &handlers)));
    let arm = text.lines().find(|l| l.starts_with("linux/arm64 "));
    assert!(
        arm.is_some_and(|l| l.contains("unavailable") && l.contains("qemu-user-static")),
        "{text}"
    );
}

/// The host's binfmt_misc state: whether it is mounted, and each entry with its content.
fn host_binfmt() -> Vec<(String, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mounted = mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/proc/sys/fs/binfmt_misc"));
    let mut out = vec![("mounted".to_string(), mounted.to_string())];
    if mounted {
        let mut entries: Vec<_> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
            .unwrap()
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let content = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.push((e.file_name().to_string_lossy().into_owned(), content));
        }
    }
    out
}

#[test]
fn arm64_runs_through_a_private_binfmt_and_leaves_the_host_untouched() {
    let handler = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    // With a host handler present, disable it for the build so the private one must work.
    let host_had_handler = handler.exists() && read(handler).starts_with("enabled");
    if host_had_handler {
        std::fs::write(handler, "0").unwrap();
    }
    let before = host_binfmt();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN sh -c 'sh -c \"uname -m\"' > /arch\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let res = build(&tmp.path().join("state"), &ctx, "linux/arm64", &out, &[]);
    let after = host_binfmt();
    if host_had_handler {
        std::fs::write(handler, "1").unwrap();
    }
    assert!(res.status.success());
    assert_eq!(before, after, "host binfmt_misc changed");
    let layout = OciLayout::open_tar(&out);
    let m = layout.manifest_for("linux/arm64");
    assert_eq!(layout.file(&m, "arch").unwrap(), b"aarch64\n");
}

#[test]
fn repeated_build_reuses_cached_steps_and_gives_the_same_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN date +%s%N > /stamp\nCOPY f /f\n",
        &[("f", "one\n"), ("unrelated.txt", "a\n")],
    );
    let (a, b, c) = (
        tmp.path().join("a.tar"),
        tmp.path().join("b.tar"),
        tmp.path().join("c.tar"),
    );
    assert!(build(&state, &ctx, "linux/amd64", &a, &[]).status.success());
    let second = build(&state, &ctx, "linux/amd64", &b, &[]);
    assert!(second.status.success());
    assert_eq!(
        cached_steps(&String::from_utf8_lossy(&second.stderr)).len(),
        2
    );
    // A file no COPY reads does not invalidate anything.
    std::fs::write(ctx.join("unrelated.txt"), "b\n").unwrap();
    let third = build(&state, &ctx, "linux/amd64", &b, &[]);
    assert_eq!(
        cached_steps(&String::from_utf8_lossy(&third.stderr)).len(),
        2
    );
    let (la, lb) = (OciLayout::open_tar(&a), OciLayout::open_tar(&b));
    let (ma, mb) = (
        la.manifest_for("linux/amd64"),
        lb.manifest_for("linux/amd64"),
    );
    assert_eq!(la.json(&ma)["layers"], lb.json(&mb)["layers"]);
    assert_eq!(la.file(&ma, "stamp"), lb.file(&mb, "stamp"));
    // A changed COPY source invalidates that step only.
    std::fs::write(ctx.join("f"), "two\n").unwrap();
    assert!(build(&state, &ctx, "linux/amd64", &c, &[]).status.success());
    let lc = OciLayout::open_tar(&c);
    let mc = lc.manifest_for("linux/amd64");
    assert_eq!(lc.file(&mc, "stamp"), la.file(&ma, "stamp"));
    assert_eq!(lc.file(&mc, "f").unwrap(), b"two\n");
}

#[test]
fn oci_directory_output_is_a_valid_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("layout");
    let output = format!("type=oci,dest={},tar=false", dest.display());
    let state = tmp.path().join("state");
    let hello = repo().join("Dockerfiles/hello");
    let extra = ["-t", "hello:dir", "-o", &output];
    run_ok(&mut build_command(
        &state,
        &hello,
        "linux/amd64,linux/arm64",
        None,
        &extra,
    ));
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:dir", dest.display())),
    );
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let layout = OciLayout::open_dir(&dest);
    let m = layout.manifest_for("linux/arm64");
    assert_eq!(layout.file(&m, "arch").unwrap(), b"aarch64\n");
}

#[test]
fn quiet_build_reports_the_digest_in_iidfile_metadata_and_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN echo noisy-step-output\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let iid = tmp.path().join("iid");
    let meta = tmp.path().join("meta.json");
    let (iid_s, meta_s) = (iid.display().to_string(), meta.display().to_string());
    let extra = [
        "-q",
        "--iidfile",
        &iid_s,
        "--metadata-file",
        &meta_s,
        "--label",
        "org.example.team=build",
        "-t",
        "q:1",
    ];
    let res = build(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64,linux/arm64",
        &out,
        &extra,
    );
    assert!(res.status.success());
    let layout = OciLayout::open_tar(&out);
    let root = layout.index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(String::from_utf8_lossy(&res.stdout).trim(), root);
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), root);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.digest"], root.as_str());
    assert_eq!(
        m["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(m["image.name"], "q:1");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        !err.contains("noisy-step-output") && !err.contains("[linux/"),
        "{err}"
    );
    for p in ["linux/amd64", "linux/arm64"] {
        let cfg = layout.config(&layout.manifest_for(p));
        assert_eq!(cfg["config"]["Labels"]["org.example.team"], "build");
    }
}

#[test]
fn docker_archive_output_is_read_by_skopeo_as_docker_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("img.tar");
    let state = tmp.path().join("state");
    let hello = repo().join("Dockerfiles/hello");
    let output = format!("type=docker,dest={}", out.display());
    run_ok(&mut build_command(
        &state,
        &hello,
        "linux/arm64",
        None,
        &["-t", "hello:1", "-o", &output],
    ));
    let raw = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", out.display())),
    );
    let info: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(info["Architecture"], "arm64");
    // docker load names the image from manifest.json.
    let extracted = tmp.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    run_ok(
        Command::new("tar")
            .arg("xf")
            .arg(&out)
            .arg("-C")
            .arg(&extracted),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(extracted.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["hello:1"]));
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        assert!(extracted.join(layer.as_str().unwrap()).is_file());
    }
    assert!(
        extracted
            .join(manifest[0]["Config"].as_str().unwrap())
            .is_file()
    );
    // The same archive is also an OCI layout.
    let layout = OciLayout::open_tar(&out);
    assert_eq!(
        layout
            .file(&layout.manifest_for("linux/arm64"), "arch")
            .unwrap(),
        b"aarch64\n"
    );
    // Several platforms do not fit Docker's format.
    let res = run(&mut build_command(
        &state,
        &hello,
        "linux/amd64,linux/arm64",
        None,
        &["-o", &output.replace("img", "two")],
    ));
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("type=oci"));
}

#[test]
fn local_and_tar_outputs_hold_each_platforms_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN uname -m > /arch && rm /etc/group\n",
        &[],
    );
    let dir = tmp.path().join("rootfs");
    run_ok(&mut build_command(
        &state,
        &ctx,
        "linux/amd64,linux/arm64",
        None,
        &["-o", &dir.display().to_string()],
    ));
    assert_eq!(read(&dir.join("linux_amd64/arch")), "x86_64\n");
    assert_eq!(read(&dir.join("linux_arm64/arch")), "aarch64\n");
    assert!(dir.join("linux_arm64/bin/busybox").is_file());
    assert!(
        !dir.join("linux_arm64/etc/group").exists(),
        "deleted file came back"
    );
    let tarball = tmp.path().join("rootfs.tar");
    let output = format!("type=tar,dest={}", tarball.display());
    run_ok(&mut build_command(
        &state,
        &ctx,
        "linux/amd64",
        None,
        &["-o", &output],
    ));
    let listing = run_ok(Command::new("tar").arg("tf").arg(&tarball));
    let names = String::from_utf8(listing.stdout).unwrap();
    assert!(names.lines().any(|l| l == "arch"), "{names}");
    assert!(names.lines().any(|l| l == "bin/busybox"));
    assert!(!names.lines().any(|l| l == "etc/group"));
}
