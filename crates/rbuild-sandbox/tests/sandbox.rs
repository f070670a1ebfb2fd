//! End-to-end tests: each one runs the probe binary (helper dispatch, build
//! namespace, emulation, run) over a busybox root filesystem, as root and, where it
//! matters, as an unprivileged user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const PROBE: &str = env!("CARGO_BIN_EXE_rbuild-sandbox-probe");
const TEST_USER: &str = "rbsandbox";
/// A system account, so useradd gives it no subordinate ids.
const NOSUB_USER: &str = "rbsandbox-nosub";
const DEB_DIR: &str = "/tmp/rbuild-sandbox-test-debs";
const APPLETS: &[&str] = &[
    "sh", "echo", "id", "cat", "ls", "uname", "pwd", "env", "ip", "kill", "true", "sleep", "touch",
    "chown", "stat", "wc", "head", "grep", "mkdir", "readlink", "test", "printf", "tr", "sort",
    "dirname", "unshare", "mount", "ping", "su", "cp", "chmod", "tail",
];

/// Reports a missing precondition: a failure when `CI=true`, a loud skip otherwise.
fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "precondition missing in CI: {why}"
    );
    eprintln!("=== SKIPPED: {why} ===");
}

fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

fn run_ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// The host's static busybox, installed with apt when missing.
fn host_busybox() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let path = PathBuf::from("/bin/busybox");
        if !path.exists() {
            assert!(
                run_ok(Command::new("apt-get").args(["install", "-y", "busybox-static"])),
                "cannot install busybox-static"
            );
        }
        path
    })
    .clone()
}

/// busybox-static for a Debian architecture, downloaded once; `None` when impossible.
fn foreign_busybox(debian_arch: &str) -> Option<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let out = Path::new(DEB_DIR).join(format!("busybox-{debian_arch}"));
    if out.exists() {
        return Some(out);
    }
    std::fs::create_dir_all(DEB_DIR).ok()?;
    let find_deb = || {
        std::fs::read_dir(DEB_DIR)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                name.starts_with("busybox-static_")
                    && name.ends_with(&format!("_{debian_arch}.deb"))
            })
    };
    if find_deb().is_none() {
        run_ok(Command::new("dpkg").args(["--add-architecture", debian_arch]));
        run_ok(Command::new("apt-get").arg("update"));
        run_ok(
            Command::new("apt-get")
                .args([
                    "download",
                    "-o",
                    "APT::Sandbox::User=root",
                    &format!("busybox-static:{debian_arch}"),
                ])
                .current_dir(DEB_DIR),
        );
    }
    let deb = find_deb()?;
    let extract = Path::new(DEB_DIR).join(format!("extract-{debian_arch}"));
    if !run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extract)) {
        return None;
    }
    std::fs::rename(extract.join("bin/busybox"), &out).ok()?;
    Some(out)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    scratch: PathBuf,
}

