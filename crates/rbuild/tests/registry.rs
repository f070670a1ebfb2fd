//! Registries end to end, against the real distribution registry (`docker-registry`) on
//! 127.0.0.1: multi-arch push, imagetools, skopeo agreeing on digests, pulls for FROM,
//! Basic auth with TLS from certs.d, login/logout, credential helpers, retries through a
//! fault-injecting proxy, and no re-upload of what a registry has.

mod common;
mod registry_support;

use common::*;
use registry_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A test's private client environment: its own config.json, rbuild config, certs.d.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::create_dir_all(dir.path().join("certs.d")).unwrap();
        Env { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn apply<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("DOCKER_CONFIG", self.path("docker"))
            .env("RBUILD_CONFIG", self.path("rbuild.toml"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("RBUILD_CERTS_D", self.path("certs.d"))
            .env_remove("XDG_RUNTIME_DIR")
            .env("RBUILD_REGISTRY_RETRIES", "6")
            // Rebuilds give the same image (config timestamps included).
            .env("SOURCE_DATE_EPOCH", "1700000000")
    }

    fn rbuild(&self, state: &Path) -> Command {
        let mut c = rbuild(state);
        self.apply(&mut c);
        c
    }

    /// A busybox-based build for `platforms` pushed to `names`.
    fn push_build(
        &self,
        state: &Path,
        ctx: &Path,
        platforms: &str,
        names: &[&str],
        extra: &[&str],
    ) -> Output {
        let mut c = self.rbuild(state);
        c.args(["build", "--platform", platforms, "--build-context"])
            .arg(format!(
                "busybox=oci-layout://{}",
                busybox_layout().display()
            ));
        for n in names {
            c.arg("-t").arg(n);
        }
        c.args(extra).arg("--push").arg(ctx);
        run(&mut c)
    }
}

fn registry(opts: Options) -> Option<Registry> {
    let r = Registry::start(opts);
    precondition(
        r.is_some(),
        "docker-registry is installed (apt install docker-registry)",
    )
    .then_some(())?;
    r
}

fn hello_context(dir: &Path) -> PathBuf {
    context(
        dir,
        "FROM busybox\nRUN echo hello > /hello && uname -m > /arch\n",
        &[],
    )
}

/// The digests of everything an OCI archive's root references (index, manifests, configs,
/// layers), read without assuming who wrote the archive.
fn archive_digests(path: &Path) -> Vec<String> {
    let mut files = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(name, data);
    }
    let json = |name: &str| -> serde_json::Value { serde_json::from_slice(&files[name]).unwrap() };
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut todo = vec![
        json("index.json")["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    let mut all = Vec::new();
    while let Some(d) = todo.pop() {
        assert_eq!(format!("sha256:{}", sha256_hex(&files[&blob(&d)])), d);
        let v = json(&blob(&d));
        for m in v["manifests"].as_array().into_iter().flatten() {
            todo.push(m["digest"].as_str().unwrap().into());
        }
        for l in v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(v.get("config"))
        {
            all.push(l["digest"].as_str().unwrap().to_string());
        }
        all.push(d);
    }
    all.sort();
    all
}

#[test]
fn multi_arch_push_inspect_skopeo_and_pull_back() {
    let Some(reg) = registry(Options::default()) else {
        return;
    };
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    let name = format!("{}/team/hello:v1", reg.host());
    let out = env.push_build(
        &state,
        &ctx,
        "linux/amd64,linux/arm64",
        &[&name],
        &["--iidfile", work.path().join("iid").to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let iid = std::fs::read_to_string(work.path().join("iid")).unwrap();
    // The push reports on an `exporting to image` vertex, with each upload's bytes.
    let err = stderr(&out);
    let vertex = err
        .lines()
        .find_map(|l| l.strip_suffix(" exporting to image"))
        .unwrap_or_else(|| panic!("no push vertex in {err}"));
    let uploads = err
        .lines()
        .filter(|l| l.starts_with(&format!("{vertex} pushing sha256:")) && l.ends_with(" done"))
        .count();
    assert!(uploads >= 4, "two configs and two layers at least: {err}");
    assert!(err.contains(&format!("pushed {name} (sha256:")), "{err}");

    let inspect = run_ok(env.rbuild(&state).args(["imagetools", "inspect", &name]));
    let text = stdout(&inspect);
    assert!(text.contains(&format!("Name:      {name}")), "{text}");
    assert!(
        text.contains("MediaType: application/vnd.oci.image.index.v1+json"),
        "{text}"
    );
    assert!(text.contains(&format!("Digest:    {iid}")), "{text}");
    assert!(text.contains("Platform:    linux/amd64"), "{text}");
    assert!(text.contains("Platform:    linux/arm64"), "{text}");

    // skopeo sees the same bytes.
    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{name}"),
    ]));
    assert_eq!(format!("sha256:{}", sha256_hex(&raw.stdout)), iid);
    let ours = run_ok(
        env.rbuild(&state)
            .args(["imagetools", "inspect", "--raw", &name]),
    );
    assert_eq!(ours.stdout, raw.stdout);
    let json =
        run_ok(
            env.rbuild(&state)
                .args(["imagetools", "inspect", "--format", "{{json .}}", &name]),
        );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["manifest"]["manifests"].as_array().unwrap().len(), 2);

    // skopeo copy --all back to an OCI archive: identical digests throughout.
    let archive = work.path().join("copy.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci-archive:{}", archive.display()),
    ]));
    let local = work.path().join("local.tar");
    let mut c = build_command(&state, &ctx, "linux/amd64,linux/arm64", Some(&local), &[]);
    let built = run(env.apply(&mut c));
    assert!(built.status.success());
    assert_eq!(archive_digests(&archive), archive_digests(&local));
    let archived = run_ok(env.rbuild(&state).args([
        "imagetools",
        "inspect",
        &format!("oci-archive:{}", archive.display()),
    ]));
    assert!(stdout(&archived).contains(&format!("Digest:    {iid}")));

    // FROM <that ref> pulls each platform (a fresh state directory: nothing cached).
    let ctx2 = context(
        &work.path().join("ctx2"),
        &format!("FROM {name}\nRUN cat /hello /arch\n"),
        &[],
    );
    let state2 = work.path().join("state2");
    let pulled = run(env
        .rbuild(&state2)
        .args(["build", "--platform", "linux/amd64,linux/arm64"])
        .arg(&ctx2));
    let err = stderr(&pulled);
    assert!(pulled.status.success(), "{err}");
    // Each pull is a vertex with the bytes of its layer downloads, as BuildKit shows them.
    for platform in ["linux/amd64", "linux/arm64"] {
        let title = format!("[internal] pull {name} for {platform}");
        let vertex = err
            .lines()
            .find_map(|l| l.strip_suffix(title.as_str()))
            .unwrap_or_else(|| panic!("no {title:?} in {err}"))
            .trim();
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{vertex} sha256:")) && l.ends_with(" done")),
            "no finished layer download under {vertex}: {err}"
        );
    }
    assert!(err.contains("aarch64") && err.contains("x86_64"), "{err}");

    // --build-context NAME=docker-image://REF: FROM NAME pulls REF.
    let ctx3 = context(&work.path().join("ctx3"), "FROM base\nRUN cat /arch\n", &[]);
    let aliased = run(env
        .rbuild(&work.path().join("state3"))
        .args(["build", "--platform", "linux/arm64", "--build-context"])
        .arg(format!("base=docker-image://{name}"))
        .arg(&ctx3));
    assert!(aliased.status.success(), "{}", stderr(&aliased));
    assert!(stderr(&aliased).contains(&format!("[internal] pull {name} for linux/arm64")));

    // A platform the index lacks: the error lists what it has.
    let missing = run(env
        .rbuild(&state2)
        .args(["build", "--platform", "linux/s390x"])
        .arg(&ctx2));
    assert!(!missing.status.success());
    assert!(
        stderr(&missing)
            .contains("has no image for platform linux/s390x (it has: linux/amd64, linux/arm64)"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn pushing_again_uploads_no_layer_bytes_and_other_repos_mount() {
    let Some(reg) = registry(Options::default()) else {
        return;
    };
    let proxy = Proxy::start(reg.port);
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    let name = format!("{}/a/app:1", proxy.host());
    let first = env.push_build(&state, &ctx, "linux/amd64,linux/arm64", &[&name], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let uploaded = proxy.with(|s| s.upload_bytes);
    assert!(
        uploaded > 100_000,
        "the first push uploads the layers ({uploaded} bytes)"
    );

    proxy.with(|s| s.upload_bytes = 0);
    let again = env.push_build(&state, &ctx, "linux/amd64,linux/arm64", &[&name], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(proxy.with(|s| s.upload_bytes), 0);
    assert!(
        stderr(&again).contains("0 blob(s) uploaded (0 bytes)"),
        "{}",
        stderr(&again)
    );

    // A second repository of the same registry: mounted, not uploaded.
    let other = format!("{}/b/app:2", proxy.host());
    let mounted = env.push_build(
        &state,
        &ctx,
        "linux/amd64,linux/arm64",
        &[&name, &other],
        &[],
    );
    assert!(mounted.status.success(), "{}", stderr(&mounted));
    assert_eq!(proxy.with(|s| s.upload_bytes), 0);
    let mounts = proxy.with(|s| {
        s.requests
            .iter()
            .filter(|r| r.contains("mount=") && r.contains("from=a/app"))
            .count()
    });
    assert!(mounts >= 5, "{mounts} mounts");

    // push-by-digest puts no tag.
    let by_digest = run(env
        .rbuild(&state)
        .args(["build", "--platform", "linux/amd64"])
        .arg("--build-context")
        .arg(format!(
            "busybox=oci-layout://{}",
            busybox_layout().display()
        ))
        .arg("-o")
        .arg(format!(
            "type=image,name={}/c/app,push=true,push-by-digest=true",
            proxy.host()
        ))
        .arg(&ctx));
    assert!(by_digest.status.success(), "{}", stderr(&by_digest));
    let tags = proxy.with(|s| {
        s.requests
            .iter()
            .any(|r| r.starts_with("PUT /v2/c/app/manifests/latest"))
    });
    assert!(!tags);
}

#[test]
fn faults_are_retried_and_wrong_content_is_refused() {
    let Some(reg) = registry(Options::default()) else {
        return;
    };
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    let name = format!("{}/f/app:1", reg.host());
    let pushed = env.push_build(&state, &ctx, "linux/amd64", &[&name], &[]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    let proxy = Proxy::start(reg.port);
    let via = format!("{}/f/app:1", proxy.host());
    proxy.with(|s| {
        s.drop_any = 1;
        s.drop_blob_gets = 2;
        s.truncate_blob_gets = 1;
        s.fail_manifests_503 = 2;
    });
    let ctx2 = context(
        &work.path().join("ctx2"),
        &format!("FROM {via}\nRUN cat /hello\n"),
        &[],
    );
    let state2 = work.path().join("state2");
    let ok = run(env
        .rbuild(&state2)
        .args(["build", "--platform", "linux/amd64"])
        .arg(&ctx2));
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        proxy.with(|s| (
            s.drop_any,
            s.drop_blob_gets,
            s.truncate_blob_gets,
            s.fail_manifests_503
        )),
        (0, 0, 0, 0)
    );
    // The blob cut off halfway was resumed from where it broke off, not fetched again.
    let ranges = proxy.with(|s| s.blob_ranges.clone());
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    let from: u64 = ranges[0]
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{ranges:?}"));
    assert!(from > 0, "{ranges:?}");

    // A layer served with other bytes: refused, and nothing of it in the store.
    // Built with the same environment as the pushed image, so its layers are the pushed ones.
    let layout = OciLayout::open_tar(&{
        let p = work.path().join("l.tar");
        let o = format!("type=oci,dest={}", p.display());
        let built = run(env
            .rbuild(&state)
            .args(["build", "--platform", "linux/amd64", "--build-context"])
            .arg(format!(
                "busybox=oci-layout://{}",
                busybox_layout().display()
            ))
            .args(["-o", &o])
            .arg(&ctx));
        assert!(built.status.success());
        p
    });
    let manifest = layout.manifest_for("linux/amd64");
    let layers = layout.json(&manifest)["layers"].as_array().unwrap().clone();
    let last = layers.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = last.trim_start_matches("sha256:").to_string();
    proxy.with(|s| s.corrupt_blob = Some(hex.clone()));
    let state3 = work.path().join("state3");
    let bad = run(env
        .rbuild(&state3)
        .args(["build", "--platform", "linux/amd64"])
        .arg(&ctx2));
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("digest mismatch"), "{}", stderr(&bad));
    let blobs = state3.join("store/blobs/sha256");
    assert!(!blobs.join(&hex).exists());
    for e in std::fs::read_dir(&blobs).unwrap() {
        let e = e.unwrap();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256_hex(&data),
            e.file_name().to_string_lossy(),
            "only verified blobs"
        );
    }
    assert_eq!(
        std::fs::read_dir(state3.join("store/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn basic_auth_with_tls_login_push_and_explained_errors() {
    let work = tempfile::tempdir().unwrap();
    let certs = make_certs(work.path());
    let htp = work.path().join("htpasswd");
    htpasswd(&htp, "alice", "s3cret");
    let Some(reg) = registry(Options {
        htpasswd: Some(htp),
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..Options::default()
    }) else {
        return;
    };
    let env = Env::new();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    let name = format!("{}/secure/app:1", reg.host());

    // Without the CA in certs.d: a TLS error that says where the CA goes.
    let no_ca = run(pipe_password(
        env.rbuild(&state)
            .args(["login", "-u", "alice", "--password-stdin", &reg.host()]),
        "s3cret",
    ));
    assert!(!no_ca.status.success());
    assert!(stderr(&no_ca).contains("certs.d"), "{}", stderr(&no_ca));
    let ca_dir = env.path("certs.d").join(reg.host());
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(&certs.ca, ca_dir.join("ca.crt")).unwrap();

    // No credentials: the explained error.
    let denied = env.push_build(&state, &ctx, "linux/amd64", &[&name], &[]);
    assert!(!denied.status.success());
    let e = stderr(&denied);
    assert!(
        e.contains(&format!(
            "{}: access to repository secure/app denied (401",
            reg.host()
        )),
        "{e}"
    );
    assert!(e.contains("no credentials found (looked in"), "{e}");
    assert!(
        e.contains(&format!("run `rbuild login {}`", reg.host())),
        "{e}"
    );

    // A wrong password: refused, nothing saved, exit code 1.
    let wrong = run(pipe_password(
        env.rbuild(&state)
            .args(["login", "-u", "alice", "--password-stdin", &reg.host()]),
        "nope",
    ));
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("wrong user name or password"),
        "{}",
        stderr(&wrong)
    );
    assert!(!env.path("docker/config.json").exists());

    let ok = run(pipe_password(
        env.rbuild(&state)
            .args(["login", "-u", "alice", "--password-stdin", &reg.host()]),
        "s3cret\n",
    ));
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("Login Succeeded"));
    let cfg = env.path("docker/config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert_eq!(json["auths"][reg.host()]["auth"], "YWxpY2U6czNjcmV0");

    let pushed = env.push_build(&state, &ctx, "linux/amd64,linux/arm64", &[&name], &[]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let inspect = run_ok(env.rbuild(&state).args(["imagetools", "inspect", &name]));
    assert!(stdout(&inspect).contains("linux/arm64"));

    let out = run_ok(env.rbuild(&state).args(["logout", &reg.host()]));
    assert!(stdout(&out).contains("Removing login credentials"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert!(json["auths"].get(reg.host()).is_none());
}

fn pipe_password<'c>(c: &'c mut Command, password: &str) -> &'c mut Command {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), password).unwrap();
    let file = std::fs::File::open(f.path()).unwrap();
    c.stdin(file)
}

#[test]
fn credential_helper_supplies_the_password() {
    let work = tempfile::tempdir().unwrap();
    let htp = work.path().join("htpasswd");
    htpasswd(&htp, "bob", "helper-pw");
    let Some(reg) = registry(Options {
        htpasswd: Some(htp),
        ..Options::default()
    }) else {
        return;
    };
    let env = Env::new();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rbtest");
    let calls = work.path().join("calls");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {}\n[ \"$1\" = get ] && [ \"$server\" = {} ] && echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"bob\",\"Secret\":\"helper-pw\"}}' && exit 0\necho 'credentials not found in native keychain'; exit 1\n",
            calls.display(),
            reg.host()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        env.path("docker/config.json"),
        format!(r#"{{"credHelpers": {{"{}": "rbtest"}}}}"#, reg.host()),
    )
    .unwrap();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    let name = format!("{}/helped/app:1", reg.host());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = build_command(&state, &ctx, "linux/amd64", None, &["-t", &name, "--push"]);
    env.apply(&mut c).env("PATH", &path);
    let out = run(&mut c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&calls)
            .unwrap()
            .contains(&format!("get {}", reg.host()))
    );
}

#[test]
fn imagetools_create_merges_per_platform_pushes_by_mounting() {
    let Some(reg) = registry(Options::default()) else {
        return;
    };
    let proxy = Proxy::start(reg.port);
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    let amd = format!("{}/ci/app-amd64:1", proxy.host());
    let arm = format!("{}/ci/app-arm64:1", proxy.host());
    assert!(
        env.push_build(&state, &ctx, "linux/amd64", &[&amd], &[])
            .status
            .success()
    );
    assert!(
        env.push_build(&state, &ctx, "linux/arm64", &[&arm], &[])
            .status
            .success()
    );
    proxy.with(|s| s.upload_bytes = 0);

    let merged = format!("{}/ci/app:1", proxy.host());
    let dry = run_ok(env.rbuild(&state).args([
        "imagetools",
        "create",
        "--dry-run",
        "-t",
        &merged,
        &amd,
        &arm,
    ]));
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);

    let out = run(env.rbuild(&state).args([
        "imagetools",
        "create",
        "--annotation",
        "index:org.opencontainers.image.title=app",
        "-t",
        &merged,
        &amd,
        &arm,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        proxy.with(|s| s.upload_bytes),
        0,
        "blobs were mounted, not uploaded"
    );
    assert!(proxy.with(|s| s.requests.iter().any(|r| r.contains("from=ci/app-arm64"))));
    let inspect = stdout(&run_ok(env.rbuild(&state).args([
        "imagetools",
        "inspect",
        &merged,
    ])));
    assert!(
        inspect.contains("linux/amd64") && inspect.contains("linux/arm64"),
        "{inspect}"
    );
    let raw = run_ok(
        env.rbuild(&state)
            .args(["imagetools", "inspect", "--raw", &merged]),
    );
    let idx: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(idx["annotations"]["org.opencontainers.image.title"], "app");
    // The merged image builds for both platforms.
    let ctx2 = context(
        &work.path().join("ctx2"),
        &format!("FROM {merged}\nRUN cat /arch\n"),
        &[],
    );
    let b = run(env
        .rbuild(&work.path().join("state2"))
        .args(["build", "--platform", "linux/amd64,linux/arm64"])
        .arg(&ctx2));
    assert!(b.status.success(), "{}", stderr(&b));
}

#[test]
fn check_is_offline_and_bad_names_fail_early() {
    // No registry: --check skips what needs the base config, a bad -t fails before building.
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let ctx = context(
        &work.path().join("ctx"),
        "FROM registry.invalid/x/y:1\nENV A=$UNDEFINED\nRUN true\n",
        &[],
    );
    let out = run(env
        .rbuild(&work.path().join("state"))
        .args(["build", "--check"])
        .arg(&ctx));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rules that need the base config"),
        "{}",
        stderr(&out)
    );
    let bad = run(env
        .rbuild(&work.path().join("state"))
        .args(["build", "-t", "bad/Name", "--push"])
        .arg(&ctx));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad)
            .contains("invalid image reference \"bad/Name\": repository name must be lowercase"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn plain_http_needs_permission_and_registry_insecure_gives_it() {
    let Some(reg) = registry(Options::default()) else {
        return;
    };
    let env = Env::new();
    // Loopback is allowed plain HTTP by default; the config can require TLS.
    std::fs::write(
        env.path("rbuild.toml"),
        format!("[registry.\"{}\"]\ninsecure = false\n", reg.host()),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    let name = format!("{}/plain/app:1", reg.host());
    let refused = env.push_build(&state, &ctx, "linux/amd64", &[&name], &[]);
    assert!(!refused.status.success());
    let e = stderr(&refused);
    assert!(e.contains("answers only plain HTTP"), "{e}");
    assert!(
        e.contains("insecure = true") && e.contains("registry.insecure=true"),
        "{e}"
    );
    let mut c = build_command(&state, &ctx, "linux/amd64", None, &[]);
    env.apply(&mut c)
        .arg("-o")
        .arg(format!("type=registry,name={name},registry.insecure=true"));
    let allowed = run(&mut c);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
}

#[test]
fn mirrors_serve_pulls_and_chunked_uploads_work() {
    let Some(reg) = registry(Options::default()) else {
        return;
    };
    let proxy = Proxy::start(reg.port);
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let ctx = hello_context(&work.path().join("ctx"));
    // Chunked: every blob above 64 KiB goes up in PATCHes.
    let name = format!("{}/library/mirrored:1", proxy.host());
    let mut c = env.rbuild(&state);
    c.env("RBUILD_REGISTRY_CHUNK_SIZE", "65536")
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--build-context",
        ])
        .arg(format!(
            "busybox=oci-layout://{}",
            busybox_layout().display()
        ))
        .args(["-t", &name, "--push"])
        .arg(&ctx);
    let pushed = run(&mut c);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let patches = proxy.with(|s| {
        s.requests
            .iter()
            .filter(|r| r.starts_with("PATCH "))
            .count()
    });
    assert!(patches > 10, "{patches} PATCH requests");

    // docker.io/library/mirrored:1 comes from the mirror; Docker Hub is never asked.
    std::fs::write(
        env.path("rbuild.toml"),
        format!(
            "[registry.\"docker.io\"]\nmirrors = [\"{}\"]\nmirror-fallback = false\n",
            proxy.host()
        ),
    )
    .unwrap();
    let ctx2 = context(
        &work.path().join("ctx2"),
        "FROM mirrored:1\nRUN cat /hello\n",
        &[],
    );
    let b = run(env
        .rbuild(&work.path().join("state2"))
        .args(["build", "--platform", "linux/arm64"])
        .arg(&ctx2));
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(proxy.with(|s| {
        s.requests
            .iter()
            .any(|r| r.starts_with("GET /v2/library/mirrored/manifests/1"))
    }));
}

#[test]
fn bearer_token_auth_with_per_repository_scopes() {
    let tokens = TokenServer::start("alice", "tok-pw");
    let Some(reg) = registry(Options {
        extra: token_auth_config(&tokens),
        ..Options::default()
    }) else {
        return;
    };
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let login = run(pipe_password(
        env.rbuild(&state)
            .args(["login", "-u", "alice", "--password-stdin", &reg.host()]),
        "tok-pw",
    ));
    assert!(login.status.success(), "{}", stderr(&login));
    let ctx = hello_context(&work.path().join("ctx"));
    let app = format!("{}/tok/app:1", reg.host());
    let other = format!("{}/tok/other:1", reg.host());
    let pushed = env.push_build(
        &state,
        &ctx,
        "linux/amd64,linux/arm64",
        &[&app, &other],
        &[],
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let ctx2 = context(
        &work.path().join("ctx2"),
        &format!("FROM {app}\nRUN cat /hello\n"),
        &[],
    );
    let pulled = run(env
        .rbuild(&work.path().join("state2"))
        .args(["build", "--platform", "linux/arm64"])
        .arg(&ctx2));
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let requests = tokens.requests.lock().unwrap().clone();
    let has = |scopes: &[&str]| {
        requests.iter().any(|q| {
            let mut got: Vec<String> = q
                .split('&')
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|v| {
                    v.replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%2C", ",")
                })
                .collect();
            got.sort();
            let mut want: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            want.sort();
            got == want
        })
    };
    assert!(has(&["repository:tok/app:pull,push"]), "{requests:?}");
    assert!(
        has(&["repository:tok/other:pull,push", "repository:tok/app:pull"]),
        "the mount asks for pull on its source: {requests:?}"
    );
    assert!(has(&["repository:tok/app:pull"]), "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|q| q.contains("service=rbuild-test-registry"))
    );
}

#[test]
fn push_with_docker_media_types_puts_a_manifest_list() {
    let Some(reg) = registry(Options::default()) else {
        return;
    };
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let ctx = context(
        &work.path().join("ctx"),
        "FROM busybox\nCOPY hi /hi\n",
        &[("hi", "pushed\n")],
    );
    let name = format!("{}/team/docker-types:v1", reg.host());
    let mut c = env.rbuild(&state);
    c.args([
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-context",
    ])
    .arg(format!(
        "busybox=oci-layout://{}",
        busybox_layout().display()
    ))
    .args(["-t", &name, "-o", "type=registry,oci-mediatypes=false"])
    .arg(&ctx);
    let out = run(&mut c);
    assert!(out.status.success(), "{}", stderr(&out));
    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{name}"),
    ]));
    let list: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(
            e["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        let repo = name.trim_end_matches(":v1");
        let m = run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{repo}@{}", e["digest"].as_str().unwrap()),
        ]));
        let m: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(
                l["mediaType"],
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            );
        }
    }
    // The registry serves the arm64 image with its platform.
    let arm = run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{name}"),
    ]));
    let arm: serde_json::Value = serde_json::from_slice(&arm.stdout).unwrap();
    assert_eq!(arm["Architecture"], "arm64");
}
