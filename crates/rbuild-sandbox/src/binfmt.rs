//! Foreign architectures: QEMU user-mode emulators registered in a private
//! `binfmt_misc` instance of the build's user namespace, or the host's handlers.

use crate::error::{SandboxError, sys};
use rbuild_core::Platform;
use std::path::{Path, PathBuf};

/// Flags of the handlers registered in the private instance: P keeps argv[0], O and C
/// open the binary for the interpreter and keep its credentials, F opens the
/// interpreter at registration so it works inside any root filesystem.
pub const HANDLER_FLAGS: &str = "POCF";

/// ELF magic and mask that select one architecture's binaries (from QEMU's binfmt tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfMatch {
    /// QEMU's name for the architecture (`qemu-<name>-static`).
    pub qemu: &'static str,
    /// Bytes to match at offset 0, in binfmt_misc `\x` notation.
    pub magic: &'static str,
    /// Mask applied before matching, in binfmt_misc `\x` notation.
    pub mask: &'static str,
}

const ELF_MASK_LE: &str =
    r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
const ELF_MASK_X86: &str =
    r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";

/// Handler table, taken from QEMU's `qemu-binfmt-conf.sh` / Debian's `/usr/share/binfmts`.
pub const ELF_MATCHES: &[ElfMatch] = &[
    ElfMatch {
        qemu: "aarch64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        mask: ELF_MASK_LE,
    },
    ElfMatch {
        qemu: "arm",
        magic: r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        mask: ELF_MASK_LE,
    },
    ElfMatch {
        qemu: "i386",
        magic: r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00",
        mask: ELF_MASK_X86,
    },
    ElfMatch {
        qemu: "x86_64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
        mask: ELF_MASK_X86,
    },
    ElfMatch {
        qemu: "ppc64le",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
    },
    ElfMatch {
        qemu: "ppc64",
        magic: r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    ElfMatch {
        qemu: "s390x",
        magic: r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    ElfMatch {
        qemu: "riscv64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        mask: ELF_MASK_LE,
    },
    ElfMatch {
        qemu: "mips64el",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    ElfMatch {
        qemu: "mips64",
        magic: r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    ElfMatch {
        qemu: "loongarch64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x01",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
];

/// The handler table entry for a QEMU architecture name.
pub fn elf_match(qemu: &str) -> Option<&'static ElfMatch> {
    ELF_MATCHES.iter().find(|m| m.qemu == qemu)
}

/// The line written to `register` to add a handler named `qemu-<arch>`.
pub fn register_line(m: &ElfMatch, interpreter: &Path, flags: &str) -> Result<String, String> {
    let interp = interpreter
        .to_str()
        .ok_or("interpreter path is not UTF-8")?;
    if interp.contains(':') || interp.contains('\n') {
        return Err(format!(
            "interpreter path {interp:?} contains ':' or a newline"
        ));
    }
    Ok(format!(
        ":{}:M:0:{}:{}:{}:{}",
        handler_name(m.qemu),
        m.magic,
        m.mask,
        interp,
        flags
    ))
}

/// The handler's file name in a binfmt_misc directory.
pub fn handler_name(qemu: &str) -> String {
    format!("qemu-{qemu}")
}

/// The state of a handler file: whether it is enabled, its interpreter and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerStatus {
    /// `enabled` as the first line.
    pub enabled: bool,
    /// The `interpreter` line.
    pub interpreter: Option<PathBuf>,
    /// The `flags:` line.
    pub flags: String,
}

/// Parses the text of a handler file under a binfmt_misc mount.
pub fn parse_handler(text: &str) -> HandlerStatus {
    let mut status = HandlerStatus {
        enabled: text.lines().next() == Some("enabled"),
        interpreter: None,
        flags: String::new(),
    };
    for line in text.lines() {
        if let Some(i) = line.strip_prefix("interpreter ") {
            status.interpreter = Some(PathBuf::from(i.trim()));
        } else if let Some(f) = line.strip_prefix("flags:") {
            status.flags = f.trim().to_string();
        }
    }
    status
}

/// The architecture (as an OCI name) an ELF header was built for, for error messages.
pub fn elf_architecture(header: &[u8]) -> Option<&'static str> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    let class64 = header[4] == 2;
    let little = header[5] == 1;
    let machine = if little {
        u16::from_le_bytes([header[18], header[19]])
    } else {
        u16::from_be_bytes([header[18], header[19]])
    };
    Some(match (machine, class64, little) {
        (3, false, _) => "386",
        (62, true, _) => "amd64",
        (183, true, _) => "arm64",
        (40, false, _) => "arm",
        (21, true, true) => "ppc64le",
        (21, true, false) => "ppc64",
        (22, true, _) => "s390x",
        (243, true, _) => "riscv64",
        (8, true, true) => "mips64le",
        (8, true, false) => "mips64",
        (8, false, true) => "mipsle",
        (8, false, false) => "mips",
        (258, true, _) => "loong64",
        _ => return None,
    })
}

/// Environment variable naming the only directories (colon-separated) searched for QEMU
/// emulators, for hosts that keep them somewhere unusual. When it is set and a platform's
/// emulator is not found there, the platform is unavailable even if the host registered
/// a handler for it.
pub const QEMU_PATH_ENV: &str = "RBUILD_QEMU_PATH";

/// Where the QEMU emulator for `qemu` lives: the directories in `$RBUILD_QEMU_PATH` when
/// set, otherwise those in `$PATH` (like any command), or `/usr/local/bin:/usr/bin` when
/// no PATH is set.
pub fn find_emulator(qemu: &str) -> Option<PathBuf> {
    let name = format!("qemu-{qemu}-static");
    let search = std::env::var(QEMU_PATH_ENV)
        .or_else(|_| std::env::var("PATH"))
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin".to_string());
    let dirs: Vec<&str> = search.split(':').collect();
    dirs.iter()
        .filter(|d| !d.is_empty())
        .map(|dir| Path::new(dir).join(&name))
        .find(|p| p.is_file())
}

/// The QEMU CPU model that makes an emulated process behave as the platform's variant
/// (QEMU's default ARM CPU is an ARMv7, so arm/v6 would otherwise report `armv7l`).
pub fn emulated_cpu(platform: &Platform) -> Option<&'static str> {
    match (platform.architecture(), platform.variant()) {
        ("arm", Some("v6")) => Some("arm1176"),
        ("arm", Some("v5")) => Some("arm926"),
        _ => None,
    }
}

/// An i386 ELF that exits with status 42, used to learn whether the kernel runs
/// 32-bit x86 binaries itself (IA32 emulation may be compiled out or disabled).
pub fn ia32_probe_binary() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    let code: [u8; 12] = [
        0xb8, 0x01, 0, 0, 0, // mov eax, 1 (exit)
        0xbb, 42, 0, 0, 0, // mov ebx, 42
        0xcd, 0x80, // int 0x80
    ];
    let total = (52 + 32 + code.len()) as u32;
    let mut elf = Vec::with_capacity(total as usize);
    elf.extend_from_slice(b"\x7fELF\x01\x01\x01\x00");
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&3u16.to_le_bytes()); // EM_386
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + 84).to_le_bytes()); // entry
    elf.extend_from_slice(&52u32.to_le_bytes()); // phoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [52u16, 32, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes()); // ehsize, phentsize, phnum, sh*
    }
    for word in [1u32, 0, BASE, BASE, total, total, 5, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes()); // PT_LOAD, R+X
    }
    elf.extend_from_slice(&code);
    elf
}

