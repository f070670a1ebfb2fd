//! RUN step behaviour through the real binary: mounts, secrets, networks, ownership,
//! isolation, platform listing and interruption.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

const USER: &str = "rbuildsub";

/// A user with a subordinate id range (so newuidmap gives it a full map).
fn ensure_subid_user() {
    if !run(Command::new("id").arg("-u").arg(USER)).status.success() {
        run_ok(Command::new("useradd").args(["--no-create-home", "--shell", "/bin/sh", USER]));
    }
    for f in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            let mut text = text;
            text.push_str(&format!("{USER}:300000:65536\n"));
            std::fs::write(f, text).unwrap();
        }
    }
}

/// Copies the binary, fixture and a context where `USER` can read them, and returns a
/// command that runs rbuild as that user.
fn as_user(base: &Path) -> Command {
    copy_rbuild_to(&base.join("rbuild"));
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(busybox_layout())
            .arg(base.join("busybox")),
    );
    std::fs::create_dir_all(base.join("home")).unwrap();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{USER}:{USER}"))
            .arg(base),
    );
    let mut c = Command::new("setpriv");
    c.args(["--reuid", USER, "--regid", USER, "--clear-groups", "--"])
        .arg(base.join("rbuild"))
        .env("HOME", base.join("home"))
        .arg("--root")
        .arg(base.join("state"));
    c
}

#[test]
fn chown_and_user_ids_land_in_the_layer_rootless_with_subids() {
    assert!(is_root(), "creates users: run as root");
    ensure_subid_user();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    context(
        &base.join("ctx"),
        "FROM busybox\n\
         RUN touch /owned && chown 1000:1000 /owned\n\
         USER 1000\n\
         RUN touch /tmp/by-user && id -u > /tmp/uid\n\
         USER root\n\
         RUN sh -c 'sh -c \"uname -m\"' > /machine\n",
        &[],
    );
    let mut c = as_user(base);
    c.arg("build")
        .args(["--platform", "linux/amd64,linux/arm64"])
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            base.join("busybox").display()
        ))
        .arg("-o")
        .arg(format!("type=oci,dest={}", base.join("out.tar").display()))
        .arg(base.join("ctx"));
    run_ok(&mut c);
    let layout = OciLayout::open_tar(&base.join("out.tar"));
    for (platform, machine) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let m = layout.manifest_for(platform);
        let entries = layout.layer_entries(&m);
        let ids = |p: &str| entries.iter().rev().find(|e| e.1 == p).map(|e| (e.4, e.5));
        assert_eq!(ids("owned"), Some((1000, 1000)), "{platform}");
        assert_eq!(ids("tmp/by-user"), Some((1000, 1000)), "{platform}");
        assert_eq!(layout.file(&m, "tmp/uid").unwrap(), b"1000\n");
        assert_eq!(
            layout.file(&m, "machine").unwrap(),
            format!("{machine}\n").as_bytes()
        );
    }
}

