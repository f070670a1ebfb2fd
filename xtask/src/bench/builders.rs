//! The builders under test and the command lines that run one build with each. Every
//! builder writes an OCI archive to `<state>/out.tar`, so the export counts for all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::cases::{Case, platform_arg};
use super::measure::{self, DaemonPeak};
use super::rawjson;
use crate::layout::Platform;
use crate::util;

/// A builder under test: how to run one build with a given state directory.
pub trait Builder {
    /// The name in the table.
    fn name(&self) -> &'static str;

    /// The build command, using `state` for everything it keeps.
    fn command(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Command;

    /// A second command writing `out.tar`, for a builder whose build cannot.
    fn export(&self, _state: &Path, _case: &Case, _platforms: &[Platform]) -> Option<Command> {
        None
    }

    /// Makes the next build a cold one (for a daemon: drops its cache).
    fn forget(&self) -> Result<()> {
        Ok(())
    }

    /// A daemon doing the work, whose peak RSS counts for the build.
    fn daemon(&self) -> Option<DaemonPeak> {
        None
    }

    /// The durations of the RUN steps in a build log, when the builder's log says.
    fn run_steps(&self, _log: &Path) -> Vec<Duration> {
        Vec::new()
    }
}

/// Where every builder writes its image.
pub fn out_path(state: &Path) -> PathBuf {
    state.join("out.tar")
}

/// rbuild from the fixture layout, progress as rawjson (for the step timings).
pub struct Rbuild {
    /// The rbuild binary.
    pub binary: PathBuf,
    /// The busybox fixture layout.
    pub layout: PathBuf,
}

impl Builder for Rbuild {
    fn name(&self) -> &'static str {
        "rbuild"
    }

    fn command(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(state.join("root"))
            .arg("build")
            .args(["--progress", "rawjson"])
            .args(["--platform", &platform_arg(platforms)])
            .arg("--build-context")
            .arg(format!("busybox=oci-layout://{}", self.layout.display()))
            .args(["-t", &format!("bench-{}:latest", case.name)])
            .arg("-o")
            .arg(format!("type=oci,dest={}", out_path(state).display()))
            .arg("-f")
            .arg(case.dir.join("Dockerfile"))
            .arg(&case.dir);
        cmd
    }

    fn run_steps(&self, log: &Path) -> Vec<Duration> {
        let text = std::fs::read(log).unwrap_or_default();
        rawjson::run_step_durations(&String::from_utf8_lossy(&text))
    }
}

/// buildah 1.28 has no `oci-layout://` build contexts, and it matches named contexts
/// against `FROM` before expanding build args, so `FROM $BASE` never meets one. It
/// takes an `oci:` layout reference as the base image itself, though, and picks each
/// platform's image from the layout's index. Its build cannot write an OCI archive, so
/// a `push` follows.
pub struct Buildah {
    driver: &'static str,
    layout: PathBuf,
}

impl Buildah {
    /// Chooses the storage driver: overlay when a trivial build works with it, else vfs.
    pub fn probe(layout: &Path) -> Result<Buildah> {
        let ctx = util::TempDir::new("buildah-probe")?;
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "ARG BASE\nFROM $BASE\nRUN true\n",
        )?;
        let case = Case {
            name: "probe".into(),
            dir: ctx.path().to_path_buf(),
        };
        let amd64 = [Platform::linux("amd64", None)];
        for driver in ["overlay", "vfs"] {
            let buildah = Buildah {
                driver,
                layout: layout.to_path_buf(),
            };
            let state = util::TempDir::new("buildah-state")?;
            let log = state.path().join("log");
            let cmd = &mut buildah.command(state.path(), &case, &amd64);
            if measure::run_measured(cmd, &log).is_ok() {
                util::info(&format!("buildah storage driver: {driver}"));
                return Ok(buildah);
            }
        }
        bail!("buildah cannot build with the overlay or the vfs storage driver")
    }

    fn base(&self, state: &Path) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.arg("--root")
            .arg(state.join("root"))
            .arg("--runroot")
            .arg(state.join("run"))
            .args(["--storage-driver", self.driver]);
        cmd
    }
}

