//! Shared helpers for the integration tests: run the real `rbuild` binary and read what it
//! wrote through independent tools (skopeo, umoci) and a small OCI layout reader.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Whether the busybox fixture is there: a [`precondition`], so it fails under `CI=true`.
pub fn busybox_ready() -> bool {
    precondition(
        repo().join("testdata/images/busybox/index.json").is_file(),
        "busybox fixture (cargo xtask fixtures)",
    )
}

/// The multi-platform busybox fixture; fails with a hint when it was not generated.
pub fn busybox_layout() -> PathBuf {
    let p = repo().join("testdata/images/busybox");
    assert!(
        p.join("index.json").is_file(),
        "fixture {} is missing: run `cargo xtask fixtures`",
        p.display()
    );
    p
}

/// The multi-platform Debian fixture (`cargo xtask fixtures`), or `None` when it was not
/// generated.
pub fn debian_layout() -> Option<PathBuf> {
    let p = repo().join("testdata/images/debian");
    p.join("index.json").is_file().then_some(p)
}

/// Every platform the busybox fixture has, as `os/arch[/variant]`.
pub fn fixture_platforms() -> Vec<String> {
    let layout = OciLayout::open_dir(&busybox_layout());
    layout
        .platform_manifests()
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// `rbuild` with an isolated state directory.
pub fn rbuild(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.arg("--root").arg(state);
    c
}

/// `cmd.output()`, retried while the program is "text file busy": a binary a test just
/// copied can still be open for writing in a child another test thread forked meanwhile.
fn spawn_output(cmd: &mut Command) -> Output {
    for _ in 0..50 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.expect("spawn"),
        }
    }
    panic!("{cmd:?}: text file busy");
}

/// Runs a command and returns its output, printing it for test logs.
pub fn run(cmd: &mut Command) -> Output {
    let out = spawn_output(cmd);
    eprintln!(
        "--- {:?}\n{}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must succeed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(out.status.success(), "command failed: {cmd:?}");
    out
}

/// `rbuild build` of `context` for `platforms`, with `busybox` bound to the fixture, an OCI
/// tar output at `dest` when given, and `extra` flags.
pub fn build_command(
    state: &Path,
    context: &Path,
    platforms: &str,
    dest: Option<&Path>,
    extra: &[&str],
) -> Command {
    let mut c = rbuild(state);
    c.arg("build")
        .arg("--platform")
        .arg(platforms)
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            busybox_layout().display()
        ));
    if let Some(dest) = dest {
        c.arg("-o").arg(format!("type=oci,dest={}", dest.display()));
    }
    c.args(extra).arg(context);
    c
}

/// Builds `context` (with `busybox` bound to the fixture) for `platforms` into an OCI tar.
pub fn build(state: &Path, context: &Path, platforms: &str, dest: &Path, extra: &[&str]) -> Output {
    run(&mut build_command(
        state,
        context,
        platforms,
        Some(dest),
        extra,
    ))
}

/// The steps (not `FROM`s) a build's plain progress output reports as cached: the names
/// of the vertices `#N name` that end with `#N CACHED`.
pub fn cached_steps(stderr: &str) -> Vec<String> {
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut cached = Vec::new();
    for line in stderr.lines() {
        let Some((n, rest)) = line.strip_prefix('#').and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if rest == "CACHED" {
            if let Some(name) = names.get(n).filter(|name| !name.contains("] FROM ")) {
                cached.push(name.to_string());
            }
        } else if rest.starts_with('[') {
            names.entry(n).or_insert(rest);
        }
    }
    cached
}