#[test]
fn secrets_are_usable_and_never_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-value-4fd1e2";
    std::fs::write(tmp.path().join("token"), secret).unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /file-hash\n\
         RUN --mount=type=secret,id=envtok,env=TOKEN printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1 > /env-hash\n\
         RUN test ! -e /run/secrets/tok && echo gone > /gone\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let mut c = rbuild(&tmp.path().join("state"));
    c.env("RBUILD_TEST_SECRET", secret)
        .arg("build")
        .args(["--platform", "linux/amd64"])
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            busybox_layout().display()
        ))
        .args([
            "--secret",
            &format!("id=tok,src={}", tmp.path().join("token").display()),
        ])
        .args(["--secret", "id=envtok,env=RBUILD_TEST_SECRET"])
        .arg("-o")
        .arg(format!("type=oci,dest={}", out.display()))
        .arg(&ctx);
    let res = run(&mut c);
    assert!(res.status.success());
    let layout = OciLayout::open_tar(&out);
    let m = layout.manifest_for("linux/amd64");
    let hash = format!("{}\n", sha256_hex(secret.as_bytes()));
    assert_eq!(layout.file(&m, "file-hash").unwrap(), hash.as_bytes());
    assert_eq!(layout.file(&m, "env-hash").unwrap(), hash.as_bytes());
    assert!(layout.file(&m, "gone").is_some());
    // Not in any blob (layers decompressed, configs, manifests), nor in the cache index.
    let raw = std::fs::read(&out).unwrap();
    assert!(!contains(&raw, secret.as_bytes()));
    for (_, path, _, content, _, _) in layout.layer_entries(&m) {
        assert!(
            !contains(&content, secret.as_bytes()),
            "secret in layer file {path}"
        );
    }
    let cfg = serde_json::to_vec(&layout.config(&m)).unwrap();
    assert!(!contains(&cfg, secret.as_bytes()));
    assert!(!String::from_utf8_lossy(&res.stderr).contains(secret));
    let grep = Command::new("grep")
        .args(["-r", "-l", secret])
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "secret in state dir: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn cache_mount_persists_across_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nARG N\nRUN --mount=type=cache,target=/cache n=$(cat /cache/count 2>/dev/null || echo 0); echo $((n+1)) > /cache/count; cp /cache/count /seen\n",
        &[],
    );
    let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
    assert!(
        build(&state, &ctx, "linux/amd64", &a, &["--build-arg", "N=1"])
            .status
            .success()
    );
    assert!(
        build(&state, &ctx, "linux/amd64", &b, &["--build-arg", "N=2"])
            .status
            .success()
    );
    let (la, lb) = (OciLayout::open_tar(&a), OciLayout::open_tar(&b));
    assert_eq!(
        la.file(&la.manifest_for("linux/amd64"), "seen").unwrap(),
        b"1\n"
    );
    assert_eq!(
        lb.file(&lb.manifest_for("linux/amd64"), "seen").unwrap(),
        b"2\n"
    );
    // The cache's content is not part of the layer.
    assert!(
        la.file(&la.manifest_for("linux/amd64"), "cache/count")
            .is_none()
    );
    // prune empties cache mounts.
    run_ok(rbuild(&state).args(["prune", "--cache-mounts"]));
    let c = tmp.path().join("c.tar");
    assert!(
        build(&state, &ctx, "linux/amd64", &c, &["--build-arg", "N=3"])
            .status
            .success()
    );
    let lc = OciLayout::open_tar(&c);
    assert_eq!(
        lc.file(&lc.manifest_for("linux/amd64"), "seen").unwrap(),
        b"1\n"
    );
}

