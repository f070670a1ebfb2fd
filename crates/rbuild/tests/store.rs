//! The local image store end to end: `--load` of several platforms, `rbuild images`,
//! `rbuild run` on each platform (root and rootless), `image inspect/save/load` read and
//! written by podman and skopeo, air-gapped builds, lock files, and the store's
//! integrity under concurrent builds and `kill -9`.

mod common;
mod registry_support;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The platforms this machine runs (natively or emulated), per `rbuild platforms`.
fn runnable_platforms(state: &Path) -> Vec<String> {
    let out = run_ok(rbuild(state).arg("platforms"));
    stdout(&out)
        .lines()
        .filter(|l| l.contains("native") || l.contains("emulated"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// A context whose image needs no RUN step (fast for every platform).
fn copy_context(dir: &Path, marker: &str) -> PathBuf {
    context(
        dir,
        "FROM busybox\nCOPY marker /marker\nCMD [\"cat\", \"/marker\"]\n",
        &[("marker", marker)],
    )
}

/// Builds `ctx` for `platforms` with `--load -t name`.
fn load(state: &Path, ctx: &Path, platforms: &str, name: &str) -> Output {
    run(&mut build_command(
        state,
        ctx,
        platforms,
        None,
        &["--load", "-t", name],
    ))
}

fn check_store(state: &Path) -> String {
    let out = run(rbuild(state).args(["system", "check"]));
    assert!(
        out.status.success(),
        "store does not verify: {}",
        stdout(&out)
    );
    stdout(&out)
}

#[test]
fn load_lists_every_platform_and_run_checks_each() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = copy_context(&tmp.path().join("ctx"), "m1");
    let all = fixture_platforms().join(",");
    assert!(load(&state, &ctx, &all, "app").status.success());
    let listed = stdout(&run_ok(rbuild(&state).arg("images")));
    let header = listed.lines().next().unwrap();
    for col in [
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "PLATFORMS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = listed
        .lines()
        .find(|l| l.starts_with("app "))
        .expect("app listed");
    for p in fixture_platforms() {
        assert!(row.contains(&p), "{p} missing in {row}");
    }
    let runnable = runnable_platforms(&state);
    for p in fixture_platforms() {
        if !precondition(runnable.contains(&p), &format!("{p} runs on this machine")) {
            continue;
        }
        let out =
            run_ok(rbuild(&state).args(["run", "--rm", "--platform", &p, "app", "uname", "-m"]));
        assert_eq!(stdout(&out).trim(), expected_uname(&p), "{p}");
    }
    let out = run_ok(rbuild(&state).args([
        "image",
        "inspect",
        "-f",
        "{{.Os}}/{{.Architecture}}",
        "--platform",
        "linux/arm64",
        "app",
    ]));
    assert_eq!(stdout(&out).trim(), "linux/arm64");
    let out = run_ok(rbuild(&state).args([
        "image",
        "inspect",
        "-f",
        "{{.Variant}}",
        "--platform",
        "linux/arm/v7",
        "app",
    ]));
    assert_eq!(stdout(&out).trim(), "v7");
    let json = run_ok(rbuild(&state).args(["image", "inspect", "app"]));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc[0]["RepoTags"][0], "app:latest");
    check_store(&state);
}

#[test]
fn run_passes_stdin_exit_codes_and_volumes_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = copy_context(&tmp.path().join("ctx"), "hello from the image");
    assert!(load(&state, &ctx, "linux/amd64", "app:1").status.success());
    let out = run_ok(rbuild(&state).args(["run", "app:1"]));
    assert_eq!(stdout(&out), "hello from the image");

    let mut child = rbuild(&state)
        .args(["run", "-i", "app:1", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "PIPED IN\n");

    let out = run(rbuild(&state).args(["run", "app:1", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7));

    let vol = tmp.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("in"), "host file").unwrap();
    let bind = format!("{}:/data", vol.display());
    let out = run_ok(rbuild(&state).args([
        "run",
        "-v",
        &bind,
        "app:1",
        "sh",
        "-c",
        "cat /data/in; echo out > /data/out; echo junk > /etc/junk; rm /marker",
    ]));
    assert_eq!(stdout(&out), "host file");
    assert_eq!(std::fs::read_to_string(vol.join("out")).unwrap(), "out\n");
    let ro = format!("{}:/data:ro", vol.display());
    let out = run(rbuild(&state).args(["run", "-v", &ro, "app:1", "sh", "-c", "echo x > /data/x"]));
    assert!(!out.status.success());
    assert!(!vol.join("x").exists());

    // Nothing written outside the volume reached the image, the store or the layers.
    let out = run_ok(rbuild(&state).args([
        "run",
        "app:1",
        "sh",
        "-c",
        "test ! -e /etc/junk && cat /marker",
    ]));
    assert_eq!(stdout(&out), "hello from the image");
    let found = run_ok(Command::new("find").arg(&state).args(["-name", "junk"]));
    assert_eq!(
        stdout(&found),
        "",
        "a container's write reached the state directory"
    );
    check_store(&state);

    let out = run(rbuild(&state).args(["run", "app:1", "no-such-command"]));
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn a_foreign_image_warns_and_runs_emulated() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    if !precondition(
        runnable_platforms(&state).contains(&"linux/arm64".to_string()),
        "linux/arm64 is emulated here",
    ) {
        return;
    }
    let ctx = copy_context(&tmp.path().join("ctx"), "m");
    assert!(load(&state, &ctx, "linux/arm64", "armapp").status.success());
    let out = run_ok(rbuild(&state).args(["run", "armapp", "uname", "-m"]));
    assert_eq!(stdout(&out).trim(), "aarch64");
    assert!(
        stderr(&out).contains("WARNING: The requested image's platform (linux/arm64) does not match the detected host platform (linux/amd64") && stderr(&out).contains("and no specific platform was requested"),
        "{}",
        stderr(&out)
    );
    // Without an emulator, rbuild names the package to install.
    let out = run(rbuild(&state)
        .env("RBUILD_QEMU_PATH", tmp.path().join("no-qemu-here"))
        .args(["run", "armapp", "uname", "-m"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("qemu-user-static"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rootless_load_and_run_of_each_platform() {
    if !precondition(
        is_root(),
        "running as root (to create the rootless test user)",
    ) {
        return;
    }
    ensure_test_user();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let bin = base.join("rbuild");
    copy_rbuild_to(&bin);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(busybox_layout())
            .arg(base.join("busybox")),
    );
    copy_context(&base.join("ctx"), "rootless");
    std::fs::create_dir(base.join("home")).unwrap();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{TEST_USER}:{TEST_USER}"))
            .arg(base),
    );
    let home = base.join("home");
    let platforms = "linux/amd64,linux/arm64";
    run_ok(
        as_test_user(&bin, &home)
            .args(["build", "--platform", platforms, "--load", "-t", "app"])
            .arg("--build-context")
            .arg(format!(
                "busybox=oci-layout://{}",
                base.join("busybox").display()
            ))
            .arg(base.join("ctx")),
    );
    let listed = stdout(&run_ok(as_test_user(&bin, &home).arg("images")));
    assert!(listed.contains("linux/amd64,linux/arm64"), "{listed}");
    for p in platforms.split(',') {
        let out =
            run_ok(as_test_user(&bin, &home).args(["run", "--platform", p, "app", "uname", "-m"]));
        assert_eq!(stdout(&out).trim(), expected_uname(p), "{p}");
    }
    let out = run_ok(as_test_user(&bin, &home).args(["run", "app", "id", "-u"]));
    assert_eq!(stdout(&out).trim(), "0");
    run_ok(as_test_user(&bin, &home).args(["system", "check"]));
}

#[test]
fn saved_archives_are_read_by_podman_and_skopeo_and_podman_archives_load() {
    if !precondition(
        have("podman") && have("skopeo"),
        "podman and skopeo are installed",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = copy_context(&tmp.path().join("ctx"), "saved");
    assert!(
        load(&state, &ctx, "linux/amd64,linux/arm64", "app:2")
            .status
            .success()
    );
    let oci = tmp.path().join("app.tar");
    run_ok(
        rbuild(&state)
            .args(["image", "save", "-o"])
            .arg(&oci)
            .arg("app:2"),
    );
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", oci.display())),
    );
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    let docker = tmp.path().join("app-docker.tar");
    run_ok(
        rbuild(&state)
            .args([
                "image",
                "save",
                "--format",
                "docker-archive",
                "--platform",
                "linux/amd64",
                "-o",
            ])
            .arg(&docker)
            .arg("app:2"),
    );
    run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", docker.display())),
    );

    let pod = tmp.path().join("podman");
    run_ok(
        container_tool("podman", &pod)
            .arg("load")
            .arg("-i")
            .arg(&docker),
    );
    let images = stdout(&run_ok(container_tool("podman", &pod).args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])));
    assert!(images.contains("app:2"), "{images}");
    run_ok(
        container_tool("podman", &pod)
            .arg("load")
            .arg("-i")
            .arg(&oci),
    );

    // podman save (docker-archive, its default) → rbuild image load → FROM.
    let saved = tmp.path().join("podman-saved.tar");
    run_ok(container_tool("podman", &pod).args([
        "tag",
        "docker.io/library/app:2",
        "localhost/fromp:1",
    ]));
    run_ok(
        container_tool("podman", &pod)
            .arg("save")
            .arg("-o")
            .arg(&saved)
            .arg("localhost/fromp:1"),
    );
    let fresh = tmp.path().join("fresh");
    let out = run_ok(rbuild(&fresh).args(["image", "load", "-i"]).arg(&saved));
    assert!(
        stdout(&out).contains("localhost/fromp:1"),
        "{}",
        stdout(&out)
    );
    let ctx2 = context(
        &tmp.path().join("ctx2"),
        "FROM localhost/fromp:1\nRUN cat /marker > /copied\n",
        &[],
    );
    run_ok(
        rbuild(&fresh)
            .args(["build", "--pull=never", "--load", "-t", "derived"])
            .arg(&ctx2),
    );
    let out = run_ok(rbuild(&fresh).args(["run", "derived", "cat", "/copied"]));
    assert_eq!(stdout(&out), "saved");
    check_store(&fresh);
}

/// Loads the busybox fixture into `state` as `name` (through an archive of its layout).
fn load_fixture(state: &Path, layout: &Path, name: &str, work: &Path) {
    let archive = work.join(format!("{}.tar", name.replace([':', '/'], "_")));
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
    );
    let out = run_ok(rbuild(state).args(["image", "load", "-i"]).arg(&archive));
    let id = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: "))
        .expect("the fixture carries no full name")
        .to_string();
    run_ok(rbuild(state).args(["image", "tag", &id, name]));
}

#[test]
fn air_gapped_build_from_saved_bases_without_network() {
    if !precondition(have("unshare"), "unshare is installed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let online = tmp.path().join("online");
    load_fixture(&online, &busybox_layout(), "busybox", tmp.path());
    run_ok(rbuild(&online).args(["image", "tag", "busybox", "tools:1"]));
    let ctx = context(
        &tmp.path().join("ctx"),
        "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM ${BASE} AS build\nRUN echo built > /out\n\
         FROM scratch AS unused\nCOPY --from=never-needed:1 / /\n\
         FROM busybox\nCOPY --from=build /out /out\nCOPY --from=tools:1 /bin/busybox /tool\n\
         RUN --mount=from=tools:1,target=/t test -x /t/bin/busybox\n",
        &[],
    );
    let bases = tmp.path().join("bases.tar");
    run_ok(
        rbuild(&online)
            .args([
                "image",
                "save",
                "--platform",
                "linux/amd64,linux/arm64",
                "--from-dockerfile",
            ])
            .arg(ctx.join("Dockerfile"))
            .arg("-o")
            .arg(&bases),
    );

    let offline = tmp.path().join("offline");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let unshared = |args: &[&str]| {
        let mut c = Command::new("unshare");
        c.args(["-n", "--"])
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(&offline)
            .args(args)
            .env("HOME", &home);
        c
    };
    let out = run_ok(&mut unshared(&[
        "image",
        "load",
        "-i",
        bases.to_str().unwrap(),
    ]));
    assert!(
        stdout(&out).contains("busybox:latest") && stdout(&out).contains("tools:1"),
        "{}",
        stdout(&out)
    );
    let dest = tmp.path().join("out.tar");
    let dest_arg = format!("type=oci,dest={}", dest.display());
    run_ok(&mut unshared(&[
        "build",
        "--pull=never",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        &dest_arg,
        ctx.to_str().unwrap(),
    ]));
    let layout = OciLayout::open_tar(&dest);
    for p in ["linux/amd64", "linux/arm64"] {
        let m = layout.manifest_for(p);
        assert_eq!(
            layout.file(&m, "out").as_deref(),
            Some(&b"built\n"[..]),
            "{p}"
        );
    }
}

#[test]
fn locked_builds_use_their_pins_and_refuse_what_is_not_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    load_fixture(&state, &busybox_layout(), "busybox", tmp.path());
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN uname -m > /m\n",
        &[],
    );
    let first = tmp.path().join("first.iid");
    let meta = tmp.path().join("meta.json");
    // SOURCE_DATE_EPOCH fixes the config's `created`, so equal inputs give one digest.
    run_ok(
        rbuild(&state)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--lock", "--iidfile"])
            .arg(&first)
            .arg("--metadata-file")
            .arg(&meta)
            .arg(&ctx),
    );
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ctx.join("Dockerfile.lock")).unwrap()).unwrap();
    let pin = &lock["images"]["busybox"];
    assert!(
        pin["digest"].as_str().unwrap().starts_with("sha256:"),
        "{lock}"
    );
    assert!(pin["platforms"]["linux/amd64"].is_string(), "{lock}");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["rbuild.bases"][0]["ref"], "busybox", "{meta}");
    assert_eq!(meta["rbuild.bases"][0]["digest"], pin["digest"], "{meta}");

    // Re-tagging the base does not change a locked build.
    load_fixture(
        &state,
        &repo().join("testdata/images/busybox-amd64"),
        "busybox",
        tmp.path(),
    );
    let second = tmp.path().join("second.iid");
    run_ok(
        rbuild(&state)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--locked", "--iidfile"])
            .arg(&second)
            .arg(&ctx),
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );

    let other = context(
        &tmp.path().join("other"),
        "FROM busybox\nFROM tools:9\n",
        &[],
    );
    std::fs::copy(ctx.join("Dockerfile.lock"), other.join("Dockerfile.lock")).unwrap();
    let out = run(rbuild(&state).args(["build", "--locked"]).arg(&other));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tools:9") && stderr(&out).contains("not pinned"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn concurrent_loads_and_a_killed_load_leave_a_store_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut children = Vec::new();
    for i in 0..8 {
        // Four builds of one image under one name, four of different images and names.
        let (marker, name) = if i < 4 {
            ("same".to_string(), "same:1".to_string())
        } else {
            (format!("m{i}"), format!("img{i}"))
        };
        let ctx = copy_context(&tmp.path().join(format!("ctx{i}")), &marker);
        let mut c = build_command(
            &state,
            &ctx,
            "linux/amd64,linux/arm64",
            None,
            &["--load", "-t", &name],
        );
        children.push(
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let report = check_store(&state);
    assert!(report.starts_with("5 images"), "{report}");

    for delay_ms in [50u64, 300, 800] {
        let ctx = context(
            &tmp.path().join(format!("slow{delay_ms}")),
            "FROM busybox\nCOPY marker /marker\nRUN sleep 0.3; echo done > /done\n",
            &[("marker", &delay_ms.to_string())],
        );
        let mut child = build_command(
            &state,
            &ctx,
            "linux/amd64",
            None,
            &["--load", "-t", "same:1"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        check_store(&state);
    }
    let out = run_ok(rbuild(&state).args(["run", "same:1", "cat", "/marker"]));
    assert!(
        ["same", "50", "300", "800"].contains(&stdout(&out).as_str()),
        "{}",
        stdout(&out)
    );
    let ctx = copy_context(&tmp.path().join("after"), "after");
    assert!(load(&state, &ctx, "linux/amd64", "same:1").status.success());
    let out = run_ok(rbuild(&state).args(["run", "same:1"]));
    assert_eq!(stdout(&out), "after");
    check_store(&state);
}

#[test]
fn names_are_tagged_removed_and_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = copy_context(&tmp.path().join("ctx"), "p");
    assert!(load(&state, &ctx, "linux/amd64", "keep").status.success());
    run_ok(&mut build_command(
        &state,
        &ctx,
        "linux/amd64",
        None,
        &["-o", "type=image,name=viaout:3"],
    ));
    run_ok(rbuild(&state).args(["image", "tag", "keep", "me/other:2"]));
    let listed = stdout(&run_ok(rbuild(&state).args(["image", "ls"])));
    assert!(
        listed.contains("me/other") && listed.contains("keep"),
        "{listed}"
    );
    let out = run_ok(rbuild(&state).args(["image", "rm", "me/other:2"]));
    assert_eq!(stdout(&out), "Untagged: me/other:2\n");
    run_ok(rbuild(&state).args(["image", "prune", "-f"]));
    check_store(&state);
    let out = run_ok(rbuild(&state).args(["run", "keep"]));
    assert_eq!(stdout(&out), "p");
    // Removing the build cache keeps what names need.
    run_ok(rbuild(&state).arg("prune"));
    check_store(&state);
    let out = run_ok(rbuild(&state).args(["run", "keep"]));
    assert_eq!(stdout(&out), "p");
    let out = run(rbuild(&state).args(["run", "gone"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no image gone"), "{}", stderr(&out));
}

#[test]
fn manifest_lists_are_made_from_single_platform_images() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = copy_context(&tmp.path().join("ctx"), "l");
    assert!(
        load(&state, &ctx, "linux/amd64", "app:amd64")
            .status
            .success()
    );
    assert!(
        load(&state, &ctx, "linux/arm64", "app:arm64")
            .status
            .success()
    );
    run_ok(rbuild(&state).args(["manifest", "create", "app:list", "app:amd64"]));
    run_ok(rbuild(&state).args(["manifest", "add", "app:list", "app:arm64"]));
    run_ok(rbuild(&state).args([
        "manifest",
        "annotate",
        "--variant",
        "v8",
        "app:list",
        "app:arm64",
    ]));
    let out = run_ok(rbuild(&state).args(["manifest", "inspect", "app:list"]));
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(index["manifests"][1]["platform"]["variant"], "v8");
    let listed = stdout(&run_ok(rbuild(&state).arg("images")));
    assert!(listed.contains("linux/amd64,linux/arm64"), "{listed}");
    // manifest push to a real registry: skopeo sees the index with both platforms.
    let reg = registry_support::Registry::start(registry_support::Options::default());
    if !precondition(
        reg.is_some(),
        "docker-registry is installed (CI installs it)",
    ) {
        return;
    }
    let reg = reg.unwrap();
    let dest = format!("{}/team/app:list", reg.host());
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let pushed = run_ok(
        rbuild(&state)
            .env("HOME", &home)
            .args(["manifest", "push", "app:list", &dest]),
    );
    let digest = stdout(&pushed).trim().to_string();
    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]));
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let arches: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    assert_eq!(
        common::sha256_hex(&raw.stdout),
        digest.trim_start_matches("sha256:")
    );
    // And back: `rbuild pull --all-platforms` into a fresh store names both platforms.
    let fresh = tmp.path().join("fresh");
    let pulled = run_ok(
        rbuild(&fresh)
            .env("HOME", &home)
            .args(["pull", "--all-platforms", &dest]),
    );
    assert_eq!(stdout(&pulled).trim(), digest);
    let listed = stdout(&run_ok(rbuild(&fresh).arg("images")));
    assert!(listed.contains("linux/amd64,linux/arm64"), "{listed}");
    check_store(&fresh);
}