/// Waits up to a minute for a process whose command line starts with `pattern`.
pub fn wait_for_process(pattern: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if process_running(pattern) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// Whether a process whose command line starts with `pattern` runs.
pub fn process_running(pattern: &str) -> bool {
    Command::new("pgrep")
        .arg("-f")
        .arg(format!("^{pattern}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Builds `dockerfile` (linux/amd64) over a fresh context made by `setup`, into
/// `-o type=local`: the output directory, or rbuild's stderr when the build failed. The
/// temporary directory holding everything comes first.
pub fn build_local_output(
    dockerfile: &str,
    setup: impl FnOnce(&Path),
) -> (tempfile::TempDir, Result<PathBuf, String>) {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("ctx"), dockerfile, &[]);
    setup(&ctx);
    let dest = tmp.path().join("out");
    let out = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        None,
        &["-o", &format!("type=local,dest={}", dest.display())],
    ));
    let result = if out.status.success() {
        Ok(dest)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    (tmp, result)
}

/// Writes a build context with a Dockerfile and extra files.
pub fn context(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir.to_path_buf()
}

/// A minimal OCI layout reader (tar or directory) for checking rbuild's output.
pub struct OciLayout {
    blobs: BTreeMap<String, Vec<u8>>,
    pub index: Value,
}

impl OciLayout {
    /// Reads an OCI layout tar archive whole.
    pub fn open_tar(path: &Path) -> OciLayout {
        let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
        let mut files = BTreeMap::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
        let index = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
        let blobs = files
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("blobs/sha256/")
                    .filter(|h| !h.is_empty())
                    .map(|h| (format!("sha256:{h}"), v))
            })
            .collect();
        OciLayout { blobs, index }
    }

    /// Reads an OCI layout directory.
    pub fn open_dir(path: &Path) -> OciLayout {
        let index =
            serde_json::from_slice(&std::fs::read(path.join("index.json")).unwrap()).unwrap();
        let mut blobs = BTreeMap::new();
        for e in std::fs::read_dir(path.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            blobs.insert(
                format!("sha256:{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            );
        }
        OciLayout { blobs, index }
    }

    /// A blob, checked against its digest.
    pub fn blob(&self, digest: &str) -> &[u8] {
        let data = self
            .blobs
            .get(digest)
            .unwrap_or_else(|| panic!("blob {digest} missing"));
        let found = format!("sha256:{}", sha256_hex(data));
        assert_eq!(found, digest, "blob content does not match its name");
        data
    }

    /// A JSON blob.
    pub fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(self.blob(digest)).unwrap()
    }

    /// Number of blobs in the layout.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// (platform, manifest digest) for every manifest reachable from index.json.
    pub fn platform_manifests(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut todo: Vec<Value> = self.index["manifests"].as_array().unwrap().clone();
        while let Some(d) = todo.pop() {
            let digest = d["digest"].as_str().unwrap().to_string();
            if d["mediaType"] == "application/vnd.oci.image.index.v1+json"
                || d["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
            {
                let idx = self.json(&digest);
                todo.extend(idx["manifests"].as_array().unwrap().iter().rev().cloned());
            } else {
                let cfg = self.config(&digest);
                let mut p = format!(
                    "{}/{}",
                    cfg["os"].as_str().unwrap(),
                    cfg["architecture"].as_str().unwrap()
                );
                if let Some(v) = cfg["variant"].as_str() {
                    p.push('/');
                    p.push_str(v);
                }
                if !out.iter().any(|(_, m)| m == &digest) {
                    out.push((p, digest));
                }
            }
        }
        out
    }

    /// The config of a manifest.
    pub fn config(&self, manifest: &str) -> Value {
        let m = self.json(manifest);
        self.json(m["config"]["digest"].as_str().unwrap())
    }

    /// The manifest for a platform.
    pub fn manifest_for(&self, platform: &str) -> String {
        self.platform_manifests()
            .into_iter()
            .find(|(p, _)| p == platform)
            .unwrap_or_else(|| panic!("no manifest for {platform}"))
            .1
    }

    /// Every entry of every layer of a manifest, bottom first: (layer index, path, header kind, content).
    pub fn layer_entries(
        &self,
        manifest: &str,
    ) -> Vec<(usize, String, tar::EntryType, Vec<u8>, u64, u64)> {
        let m = self.json(manifest);
        let mut out = Vec::new();
        for (i, l) in m["layers"].as_array().unwrap().iter().enumerate() {
            let data = self.blob(l["digest"].as_str().unwrap());
            let media = l["mediaType"].as_str().unwrap_or_default();
            let mut plain = Vec::new();
            if media.ends_with("+zstd") {
                plain = zstd::decode_all(data).unwrap();
            } else if media.ends_with(".tar") {
                plain = data.to_vec();
            } else {
                flate2::read::MultiGzDecoder::new(data)
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            let mut a = tar::Archive::new(&plain[..]);
            for e in a.entries().unwrap() {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let uid = e.header().uid().unwrap();
                let gid = e.header().gid().unwrap();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                out.push((i, path, kind, content, uid, gid));
            }
        }
        out
    }

    /// The content of a file in the image (last layer that has it wins; whiteouts hide).
    pub fn file(&self, manifest: &str, path: &str) -> Option<Vec<u8>> {
        let mut found = None;
        let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
        let whiteout = if dir.is_empty() {
            format!(".wh.{base}")
        } else {
            format!("{dir}/.wh.{base}")
        };
        for (_, p, _, content, _, _) in self.layer_entries(manifest) {
            if p == path {
                found = Some(content);
            } else if p == whiteout {
                found = None;
            }
        }
        found
    }
}

/// sha256 hex of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Whether this process is root (tests that create users need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What a command wrote to standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a command wrote to standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `podman` or `buildah` with private vfs storage under `dir`, so tests never touch the
/// host's container storage.
pub fn container_tool(program: &str, dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

/// Whether a test's precondition holds. When it does not, the test fails under `CI=true`
/// (where every precondition is installed) and otherwise says loudly, on the real stderr
/// (which `cargo test` does not capture), that it is skipped; the caller then returns.
pub fn precondition(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "precondition missing in CI: {what}"
        );
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "=== SKIPPED: {what} ===");
    }
    ok
}

/// Copies the rbuild binary to `dest` with `cp`: the copy's write descriptor then lives in
/// that child alone, so a process another test thread forks meanwhile cannot hold it open
/// and make executing the copy fail with "text file busy".
pub fn copy_rbuild_to(dest: &Path) {
    run_ok(
        Command::new("cp")
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .arg(dest),
    );
}

/// The unprivileged user the rootless tests run as.
pub const TEST_USER: &str = "rbuildtest";

/// Creates [`TEST_USER`] (with subordinate id ranges, as `useradd` gives them) if missing;
/// returns its uid. Needs root.
pub fn ensure_test_user() -> u32 {
    if !run(Command::new("id").arg("-u").arg(TEST_USER))
        .status
        .success()
    {
        run_ok(Command::new("useradd").args(["--no-create-home", "--shell", "/bin/sh", TEST_USER]));
    }
    let out = run_ok(Command::new("id").arg("-u").arg(TEST_USER));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A command run as [`TEST_USER`] through `setpriv`, with HOME set to `home`.
pub fn as_test_user(program: &Path, home: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        TEST_USER,
        "--regid",
        TEST_USER,
        "--clear-groups",
        "--",
    ])
    .arg(program)
    .env("HOME", home);
    c
}