#[test]
fn locked_cache_mount_serialises_concurrent_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nARG WHO\nRUN --mount=type=cache,id=shared-log,target=/c,sharing=locked echo start-$WHO >> /c/log; sleep 2; echo end-$WHO >> /c/log\n",
        &[],
    );
    let spawn = |who: &str| {
        let who = format!("WHO={who}");
        let mut c = build_command(&state, &ctx, "linux/amd64", None, &["--build-arg", &who]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().unwrap()
    };
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    // Read the log through a third build.
    let out = tmp.path().join("log.tar");
    let ctx2 = context(
        &tmp.path().join("ctx2"),
        "FROM busybox\nRUN --mount=type=cache,id=shared-log,target=/c cp /c/log /log\n",
        &[],
    );
    assert!(
        build(&state, &ctx2, "linux/amd64", &out, &[])
            .status
            .success()
    );
    let l = OciLayout::open_tar(&out);
    let log = String::from_utf8(l.file(&l.manifest_for("linux/amd64"), "log").unwrap()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    let who = |l: &str| l.rsplit('-').next().unwrap().to_string();
    assert!(
        lines[0].starts_with("start-")
            && lines[1].starts_with("end-")
            && who(lines[0]) == who(lines[1]),
        "interleaved: {log}"
    );
    assert!(
        lines[2].starts_with("start-")
            && lines[3].starts_with("end-")
            && who(lines[2]) == who(lines[3]),
        "interleaved: {log}"
    );
}

#[test]
fn network_none_has_only_loopback_and_bind_mounts_discard_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox AS src\nRUN mkdir /data && echo from-stage > /data/msg\n\
         FROM busybox\n\
         RUN --network=none cat /proc/net/dev > /netdev && ip -o link show up | awk '{print $2}' > /up\n\
         RUN --mount=type=bind,from=src,source=/data,target=/mnt/data,rw cat /mnt/data/msg > /read && echo changed > /mnt/data/msg && echo new > /mnt/data/new\n\
         RUN --mount=type=bind,source=ctxfile,target=/mnt/ctxfile cat /mnt/ctxfile > /ctx-read\n\
         RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && ls /scratch > /tmpfs-list\n",
        &[("ctxfile", "from-context\n")],
    );
    let out = tmp.path().join("out.tar");
    assert!(
        build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &[])
            .status
            .success()
    );
    let l = OciLayout::open_tar(&out);
    let m = l.manifest_for("linux/amd64");
    let netdev = String::from_utf8(l.file(&m, "netdev").unwrap()).unwrap();
    let ifaces: Vec<&str> = netdev
        .lines()
        .skip(2)
        .map(|x| x.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, vec!["lo"], "{netdev}");
    assert_eq!(l.file(&m, "up").unwrap(), b"lo:\n");
    assert_eq!(l.file(&m, "read").unwrap(), b"from-stage\n");
    assert!(
        l.file(&m, "mnt/data/msg").is_none() && l.file(&m, "mnt/data/new").is_none(),
        "bind writes leaked"
    );
    assert_eq!(l.file(&m, "ctx-read").unwrap(), b"from-context\n");
    assert_eq!(l.file(&m, "tmpfs-list").unwrap(), b"t\n");
    assert!(l.file(&m, "scratch/t").is_none());
    // Entries of the layers this build added (the base layer is index 0).
    let names: Vec<String> = l
        .layer_entries(&m)
        .into_iter()
        .filter(|e| e.0 > 0)
        .map(|e| e.1)
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("mnt")),
        "mountpoints leaked: {names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("proc") || n.starts_with("dev/") || n == "etc/hosts"),
        "{names:?}"
    );
}

#[test]
fn steps_cannot_see_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker-7c1");
    std::fs::write(&marker, "HOST-ONLY-CONTENT").unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        &format!(
            "FROM busybox\nRUN ls /proc | grep -c '^[0-9]' > /nproc; cat /proc/self/mountinfo > /mounts; \
             (cat /proc/1/root{m} || cat ../../..{m} || cat {m}) > /escape 2>&1; true\n",
            m = marker.display()
        ),
        &[],
    );
    let out = tmp.path().join("out.tar");
    assert!(
        build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &[])
            .status
            .success()
    );
    let l = OciLayout::open_tar(&out);
    let m = l.manifest_for("linux/amd64");
    let nproc: u32 = String::from_utf8(l.file(&m, "nproc").unwrap())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(nproc <= 4, "sees {nproc} processes");
    let escape = String::from_utf8(l.file(&m, "escape").unwrap()).unwrap();
    assert!(!escape.contains("HOST-ONLY-CONTENT"), "{escape}");
    // Only the step's own mounts are visible: its root, /proc, /dev, /sys and the /etc files.
    let mounts = String::from_utf8(l.file(&m, "mounts").unwrap()).unwrap();
    let allowed = [
        "/proc",
        "/dev",
        "/sys",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
    ];
    for line in mounts.lines() {
        let point = line.split(' ').nth(4).unwrap();
        assert!(
            point == "/"
                || allowed
                    .iter()
                    .any(|a| point == *a || point.starts_with(&format!("{a}/"))),
            "host mount visible: {line}"
        );
    }
}

