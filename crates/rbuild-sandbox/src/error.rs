//! The one error type every public function of this crate returns.

use std::path::PathBuf;

/// Why the sandbox could not enter its namespaces, prepare emulation or run a step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A system call or file operation failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "mount binfmt_misc on /run/x".
        context: String,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The QEMU user-mode emulator for a foreign platform is not installed.
    #[error(
        "cannot run {platform} steps: {binary} not found in /usr/bin, /usr/local/bin or $PATH; install it with: apt-get install qemu-user-static"
    )]
    EmulatorMissing {
        /// The platform that needs emulation.
        platform: String,
        /// The emulator binary looked for, e.g. `qemu-aarch64-static`.
        binary: String,
    },
    /// QEMU (or this crate's handler table) has no user-mode emulator for the architecture.
    #[error(
        "cannot run {platform} steps on a {host} host: no QEMU user-mode emulator is known for it"
    )]
    Unsupported {
        /// The requested platform (`os/arch[/variant]`).
        platform: String,
        /// The host platform.
        host: String,
    },
    /// Neither a private binfmt_misc instance nor a host handler is available.
    #[error("cannot run {platform} steps: {reason}")]
    NoBinfmt {
        /// The platform that needs emulation.
        platform: String,
        /// What failed and what to install.
        reason: String,
    },
    /// `run` was asked for a foreign platform that `Emulation::prepare` did not cover.
    #[error("platform {0} was not prepared for emulation in this build")]
    NotPrepared(String),
    /// The step description itself is unusable.
    #[error("invalid step: {0}")]
    InvalidSpec(String),
    /// Setting up the step's root filesystem, mounts or namespaces failed.
    #[error("step setup failed: {0}")]
    Setup(String),
    /// The step's user could not be resolved or switched to.
    #[error("{0}")]
    User(String),
    /// The step's command could not be executed.
    #[error("{0}")]
    Exec(String),
    /// The step was stopped by SIGINT, SIGTERM or SIGHUP before it ended.
    #[error("the step was interrupted by signal {0}")]
    Interrupted(i32),
    /// The sandbox helper process reported nothing usable.
    #[error("sandbox helper failed: {0}")]
    Helper(String),
    /// An id map file could not be parsed.
    #[error("cannot parse id map {path}: {line:?}")]
    IdMapSyntax {
        /// The file read.
        path: PathBuf,
        /// The offending line.
        line: String,
    },
}

impl SandboxError {
    /// Wraps an OS error with what was being done.
    pub(crate) fn io(
        context: impl Into<String>,
        source: impl Into<std::io::Error>,
    ) -> SandboxError {
        SandboxError::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Shorthand: `.map_err(sys("mount /proc"))`.
pub(crate) fn sys<E: Into<std::io::Error>>(
    context: impl Into<String>,
) -> impl FnOnce(E) -> SandboxError {
    let context = context.into();
    move |e| SandboxError::io(context, e)
}
