//! Cache keys, through the real binary: for every input of a step, changing only that
//! input re-runs the step and the output shows the change; changing something that is not
//! an input (an unrelated file, a secret value, display-only settings) leaves it CACHED
//! with the earlier output.

mod common;

use common::{OciLayout, build_command, busybox_ready, context, precondition, run};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A context directory and a state directory shared by the builds of one test.
struct Case {
    dir: tempfile::TempDir,
    builds: std::cell::Cell<usize>,
}

/// One build's progress log and where its output went.
struct Built {
    log: String,
    out: PathBuf,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
            builds: std::cell::Cell::new(0),
        }
    }

    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes the Dockerfile and files into the context (files not named stay).
    fn write(&self, dockerfile: &str, files: &[(&str, &str)]) {
        context(&self.ctx(), dockerfile, files);
    }

    /// A fresh output path.
    fn next_out(&self, suffix: &str) -> PathBuf {
        let n = self.builds.get() + 1;
        self.builds.set(n);
        self.dir.path().join(format!("out{n}{suffix}"))
    }

    /// Builds with `-o type=local` and `--progress=plain` (unless `extra` sets one).
    fn build(&self, extra: &[&str]) -> Built {
        let out = self.next_out("");
        let o = format!("type=local,dest={}", out.display());
        self.build_to(out, &["-o", &o], extra, &[])
    }

    /// Builds into an OCI tar, `oci_opts` appended to the `-o` value.
    fn build_oci(&self, oci_opts: &str, extra: &[&str], env: &[(&str, &str)]) -> Built {
        let out = self.next_out(".tar");
        let o = format!("type=oci,dest={}{oci_opts}", out.display());
        self.build_to(out, &["-o", &o], extra, env)
    }

    fn build_to(&self, out: PathBuf, o: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Built {
        let mut args: Vec<&str> = o.to_vec();
        if !extra.iter().any(|a| a.starts_with("--progress")) {
            args.push("--progress=plain");
        }
        args.extend(extra);
        let mut cmd = build_command(&self.state(), &self.ctx(), "linux/amd64", None, &args);
        cmd.env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let res = run(&mut cmd);
        let log = String::from_utf8_lossy(&res.stderr).into_owned();
        assert!(res.status.success(), "build failed:\n{log}");
        Built { log, out }
    }
}

impl Built {
    /// Whether the step whose progress line contains `step` was served from the cache.
    /// Fails when no such step ran, so a renamed step cannot make a test pass.
    fn cached(&self, step: &str) -> bool {
        // BuildKit's plain format: `#N [platform k/n] INSTRUCTION`, later `#N CACHED`.
        let Some(vertex) = self.log.lines().find_map(|l| {
            let (n, rest) = l.strip_prefix('#')?.split_once(' ')?;
            (rest.starts_with('[') && rest.contains(step)).then(|| n.to_string())
        }) else {
            panic!("no step {step:?} in the build log:\n{}", self.log);
        };
        let cached = format!("#{vertex} CACHED");
        self.log.lines().any(|l| l.trim() == cached)
    }

    /// A file of a `type=local` output.
    fn read(&self, path: &str) -> String {
        let p = self.out.join(path.trim_start_matches('/'));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The OCI layout of a `type=oci` output.
    fn layout(&self) -> OciLayout {
        OciLayout::open_tar(&self.out)
    }
}

/// The only manifest of a single-platform OCI output.
fn manifest(layout: &OciLayout) -> String {
    layout.manifest_for("linux/amd64")
}

/// The layer descriptors of the manifest.
fn layers(layout: &OciLayout) -> Vec<serde_json::Value> {
    let m = layout.json(&manifest(layout));
    m["layers"].as_array().unwrap().clone()
}

/// A tar entry's header fields of interest.
struct Entry {
    path: String,
    mode: u32,
    uid: u64,
    mtime: u64,
}

/// The entries of one layer, plain or gzip.
fn layer_entries(layout: &OciLayout, layer: &serde_json::Value) -> Vec<Entry> {
    let data = layout.blob(layer["digest"].as_str().unwrap());
    let mut plain = Vec::new();
    if layer["mediaType"].as_str().unwrap().ends_with("+gzip") {
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut plain)
            .unwrap();
    } else {
        plain = data.to_vec();
    }
    let mut a = tar::Archive::new(&plain[..]);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            Entry {
                path: e.path().unwrap().to_string_lossy().into_owned(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                mtime: h.mtime().unwrap(),
            }
        })
        .collect()
}