#[test]
fn platforms_lists_what_the_machine_can_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(rbuild(&tmp.path().join("state")).arg("platforms"));
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |p: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(p))
            .unwrap_or_else(|| panic!("{p} missing: {text}"))
            .to_string()
    };
    assert!(line("linux/amd64").contains("native"), "{text}");
    assert!(
        line("linux/arm64").contains("emulated")
            && line("linux/arm64").contains("qemu-aarch64-static"),
        "{text}"
    );
    let empty = tmp.path().join("no-qemu");
    std::fs::create_dir(&empty).unwrap();
    let out = run_ok(
        rbuild(&tmp.path().join("state"))
            .env("RBUILD_QEMU_PATH", &empty)
            .arg("ls"),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let arm = text.lines().find(|l| l.starts_with("linux/arm64")).unwrap();
    assert!(
        arm.contains("unavailable") && arm.contains("qemu-user-static"),
        "{text}"
    );
    assert!(
        text.lines()
            .find(|l| l.starts_with("linux/amd64"))
            .unwrap()
            .contains("native")
    );
}

#[test]
fn killing_rbuild_mid_run_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let tag = "rbuild-kill-test-5d2";
    let ctx = context(
        &tmp.path().join("ctx"),
        &format!("FROM busybox\nRUN echo {tag}; sleep 987\n"),
        &[],
    );
    let out = tmp.path().join("out.tar");
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let mut c = build_command(&state, &ctx, "linux/amd64", Some(&out), &[]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        assert!(wait_for_process("sleep 987"), "step never started");
        run_ok(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string()),
        );
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            !process_running("sleep 987"),
            "step process survived {signal}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(&state.display().to_string()),
            "mount left: {mounts}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(state.join("tmp"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "temporary dirs left: {leftovers:?}");
        assert!(!out.exists());
        let partial: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("out.tar"))
            .collect();
        assert!(partial.is_empty());
    }
}

#[test]
fn ssh_agent_socket_is_forwarded_and_required_agents_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN --mount=type=ssh,required=true test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /ssh-ok\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let state = tmp.path().join("state");
    let res = build(
        &state,
        &ctx,
        "linux/amd64",
        &out,
        &["--ssh", &format!("default={}", sock.display())],
    );
    assert!(res.status.success());
    let l = OciLayout::open_tar(&out);
    let m = l.manifest_for("linux/amd64");
    assert_eq!(
        l.file(&m, "ssh-ok").unwrap(),
        b"/run/buildkit/ssh_agent.0\n"
    );
    let names: Vec<String> = l
        .layer_entries(&m)
        .into_iter()
        .filter(|e| e.0 > 0)
        .map(|e| e.1)
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("run/")), "{names:?}");
    // Without --ssh, a required agent is an error naming the flag.
    let res = build(
        &state,
        &ctx,
        "linux/amd64",
        &tmp.path().join("no.tar"),
        &["--no-cache"],
    );
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("--ssh"));
}

#[test]
fn base_image_platform_mismatch_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let single = repo().join("testdata/images/busybox-amd64");
    let ctx = context(&tmp.path().join("ctx"), "FROM busybox\nRUN true\n", &[]);
    let mut c = rbuild(&tmp.path().join("state"));
    c.arg("build")
        .args(["--platform", "linux/arm64"])
        .arg("--build-context")
        .arg(format!("busybox=oci-layout://{}", single.display()))
        .arg("-o")
        .arg(format!(
            "type=oci,dest={}",
            tmp.path().join("out.tar").display()
        ))
        .arg(&ctx);
    let res = run(&mut c);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains(
            "WARNING: InvalidBaseImagePlatform: Base image busybox was pulled with platform \"linux/amd64\", expected \"linux/arm64\" for current build"
        ),
        "{err}"
    );
}

