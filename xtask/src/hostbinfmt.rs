//! For the benchmark only: buildah runs foreign-platform steps through the host's
//! binfmt_misc handlers, which this machine does not have. While the guard lives, QEMU
//! handlers are registered on the host (as root) for the platforms that lack one, and
//! they are removed again on drop. rbuild itself never needs or touches these.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::layout::Platform;
use crate::util;

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Host handlers registered for the benchmark, removed on drop.
pub struct HostHandlers {
    registered: Vec<PathBuf>,
    mounted: bool,
}

impl HostHandlers {
    /// Registers what `platforms` need and the host lacks. Without root, registers nothing.
    pub fn register(platforms: &[Platform]) -> Result<HostHandlers> {
        let mut guard = HostHandlers {
            registered: Vec::new(),
            mounted: false,
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
        let ours = Path::new(BINFMT).join(format!("rbuild-bench-{qemu}"));
        if existing.exists() || ours.exists() {
            return Ok(());
        }
        let (Some(m), Some(interp)) = (
            rbuild_sandbox::ELF_MATCHES.iter().find(|m| m.qemu == qemu),
            rbuild_sandbox::find_emulator(qemu),
        ) else {
            return Ok(());
        };
        let line = format!(
            ":rbuild-bench-{qemu}:M:0:{}:{}:{}:F",
            m.magic,
            m.mask,
            interp.display()
        );
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