/// A busybox rootfs as the only lower layer, plus empty upper/work/scratch dirs.
fn fixture(busybox: &Path, with_etc_files: bool) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let lower = base.join("lower");
    std::fs::create_dir_all(lower.join("bin")).unwrap();
    std::fs::copy(busybox, lower.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::create_dir_all(lower.join("tmp")).unwrap();
    std::fs::set_permissions(
        lower.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::fs::write(
        lower.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(lower.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    if with_etc_files {
        std::fs::write(lower.join("etc/hosts"), "# image hosts\n").unwrap();
    }
    for d in ["upper", "work", "scratch"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    Fixture {
        upper: base.join("upper"),
        work: base.join("work"),
        scratch: base.join("scratch"),
        lower,
        base,
        _tmp: tmp,
    }
}

struct Probe {
    stdout: String,
    stderr: String,
}

impl Probe {
    fn outcome(&self) -> &str {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("outcome: "))
            .unwrap_or_else(|| panic!("no outcome; stderr:\n{}", self.stderr))
    }

    fn error(&self) -> &str {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or_else(|| {
                panic!(
                    "no error; stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }
}

/// The first subordinate id of `user` in `file`, adding `user:START:65536` (a free
/// range) when the file has none.
fn ensure_subids(file: &str, user: &str) -> u32 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut next = 100_000u64;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 3 {
            continue;
        }
        let (start, count): (u64, u64) = (f[1].parse().unwrap_or(0), f[2].parse().unwrap_or(0));
        if f[0] == user && count >= 65536 {
            return start as u32;
        }
        next = next.max(start + count);
    }
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{user}:{next}:65536\n"));
    std::fs::write(file, text).unwrap();
    next as u32
}

/// Removes every subordinate id line of `user` from `file`.
fn drop_subids(file: &str, user: &str) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let kept: String = text
        .lines()
        .filter(|l| l.split(':').next() != Some(user))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept != text {
        std::fs::write(file, kept).unwrap();
    }
}

/// Creates the unprivileged test users once: TEST_USER with subordinate ids (its
/// first subuid and subgid are returned), NOSUB_USER without.
fn test_users() -> (u32, u32) {
    static ONCE: OnceLock<(u32, u32)> = OnceLock::new();
    *ONCE.get_or_init(|| {
        if !run_ok(Command::new("id").arg(TEST_USER)) {
            assert!(
                run_ok(Command::new("useradd").args(["-M", "-s", "/bin/sh", TEST_USER])),
                "useradd failed"
            );
        }
        if !run_ok(Command::new("id").arg(NOSUB_USER)) {
            assert!(
                run_ok(Command::new("useradd").args(["-r", "-M", "-s", "/bin/sh", NOSUB_USER])),
                "useradd failed"
            );
        }
        drop_subids("/etc/subuid", NOSUB_USER);
        drop_subids("/etc/subgid", NOSUB_USER);
        (
            ensure_subids("/etc/subuid", TEST_USER),
            ensure_subids("/etc/subgid", TEST_USER),
        )
    })
}

/// Hands the fixture to `user` (creating the test users first).
fn prepare_rootless_as(fx: &Fixture, user: &str) {
    test_users();
    let owner = format!("{user}:{user}");
    assert!(run_ok(
        Command::new("chown").arg("-R").arg(&owner).arg(&fx.base)
    ));
}

fn prepare_rootless(fx: &Fixture) {
    prepare_rootless_as(fx, TEST_USER);
}

fn host_uid(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn probe(fx: &Fixture, opts: &[&str], argv: &[&str], as_user: Option<&str>) -> Probe {
    probe_with_env(fx, opts, argv, as_user, &Default::default())
}

/// `probe` with extra variables in the probe's own environment (the caller's, which the
/// step must not see).
fn probe_with_env(
    fx: &Fixture,
    opts: &[&str],
    argv: &[&str],
    as_user: Option<&str>,
    env: &std::collections::BTreeMap<&str, &str>,
) -> Probe {
    let mut cmd = match as_user {
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--clear-groups",
                PROBE,
            ]);
            c
        }
        None => Command::new(PROBE),
    };
    cmd.arg("--scratch").arg(&fx.scratch);
    if !opts.contains(&"--dir") {
        cmd.arg("--lower")
            .arg(&fx.lower)
            .arg("--upper")
            .arg(&fx.upper)
            .arg("--work")
            .arg(&fx.work);
    }
    cmd.envs(env).args(opts).arg("--").args(argv);
    let out = cmd.output().unwrap();
    Probe {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn host_binfmt_state() -> (Vec<String>, usize) {
    let mut entries: Vec<String> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    (
        entries,
        mounts.lines().filter(|l| l.contains("binfmt_misc")).count(),
    )
}

macro_rules! require_root {
    () => {
        if !is_root() {
            skip("this test needs to run as root");
            return;
        }
    };
}

#[test]
fn echo_output_is_captured() {
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &[], &["echo", "hi"], None);
    assert_eq!(p.stdout, "hi\n");
    assert!(
        p.outcome().starts_with(r#"{"status":{"code":0}"#),
        "{}",
        p.stderr
    );
}

#[test]
fn exit_codes_and_signals_are_propagated() {
    let fx = fixture(&host_busybox(), true);
    let p = probe(
        &fx,
        &[],
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        None,
    );
    assert_eq!(p.stdout, "out\nerr\n");
    assert!(
        p.outcome().starts_with(r#"{"status":{"code":3}"#),
        "{}",
        p.stderr
    );
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &[], &["sh", "-c", "kill -9 $$"], None);
    assert!(
        p.outcome().starts_with(r#"{"status":{"signal":9}"#),
        "{}",
        p.stderr
    );
}

#[test]
fn env_cwd_and_user_are_applied() {
    require_root!();
    let fx = fixture(&host_busybox(), true);
    let opts = ["--env", "FOO=bar", "--cwd", "/work/dir", "--user", "nobody"];
    let p = probe(
        &fx,
        &opts,
        &[
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g; echo $HOME; echo $PATH",
        ],
        None,
    );
    assert_eq!(
        p.stdout,
        "bar\n/work/dir\n65534\n65534\n/nonexistent\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        "{}",
        p.stderr
    );
    assert!(
        fx.upper.join("work/dir").is_dir(),
        "the missing working directory is created in the layer"
    );
    let p = probe(
        &fixture(&host_busybox(), true),
        &["--user", "1234:5678"],
        &["id"],
        None,
    );
    assert_eq!(p.stdout, "uid=1234 gid=5678 groups=5678\n", "{}", p.stderr);
}

#[test]
fn unknown_user_is_named_in_the_error() {
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &["--user", "ghost"], &["id"], None);
    assert_eq!(
        p.error(),
        "unable to find user ghost: no matching entries in passwd file"
    );
}

#[test]
fn missing_command_is_a_clear_error() {
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &[], &["no-such-tool", "x"], None);
    assert!(
        p.error()
            .starts_with(r#"exec: "no-such-tool": executable file not found in $PATH"#),
        "{}",
        p.stderr
    );
}

#[test]
fn rootless_without_subids_runs_as_root_and_refuses_other_users() {
    require_root!();
    let fx = fixture(&host_busybox(), true);
    prepare_rootless_as(&fx, NOSUB_USER);
    let p = probe(
        &fx,
        &[],
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; echo x > /made-rootless",
        ],
        Some(NOSUB_USER),
    );
    let uid = host_uid(NOSUB_USER);
    let map: Vec<String> = p
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(p.stdout.lines().next(), Some("0"), "{}", p.stderr);
    assert_eq!(map, vec![format!("0 {uid} 1")], "{}", p.stderr);
    let meta = std::fs::metadata(fx.upper.join("made-rootless")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), uid);

    let fx = fixture(&host_busybox(), true);
    prepare_rootless_as(&fx, NOSUB_USER);
    let p = probe(&fx, &["--user", "nobody"], &["id"], Some(NOSUB_USER));
    let err = p.error();
    assert!(
        err.starts_with("user nobody (uid 65534) is not mapped in the build's user namespace"),
        "{}",
        p.stderr
    );
    assert!(
        err.contains(&format!(
            "add {NOSUB_USER}:100000:65536 to /etc/subuid and /etc/subgid"
        )) && err.contains("install uidmap"),
        "{err}"
    );
}

#[test]
fn rootless_with_subids_maps_the_full_range() {
    require_root!();
    let (subuid, subgid) = test_users();
    let fx = fixture(&host_busybox(), true);
    std::fs::write(
        fx.lower.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        fx.lower.join("etc/group"),
        "root:x:0:\nwheel:x:10:app\nnogroup:x:65534:\napp:x:1000:\n",
    )
    .unwrap();
    prepare_rootless(&fx);
    let p = probe(
        &fx,
        &[],
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; echo x > /chowned; chown 1000:1000 /chowned; stat -c %u:%g /chowned",
        ],
        Some(TEST_USER),
    );
    let uid = host_uid(TEST_USER);
    let map: Vec<String> = p
        .stdout
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        map,
        vec![format!("0 {uid} 1"), format!("1 {subuid} 65536")],
        "{}",
        p.stderr
    );
    assert_eq!(p.stdout.lines().nth(2), Some("1000:1000"), "{}", p.stderr);
    let meta = std::fs::metadata(fx.upper.join("chowned")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid()),
        (subuid + 999, subgid + 999),
        "container id 1000 is subordinate id start + 999 on the host"
    );

    let fx2 = fixture(&host_busybox(), true);
    std::fs::copy(fx.lower.join("etc/passwd"), fx2.lower.join("etc/passwd")).unwrap();
    std::fs::copy(fx.lower.join("etc/group"), fx2.lower.join("etc/group")).unwrap();
    prepare_rootless(&fx2);
    let p = probe(
        &fx2,
        &["--user", "app"],
        &["sh", "-c", "id; echo $HOME"],
        Some(TEST_USER),
    );
    assert!(
        p.stdout
            .starts_with("uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)\n/home/app\n"),
        "{}\n{}",
        p.stdout,
        p.stderr
    );
    let p = probe(
        &fx2,
        &["--user", "1000"],
        &[
            "sh",
            "-c",
            "echo y > /tmp/by-app; stat -c %u:%g /tmp/by-app",
        ],
        Some(TEST_USER),
    );
    assert_eq!(p.stdout, "1000:1000\n", "{}", p.stderr);
    let meta = std::fs::metadata(fx2.upper.join("tmp/by-app")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (subuid + 999, subgid + 999));
    let p = probe(&fx2, &["--user", "nobody"], &["id", "-u"], Some(TEST_USER));
    assert_eq!(p.stdout, "65534\n", "{}", p.stderr);

    // A layer file unpacked in the namespace as 1000:1000 is subuid+999 on the host.
    let fx3 = fixture(&host_busybox(), true);
    std::fs::write(fx3.lower.join("owned"), "x").unwrap();
    prepare_rootless(&fx3);
    std::os::unix::fs::chown(
        fx3.lower.join("owned"),
        Some(subuid + 999),
        Some(subgid + 999),
    )
    .unwrap();
    let p = probe(
        &fx3,
        &[],
        &["stat", "-c", "%u:%g", "/owned"],
        Some(TEST_USER),
    );
    assert_eq!(p.stdout, "1000:1000\n", "{}", p.stderr);
}