/// The entry for `path` in the image's top layer.
fn top_entry(layout: &OciLayout, path: &str) -> Entry {
    let top = layers(layout).pop().unwrap();
    layer_entries(layout, &top)
        .into_iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the top layer"))
}

#[test]
fn a_bind_mounted_context_file_is_an_input_and_other_files_are_not() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let df =
        "FROM busybox\nRUN --mount=type=bind,source=data.txt,target=/d.txt cat /d.txt > /out.txt\n";
    let step = "cat /d.txt";
    c.write(df, &[("data.txt", "v1\n"), ("other.txt", "a")]);
    let b1 = c.build(&[]);
    assert!(!b1.cached(step));
    assert_eq!(b1.read("out.txt"), "v1\n");
    c.write(df, &[("data.txt", "v2\n")]);
    let b2 = c.build(&[]);
    assert!(
        !b2.cached(step),
        "a changed bind source must re-run the step"
    );
    assert_eq!(b2.read("out.txt"), "v2\n");
    c.write(df, &[("other.txt", "b")]);
    let b3 = c.build(&[]);
    assert!(b3.cached(step), "an unrelated context file is no input");
    assert_eq!(b3.read("out.txt"), "v2\n");
}

#[test]
fn a_bind_mount_of_the_whole_context_sees_it_after_dockerignore() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let df = "FROM busybox\nRUN --mount=type=bind,target=/ctx cat /ctx/a.txt > /out.txt\n";
    let step = "cat /ctx/a.txt";
    c.write(
        df,
        &[
            ("a.txt", "1"),
            ("junk.log", "x"),
            (".dockerignore", "*.log\n"),
        ],
    );
    assert_eq!(c.build(&[]).read("out.txt"), "1");
    c.write(df, &[("junk.log", "y")]);
    let b = c.build(&[]);
    assert!(b.cached(step), "an ignored file is not part of the context");
    c.write(df, &[("a.txt", "2")]);
    let b = c.build(&[]);
    assert!(!b.cached(step));
    assert_eq!(b.read("out.txt"), "2");
}

#[test]
fn a_bind_mount_from_a_stage_follows_that_stages_files() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let df = "FROM busybox AS src\nCOPY data.txt /data.txt\nFROM busybox\nRUN --mount=type=bind,from=src,source=/data.txt,target=/d.txt cat /d.txt > /out.txt\n";
    let step = "cat /d.txt";
    c.write(df, &[("data.txt", "s1\n")]);
    assert_eq!(c.build(&[]).read("out.txt"), "s1\n");
    c.write(df, &[("data.txt", "s2\n")]);
    let b = c.build(&[]);
    assert!(!b.cached(step), "the stage's result changed");
    assert_eq!(b.read("out.txt"), "s2\n");
    let b = c.build(&[]);
    assert!(b.cached(step));
    assert_eq!(b.read("out.txt"), "s2\n");
}

