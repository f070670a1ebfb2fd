//! `apt-get install` in a RUN step on the Debian fixture, natively and under QEMU: the
//! step reaches the host's Debian mirror over the host network (so name resolution works
//! inside), apt switches to its `_apt` user to download, and dpkg installs and configures
//! the package. The installed program then runs in the next step. Slow (minutes under
//! QEMU): they run only with `RBUILD_SLOW_TESTS=1`.

mod common;

use common::*;

/// A tiny package with no dependencies beyond libc, and what its program prints.
const PACKAGE: &str = "hello";
const GREETING: &str = "Hello, world!\n";

const DOCKERFILE: &str = "\
FROM debian
RUN apt-get update && apt-get install -y --no-install-recommends hello \
    && ls /var/lib/apt/lists > /apt-lists && rm -rf /var/lib/apt/lists/*
RUN hello && hello > /hello.out && dpkg-query -W -f='${Status}' hello > /hello.status \
    && uname -m > /machine
";

/// The ELF machine of a binary (little-endian: both platforms here are).
fn elf_machine(binary: &[u8]) -> u16 {
    assert_eq!(&binary[..4], b"\x7fELF", "not an ELF file");
    u16::from_le_bytes([binary[18], binary[19]])
}

/// The stanza of `package` in a dpkg status file.
fn status_stanza<'a>(status: &'a str, package: &str) -> Option<&'a str> {
    status
        .split("\n\n")
        .find(|stanza| stanza.lines().next() == Some(&format!("Package: {package}")))
}

/// Builds the Dockerfile for `platform` into `-o type=local` and checks the result:
/// `uname -m` says `machine`, `/usr/bin/hello` is an ELF for `elf`, dpkg has it
/// installed for `deb_arch`, and it printed its greeting in the log and into a file.
fn apt_get_install(test: &str, platform: &str, machine: &str, elf: u16, deb_arch: &str) {
    if !slow_tests_enabled() {
        return;
    }
    if !precondition(
        is_root(),
        &format!(
            "{test}: must run as root (apt switches to its _apt user, which needs the full id map)"
        ),
    ) {
        return;
    }
    let layout = debian_layout();
    if !precondition(
        layout.is_some(),
        &format!(
            "{test}: fixture testdata/images/debian is missing: run `cargo xtask fixtures` as root"
        ),
    ) {
        return;
    }
    let layout = layout.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("ctx"), DOCKERFILE, &[]);
    let dest = tmp.path().join("rootfs");
    let out = run(rbuild(&tmp.path().join("state"))
        .arg("build")
        .args(["--platform", platform, "--progress", "plain"])
        .arg("--build-context")
        .arg(format!("debian=oci-layout://{}", layout.display()))
        .arg("-o")
        .arg(format!("type=local,dest={}", dest.display()))
        .arg(&ctx));
    assert!(out.status.success(), "{test}: build failed");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains(GREETING.trim_end()),
        "{test}: no greeting in the log"
    );

    let read = |path: &str| {
        std::fs::read(dest.join(path)).unwrap_or_else(|e| panic!("{test}: /{path}: {e}"))
    };
    assert_eq!(
        String::from_utf8_lossy(&read("machine")),
        format!("{machine}\n")
    );
    let binary = read("usr/bin/hello");
    assert_eq!(elf_machine(&binary), elf, "{test}: /usr/bin/hello");
    assert_eq!(String::from_utf8_lossy(&read("hello.out")), GREETING);
    assert_eq!(
        String::from_utf8_lossy(&read("hello.status")),
        "install ok installed"
    );
    let status = String::from_utf8(read("var/lib/dpkg/status")).unwrap();
    let stanza = status_stanza(&status, PACKAGE)
        .unwrap_or_else(|| panic!("{test}: {PACKAGE} not in /var/lib/dpkg/status"));
    assert!(
        stanza.contains("\nStatus: install ok installed\n"),
        "{stanza}"
    );
    assert!(
        stanza.contains(&format!("\nArchitecture: {deb_arch}\n")),
        "{stanza}"
    );
    // apt-get update fetched package lists (as the `_apt` user), removed again in the step.
    let lists = String::from_utf8_lossy(&read("apt-lists")).into_owned();
    assert!(
        lists.lines().any(|name| name.contains("_Packages")),
        "{test}: apt-get update left no package lists: {lists}"
    );
}

#[test]
fn apt_get_install_runs_natively_on_amd64() {
    apt_get_install(
        "apt_get_install_runs_natively_on_amd64",
        "linux/amd64",
        "x86_64",
        62,
        "amd64",
    );
}

#[test]
fn apt_get_install_runs_emulated_on_arm64() {
    apt_get_install(
        "apt_get_install_runs_emulated_on_arm64",
        "linux/arm64",
        "aarch64",
        183,
        "arm64",
    );
}

/// Runs one test of this binary as a child, with `CI` set to `ci` and without
/// `RBUILD_SLOW_TESTS`: what it printed, and whether it passed.
fn run_self_ungated(test: &str, ci: bool) -> (String, bool) {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture"])
        .env_remove("RBUILD_SLOW_TESTS")
        .env("CI", if ci { "true" } else { "false" });
    let out = run(&mut c);
    (
        format!("{}{}", stdout(&out), stderr(&out)),
        out.status.success(),
    )
}

#[test]
fn slow_tests_say_they_are_skipped_and_fail_in_ci_without_rbuild_slow_tests() {
    let test = "apt_get_install_runs_emulated_on_arm64";
    let (log, passed) = run_self_ungated(test, false);
    assert!(passed, "outside CI a skipped slow test passes: {log}");
    assert!(
        log.contains("=== SKIPPED: ") && log.contains("RBUILD_SLOW_TESTS=1"),
        "{log}"
    );
    assert!(!log.contains("FROM debian"), "the build ran: {log}");
    let (log, passed) = run_self_ungated(test, true);
    assert!(!passed, "under CI=true a skipped slow test fails: {log}");
    assert!(
        log.contains("precondition missing in CI") && log.contains("RBUILD_SLOW_TESTS=1"),
        "{log}"
    );
    assert!(!log.contains("FROM debian"), "the build ran: {log}");
}