fn arm64_children_are_emulated(as_user: Option<&str>) {
    let Some(busybox) = foreign_busybox("arm64") else {
        skip("cannot download busybox-static:arm64");
        return;
    };
    let fx = fixture(&busybox, true);
    if let Some(user) = as_user {
        prepare_rootless_as(&fx, user);
    }
    let before = host_binfmt_state();
    let script = r#"grep -c '^Seccomp:.2' /proc/self/status; sh -c "uname -m"; exec -a echo /bin/busybox argv0 kept"#;
    let p = probe(
        &fx,
        &["--platform", "linux/arm64"],
        &["sh", "-c", script],
        as_user,
    );
    assert_eq!(p.stdout, "1\naarch64\nargv0 kept\n", "{}", p.stderr);
    assert!(p.stderr.contains("emulation: linux/arm64 emulated by /usr/bin/qemu-aarch64-static (private handler: true)"), "{}", p.stderr);
    assert_eq!(
        host_binfmt_state(),
        before,
        "the host's binfmt_misc must not change"
    );
}

#[test]
fn arm64_children_are_emulated_as_root() {
    require_root!();
    arm64_children_are_emulated(None);
}

#[test]
fn arm64_children_are_emulated_rootless() {
    require_root!();
    arm64_children_are_emulated(Some(TEST_USER));
}

#[test]
fn arm64_children_are_emulated_rootless_without_subids() {
    require_root!();
    arm64_children_are_emulated(Some(NOSUB_USER));
}

