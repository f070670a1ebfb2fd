//! End-to-end tests: each one runs the probe binary (helper dispatch, build
//! namespace, emulation, run) over a busybox root filesystem, as root and, where it
//! matters, as an unprivileged user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const PROBE: &str = env!("CARGO_BIN_EXE_rbuild-sandbox-probe");
const TEST_USER: &str = "rbsandbox";
const DEB_DIR: &str = "/tmp/rbuild-sandbox-test-debs";
const APPLETS: &[&str] = &[
    "sh", "echo", "id", "cat", "ls", "uname", "pwd", "env", "ip", "kill", "true",
];

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

/// Creates the unprivileged test user if needed and hands it the fixture.
fn prepare_rootless(fx: &Fixture) {
    if !run_ok(Command::new("id").arg(TEST_USER)) {
        assert!(
            run_ok(Command::new("useradd").args(["-M", "-s", "/bin/sh", TEST_USER])),
            "useradd failed"
        );
    }
    let owner = format!("{TEST_USER}:{TEST_USER}");
    assert!(run_ok(
        Command::new("chown").arg("-R").arg(&owner).arg(&fx.base)
    ));
}

fn probe(fx: &Fixture, opts: &[&str], argv: &[&str], as_user: Option<&str>) -> Probe {
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
    cmd.args(opts).arg("--").args(argv);
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
            eprintln!("skipped: this test needs to run as root");
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
fn rootless_runs_as_root_and_refuses_unmapped_users() {
    require_root!();
    let fx = fixture(&host_busybox(), true);
    prepare_rootless(&fx);
    let p = probe(
        &fx,
        &[],
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; echo x > /made-rootless",
        ],
        Some(TEST_USER),
    );
    let host_uid = String::from_utf8(
        Command::new("id")
            .args(["-u", TEST_USER])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let map: Vec<String> = p
        .stdout
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(p.stdout.lines().next(), Some("0"), "{}", p.stderr);
    assert_eq!(
        map,
        vec![
            "0".to_string(),
            host_uid.trim().to_string(),
            "1".to_string()
        ]
    );
    let meta = std::fs::metadata(fx.upper.join("made-rootless")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta).to_string(),
        host_uid.trim()
    );

    let fx = fixture(&host_busybox(), true);
    prepare_rootless(&fx);
    let p = probe(&fx, &["--user", "nobody"], &["id"], Some(TEST_USER));
    assert!(
        p.error()
            .starts_with("user nobody (uid 65534) is not mapped in the build's user namespace"),
        "{}",
        p.stderr
    );
}

fn arm64_children_are_emulated(as_user: Option<&str>) {
    let Some(busybox) = foreign_busybox("arm64") else {
        eprintln!("skipped: cannot download busybox-static:arm64");
        return;
    };
    let fx = fixture(&busybox, true);
    if as_user.is_some() {
        prepare_rootless(&fx);
    }
    let before = host_binfmt_state();
    let script = r#"sh -c "uname -m"; exec -a echo /bin/busybox argv0 kept"#;
    let p = probe(
        &fx,
        &["--platform", "linux/arm64"],
        &["sh", "-c", script],
        as_user,
    );
    assert_eq!(p.stdout, "aarch64\nargv0 kept\n", "{}", p.stderr);
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
fn i386_reports_i686() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: linux/386 runs natively only on amd64 hosts");
        return;
    }
    let Some(busybox) = foreign_busybox("i386") else {
        eprintln!("skipped: cannot download busybox-static:i386");
        return;
    };
    let fx = fixture(&busybox, true);
    let p = probe(
        &fx,
        &["--platform", "linux/386"],
        &["sh", "-c", "uname -m"],
        None,
    );
    assert_eq!(p.stdout, "i686\n", "{}", p.stderr);
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
        eprintln!("skipped: cannot download busybox-static:arm64");
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
