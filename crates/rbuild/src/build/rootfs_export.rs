//! The state directory as the `type=local`/`type=tar` exporters see it: where each layer
//! is unpacked (as the solver stacks them) and scratch space for a tar's tree. The
//! exporters themselves are `rbuild_export::rootfs`.

use rbuild_core::Digest;
use rbuild_export::{LayerDirs, RootfsError};
use rbuild_solver::{StateDir, TempKind};
use std::path::PathBuf;

/// The build's state directory, lent to the rootfs exporters.
pub struct StateLayers<'a>(pub &'a StateDir);

impl LayerDirs for StateLayers<'_> {
    fn stack(&self, diff_ids: &[Digest]) -> Result<Vec<PathBuf>, RootfsError> {
        let mut dirs = Vec::new();
        for d in diff_ids.iter().rev() {
            let dir = self.0.layer(d);
            if !dir.is_dir() {
                return Err(RootfsError::LayerMissing {
                    diff_id: d.clone(),
                    root: self.0.root().to_path_buf(),
                });
            }
            dirs.push(dir);
        }
        // Duplicates and layers below a root-opaque one drop out, as in every stack.
        Ok(rbuild_solver::visible_lowers(dirs))
    }

    fn scratch(&self) -> Result<tempfile::TempDir, RootfsError> {
        self.0
            .temp_dir(TempKind::Rootfs)
            .map_err(|e| RootfsError::State(Box::new(e)))
    }
}