#[test]
fn i386_runs_natively_under_the_filter() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: linux/386 runs natively only on amd64 hosts");
        return;
    }
    let Some(busybox) = foreign_busybox("i386") else {
        skip("cannot download busybox-static:i386");
        return;
    };
    let fx = fixture(&busybox, true);
    let p = probe(
        &fx,
        &["--platform", "linux/386"],
        &[
            "sh",
            "-c",
            "uname -m; grep -c '^Seccomp:.2' /proc/self/status; sh -c 'echo hi'",
        ],
        None,
    );
    assert_eq!(p.stdout, "i686\n1\nhi\n", "{}", p.stderr);
}

#[test]
fn foreign_binary_without_emulator_names_its_platform() {
    if Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
        || std::env::consts::ARCH == "aarch64"
    {
        eprintln!("skipped: this host can run arm64 binaries");
        return;
    }
    let Some(busybox) = foreign_busybox("arm64") else {
        skip("cannot download busybox-static:arm64");
        return;
    };
    let fx = fixture(&busybox, true);
    let p = probe(&fx, &["--no-emulation"], &["/bin/sh", "-c", "true"], None);
    assert!(
        p.error().starts_with("exec format error: /bin/sh is a linux/arm64 binary and no emulator is registered for it"),
        "{}",
        p.stderr
    );
}

#[test]
fn network_none_has_only_loopback() {
    let fx = fixture(&host_busybox(), true);
    let p = probe(
        &fx,
        &["--network", "none"],
        &["sh", "-c", "cat /proc/net/dev; ip link show lo"],
        None,
    );
    let interfaces: Vec<&str> = p
        .stdout
        .lines()
        .skip(2)
        .take_while(|l| l.contains(':') && !l.starts_with('1'))
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(interfaces, vec!["lo"], "{}", p.stdout);
    assert!(
        p.stdout.contains("<LOOPBACK,UP,LOWER_UP>"),
        "loopback is up: {}",
        p.stdout
    );
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &[], &["cat", "/proc/net/dev"], None);
    assert!(
        p.stdout.lines().count() > 3 || !Path::new("/sys/class/net/eth0").exists(),
        "host network shows the host's interfaces"
    );
}

#[test]
fn host_processes_are_invisible() {
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &[], &["ls", "/proc"], None);
    let pids: Vec<u32> = p
        .stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(pids.contains(&1), "{}", p.stdout);
    assert!(pids.len() <= 2, "only the step's init and ls: {pids:?}");
}

#[test]
fn writes_land_in_the_upper_dir_and_mountpoints_are_reported() {
    let fx = fixture(&host_busybox(), false);
    let opts = ["--hosts", "10.1.2.3 special\n", "--hostname", "stepbox"];
    let p = probe(
        &fx,
        &opts,
        &[
            "sh",
            "-c",
            "echo data > /newfile; cat /etc/hosts; cat /etc/hostname; echo more >> /etc/hosts",
        ],
        None,
    );
    assert_eq!(p.stdout, "10.1.2.3 special\nstepbox\n", "{}", p.stderr);
    assert_eq!(
        std::fs::read_to_string(fx.upper.join("newfile")).unwrap(),
        "data\n"
    );
    assert!(!fx.lower.join("newfile").exists());
    assert_eq!(
        std::fs::metadata(fx.upper.join("etc/hosts")).unwrap().len(),
        0,
        "/etc/hosts content stays out of the layer"
    );
    assert_eq!(
        p.outcome(),
        r#"{"status":{"code":0},"created":["proc","dev","sys","etc/hosts","etc/resolv.conf","etc/hostname"]}"#
    );
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &[], &["true"], None);
    assert!(
        !p.outcome().contains("etc/hosts"),
        "an existing /etc/hosts is not reported: {}",
        p.outcome()
    );
    assert!(
        !fx.upper.join("etc/hosts").exists(),
        "an existing /etc/hosts is not copied up"
    );
}