#[test]
fn a_bind_mount_from_a_named_directory_context_hashes_its_content() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let named = c.dir.path().join("named");
    std::fs::create_dir_all(&named).unwrap();
    std::fs::write(named.join("n.txt"), "n1").unwrap();
    let df = "FROM busybox\nRUN --mount=type=bind,from=extra,source=n.txt,target=/n.txt cat /n.txt > /out.txt\n";
    c.write(df, &[]);
    let flag = format!("extra={}", named.display());
    let extra = ["--build-context", flag.as_str()];
    assert_eq!(c.build(&extra).read("out.txt"), "n1");
    std::fs::write(named.join("n.txt"), "n2").unwrap();
    let b = c.build(&extra);
    assert!(!b.cached("cat /n.txt"));
    assert_eq!(b.read("out.txt"), "n2");
}

#[test]
fn a_bind_mount_from_an_image_follows_its_digest() {
    if !busybox_ready() {
        return;
    }
    // The image is itself built by rbuild, once per content, into an OCI layout directory.
    let img = Case::new();
    let image = |content: &str| -> PathBuf {
        img.write(
            &format!("FROM busybox\nRUN echo {content} > /img.txt\n"),
            &[],
        );
        let dest = img.next_out("-layout");
        let o = format!("type=oci,dest={},tar=false", dest.display());
        img.build_to(dest.clone(), &["-o", &o], &[], &[]);
        dest
    };
    let c = Case::new();
    let df = "FROM busybox\nRUN --mount=type=bind,from=img,source=/img.txt,target=/i.txt cat /i.txt > /out.txt\n";
    c.write(df, &[]);
    let with = |layout: &Path| format!("img=oci-layout://{}", layout.display());
    let first = with(&image("i1"));
    assert_eq!(
        c.build(&["--build-context", &first]).read("out.txt"),
        "i1\n"
    );
    let second = with(&image("i2"));
    let b = c.build(&["--build-context", &second]);
    assert!(!b.cached("cat /i.txt"), "another image digest");
    assert_eq!(b.read("out.txt"), "i2\n");
}

#[test]
fn a_cache_mount_seeded_from_a_stage_follows_the_seed() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let df = "FROM busybox AS seed\nCOPY data.txt /s/data.txt\nFROM busybox\nRUN --mount=type=cache,id=c,target=/c,from=seed,source=/s cat /c/data.txt > /out.txt\n";
    let step = "cat /c/data.txt";
    c.write(df, &[("data.txt", "c1")]);
    assert_eq!(c.build(&[]).read("out.txt"), "c1");
    c.write(df, &[("data.txt", "c2")]);
    let b = c.build(&[]);
    assert!(!b.cached(step));
    assert_eq!(b.read("out.txt"), "c2", "a new seed starts a new cache");
}

#[test]
fn cache_mount_contents_are_not_an_input() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let writer = "FROM busybox\nRUN --mount=type=cache,id=k,target=/c date +%s%N > /c/stamp\n";
    let reader = "FROM busybox\nRUN --mount=type=cache,id=k,target=/c echo fixed > /out.txt\n";
    c.write(reader, &[]);
    assert_eq!(c.build(&[]).read("out.txt"), "fixed\n");
    c.write(writer, &[]);
    c.build(&[]);
    c.write(reader, &[]);
    let b = c.build(&[]);
    assert!(
        b.cached("echo fixed"),
        "the cache mount's contents changed, not the step"
    );
}

#[test]
fn secret_definitions_are_inputs_and_values_are_not() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let secret = c.dir.path().join("secret");
    let df = |target: &str| {
        format!(
            "FROM busybox\nRUN --mount=type=secret,id=tok,target={target} wc -c < {target} > /len\n"
        )
    };
    let flag = format!("id=tok,src={}", secret.display());
    let extra = ["--secret", flag.as_str()];
    std::fs::write(&secret, "abc").unwrap();
    c.write(&df("/run/secrets/tok"), &[]);
    assert_eq!(c.build(&extra).read("len").trim(), "3");
    std::fs::write(&secret, "abcdef").unwrap();
    let b = c.build(&extra);
    assert!(
        b.cached("wc -c"),
        "a secret's value does not bust the cache"
    );
    assert_eq!(b.read("len").trim(), "3");
    c.write(&df("/tok"), &[]);
    let b = c.build(&extra);
    assert!(
        !b.cached("wc -c"),
        "the mount's target is part of the definition"
    );
    assert_eq!(b.read("len").trim(), "6");
}