/// Writes an OCI layout at `dir` holding one linux/amd64 image whose one layer is `tar`
/// (gzip-compressed), named `latest`.
pub fn single_layer_layout(dir: &Path, tar: &[u8]) {
    use std::io::Write;
    let sha = |d: &[u8]| format!("sha256:{}", sha256_hex(d));
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
        d
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(tar).unwrap();
    let blob = gz.finish().unwrap();
    let layer = put(&blob);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(tar)]},
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": blob.len()}],
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// What `uname -m` prints inside a RUN for each fixture platform.
pub fn expected_uname(platform: &str) -> &'static str {
    match platform {
        "linux/amd64" => "x86_64",
        "linux/arm64" => "aarch64",
        "linux/arm/v7" => "armv7l",
        "linux/arm/v6" => "armv6l",
        "linux/386" => "i686",
        "linux/ppc64le" => "ppc64le",
        "linux/s390x" => "s390x",
        "linux/mips64le" => "mips64",
        "linux/riscv64" => "riscv64",
        other => panic!("no expected uname for {other}"),
    }
}

/// Unpacks the image for `platform` of the OCI layout tar `out_tar` with the umoci at
/// `umoci` (extracting the archive into `work/layout` once) and returns the rootfs path.
/// umoci unpacks one manifest by tag, so the platform's manifest gets a tag of its own.
pub fn umoci_unpack_with(umoci: &Path, out_tar: &Path, work: &Path, platform: &str) -> PathBuf {
    let layout_dir = work.join("layout");
    if !layout_dir.exists() {
        std::fs::create_dir_all(&layout_dir).unwrap();
        run_ok(
            Command::new("tar")
                .arg("xf")
                .arg(out_tar)
                .arg("-C")
                .arg(&layout_dir),
        );
    }
    let layout = OciLayout::open_dir(&layout_dir);
    let digest = layout.manifest_for(platform);
    let manifest = layout.blob(&digest).len();
    let tag = platform.replace('/', "-");
    let mut index = layout.index.clone();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": manifest,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    std::fs::write(
        layout_dir.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let bundle = work.join(format!("bundle-{tag}"));
    run_ok(
        Command::new(umoci)
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", layout_dir.display()))
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// `cmd` run in a mount namespace of its own whose `/proc/sys/fs/binfmt_misc` shows only an
/// enabled `qemu-aarch64` handler for `/usr/bin/qemu-aarch64-static` (a file written under
/// `dir`): every machine then looks like one whose host registered QEMU, and the host's
/// real handlers are neither seen nor changed. Needs root.
pub fn with_host_aarch64_handler(cmd: &Command, dir: &Path) -> Command {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("qemu-aarch64"),
        "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\noffset 0\n",
    )
    .unwrap();
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /proc/sys/fs/binfmt_misc && exec "$@""#)
        .arg(dir)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => c.env(key, value),
            None => c.env_remove(key),
        };
    }
    if let Some(cwd) = cmd.get_current_dir() {
        c.current_dir(cwd);
    }
    c
}

/// Whether the slow tests (apt-get in emulated containers, and others that take minutes)
/// run: only with `RBUILD_SLOW_TESTS=1`, which `cargo xtask test` sets. It is a
/// [`precondition`]: without the variable a test says loudly that it is skipped, and under
/// `CI=true` it fails, so CI cannot skip them by mistake.
pub fn slow_tests_enabled() -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("a slow test")
        .to_string();
    precondition(
        std::env::var("RBUILD_SLOW_TESTS").as_deref() == Ok("1"),
        &format!("{test}: slow, runs only with RBUILD_SLOW_TESTS=1 (cargo xtask test sets it)"),
    )
}