#[test]
fn a_plain_directory_rootfs_is_changed_in_place() {
    let fx = fixture(&host_busybox(), true);
    let dir = fx.lower.to_str().unwrap().to_string();
    let p = probe(
        &fx,
        &["--dir", &dir],
        &["sh", "-c", "echo in-place > /marker"],
        None,
    );
    assert!(
        p.outcome().starts_with(r#"{"status":{"code":0}"#),
        "{}",
        p.stderr
    );
    assert_eq!(
        std::fs::read_to_string(fx.lower.join("marker")).unwrap(),
        "in-place\n"
    );
}

#[test]
fn symlinked_mountpoints_stay_inside_the_rootfs() {
    let fx = fixture(&host_busybox(), false);
    let marker = format!("rbuild-sandbox-escape-{}", std::process::id());
    std::os::unix::fs::symlink(
        format!("../../../../../{marker}"),
        fx.lower.join("etc/hosts"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("/{marker}-resolv"),
        fx.lower.join("etc/resolv.conf"),
    )
    .unwrap();
    let p = probe(
        &fx,
        &["--hosts", "10.9.9.9 inside\n"],
        &["cat", "/etc/hosts"],
        None,
    );
    assert_eq!(p.stdout, "10.9.9.9 inside\n", "{}", p.stderr);
    assert!(
        !Path::new("/").join(&marker).exists(),
        "a mountpoint escaped to the host"
    );
    assert!(
        !Path::new("/").join(format!("{marker}-resolv")).exists(),
        "a mountpoint escaped to the host"
    );
    assert!(fx.upper.join(&marker).is_file());
    let expected = format!(r#""{marker}","{marker}-resolv","etc/hostname"]}}"#);
    assert!(p.outcome().ends_with(&expected), "{}", p.outcome());
}

/// Mount points (field 5 of mountinfo) listed by a step.
fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

/// What a step sees of the host. `insecure` steps may look at pid 1's root (it is theirs);
/// confined ones lack the capabilities to look into pid 1 at all.
fn isolation(as_user: Option<&str>, insecure: bool) {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("host-secret");
    std::fs::write(&marker, "host secret\n").unwrap();
    let marker_rel = marker.strip_prefix("/").unwrap().display().to_string();
    let fx = fixture(&host_busybox(), true);
    if let Some(user) = as_user {
        prepare_rootless_as(&fx, user);
    }
    let script = format!(
        "cat /proc/self/mountinfo; echo ==; \
         cat /../../../{m} /proc/1/root/{m} /proc/1/root/../../{m} /proc/self/root/../{m} /proc/1/cwd/../../{m} 2>/dev/null; \
         ls /proc/1/root/ 2>/dev/null | grep -c . ; ls / | grep -c . ; \
         test -e /proc/1/root/work && echo host-work-visible; \
         ls /proc | grep -c '^[0-9]'",
        m = marker_rel
    );
    let opts: &[&str] = if insecure {
        &["--security", "insecure"]
    } else {
        &[]
    };
    let p = probe(&fx, opts, &["sh", "-c", &script], as_user);
    let (mountinfo, rest) = p
        .stdout
        .split_once("==\n")
        .unwrap_or_else(|| panic!("{}", p.stderr));
    let allowed = |m: &str| {
        m == "/"
            || ["/proc", "/dev", "/sys"]
                .iter()
                .any(|p| m == *p || m.starts_with(&format!("{p}/")))
            || ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"].contains(&m)
    };
    let points = mount_points(mountinfo);
    assert!(points.contains(&"/proc".to_string()), "{mountinfo}");
    for m in &points {
        assert!(
            allowed(m),
            "host mount point {m} visible in the step:\n{mountinfo}"
        );
    }
    assert!(
        !rest.contains("host secret"),
        "a host file was read: {rest}"
    );
    assert!(!rest.contains("host-work-visible"), "{rest}");
    let counts: Vec<&str> = rest.lines().collect();
    assert_eq!(counts.len(), 3, "{rest}\n{}", p.stderr);
    if insecure {
        assert_eq!(
            counts[0], counts[1],
            "/proc/1/root is the step's root: {rest}"
        );
    } else {
        assert_eq!(counts[0], "0", "pid 1's root is out of reach: {rest}");
    }
    assert!(
        counts[2].parse::<u32>().unwrap() <= 4,
        "only the step's processes are visible: {rest}"
    );
}

#[test]
fn steps_cannot_see_the_host_as_root() {
    isolation(None, false);
    isolation(None, true);
}

#[test]
fn steps_cannot_see_the_host_rootless() {
    require_root!();
    isolation(Some(TEST_USER), false);
    isolation(Some(NOSUB_USER), false);
    isolation(Some(TEST_USER), true);
}

fn masks_and_dev(as_user: Option<&str>) {
    let fx = fixture(&host_busybox(), true);
    if let Some(user) = as_user {
        prepare_rootless_as(&fx, user);
    }
    let script = "\
        ls -A /dev | sort | tr '\\n' ' '; echo; \
        for l in ptmx fd stdin stdout stderr; do printf '%s ' $(readlink /dev/$l); done; echo; \
        test -c /dev/null && echo > /dev/null && echo null-ok; \
        head -c 4 /dev/urandom | wc -c; head -c 3 /dev/zero | wc -c; \
        test -c /dev/pts/ptmx && echo pts-ok; test -d /dev/shm && touch /dev/shm/x && echo shm-ok; \
        for p in /proc/acpi /proc/asound /proc/scsi /sys/firmware /sys/devices/virtual/powercap; do \
          test -e $p && echo \"$p: $(ls -A $p | wc -l)\"; done; \
        for p in /proc/kcore /proc/keys /proc/timer_list /proc/latency_stats /proc/sched_debug /proc/timer_stats; do \
          test -e $p && echo \"$p: $(cat $p | wc -c)\"; done; \
        for p in /proc/sys/kernel/hostname /proc/sysrq-trigger /sys/kernel/x /sys/fs/cgroup/x /proc/bus/x /proc/fs/x /proc/irq/x; do \
          test -e $(dirname $p) && (echo 1 > $p) 2>/dev/null && echo \"$p writable\"; done; \
        echo end";
    let p = probe(&fx, &[], &["sh", "-c", script], as_user);
    let lines: Vec<&str> = p.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("fd full null ptmx pts random shm stderr stdin stdout tty urandom zero "),
        "{}\n{}",
        p.stdout,
        p.stderr
    );
    assert_eq!(
        lines[1],
        "pts/ptmx /proc/self/fd /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2 "
    );
    assert_eq!(&lines[2..7], &["null-ok", "4", "3", "pts-ok", "shm-ok"]);
    for line in &lines[7..] {
        if let Some((path, size)) = line.split_once(": ") {
            assert_eq!(size, "0", "{path} is masked: {}", p.stdout);
        }
    }
    assert!(!p.stdout.contains("writable"), "{}", p.stdout);
    assert_eq!(lines.last(), Some(&"end"), "{}", p.stderr);
    assert!(p.stdout.contains("/proc/keys: 0"), "{}", p.stdout);
    assert!(p.stdout.contains("/sys/firmware: 0") || !Path::new("/sys/firmware").exists());
    let dev = std::fs::read_dir(fx.upper.join("dev")).unwrap().count();
    assert_eq!(dev, 0, "nothing of /dev reaches the layer");
}

#[test]
fn masked_paths_and_dev_as_root() {
    masks_and_dev(None);
}

#[test]
fn masked_paths_and_dev_rootless() {
    require_root!();
    masks_and_dev(Some(TEST_USER));
}

fn extra_mounts(as_user: Option<&str>) {
    let fx = fixture(&host_busybox(), true);
    let cache = fx.base.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("old"), "cached\n").unwrap();
    let secret = fx.base.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    // A symlink in the rootfs pointing far outside must not lead a mountpoint out.
    let escape = format!("rbuild-sandbox-mount-escape-{}", std::process::id());
    std::os::unix::fs::symlink(
        format!("../../../../../../{escape}"),
        fx.lower.join("sneaky"),
    )
    .unwrap();
    if let Some(user) = as_user {
        prepare_rootless_as(&fx, user);
    }
    let bind = format!("{}:/var/cache/app", cache.display());
    let secret_bind = format!("{}:/run/secrets/token:ro", secret.display());
    let ro_cache = format!("{}:/ro-cache:ro", cache.display());
    let sneaky = format!("{}:/sneaky/inner", cache.display());
    let opts = [
        "--bind",
        &bind,
        "--tmpfs",
        "/var/cache/app/tmp:1048576",
        "--bind",
        &secret_bind,
        "--bind",
        &ro_cache,
        "--tmpfs",
        "scratch",
        "--bind",
        &sneaky,
    ];
    let script = "\
        cat /var/cache/app/old /run/secrets/token; echo new > /var/cache/app/new; \
        (echo x > /run/secrets/token) 2>/dev/null || echo secret-ro; \
        (echo x > /ro-cache/y) 2>/dev/null || echo cache-ro; \
        (echo x > /ro-cache/tmp/y) 2>/dev/null || echo cache-ro-below; \
        grep ' /var/cache/app/tmp ' /proc/self/mountinfo | grep -c 'tmpfs.*size=1024k'; \
        echo t > /var/cache/app/tmp/t; echo s > /scratch/s; ls /sneaky/inner | grep -c old";
    let p = probe(&fx, &opts, &["sh", "-c", script], as_user);
    assert_eq!(
        p.stdout, "cached\ns3cret\nsecret-ro\ncache-ro\ncache-ro-below\n1\n1\n",
        "{}",
        p.stderr
    );
    assert_eq!(std::fs::read_to_string(cache.join("new")).unwrap(), "new\n");
    assert!(
        !cache.join("tmp/t").exists(),
        "the tmpfs hid its contents from the cache dir"
    );
    assert!(
        !fx.upper.join("scratch/s").exists(),
        "tmpfs contents stay out of the layer"
    );
    assert!(!fx.upper.join("var/cache/app/new").exists());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret\n");
    assert!(
        !Path::new("/").join(&escape).exists(),
        "a mountpoint escaped the rootfs"
    );
    assert!(fx.upper.join(&escape).join("inner").is_dir());
    let outcome = p.outcome();
    for created in [
        "\"var\"",
        "\"var/cache\"",
        "\"var/cache/app\"",
        "\"var/cache/app/tmp\"",
        "\"run/secrets/token\"",
        "\"ro-cache\"",
        "\"scratch\"",
    ] {
        assert!(outcome.contains(created), "{created} in {outcome}");
    }
    assert!(
        fx.upper.join("run/secrets/token").is_file()
            && std::fs::metadata(fx.upper.join("run/secrets/token"))
                .unwrap()
                .len()
                == 0,
        "the secret's mountpoint is an empty file in the layer"
    );
}

#[test]
fn extra_mounts_as_root() {
    extra_mounts(None);
}

#[test]
fn extra_mounts_rootless() {
    require_root!();
    extra_mounts(Some(TEST_USER));
}

#[test]
fn a_missing_bind_source_is_a_clear_error() {
    let fx = fixture(&host_busybox(), true);
    let p = probe(&fx, &["--bind", "/nonexistent/src:/x"], &["true"], None);
    assert!(
        p.error()
            .starts_with("invalid step: mount source /nonexistent/src for /x:"),
        "{}",
        p.stderr
    );
}

/// Pids of processes whose command line is exactly `sleep <needle>`.
fn processes_with(needle: &str) -> Vec<u32> {
    let wanted = format!("sleep\0{needle}\0").into_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok() == Some(wanted.clone()))
        .collect()
}