#[test]
fn ssh_definitions_are_inputs_and_sockets_are_not() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let sock_a = c.dir.path().join("a.sock");
    let sock_b = c.dir.path().join("b.sock");
    let _a = std::os::unix::net::UnixListener::bind(&sock_a).unwrap();
    let _b = std::os::unix::net::UnixListener::bind(&sock_b).unwrap();
    let df = |target: &str| {
        format!("FROM busybox\nRUN --mount=type=ssh,target={target} echo $SSH_AUTH_SOCK > /sock\n")
    };
    let ssh = |p: &Path| format!("default={}", p.display());
    c.write(&df("/run/a.sock"), &[]);
    let first = ssh(&sock_a);
    assert_eq!(c.build(&["--ssh", &first]).read("sock"), "/run/a.sock\n");
    let second = ssh(&sock_b);
    let b = c.build(&["--ssh", &second]);
    assert!(
        b.cached("SSH_AUTH_SOCK"),
        "which socket is given does not matter"
    );
    c.write(&df("/run/b.sock"), &[]);
    let b = c.build(&["--ssh", &second]);
    assert!(!b.cached("SSH_AUTH_SOCK"));
    assert_eq!(b.read("sock"), "/run/b.sock\n");
}

/// Builds `before`, then `after`, and checks that the step re-ran and `path` changed;
/// then that building `after` again is CACHED. Returns the file's content after.
fn reruns(before: &str, after: &str, step: &str, extra: &[&str], path: &str) -> String {
    let c = Case::new();
    c.write(before, &[]);
    let b1 = c.build(extra);
    assert!(!b1.cached(step));
    c.write(after, &[]);
    let b2 = c.build(extra);
    assert!(!b2.cached(step), "changed op must re-run:\n{after}");
    assert_ne!(b1.read(path), b2.read(path), "the output shows the change");
    let b3 = c.build(extra);
    assert!(b3.cached(step));
    assert_eq!(b3.read(path), b2.read(path));
    b2.read(path).trim().to_string()
}

#[test]
fn run_definitions_are_inputs() {
    if !busybox_ready() {
        return;
    }
    let step = "> /out.txt";
    let env = reruns(
        "FROM busybox\nENV V=1\nRUN echo $V > /out.txt\n",
        "FROM busybox\nENV V=2\nRUN echo $V > /out.txt\n",
        step,
        &[],
        "out.txt",
    );
    assert_eq!(env, "2");
    let user = reruns(
        "FROM busybox\nUSER 0\nRUN id -u > /tmp/out.txt\n",
        "FROM busybox\nUSER 1\nRUN id -u > /tmp/out.txt\n",
        "id -u",
        &[],
        "tmp/out.txt",
    );
    assert_eq!(user, "1");
    let workdir = reruns(
        "FROM busybox\nWORKDIR /a\nRUN pwd > /out.txt\n",
        "FROM busybox\nWORKDIR /b\nRUN pwd > /out.txt\n",
        step,
        &[],
        "out.txt",
    );
    assert_eq!(workdir, "/b");
    let shell = reruns(
        "FROM busybox\nSHELL [\"/bin/sh\", \"-c\"]\nRUN echo $0 > /out.txt\n",
        "FROM busybox\nSHELL [\"/bin/ash\", \"-c\"]\nRUN echo $0 > /out.txt\n",
        step,
        &[],
        "out.txt",
    );
    assert_eq!(shell, "/bin/ash");
    let heredoc = reruns(
        "FROM busybox\nRUN <<EOF\necho h1 > /out.txt\nEOF\n",
        "FROM busybox\nRUN <<EOF\necho h2 > /out.txt\nEOF\n",
        "echo h",
        &[],
        "out.txt",
    );
    assert_eq!(heredoc, "h2");
    // The insecure mode has more effective capabilities than the sandbox's default set.
    reruns(
        "FROM busybox\nRUN grep CapEff /proc/self/status > /out.txt\n",
        "FROM busybox\nRUN --security=insecure grep CapEff /proc/self/status > /out.txt\n",
        step,
        &["--allow", "security.insecure"],
        "out.txt",
    );
}

