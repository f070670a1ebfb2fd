//! Foreign architectures: QEMU user-mode emulators registered in a private
//! `binfmt_misc` instance of the build's user namespace, or the host's handlers.

mod elf;
mod report;

pub use elf::{
    ELF_MATCHES, ElfMatch, HANDLER_FLAGS, elf_architecture, elf_match, handler_name, parse_handler,
    register_line,
};
use report::HOST_BINFMT_DIR;
pub use report::{
    HandlerSource, HostFacts, KNOWN_PLATFORMS, PlatformLine, PlatformState, classify_platforms,
    platform_report,
};

use crate::error::{SandboxError, sys};
use rbuild_core::Platform;
use std::path::{Path, PathBuf};

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