fn killed_mid_run(signal: i32, expected_code: Option<i32>, as_user: Option<&str>) {
    let fx = fixture(&host_busybox(), true);
    if let Some(user) = as_user {
        prepare_rootless_as(&fx, user);
    }
    let offset = if as_user.is_some() { 5 } else { 0 };
    let needle = format!(
        "{}",
        700_000 + std::process::id() * 100 + signal as u32 + offset
    );
    let mut cmd = match as_user {
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--clear-groups",
                PROBE,
            ]);
            c
        }
        None => Command::new(PROBE),
    };
    cmd.arg("--scratch")
        .arg(&fx.scratch)
        .arg("--lower")
        .arg(&fx.lower)
        .arg("--upper")
        .arg(&fx.upper)
        .arg("--work")
        .arg(&fx.work)
        .args([
            "--",
            "sh",
            "-c",
            &format!("sleep {needle} & sleep {needle}; echo never"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes_with(&needle).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::try_from(signal).unwrap(),
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), expected_code, "{status:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !processes_with(&needle).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "step processes survived their builder"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let scratch = fx.scratch.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&scratch), "a step mount outlived the step");
}

#[test]
fn sigterm_kills_the_step_and_exits_143() {
    killed_mid_run(libc::SIGTERM, Some(143), None);
}

#[test]
fn sigint_kills_the_step_and_exits_130() {
    killed_mid_run(libc::SIGINT, Some(130), None);
}

#[test]
fn sigkill_of_the_builder_kills_the_step() {
    killed_mid_run(libc::SIGKILL, None, None);
}

#[test]
fn signals_kill_rootless_steps_too() {
    require_root!();
    killed_mid_run(libc::SIGTERM, Some(143), Some(TEST_USER));
    killed_mid_run(libc::SIGKILL, None, Some(NOSUB_USER));
}

fn platforms(qemu_path: &str) -> String {
    let out = Command::new(PROBE)
        .arg("--platforms")
        .env("RBUILD_QEMU_PATH", qemu_path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn line_of<'a>(report: &'a str, platform: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(platform))
        .unwrap_or_else(|| panic!("no {platform} line in:\n{report}"))
}

#[test]
fn platform_report_matches_the_machine() {
    let host = rbuild_core::Platform::host().to_string();
    let with = platforms("/usr/bin");
    assert_eq!(
        with.lines()
            .next()
            .and_then(|l| l.split_whitespace().next()),
        Some(host.as_str())
    );
    assert!(line_of(&with, &host).ends_with(" native"), "{with}");
    if std::env::consts::ARCH == "x86_64" && Path::new("/usr/bin/qemu-aarch64-static").exists() {
        assert_eq!(
            line_of(&with, "linux/arm64"),
            "linux/arm64      emulated (private binfmt_misc, /usr/bin/qemu-aarch64-static)",
            "{with}"
        );
        assert_eq!(
            line_of(&with, "linux/arm/v6"),
            "linux/arm/v6     emulated (private binfmt_misc, /usr/bin/qemu-arm-static)"
        );
    }
    let empty = tempfile::tempdir().unwrap();
    let without = platforms(empty.path().to_str().unwrap());
    assert!(line_of(&without, &host).ends_with(" native"), "{without}");
    if std::env::consts::ARCH == "x86_64"
        && !Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
    {
        assert_eq!(
            line_of(&without, "linux/arm64"),
            "linux/arm64      unavailable (qemu-aarch64-static not found; install it with: apt-get install qemu-user-static)",
            "{without}"
        );
    }
    assert_eq!(
        with.lines().count(),
        rbuild_sandbox::KNOWN_PLATFORMS.len(),
        "{with}"
    );
}

/// `Key:\tvalue` lines of /proc/self/status as the step printed them.
fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

/// The capability set with every capability this kernel knows.
fn full_capabilities() -> String {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    format!("{:016x}", (1u64 << (last + 1)) - 1)
}

const CONFINEMENT_SCRIPT: &str = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; \
     mount -t tmpfs x /mnt 2>/dev/null && echo mount-ok; \
     unshare -U true 2>/dev/null && echo unshare-ok; \
     unshare -m true 2>/dev/null && echo unshare-mnt-ok; \
     echo end";

fn default_confinement(as_user: Option<&str>) {
    let fx = fixture(&host_busybox(), true);
    std::fs::create_dir_all(fx.lower.join("mnt")).unwrap();
    if let Some(user) = as_user {
        prepare_rootless_as(&fx, user);
    }
    let p = probe(&fx, &[], &["sh", "-c", CONFINEMENT_SCRIPT], as_user);
    assert_eq!(p.stdout.lines().last(), Some("end"), "{}", p.stderr);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&p.stdout, key), "00000000a80425fb", "{key}");
    }
    assert_eq!(status_field(&p.stdout, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&p.stdout, "CapAmb"), "0000000000000000");
    assert_eq!(status_field(&p.stdout, "NoNewPrivs"), "1");
    assert_eq!(status_field(&p.stdout, "Seccomp"), "2");
    for refused in ["mount-ok", "unshare-ok", "unshare-mnt-ok"] {
        assert!(!p.stdout.contains(refused), "{refused}:\n{}", p.stdout);
    }
    // Another user gets no capabilities at all, and the same bounding set.
    let p = probe(
        &fx,
        &["--user", "65534"],
        &["sh", "-c", CONFINEMENT_SCRIPT],
        as_user,
    );
    assert_eq!(status_field(&p.stdout, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&p.stdout, "CapBnd"), "00000000a80425fb");
    assert_eq!(status_field(&p.stdout, "Seccomp"), "2");
}

