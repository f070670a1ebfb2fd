//! An overlay mounted in the build namespace itself, for steps that change a stage's tree
//! without running a command in it (ADD of a local archive).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::SandboxError;
use crate::plan::overlay_data;

/// An overlay (`lower` top-most first, `upper`, `work`) mounted on a directory; unmounted
/// when dropped. `upper` then holds the changes made through the mount, in overlay format.
#[derive(Debug)]
pub struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    /// Mounts the overlay on the empty directory `target`. With no lower layers, `empty`
    /// (an empty directory) stands in for them.
    pub fn new(
        lower: &[PathBuf],
        empty: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<OverlayMount, SandboxError> {
        let lower = if lower.is_empty() {
            vec![empty.to_path_buf()]
        } else {
            lower.to_vec()
        };
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as usize;
        // Relative layer paths would need a chdir, which the other threads of the build
        // would see: only absolute options are used here.
        let data = overlay_data(&lower, upper, work, page)
            .ok()
            .filter(|d| d.chdir.is_none())
            .ok_or_else(|| SandboxError::Io {
                context: format!("mount an overlay of {} layers", lower.len()),
                source: std::io::Error::from_raw_os_error(libc::E2BIG),
            })?;
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.options.as_str()),
        )
        .map_err(|e| SandboxError::Io {
            context: format!("mount an overlay on {}", target.display()),
            source: e.into(),
        })?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
        })
    }

    /// Where the merged tree is.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.target, MntFlags::MNT_DETACH) {
            tracing::warn!(target = %self.target.display(), error = %e, "unmounting overlay");
        }
    }
}