#[test]
fn state_left_by_a_killed_rbuild_is_cleaned_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN echo orphan-test-91; sleep 61\n",
        &[],
    );
    let mut c = build_command(&state, &ctx, "linux/amd64", None, &[]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    assert!(wait_for_process("sleep 61"), "step never started");
    run_ok(
        Command::new("kill")
            .arg("-KILL")
            .arg(child.id().to_string()),
    );
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !process_running("sleep 61"),
        "step survived SIGKILL of rbuild"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&state.display().to_string()),
        "mount left: {mounts}"
    );
    // The next build removes the killed build's step directory.
    let ctx2 = context(&tmp.path().join("ctx2"), "FROM busybox\nRUN true\n", &[]);
    assert!(
        build(&state, &ctx2, "linux/amd64", &tmp.path().join("o.tar"), &[])
            .status
            .success()
    );
    let left: Vec<_> = std::fs::read_dir(state.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        std::fs::read_dir(state.join("store/blobs/sha256"))
            .unwrap()
            .count()
            > 0
    );
}

#[test]
fn mount_options_seed_protect_and_own_what_they_mount() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("token"), "t0k3n").unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox AS seed\n\
         RUN mkdir -p /seed && echo seeded > /seed/file\n\
         FROM busybox\n\
         RUN --mount=type=cache,id=seeded,target=/c1,from=seed,source=/seed cat /c1/file > /from-cache\n\
         RUN --mount=type=cache,id=ro,target=/c2,readonly (touch /c2/x 2>/dev/null && echo writable || echo readonly) > /ro\n\
         RUN --mount=type=cache,id=own,target=/c3,uid=1000,gid=1000,mode=0750 stat -c '%u:%g:%a' /c3 > /cache-owner\n\
         RUN --mount=type=bind,from=other,source=/etc/passwd,target=/mnt/passwd grep -c '^root:' /mnt/passwd > /from-image\n\
         RUN --mount=type=secret,id=tok,uid=1000,gid=1000,mode=0440 stat -c '%u:%g:%a' /run/secrets/tok > /secret-owner\n\
         RUN --mount=type=tmpfs,target=/t,size=1m df -k /t | tail -1 | awk '{print $2}' > /tmpfs-size\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let other = format!("other=oci-layout://{}", busybox_layout().display());
    let secret = format!("id=tok,src={}", tmp.path().join("token").display());
    let extra = ["--build-context", &other, "--secret", &secret];
    let res = build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &extra);
    assert!(res.status.success());
    let l = OciLayout::open_tar(&out);
    let m = l.manifest_for("linux/amd64");
    let file = |p: &str| {
        String::from_utf8(l.file(&m, p).unwrap_or_else(|| panic!("{p} missing"))).unwrap()
    };
    assert_eq!(file("from-cache"), "seeded\n");
    assert_eq!(file("ro"), "readonly\n");
    assert_eq!(file("cache-owner"), "1000:1000:750\n");
    assert_eq!(file("from-image"), "1\n");
    assert_eq!(file("secret-owner"), "1000:1000:440\n");
    assert_eq!(file("tmpfs-size"), "1024\n");
}