#[test]
fn steps_get_dockers_default_confinement_as_root() {
    default_confinement(None);
}

#[test]
fn steps_get_dockers_default_confinement_rootless() {
    require_root!();
    default_confinement(Some(TEST_USER));
}

fn insecure_confinement(as_user: Option<&str>) {
    let fx = fixture(&host_busybox(), true);
    std::fs::create_dir_all(fx.lower.join("mnt")).unwrap();
    if let Some(user) = as_user {
        prepare_rootless_as(&fx, user);
    }
    let p = probe(
        &fx,
        &["--security", "insecure"],
        &["sh", "-c", CONFINEMENT_SCRIPT],
        as_user,
    );
    assert_eq!(p.stdout.lines().last(), Some("end"), "{}", p.stderr);
    let full = full_capabilities();
    assert_eq!(status_field(&p.stdout, "CapEff"), full);
    assert_eq!(status_field(&p.stdout, "CapBnd"), full);
    assert_eq!(status_field(&p.stdout, "NoNewPrivs"), "0");
    assert_eq!(status_field(&p.stdout, "Seccomp"), "0");
    for allowed in ["mount-ok", "unshare-ok", "unshare-mnt-ok"] {
        assert!(p.stdout.contains(allowed), "{allowed}:\n{}", p.stdout);
    }
}