/// Whether the kernel runs the i386 probe natively (exit status 42).
fn kernel_runs_ia32(run_dir: &Path, warnings: &mut Vec<String>) -> Result<bool, SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    let probe = run_dir.join("ia32-probe");
    std::fs::write(&probe, ia32_probe_binary())
        .map_err(sys(format!("write {}", probe.display())))?;
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755))
        .map_err(sys(format!("chmod {}", probe.display())))?;
    let result = std::process::Command::new(&probe).status();
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(status) => Ok(status.code() == Some(42)),
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => Ok(false),
        Err(e) => {
            warnings.push(format!(
                "cannot probe 32-bit x86 support ({e}); assuming the kernel has it"
            ));
            Ok(true)
        }
    }
}

/// How steps of one platform run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformSupport {
    /// The host CPU runs the binaries itself.
    Native,
    /// A QEMU handler runs them.
    Emulated {
        /// The emulator binary.
        interpreter: PathBuf,
        /// Whether the handler lives in the build's private binfmt_misc instance
        /// (`false`: one the host registered).
        private: bool,
    },
}

/// The emulation set up for one build: how each platform runs, and the private
/// binfmt_misc mount that must stay alive while steps run.
#[derive(Debug)]
pub struct Emulation {
    platforms: Vec<(Platform, PlatformSupport)>,
    private_mount: Option<PathBuf>,
    warnings: Vec<String>,
}