#[test]
fn private_cache_gives_a_concurrent_user_its_own_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nARG WHO\nRUN --mount=type=cache,id=p,target=/c,sharing=private echo $WHO >> /c/log; sleep 2; cat /c/log > /seen\n",
        &[],
    );
    let outs = [tmp.path().join("a.tar"), tmp.path().join("b.tar")];
    let mut children: Vec<_> = ["a", "b"]
        .iter()
        .zip(&outs)
        .map(|(who, out)| {
            let who = format!("WHO={who}");
            let mut c = build_command(
                &state,
                &ctx,
                "linux/amd64",
                Some(out),
                &["--build-arg", &who],
            );
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children.drain(..) {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each build saw only its own line: the second got a fresh directory.
    for (who, out) in ["a", "b"].iter().zip(&outs) {
        let l = OciLayout::open_tar(out);
        let seen =
            String::from_utf8(l.file(&l.manifest_for("linux/amd64"), "seen").unwrap()).unwrap();
        assert_eq!(seen, format!("{who}\n"));
    }
}

/// What a step reports about its own confinement, and whether privileged calls work.
const CONFINEMENT_PROBE: &str = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status > /status; \
     (mount -t tmpfs x /mnt 2>/dev/null && echo mount-ok || echo mount-refused) >> /status; \
     (unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-refused) >> /status";

fn status_lines(layout: &OciLayout, platform: &str) -> Vec<String> {
    let m = layout.manifest_for(platform);
    let text = String::from_utf8(layout.file(&m, "status").expect("/status")).unwrap();
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn run_steps_get_dockers_default_confinement() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        &format!(
            "FROM busybox\nRUN mkdir -p /mnt && {CONFINEMENT_PROBE}\n\
             RUN touch /owned && chown 1000:1000 /owned && stat -c %u:%g /owned > /chown\n\
             RUN --network=none ping -c1 -W2 127.0.0.1 > /dev/null && echo ping-ok > /ping\n"
        ),
        &[],
    );
    let out = tmp.path().join("out.tar");
    let res = build(&tmp.path().join("state"), &ctx, "linux/amd64", &out, &[]);
    assert!(res.status.success());
    let layout = OciLayout::open_tar(&out);
    assert_eq!(
        status_lines(&layout, "linux/amd64"),
        [
            "CapEff: 00000000a80425fb",
            "CapBnd: 00000000a80425fb",
            "NoNewPrivs: 1",
            "Seccomp: 2",
            "mount-refused",
            "unshare-refused"
        ]
    );
    let m = layout.manifest_for("linux/amd64");
    assert_eq!(layout.file(&m, "chown").unwrap(), b"1000:1000\n");
    assert_eq!(layout.file(&m, "ping").unwrap(), b"ping-ok\n");
}

#[test]
fn security_insecure_needs_the_entitlement_and_lifts_the_confinement() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        &format!(
            "FROM busybox\nRUN echo before > /before\nRUN --security=insecure mkdir -p /mnt && {CONFINEMENT_PROBE}\n"
        ),
        &[],
    );
    let state = tmp.path().join("state");
    let out = tmp.path().join("out.tar");
    let refused = build(&state, &ctx, "linux/amd64", &out, &[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "Dockerfile:3:1: RUN --security=insecure needs the security.insecure entitlement"
        ) && stderr.contains("pass --allow security.insecure"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("echo before")
            && !stderr.contains("echo before"),
        "no step may run before the refusal"
    );
    assert!(!out.exists());
    let res = build(
        &state,
        &ctx,
        "linux/amd64",
        &out,
        &["--allow", "security.insecure"],
    );
    assert!(res.status.success());
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let full = format!("{:016x}", (1u64 << (last_cap + 1)) - 1);
    assert_eq!(
        status_lines(&OciLayout::open_tar(&out), "linux/amd64"),
        [
            format!("CapEff: {full}"),
            format!("CapBnd: {full}"),
            "NoNewPrivs: 0".into(),
            "Seccomp: 0".into(),
            "mount-ok".into(),
            "unshare-ok".into()
        ]
    );
    // The same command in the default sandbox is another step: no cache hit across modes.
    let ctx2 = context(
        &tmp.path().join("ctx2"),
        &format!(
            "FROM busybox\nRUN echo before > /before\nRUN mkdir -p /mnt && {CONFINEMENT_PROBE}\n"
        ),
        &[],
    );
    let out2 = tmp.path().join("out2.tar");
    assert!(
        build(&state, &ctx2, "linux/amd64", &out2, &[])
            .status
            .success()
    );
    assert_eq!(
        status_lines(&OciLayout::open_tar(&out2), "linux/amd64")[3],
        "Seccomp: 2"
    );
}