#[test]
fn a_build_arg_in_scope_is_an_input_and_an_unused_one_is_not() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    c.write("FROM busybox\nARG V\nRUN echo $V > /out.txt\n", &[]);
    let step = "echo $V";
    assert_eq!(c.build(&["--build-arg", "V=a"]).read("out.txt"), "a\n");
    let b = c.build(&["--build-arg", "V=b"]);
    assert!(!b.cached(step));
    assert_eq!(b.read("out.txt"), "b\n");
    let b = c.build(&["--build-arg", "V=b", "--build-arg", "UNUSED=1"]);
    assert!(b.cached(step));
    assert_eq!(b.read("out.txt"), "b\n");
}

#[test]
fn the_network_mode_is_an_input() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let df = |mode: &str| {
        format!("FROM busybox\nRUN --network={mode} cat /proc/net/dev | wc -l > /out.txt\n")
    };
    let step = "/proc/net/dev";
    c.write(&df("none"), &[]);
    let none = c.build(&[]);
    c.write(&df("host"), &[]);
    let host = c.build(&[]);
    assert!(!host.cached(step));
    // `default` means the build's --network: none here, so the same as --network=none.
    c.write(&df("default"), &[]);
    let default_none = c.build(&["--network", "none"]);
    assert!(!default_none.cached(step));
    assert_eq!(default_none.read("out.txt"), none.read("out.txt"));
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .map(|s| s.lines().count())
        .unwrap_or(0);
    if precondition(host_ifaces > 3, "a host network interface besides lo") {
        assert_ne!(none.read("out.txt"), host.read("out.txt"));
    }
}

#[test]
fn copy_flags_are_inputs() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let files = [("a.txt", "a"), ("b.txt", "b"), ("d/x/f.txt", "f")];
    // --chmod and --chown, read from the layer headers
    c.write(
        "FROM busybox\nCOPY --chmod=644 --chown=1:1 a.txt /a.txt\n",
        &files,
    );
    let b = c.build_oci("", &[], &[]);
    let e = top_entry(&b.layout(), "a.txt");
    assert_eq!((e.mode & 0o7777, e.uid), (0o644, 1));
    c.write(
        "FROM busybox\nCOPY --chmod=755 --chown=1:1 a.txt /a.txt\n",
        &[],
    );
    let b = c.build_oci("", &[], &[]);
    assert!(!b.cached("COPY"));
    assert_eq!(top_entry(&b.layout(), "a.txt").mode & 0o7777, 0o755);
    c.write(
        "FROM busybox\nCOPY --chmod=755 --chown=2:2 a.txt /a.txt\n",
        &[],
    );
    let b = c.build_oci("", &[], &[]);
    assert!(!b.cached("COPY"));
    assert_eq!(top_entry(&b.layout(), "a.txt").uid, 2);
    // --exclude
    c.write("FROM busybox\nCOPY --exclude=b.txt *.txt /t/\n", &[]);
    assert!(!c.build(&[]).out.join("t/b.txt").exists());
    c.write("FROM busybox\nCOPY --exclude=a.txt *.txt /t/\n", &[]);
    let b = c.build(&[]);
    assert!(!b.cached("COPY"));
    assert!(b.out.join("t/b.txt").exists() && !b.out.join("t/a.txt").exists());
    // --parents
    c.write("FROM busybox\nCOPY d/x/f.txt /p/\n", &[]);
    assert!(c.build(&[]).out.join("p/f.txt").exists());
    c.write("FROM busybox\nCOPY --parents d/x/f.txt /p/\n", &[]);
    let b = c.build(&[]);
    assert!(!b.cached("COPY"));
    assert_eq!(b.read("p/d/x/f.txt"), "f");
    // --from
    c.write(
        "FROM busybox AS one\nRUN echo one > /w\nFROM busybox AS two\nRUN echo two > /w\nFROM busybox\nCOPY --from=one /w /out.txt\n",
        &[],
    );
    assert_eq!(c.build(&[]).read("out.txt"), "one\n");
    c.write(
        "FROM busybox AS one\nRUN echo one > /w\nFROM busybox AS two\nRUN echo two > /w\nFROM busybox\nCOPY --from=two /w /out.txt\n",
        &[],
    );
    let b = c.build(&[]);
    assert!(!b.cached("COPY /w /out.txt"));
    assert_eq!(b.read("out.txt"), "two\n");
    // heredoc bodies
    c.write("FROM busybox\nCOPY <<EOF /out.txt\nh1\nEOF\n", &[]);
    assert_eq!(c.build(&[]).read("out.txt"), "h1\n");
    c.write("FROM busybox\nCOPY <<EOF /out.txt\nh2\nEOF\n", &[]);
    let b = c.build(&[]);
    assert!(!b.cached("COPY"));
    assert_eq!(b.read("out.txt"), "h2\n");
}