#[test]
fn insecure_steps_keep_every_capability_and_no_filter_as_root() {
    insecure_confinement(None);
}

#[test]
fn insecure_steps_keep_every_capability_and_no_filter_rootless() {
    require_root!();
    insecure_confinement(Some(TEST_USER));
}

/// Every process a step can see carries nothing of the caller's environment, in both
/// security modes (insecure steps may read pid 1's environment, so that is where it shows).
fn no_caller_environment(as_user: Option<&str>) {
    const CANARY: &str = "canary-7f3a91c2-of-the-caller";
    for opts in [&[][..], &["--security", "insecure"][..]] {
        let fx = fixture(&host_busybox(), true);
        if let Some(user) = as_user {
            prepare_rootless_as(&fx, user);
        }
        let mut all = opts.to_vec();
        all.extend(["--env", "STEP_OWN=visible-to-the-step"]);
        let script = "for f in /proc/[0-9]*/environ; do echo \"== $f\"; tr '\\0' '\\n' < $f; done 2>&1; \
                      tr '\\0' '\\n' < /proc/1/environ | wc -c; echo end";
        let mut cmd_env = std::collections::BTreeMap::new();
        cmd_env.insert("RBUILD_TEST_CANARY", CANARY);
        let p = probe_with_env(&fx, &all, &["sh", "-c", script], as_user, &cmd_env);
        assert_eq!(p.stdout.lines().last(), Some("end"), "{}", p.stderr);
        assert!(!p.stdout.contains(CANARY), "{opts:?}: {}", p.stdout);
        assert!(
            !p.stdout.contains("RBUILD_IN_USERNS"),
            "{opts:?}: {}",
            p.stdout
        );
        assert!(
            p.stdout.contains("STEP_OWN=visible-to-the-step"),
            "{opts:?}: {}",
            p.stdout
        );
        if !opts.is_empty() {
            let lines: Vec<&str> = p.stdout.lines().collect();
            assert_eq!(
                lines[lines.len() - 2],
                "0",
                "pid 1 has an empty environment"
            );
        }
    }
}

#[test]
fn steps_see_nothing_of_the_callers_environment_as_root() {
    no_caller_environment(None);
}

#[test]
fn steps_see_nothing_of_the_callers_environment_rootless() {
    require_root!();
    no_caller_environment(Some(TEST_USER));
}

#[test]
fn chown_su_and_ping_work_under_the_default_confinement() {
    let fx = fixture(&host_busybox(), true);
    let script = "chown 65534:65534 /tmp && stat -c %u:%g /tmp; \
                  su -s /bin/sh -c 'id -u' nobody; \
                  ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok; \
                  cp /bin/busybox /tmp/bb && chmod 4755 /tmp/bb && stat -c %a /tmp/bb";
    let p = probe(&fx, &["--network", "none"], &["sh", "-c", script], None);
    assert_eq!(
        p.stdout, "65534:65534\n65534\nping-ok\n4755\n",
        "{}",
        p.stderr
    );
}

/// A busybox rootfs with a setuid-root copy of busybox at /bin/suid-busybox.
fn suid_fixture() -> Fixture {
    let fx = fixture(&host_busybox(), true);
    let suid = fx.lower.join("bin/suid-busybox");
    std::fs::copy(host_busybox(), &suid).unwrap();
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    fx
}

/// `no_new_privs` means a setuid-root program run by another user stays that user (busybox
/// `su` says so); insecure steps have no `no_new_privs`, so there `su` gets as far as
/// asking for root's password.
#[test]
fn setuid_bits_do_not_elevate_under_no_new_privs() {
    require_root!();
    let fx = suid_fixture();
    let script = "(exec -a su /bin/suid-busybox -c 'id -u' root </dev/null) 2>&1; true";
    let confined = probe(&fx, &["--user", "65534"], &["sh", "-c", script], None);
    assert_eq!(
        confined.stdout, "su: must be suid to work properly\n",
        "{}",
        confined.stderr
    );
    let fx = suid_fixture();
    let insecure = probe(
        &fx,
        &["--user", "65534", "--security", "insecure"],
        &["sh", "-c", script],
        None,
    );
    assert!(
        insecure.stdout.ends_with("su: incorrect password\n"),
        "{}{}",
        insecure.stdout,
        insecure.stderr
    );
}