const CANARY: &str = "canary-0d9b5e-of-rbuilds-environment";
const ENV_SECRET: &str = "env-secret-value-51c0aa";

/// A build whose steps dump every environment they can see, with a canary in rbuild's
/// environment and an env secret no step mounts.
fn environment_dump_context(dir: &Path) -> std::path::PathBuf {
    context(
        dir,
        "FROM busybox\nENV OWN=step-own-value\n\
         RUN cat /proc/[0-9]*/environ > /seen 2>/dev/null; true\n\
         RUN --security=insecure cat /proc/[0-9]*/environ > /seen-insecure 2>/dev/null; \
             tr '\\0' '\\n' < /proc/1/environ | wc -c > /pid1-env-size\n",
        &[],
    )
}

fn assert_no_caller_environment(out: &Path) {
    let layout = OciLayout::open_tar(out);
    let m = layout.manifest_for("linux/amd64");
    for file in ["seen", "seen-insecure"] {
        let seen = layout.file(&m, file).unwrap();
        assert!(
            !contains(&seen, CANARY.as_bytes()),
            "{file}: canary visible"
        );
        assert!(
            !contains(&seen, ENV_SECRET.as_bytes()),
            "{file}: unmounted secret visible"
        );
        assert!(!contains(&seen, b"RBUILD_IN_USERNS"), "{file}");
        assert!(
            contains(&seen, b"OWN=step-own-value"),
            "{file}: own ENV missing"
        );
    }
    assert_eq!(layout.file(&m, "pid1-env-size").unwrap(), b"0\n");
}

#[test]
fn steps_see_nothing_of_rbuilds_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = environment_dump_context(&tmp.path().join("ctx"));
    let out = tmp.path().join("out.tar");
    let mut c = build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        Some(&out),
        &[
            "--allow",
            "security.insecure",
            "--secret",
            "id=e,env=S3C_ENV",
        ],
    );
    c.env("RBUILD_TEST_CANARY", CANARY)
        .env("S3C_ENV", ENV_SECRET);
    run_ok(&mut c);
    assert_no_caller_environment(&out);
}

#[test]
fn steps_see_nothing_of_rbuilds_environment_rootless() {
    if !precondition(is_root(), "creates a user: run as root") {
        return;
    }
    ensure_subid_user();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    environment_dump_context(&base.join("ctx"));
    let mut c = as_user(base);
    c.env("RBUILD_TEST_CANARY", CANARY)
        .env("S3C_ENV", ENV_SECRET)
        .arg("build")
        .args(["--platform", "linux/amd64"])
        .args([
            "--allow",
            "security.insecure",
            "--secret",
            "id=e,env=S3C_ENV",
        ])
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            base.join("busybox").display()
        ))
        .arg("-o")
        .arg(format!("type=oci,dest={}", base.join("out.tar").display()))
        .arg(base.join("ctx"));
    run_ok(&mut c);
    assert_no_caller_environment(&base.join("out.tar"));
}

#[test]
fn every_fixture_platform_runs_under_the_filter() {
    let platforms = fixture_platforms();
    if !precondition(
        platforms.iter().any(|p| p == "linux/386"),
        "the busybox fixture has no linux/386 image: run `cargo xtask fixtures`",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN sh -c 'echo hi' > /hi && grep -c '^Seccomp:.2' /proc/self/status > /filtered\n",
        &[],
    );
    let out = tmp.path().join("out.tar");
    let list = platforms.join(",");
    assert!(
        build(&tmp.path().join("state"), &ctx, &list, &out, &[])
            .status
            .success()
    );
    let layout = OciLayout::open_tar(&out);
    for p in &platforms {
        let m = layout.manifest_for(p);
        assert_eq!(layout.file(&m, "hi").unwrap(), b"hi\n", "{p}");
        assert_eq!(layout.file(&m, "filtered").unwrap(), b"1\n", "{p}");
    }
}