impl Builder for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    fn command(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Command {
        let mut cmd = self.base(state);
        cmd.arg("build")
            .args(["--runtime", "runc", "--network", "host", "--layers"])
            .args(["--platform", &platform_arg(platforms)])
            .arg("--build-arg")
            .arg(format!("BASE=oci:{}:latest", self.layout.display()));
        let name = format!("bench-{}", case.name);
        if platforms.len() > 1 {
            cmd.args(["--manifest", &name]);
        } else {
            cmd.args(["-t", &name]);
        }
        cmd.arg("-f")
            .arg(case.dir.join("Dockerfile"))
            .arg(&case.dir);
        cmd
    }

    fn export(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Option<Command> {
        let mut cmd = self.base(state);
        let name = format!("bench-{}", case.name);
        if platforms.len() > 1 {
            cmd.args(["manifest", "push", "--all", "--quiet", &name]);
        } else {
            cmd.args(["push", "--quiet", &name]);
        }
        cmd.arg(format!("oci-archive:{}", out_path(state).display()));
        Some(cmd)
    }
}

/// A running buildkitd, driven with buildctl; base images from a registry.
pub struct Buildkit {
    /// The buildctl binary.
    pub buildctl: PathBuf,
    /// The daemon's address (`BUILDKIT_HOST`).
    pub addr: String,
    /// The base image reference passed as `BASE`.
    pub base: String,
    /// The daemon process, when it runs here and its peak RSS can be read.
    pub process: Option<DaemonPeak>,
}

impl Buildkit {
    /// buildctl from `BUILDCTL`, else from `PATH`.
    pub fn find_buildctl() -> Result<PathBuf> {
        if let Some(path) = std::env::var_os("BUILDCTL") {
            let path = PathBuf::from(path);
            if !path.is_file() {
                bail!("BUILDCTL={} is not a file", path.display());
            }
            return Ok(path);
        }
        if util::on_path("buildctl") {
            return Ok(PathBuf::from("buildctl"));
        }
        bail!("BUILDKIT_HOST is set but buildctl is neither in PATH nor named by BUILDCTL")
    }

    fn buildctl(&self) -> Command {
        let mut cmd = Command::new(&self.buildctl);
        cmd.args(["--addr", &self.addr]);
        cmd
    }

    /// Checks that the daemon answers.
    pub fn check(&self) -> Result<()> {
        let workers = util::output_text(self.buildctl().args(["debug", "workers"]))
            .context("buildkitd does not answer")?;
        util::info(&format!(
            "buildkitd at {}: {}",
            self.addr,
            workers.lines().nth(1).unwrap_or("no workers")
        ));
        Ok(())
    }
}

impl Builder for Buildkit {
    fn name(&self) -> &'static str {
        "buildkit"
    }

    fn command(&self, state: &Path, case: &Case, platforms: &[Platform]) -> Command {
        let mut cmd = self.buildctl();
        let dir = case.dir.display();
        cmd.args(["build", "--progress", "plain"])
            .args(["--frontend", "dockerfile.v0"])
            .args(["--local", &format!("context={dir}")])
            .args(["--local", &format!("dockerfile={dir}")])
            .args(["--opt", &format!("platform={}", platform_arg(platforms))])
            .args(["--opt", &format!("build-arg:BASE={}", self.base)])
            .args(["--opt", "cmdline=builtin"])
            .arg("--output")
            .arg(format!("type=oci,dest={}", out_path(state).display()));
        cmd
    }

    fn forget(&self) -> Result<()> {
        util::output(self.buildctl().args(["prune", "--all"]))?;
        Ok(())
    }

    fn daemon(&self) -> Option<DaemonPeak> {
        self.process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_case() -> Case {
        Case {
            name: "copy".into(),
            dir: PathBuf::from("/repo/Dockerfiles/bench/copy"),
        }
    }

    fn two_platforms() -> [Platform; 2] {
        [
            Platform::linux("amd64", None),
            Platform::linux("arm", Some("v7")),
        ]
    }

    #[test]
    fn buildah_command_uses_the_layout_as_base_image() {
        let buildah = Buildah {
            driver: "overlay",
            layout: PathBuf::from("/repo/testdata/images/busybox"),
        };
        let shown = util::show(&buildah.command(Path::new("/s"), &copy_case(), &two_platforms()));
        assert_eq!(
            shown,
            "buildah --root /s/root --runroot /s/run --storage-driver overlay build --runtime runc \
             --network host --layers --platform linux/amd64,linux/arm/v7 \
             --build-arg BASE=oci:/repo/testdata/images/busybox:latest \
             --manifest bench-copy -f /repo/Dockerfiles/bench/copy/Dockerfile /repo/Dockerfiles/bench/copy"
        );
        let export = buildah.export(Path::new("/s"), &copy_case(), &two_platforms());
        assert_eq!(
            util::show(&export.unwrap()),
            "buildah --root /s/root --runroot /s/run --storage-driver overlay manifest push --all \
             --quiet bench-copy oci-archive:/s/out.tar"
        );
    }

    #[test]
    fn rbuild_and_buildkit_write_an_oci_archive() {
        let rbuild = Rbuild {
            binary: PathBuf::from("/bin/rbuild"),
            layout: PathBuf::from("/l"),
        };
        let amd64 = [Platform::linux("amd64", None)];
        assert_eq!(
            util::show(&rbuild.command(Path::new("/s"), &copy_case(), &amd64)),
            "/bin/rbuild --root /s/root build --progress rawjson --platform linux/amd64 \
             --build-context busybox=oci-layout:///l -t bench-copy:latest -o type=oci,dest=/s/out.tar \
             -f /repo/Dockerfiles/bench/copy/Dockerfile /repo/Dockerfiles/bench/copy"
        );
        let buildkit = Buildkit {
            buildctl: PathBuf::from("buildctl"),
            addr: "unix:///b.sock".into(),
            base: "localhost:5000/busybox".into(),
            process: None,
        };
        assert_eq!(
            util::show(&buildkit.command(Path::new("/s"), &copy_case(), &two_platforms())),
            "buildctl --addr unix:///b.sock build --progress plain --frontend dockerfile.v0 \
             --local context=/repo/Dockerfiles/bench/copy --local dockerfile=/repo/Dockerfiles/bench/copy \
             --opt platform=linux/amd64,linux/arm/v7 --opt build-arg:BASE=localhost:5000/busybox \
             --opt cmdline=builtin --output type=oci,dest=/s/out.tar"
        );
        assert!(
            buildkit
                .export(Path::new("/s"), &copy_case(), &amd64)
                .is_none()
        );
    }
}
