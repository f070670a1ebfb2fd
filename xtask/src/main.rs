//! Project automation for rbuild, run as `cargo xtask <command>`.
//!
//! Commands: `deps`, `fixtures`, `tools`, `test`, `demo`, `bench`, `fuzz`. Each prints what it runs, and
//! exits nonzero when something it needs is missing or fails.

mod apt;
mod architecture;
mod bench;
mod debian;
mod demo;
mod fixtures;
mod hostbinfmt;
mod layout;
mod rootfs;
mod tools;
mod util;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  deps                 install the system packages the test suite needs (apt, as root)
  fixtures [--force]   build the busybox and Debian base images under testdata/images/
  tools                fetch test tools newer than the host's (umoci for zstd layers) into
                       the target dir; prints the variables that point the tests at them
  test [-- ARGS]       deps + fixtures + tools + `cargo test --workspace ARGS` (what CI runs)
  demo                 build Dockerfiles/hello for every fixture platform and show the result
  bench [--quick] [--case NAME] [--runs N] [--save FILE]
                       time rbuild against buildah (when installed) and BuildKit (when
                       BUILDKIT_HOST is set) on Dockerfiles/bench/*/
  fuzz <target> [--seconds N] [--seed S]
                       fuzz one target for N CPU seconds (release build of rbuild-fuzz);
                       also: fuzz --list, fuzz --make-seeds, fuzz --replay <target|all> FILE...
";

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        bail!("no command given");
    };
    let root = util::repo_root()?;
    std::env::set_current_dir(&root)?;
    match command.as_str() {
        "deps" => {
            no_extra_args(command, rest)?;
            apt::deps()
        }
        "fixtures" => {
            let force = match rest {
                [] => false,
                [flag] if flag == "--force" => true,
                _ => bail!("usage: cargo xtask fixtures [--force]"),
            };
            all_fixtures(&root, force)
        }
        "tools" => {
            no_extra_args(command, rest)?;
            let umoci = tools::umoci(&root)?;
            println!("export {}={}", tools::UMOCI_ENV, umoci.display());
            Ok(())
        }
        "test" => test(rest),
        "demo" => {
            no_extra_args(command, rest)?;
            demo::run(&root)
        }
        "bench" => bench::run(&root, rest),
        "fuzz" => fuzz(&root, rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            print!("{USAGE}");
            bail!("unknown command {other:?}")
        }
    }
}

fn no_extra_args(command: &str, rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("`cargo xtask {command}` takes no arguments, got {rest:?}");
    }
    Ok(())
}

/// Every fixture image: the busybox ones (which `demo` and `bench` use alone) and Debian.
fn all_fixtures(root: &std::path::Path, force: bool) -> Result<()> {
    fixtures::run(root, force)?;
    debian::run(root, force)
}

/// Set to `1`, it lets the slow tests (apt-get under QEMU) run; `test` always sets it.
const SLOW_TESTS_ENV: &str = "RBUILD_SLOW_TESTS";

/// The whole test suite: system packages, fixtures, then every crate's tests.
fn test(rest: &[String]) -> Result<()> {
    let extra: &[String] = match rest.split_first() {
        None => &[],
        Some((dashes, extra)) if dashes == "--" => extra,
        Some(_) => bail!("usage: cargo xtask test [-- ARGS for cargo test]"),
    };
    let root = util::repo_root()?;
    util::step("1/4 system packages (cargo xtask deps)");
    apt::deps()?;
    util::step("2/4 fixture images (cargo xtask fixtures)");
    all_fixtures(&root, false)?;
    util::step("3/4 newer test tools (cargo xtask tools)");
    let umoci = tools::umoci(&root)?;
    util::step("4/4 cargo test --workspace");
    let mut cmd = util::cargo();
    cmd.env(tools::UMOCI_ENV, &umoci)
        .env(SLOW_TESTS_ENV, "1")
        .arg("test")
        .arg("--workspace")
        .args(extra);
    util::run(&mut cmd)?;
    util::step("all tests passed");
    Ok(())
}

/// Builds the fuzz driver in release mode and runs it with `rest`; its exit code is ours.
fn fuzz(root: &std::path::Path, rest: &[String]) -> Result<()> {
    if rest.is_empty() {
        bail!("usage: cargo xtask fuzz <target> [--seconds N] [--seed S] | --list | --make-seeds");
    }
    let mut build = util::cargo();
    build.args(["build", "--release", "--quiet", "-p", "rbuild-fuzz"]);
    util::run(&mut build)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let exe = target_dir.join("release/rbuild-fuzz");
    let status = std::process::Command::new(&exe)
        .args(rest)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
