//! `rbuild platforms`: what this machine can build for (native, emulated through
//! rbuild's own binfmt_misc or the host's handlers, unavailable) and why.

use super::*;

/// Where the host's binfmt_misc instance is mounted.
pub(super) const HOST_BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The platforms `platform_report` lists, as `docker buildx ls` does.
pub const KNOWN_PLATFORMS: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64le",
    "linux/mips64",
    "linux/loong64",
];

/// Whose binfmt_misc handler runs a platform's emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerSource {
    /// One registered in the build's own binfmt_misc instance.
    Private,
    /// One the host registered.
    Host,
}

/// How steps of one platform would run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformState {
    /// The CPU runs its binaries.
    Native,
    /// QEMU runs them.
    Emulated {
        /// The emulator binary.
        interpreter: PathBuf,
        /// Whose handler starts it.
        source: HandlerSource,
    },
    /// Nothing can run them; `hint` says what to install.
    Unavailable {
        /// What is missing and how to get it.
        hint: String,
    },
}

/// One line of `rbuild platforms`: a platform and how it would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformLine {
    /// The platform.
    pub platform: Platform,
    /// How its steps would run.
    pub state: PlatformState,
}

impl std::fmt::Display for PlatformLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let platform = self.platform.to_string();
        match &self.state {
            PlatformState::Native => write!(f, "{platform:<16} native"),
            PlatformState::Emulated {
                interpreter,
                source,
            } => {
                let how = match source {
                    HandlerSource::Private => "private binfmt_misc",
                    HandlerSource::Host => "host binfmt_misc",
                };
                write!(
                    f,
                    "{platform:<16} emulated ({how}, {})",
                    interpreter.display()
                )
            }
            PlatformState::Unavailable { hint } => {
                write!(f, "{platform:<16} unavailable ({hint})")
            }
        }
    }
}

/// What the machine offers for running foreign binaries, gathered by
/// [`HostFacts::probe`] and turned into report lines by [`classify_platforms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The host platform.
    pub host: Platform,
    /// Whether the kernel runs the host's 32-bit sibling (386 on amd64) itself.
    pub compat32: bool,
    /// Installed QEMU emulators by QEMU architecture name.
    pub emulators: Vec<(String, PathBuf)>,
    /// Whether a private binfmt_misc instance can be mounted, or why not.
    pub private_binfmt: Result<(), String>,
    /// Enabled host handlers' interpreters by QEMU architecture name.
    pub host_handlers: Vec<(String, PathBuf)>,
}

impl HostFacts {
    /// Looks at the machine without changing it: emulator binaries, the host's
    /// handlers, 32-bit support, and a real attempt to mount binfmt_misc in a
    /// short-lived child in a new user namespace.
    pub fn probe() -> HostFacts {
        let host = Platform::host();
        let names: Vec<&'static str> = ELF_MATCHES.iter().map(|m| m.qemu).collect();
        let needs_compat = KNOWN_PLATFORMS
            .iter()
            .filter_map(|p| p.parse::<Platform>().ok())
            .any(|p| p.needs_linux32_on(&host));
        HostFacts {
            compat32: needs_compat && probe_compat32(),
            emulators: names
                .iter()
                .filter_map(|q| find_emulator(q).map(|p| (q.to_string(), p)))
                .collect(),
            private_binfmt: probe_private_binfmt(),
            host_handlers: ELF_MATCHES
                .iter()
                .filter_map(|m| host_handler_file(m).map(|p| (m.qemu.to_string(), p)))
                .collect(),
            host,
        }
    }
}

fn probe_compat32() -> bool {
    let dir = std::env::temp_dir().join(format!("rbuild-ia32-probe-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let result = kernel_runs_ia32(&dir, &mut Vec::new()).unwrap_or(true);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Mounts binfmt_misc in a forked child inside new user and mount namespaces, so
/// nothing of the host changes; reports why it failed.
fn probe_private_binfmt() -> Result<(), String> {
    let target = c"/dev";
    let register = c"/dev/register";
    let fstype = c"binfmt_misc";
    let root = c"/";
    // SAFETY: the child only makes async-signal-safe system calls on prepared strings
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                libc::_exit(1);
            }
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                private,
                std::ptr::null(),
            ) != 0
            {
                libc::_exit(2);
            }
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            if libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                std::ptr::null(),
            ) != 0
            {
                let errno = *libc::__errno_location();
                libc::_exit(64 + errno.clamp(0, 150));
            }
            if libc::access(register.as_ptr(), libc::F_OK) != 0 {
                libc::_exit(3);
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err("lost the probe process".into());
        }
    }
    if !libc::WIFEXITED(status) {
        return Err("the probe process was killed".into());
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        1 => Err("cannot create a user namespace".into()),
        2 => Err("cannot make a private mount tree".into()),
        3 => Err("the mounted binfmt_misc has no register file".into()),
        code => Err(format!(
            "mount binfmt_misc in a user namespace: {}",
            std::io::Error::from_raw_os_error(code - 64)
        )),
    }
}

/// How every platform in [`KNOWN_PLATFORMS`] would run given `facts`, native ones
/// first; the same choices [`Emulation::prepare`] makes.
pub fn classify_platforms(facts: &HostFacts) -> Vec<PlatformLine> {
    let mut lines: Vec<PlatformLine> = KNOWN_PLATFORMS
        .iter()
        .filter_map(|p| p.parse::<Platform>().ok())
        .map(|platform| PlatformLine {
            state: classify(&platform, facts),
            platform,
        })
        .collect();
    lines.sort_by_key(|l| l.state != PlatformState::Native);
    lines
}

fn lookup<'a>(list: &'a [(String, PathBuf)], qemu: &str) -> Option<&'a PathBuf> {
    list.iter().find(|(q, _)| q == qemu).map(|(_, p)| p)
}

fn classify(platform: &Platform, facts: &HostFacts) -> PlatformState {
    if platform.runs_natively_on(&facts.host)
        && (!platform.needs_linux32_on(&facts.host) || facts.compat32)
    {
        return PlatformState::Native;
    }
    let Some(qemu) = platform.qemu_name().filter(|q| elf_match(q).is_some()) else {
        return PlatformState::Unavailable {
            hint: "QEMU has no user-mode emulator for it".into(),
        };
    };
    let emulator = lookup(&facts.emulators, qemu);
    let handler = lookup(&facts.host_handlers, qemu);
    match (&facts.private_binfmt, emulator, handler) {
        (Ok(()), Some(interpreter), _) => PlatformState::Emulated {
            interpreter: interpreter.clone(),
            source: HandlerSource::Private,
        },
        (Err(_), _, Some(interpreter)) => PlatformState::Emulated {
            interpreter: interpreter.clone(),
            source: HandlerSource::Host,
        },
        (Ok(()), None, Some(interpreter)) => PlatformState::Emulated {
            interpreter: interpreter.clone(),
            source: HandlerSource::Private,
        },
        (_, None, None) => PlatformState::Unavailable {
            hint: format!(
                "qemu-{qemu}-static not found; install it with: apt-get install qemu-user-static"
            ),
        },
        (Err(why), Some(_), None) => PlatformState::Unavailable {
            hint: format!(
                "no private binfmt_misc ({why}; needs Linux >= 6.7) and no host handler; register one with: apt-get install binfmt-support qemu-user-static"
            ),
        },
    }
}

/// How each known platform would run on this machine, probed without building and
/// without changing the host: the `PLATFORMS` column of `docker buildx ls`.
pub fn platform_report() -> Vec<PlatformLine> {
    classify_platforms(&HostFacts::probe())
}