#[test]
fn copy_link_layers_stay_cached_when_the_base_changes() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let df = |link: &str| {
        format!(
            "FROM busybox\nARG B\nRUN mkdir -m 700 /app && echo $B > /base\nCOPY {link} a.txt /app/a.txt\n"
        )
    };
    c.write(&df("--link"), &[("a.txt", "a")]);
    let b1 = c.build_oci("", &["--build-arg", "B=1"], &[]);
    let b2 = c.build_oci("", &["--build-arg", "B=2"], &[]);
    assert!(!b2.cached("echo $B"), "the base changed");
    assert!(
        b2.cached("COPY a.txt"),
        "a linked layer does not depend on its base"
    );
    let (l1, l2) = (layers(&b1.layout()), layers(&b2.layout()));
    assert_eq!(l1.last(), l2.last(), "the same linked blob");
    assert_ne!(l1[l1.len() - 2], l2[l2.len() - 2]);
    // The linked layer holds the file and a default-metadata parent, nothing of the base.
    let linked = layer_entries(&b2.layout(), l2.last().unwrap());
    let names: Vec<&str> = linked.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["app/", "app/a.txt"]);
    assert_eq!(linked[0].mode & 0o7777, 0o755);
    let m = manifest(&b2.layout());
    assert_eq!(
        b2.layout().file(&m, "app/a.txt").as_deref(),
        Some(&b"a"[..])
    );
    // Without --link the same COPY re-runs when the base changes.
    c.write(&df(""), &[]);
    c.build_oci("", &["--build-arg", "B=1"], &[]);
    let b = c.build_oci("", &["--build-arg", "B=3"], &[]);
    assert!(!b.cached("COPY a.txt"));
}

#[test]
fn no_cache_filter_ignores_the_cache_of_the_named_stages_only() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    c.write(
        "FROM busybox AS a\nRUN cat /proc/sys/kernel/random/uuid > /id\nFROM busybox AS b\nRUN cat /proc/sys/kernel/random/uuid > /bid\nFROM busybox\nCOPY --from=a /id /a-id\nCOPY --from=b /bid /b-id\n",
        &[],
    );
    let b1 = c.build(&[]);
    let b2 = c.build(&["--no-cache-filter", "a"]);
    assert!(!b2.cached("> /id"), "stage a ignores the cache");
    assert!(b2.cached("> /bid"), "stage b uses it");
    assert_ne!(b1.read("a-id"), b2.read("a-id"));
    assert_eq!(b1.read("b-id"), b2.read("b-id"));
    assert!(!b2.cached("COPY /id"), "stage a's new result is copied");
}