impl Emulation {
    /// No emulation at all: only platforms the host runs natively may be used.
    pub fn native_only() -> Emulation {
        Emulation {
            platforms: Vec::new(),
            private_mount: None,
            warnings: Vec::new(),
        }
    }

    /// What the user should be told about the set-up (a host handler without the `F`
    /// flag, a probe that failed); the caller shows them, this crate has no event stream.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Makes every platform in `platforms` runnable, registering QEMU handlers in a
    /// private binfmt_misc instance mounted at `run_dir/binfmt_misc` (falling back to
    /// the host's handlers when the kernel cannot mount one). Call it inside the
    /// build namespace, once per build; keep the value alive while steps run.
    pub fn prepare(platforms: &[Platform], run_dir: &Path) -> Result<Emulation, SandboxError> {
        let host = Platform::host();
        let mut emulation = Emulation::native_only();
        let mut needed: Vec<(Platform, &'static ElfMatch, Option<PathBuf>)> = Vec::new();
        for platform in platforms {
            if emulation.support(platform).is_some() || needed.iter().any(|(p, ..)| p == platform) {
                continue;
            }
            if platform.runs_natively_on(&host)
                && (!platform.needs_linux32_on(&host)
                    || kernel_runs_ia32(run_dir, &mut emulation.warnings)?)
            {
                emulation
                    .platforms
                    .push((platform.clone(), PlatformSupport::Native));
                continue;
            }
            needed.push(emulator_for(platform, &host)?);
        }
        if needed.is_empty() {
            return Ok(emulation);
        }
        let mount_dir = run_dir.join("binfmt_misc");
        let mounted = if in_initial_user_namespace() {
            // Mounting here would reach the host's own instance, which must stay untouched.
            Err(SandboxError::Setup(
                "not inside a build user namespace".into(),
            ))
        } else if needed
            .iter()
            .all(|(_, _, interpreter)| interpreter.is_none())
        {
            Err(SandboxError::Setup("no emulator binary found".into()))
        } else {
            mount_private(&mount_dir)
        };
        match mounted {
            Ok(()) => {
                // The private instance replaces the host's handlers for the whole
                // namespace, so every foreign platform must be registered in it.
                emulation.private_mount = Some(mount_dir.clone());
                for (platform, m, interpreter) in needed {
                    let interpreter = interpreter
                        .or_else(|| host_handler_file(m))
                        .ok_or_else(|| emulator_missing(&platform, m))?;
                    register_private(&mount_dir, &platform, m, &interpreter)?;
                    emulation.platforms.push((
                        platform,
                        PlatformSupport::Emulated {
                            interpreter,
                            private: true,
                        },
                    ));
                }
            }
            Err(e) => {
                tracing::debug!("no private binfmt_misc ({e}); using the host's handlers");
                for (platform, m, interpreter) in needed {
                    let handler = match (host_handler_file(m), interpreter) {
                        (Some(handler), _) => handler,
                        (None, None) => return Err(emulator_missing(&platform, m)),
                        (None, Some(_)) => return Err(no_binfmt(&platform, m, &e)),
                    };
                    emulation.warnings.extend(without_f_flag(&platform, m));
                    emulation.platforms.push((
                        platform,
                        PlatformSupport::Emulated {
                            interpreter: handler,
                            private: false,
                        },
                    ));
                }
            }
        }
        Ok(emulation)
    }

    /// How `platform` runs, if it was prepared.
    pub fn support(&self, platform: &Platform) -> Option<&PlatformSupport> {
        self.platforms
            .iter()
            .find(|(p, _)| p == platform)
            .map(|(_, s)| s)
    }

    /// Every prepared platform and how it runs, for reports.
    pub fn platforms(&self) -> &[(Platform, PlatformSupport)] {
        &self.platforms
    }

    /// The private binfmt_misc mount, when one was made.
    pub fn private_mount(&self) -> Option<&Path> {
        self.private_mount.as_deref()
    }
}

impl Drop for Emulation {
    fn drop(&mut self) {
        if let Some(dir) = &self.private_mount {
            let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The handler entry for `platform` and the emulator binary, when one is installed.
fn emulator_for(
    platform: &Platform,
    host: &Platform,
) -> Result<(Platform, &'static ElfMatch, Option<PathBuf>), SandboxError> {
    let unsupported = || SandboxError::Unsupported {
        platform: platform.to_string(),
        host: host.to_string(),
    };
    let qemu = platform.qemu_name().ok_or_else(unsupported)?;
    let m = elf_match(qemu).ok_or_else(unsupported)?;
    Ok((platform.clone(), m, find_emulator(qemu)))
}

fn emulator_missing(platform: &Platform, m: &ElfMatch) -> SandboxError {
    SandboxError::EmulatorMissing {
        platform: platform.to_string(),
        binary: format!("qemu-{}-static", m.qemu),
    }
}

/// Whether this process shares the user namespace of the host's pid 1 (the initial
/// one); when /proc/1 cannot be inspected, it does not.
pub(crate) fn in_initial_user_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata("/proc/1/ns/user"),
        std::fs::metadata("/proc/self/ns/user"),
    ) {
        (Ok(init), Ok(own)) => init.ino() == own.ino() && init.dev() == own.dev(),
        _ => false,
    }
}

fn mount_private(dir: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(dir).map_err(sys(format!("create {}", dir.display())))?;
    nix::mount::mount(
        Some("binfmt_misc"),
        dir,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(sys(format!("mount binfmt_misc on {}", dir.display())))
}

fn register_private(
    dir: &Path,
    platform: &Platform,
    m: &ElfMatch,
    interpreter: &Path,
) -> Result<(), SandboxError> {
    let entry = dir.join(handler_name(m.qemu));
    if let Ok(text) = std::fs::read_to_string(&entry)
        && parse_handler(&text).enabled
    {
        return Ok(());
    }
    let line =
        register_line(m, interpreter, HANDLER_FLAGS).map_err(|reason| SandboxError::NoBinfmt {
            platform: platform.to_string(),
            reason,
        })?;
    std::fs::write(dir.join("register"), line).map_err(|e| SandboxError::NoBinfmt {
        platform: platform.to_string(),
        reason: format!(
            "registering {} in the private binfmt_misc failed: {e}",
            interpreter.display()
        ),
    })?;
    tracing::debug!(%platform, interpreter = %interpreter.display(), "registered private binfmt handler");
    Ok(())
}

/// The interpreter of the host's enabled handler for `m`, if the host registered one and
/// `$RBUILD_QEMU_PATH`, when set, holds an emulator for it.
fn host_handler_file(m: &ElfMatch) -> Option<PathBuf> {
    if std::env::var(QEMU_PATH_ENV).is_ok() && find_emulator(m.qemu).is_none() {
        return None;
    }
    let path = Path::new(HOST_BINFMT_DIR).join(handler_name(m.qemu));
    let status = parse_handler(&std::fs::read_to_string(path).ok()?);
    status.interpreter.filter(|_| status.enabled)
}

/// The warning for a host handler of `m` without the `F` flag, if it lacks it.
fn without_f_flag(platform: &Platform, m: &ElfMatch) -> Option<String> {
    let path = Path::new(HOST_BINFMT_DIR).join(handler_name(m.qemu));
    let status = parse_handler(&std::fs::read_to_string(path).ok()?);
    (!status.flags.contains('F')).then(|| {
        format!(
            "the host's {} handler lacks the F flag: {} must exist inside each {platform} root filesystem",
            handler_name(m.qemu),
            status.interpreter.unwrap_or_default().display()
        )
    })
}

fn no_binfmt(platform: &Platform, m: &ElfMatch, mount_error: &SandboxError) -> SandboxError {
    SandboxError::NoBinfmt {
        platform: platform.to_string(),
        reason: format!(
            "this kernel cannot give the build its own binfmt_misc ({mount_error}; Linux >= 6.7 can) and the host has no enabled {}/{} handler; install qemu-user-static and binfmt-support on the host (apt-get install qemu-user-static binfmt-support)",
            HOST_BINFMT_DIR,
            handler_name(m.qemu)
        ),
    }
}

/// Where the host's binfmt_misc instance is mounted.
const HOST_BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

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

#[cfg(test)]
mod tests {

    #[test]
    fn old_arm_variants_get_a_matching_cpu() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert_eq!(emulated_cpu(&p("linux/arm/v6")), Some("arm1176"));
        assert_eq!(emulated_cpu(&p("linux/arm/v7")), None);
        assert_eq!(emulated_cpu(&p("linux/arm64")), None);
    }
    use super::*;

    #[test]
    fn register_line_has_all_fields() {
        let m = elf_match("aarch64").unwrap();
        let line = register_line(m, Path::new("/usr/bin/qemu-aarch64-static"), "F").unwrap();
        assert_eq!(
            line,
            r":qemu-aarch64:M:0:\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F"
        );
        assert!(register_line(m, Path::new("/a:b/qemu"), "F").is_err());
    }

    #[test]
    fn every_qemu_name_of_common_platforms_has_a_handler() {
        for p in [
            "linux/arm64",
            "linux/arm/v7",
            "linux/386",
            "linux/amd64",
            "linux/ppc64le",
            "linux/s390x",
            "linux/riscv64",
            "linux/mips64le",
            "linux/loong64",
        ] {
            let platform: Platform = p.parse().unwrap();
            let qemu = platform.qemu_name().unwrap();
            assert!(elf_match(qemu).is_some(), "{p}");
        }
    }

    fn unescape(s: &str) -> Vec<u8> {
        s.split(r"\x")
            .filter(|h| !h.is_empty())
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    #[test]
    fn magic_and_mask_agree_with_the_elf_decoder() {
        for m in ELF_MATCHES {
            let magic = unescape(m.magic);
            let mask = unescape(m.mask);
            assert_eq!(magic.len(), mask.len(), "{}", m.qemu);
            let arch = elf_architecture(&magic).unwrap();
            let platform = Platform::new("linux", arch, None);
            assert_eq!(platform.qemu_name(), Some(m.qemu));
            assert_eq!(
                &mask[..4],
                b"\xff\xff\xff\xff",
                "{}: the ELF signature must be matched",
                m.qemu
            );
        }
    }

    #[test]
    fn probe_binary_is_a_386_elf() {
        let elf = ia32_probe_binary();
        assert_eq!(elf.len(), 96);
        assert_eq!(elf_architecture(&elf), Some("386"));
    }

    #[test]
    fn the_test_process_namespace_is_recognised() {
        let root_in_host_ns =
            nix::unistd::getuid().is_root() && std::env::var("RBUILD_IN_USERNS").is_err();
        if root_in_host_ns && std::fs::metadata("/proc/1/ns/user").is_ok() {
            assert!(in_initial_user_namespace());
        }
        if !nix::unistd::getuid().is_root() && std::fs::metadata("/proc/1/ns/user").is_err() {
            assert!(!in_initial_user_namespace());
        }
    }

    fn facts(private: bool, emulators: &[&str], handlers: &[&str], compat32: bool) -> HostFacts {
        let list = |names: &[&str], dir: &str| {
            names
                .iter()
                .map(|q| {
                    (
                        q.to_string(),
                        PathBuf::from(format!("{dir}/qemu-{q}-static")),
                    )
                })
                .collect()
        };
        HostFacts {
            host: "linux/amd64".parse().unwrap(),
            compat32,
            emulators: list(emulators, "/usr/bin"),
            private_binfmt: if private {
                Ok(())
            } else {
                Err("mount binfmt_misc: Operation not permitted".into())
            },
            host_handlers: list(handlers, "/host"),
        }
    }

    fn state_of(lines: &[PlatformLine], platform: &str) -> PlatformState {
        lines
            .iter()
            .find(|l| l.platform.to_string() == platform)
            .unwrap()
            .state
            .clone()
    }

    #[test]
    fn private_handlers_come_first_then_the_hosts() {
        let lines = classify_platforms(&facts(
            true,
            &["aarch64", "arm"],
            &["aarch64", "s390x"],
            true,
        ));
        assert_eq!(lines[0].platform.to_string(), "linux/amd64");
        assert_eq!(lines[1].platform.to_string(), "linux/386");
        assert_eq!(lines[1].state, PlatformState::Native);
        assert_eq!(
            state_of(&lines, "linux/arm64"),
            PlatformState::Emulated {
                interpreter: "/usr/bin/qemu-aarch64-static".into(),
                source: HandlerSource::Private
            }
        );
        // With a private instance, the host handler's interpreter is registered privately.
        assert_eq!(
            state_of(&lines, "linux/s390x"),
            PlatformState::Emulated {
                interpreter: "/host/qemu-s390x-static".into(),
                source: HandlerSource::Private
            }
        );
        assert!(matches!(
            state_of(&lines, "linux/riscv64"),
            PlatformState::Unavailable { hint } if hint.contains("qemu-riscv64-static not found")
        ));
        let line = lines
            .iter()
            .find(|l| l.platform.to_string() == "linux/arm/v7")
            .unwrap();
        assert_eq!(
            line.to_string(),
            "linux/arm/v7     emulated (private binfmt_misc, /usr/bin/qemu-arm-static)"
        );
    }

    #[test]
    fn without_a_private_instance_host_handlers_are_used() {
        let lines = classify_platforms(&facts(false, &["aarch64", "arm"], &["aarch64"], false));
        assert_eq!(
            state_of(&lines, "linux/arm64"),
            PlatformState::Emulated {
                interpreter: "/host/qemu-aarch64-static".into(),
                source: HandlerSource::Host
            }
        );
        let arm = state_of(&lines, "linux/arm/v7");
        assert!(
            matches!(&arm, PlatformState::Unavailable { hint } if hint.contains("binfmt-support") && hint.contains("Operation not permitted")),
            "{arm:?}"
        );
        assert!(matches!(
            state_of(&lines, "linux/386"),
            PlatformState::Unavailable { .. }
        ));
        assert_eq!(lines.len(), KNOWN_PLATFORMS.len());
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.state == PlatformState::Native)
                .count(),
            1
        );
    }

    #[test]
    fn handler_file_parses() {
        let text = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POCF\noffset 0\nmagic 7f45\nmask ffff\n";
        let status = parse_handler(text);
        assert!(status.enabled);
        assert_eq!(
            status.interpreter.as_deref(),
            Some(Path::new("/usr/bin/qemu-aarch64-static"))
        );
        assert_eq!(status.flags, "POCF");
        assert!(!parse_handler("disabled\n").enabled);
    }

    #[test]
    fn elf_architecture_rejects_non_elf() {
        assert_eq!(
            elf_architecture(b"#!/bin/sh\necho hi\n and more bytes"),
            None
        );
    }
}
