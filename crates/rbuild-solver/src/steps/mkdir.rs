//! WORKDIR steps: BuildKit creates the directory and its missing parents (mode 0755,
//! owned by the USER in effect) as a file operation, which always makes a layer; the
//! layer is empty when the directory already exists.

use super::copy::resolve_chown;
use super::{Changes, Step, StepContext, step_err};
use crate::layers::temp_dir;
use crate::{SolveError, StageResult, StepError, cache};
use rbuild_core::Digest;
use rbuild_graph::MkdirOp;
use rbuild_snapshot::{CopyOptions, CopySource, LayerStack};
use std::fs;
use std::os::unix::fs::PermissionsExt;

impl Step for MkdirOp {
    /// The parent's key, the path and the user (the owner of what is created).
    fn key(&self, _cx: &StepContext, parent: &StageResult) -> Result<Digest, SolveError> {
        Ok(cache::chain(
            &parent.key,
            &[b"mkdir", self.path.as_bytes(), self.user.as_bytes()],
        ))
    }

    fn exec(&self, cx: &StepContext, parent: &StageResult) -> Result<Changes, SolveError> {
        let lowers = parent.lowers();
        let dest_stack = LayerStack::new(lowers.clone());
        let chown = match self.user.as_str() {
            "" => None,
            user => {
                let mut warn = |w: String| cx.solver.warn(cx.vertex, w);
                let ids = resolve_chown(&dest_stack, user, &mut warn);
                Some(ids.map_err(|m| step_err(cx.op, m))?)
            }
        };
        let tmp = temp_dir(cx.solver.state, crate::TempKind::Mkdir)?;
        // The new directory is copied from an empty 0755 directory: the copy code already
        // carries existing parents unchanged and creates missing ones as BuildKit's mkdir -p.
        let src = tmp.path().join("src");
        let empty = src.join("dir");
        fs::create_dir_all(&empty).map_err(|e| SolveError::Io(empty.clone(), e))?;
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o755))
            .map_err(|e| SolveError::Io(empty.clone(), e))?;
        let out = tmp.path().join("layer");
        fs::create_dir(&out).map_err(|e| SolveError::Io(out.clone(), e))?;
        let opts = CopyOptions {
            chown: Some(chown.unwrap_or((0, 0))),
            chmod: None,
            workdir: "/".into(),
            ..Default::default()
        };
        let stats = rbuild_snapshot::copy(
            CopySource::Context(&src),
            &["dir".to_string()],
            &self.path,
            &dest_stack,
            &out,
            &opts,
        )
        .map_err(|source| {
            step_err(
                cx.op,
                StepError::Workdir {
                    path: self.path.clone(),
                    source,
                },
            )
        })?;
        super::copy::report(cx, &stats);
        Ok(Changes {
            _tmp: tmp,
            dir: out,
            lowers,
        })
    }
}
