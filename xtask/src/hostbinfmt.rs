//! For tools other than rbuild that run foreign binaries through the host's binfmt_misc
//! handlers, which this machine does not have: buildah in the benchmark, mmdebstrap for
//! the Debian fixture. While the guard lives, QEMU handlers are registered on the host
//! (as root) for the platforms that lack one, and they are removed again on drop.
//! rbuild itself never needs or touches these.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::layout::Platform;
use crate::util;

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Host handlers registered for one xtask command, removed on drop.
pub struct HostHandlers {
    registered: Vec<PathBuf>,
    mounted: bool,
    label: &'static str,
}

impl HostHandlers {
    /// Registers what `platforms` need and the host lacks, as `rbuild-<label>-<qemu>`
    /// (a label per command, so two commands never remove each other's handlers).
    /// Without root, registers nothing.
    pub fn register(platforms: &[Platform], label: &'static str) -> Result<HostHandlers> {
        let mut guard = HostHandlers {
            registered: Vec::new(),
            mounted: false,
            label,
        };
        if !util::is_root() {
            return Ok(guard);
        }
        if !Path::new(BINFMT).join("register").exists() {
            let status = std::process::Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT])
                .status()
                .context("mount binfmt_misc")?;
            guard.mounted = status.success();
            if !guard.mounted {
                return Ok(guard);
            }
        }
        let host = rbuild_core::Platform::host();
        for p in platforms {
            let platform = rbuild_core::Platform::new(&p.os, &p.architecture, p.variant.as_deref());
            if platform.runs_natively_on(&host) {
                continue;
            }
            let Some(qemu) = platform.qemu_name() else {
                continue;
            };
            guard.register_one(qemu)?;
        }
        Ok(guard)
    }

    fn register_one(&mut self, qemu: &str) -> Result<()> {
        let existing = Path::new(BINFMT).join(format!("qemu-{qemu}"));
        let name = format!("rbuild-{}-{qemu}", self.label);
        let ours = Path::new(BINFMT).join(&name);
        if existing.exists() || ours.exists() {
            return Ok(());
        }
        let (Some(m), Some(interp)) = (
            rbuild_sandbox::ELF_MATCHES.iter().find(|m| m.qemu == qemu),
            rbuild_sandbox::find_emulator(qemu),
        ) else {
            return Ok(());
        };
        let line = format!(":{name}:M:0:{}:{}:{}:F", m.magic, m.mask, interp.display());
        std::fs::write(Path::new(BINFMT).join("register"), line)
            .with_context(|| format!("registering a host handler for {qemu}"))?;
        self.registered.push(ours);
        Ok(())
    }

    /// How many handlers this guard added.
    pub fn count(&self) -> usize {
        self.registered.len()
    }
}

impl Drop for HostHandlers {
    fn drop(&mut self) {
        for entry in &self.registered {
            let _ = std::fs::write(entry, "-1");
        }
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(BINFMT).status();
        }
    }
}