#[test]
fn source_date_epoch_is_an_input() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    c.write("FROM busybox\nRUN echo x > /out.txt\n", &[]);
    let epoch = |v: &str, o: &str| c.build_oci(o, &[], &[("SOURCE_DATE_EPOCH", v)]);
    // With rewrite-timestamp=true the epoch clamps new files' mtimes: it shapes the layer.
    let b1 = epoch("1000", ",rewrite-timestamp=true");
    let b2 = epoch("2000", ",rewrite-timestamp=true");
    assert!(!b2.cached("echo x"), "the mtime clamp shapes the layer");
    let (l1, l2) = (b1.layout(), b2.layout());
    assert_eq!(top_entry(&l1, "out.txt").mtime, 1000);
    assert_eq!(top_entry(&l2, "out.txt").mtime, 2000);
    assert_eq!(l2.config(&manifest(&l2))["created"], "1970-01-01T00:33:20Z");
    let b3 = epoch("2000", ",rewrite-timestamp=true");
    assert!(b3.cached("echo x"));
    assert_eq!(top_entry(&b3.layout(), "out.txt").mtime, 2000);
    // Without it (buildx's default) the epoch only sets the config's times: the files keep
    // their real mtimes, and another epoch reuses the layer.
    let b4 = epoch("3000", "");
    assert!(
        !b4.cached("echo x"),
        "unclamped is another layer than clamped"
    );
    assert!(top_entry(&b4.layout(), "out.txt").mtime > 1_700_000_000);
    let b5 = epoch("4000", "");
    assert!(b5.cached("echo x"));
    let l5 = b5.layout();
    assert_eq!(l5.config(&manifest(&l5))["created"], "1970-01-01T01:06:40Z");
}

#[test]
fn layer_compression_is_an_input() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    c.write("FROM busybox\nRUN echo x > /out.txt\n", &[]);
    let media = |b: &Built| layers(&b.layout()).pop().unwrap()["mediaType"].clone();
    let gz = c.build_oci("", &[], &[]);
    assert_eq!(media(&gz), "application/vnd.oci.image.layer.v1.tar+gzip");
    let plain = c.build_oci(",compression=uncompressed", &[], &[]);
    assert!(!plain.cached("echo x"));
    assert_eq!(media(&plain), "application/vnd.oci.image.layer.v1.tar");
    let fast = c.build_oci(",compression=gzip,compression-level=1", &[], &[]);
    assert!(!fast.cached("echo x"), "the level shapes the blob too");
    let again = c.build_oci(",compression=uncompressed", &[], &[]);
    assert!(again.cached("echo x"));
    assert_eq!(media(&again), "application/vnd.oci.image.layer.v1.tar");
}

#[test]
fn display_only_settings_are_not_inputs() {
    if !busybox_ready() {
        return;
    }
    let c = Case::new();
    let df = |label: &str| {
        format!(
            "FROM busybox\nLABEL note={label}\nRUN cat /proc/sys/kernel/random/uuid > /out.txt\n"
        )
    };
    let step = "random/uuid";
    c.write(&df("one"), &[]);
    let first = c.build(&[]);
    let out = first.read("out.txt");
    // --progress: another mode, then plain again to see the step lines.
    c.build(&["--progress=auto"]);
    c.build(&["--progress=quiet"]);
    let b = c.build(&["-t", "other:tag", "--label", "x=y"]);
    assert!(b.cached(step), "tags and --label only change the config");
    assert_eq!(b.read("out.txt"), out);
    // A config-only instruction before the step changes no layer.
    c.write(&df("two"), &[]);
    let b = c.build(&[]);
    assert!(b.cached(step), "LABEL is display and config only");
    assert_eq!(b.read("out.txt"), out);
}
