//! Copying manifests between repositories (`imagetools create`): blobs are mounted when
//! source and target are repositories of the same registry, downloaded into the store and
//! uploaded otherwise; then the manifest is put by digest.

use crate::error::RegistryError;
use crate::manifest::{Descriptor, Document};
use crate::pull::{count, fetch_manifest};
use crate::push::{PushReport, push_blob, put_manifest};
use crate::session::Session;
use rbuild_core::walk::Budget;
use rbuild_core::{Digest, Reference};
use rbuild_store::Store;

/// Makes the manifest (or index) `desc` of `src` exist in `target`'s repository, walking
/// its indexes within one [`Budget`] (each digest copied once).
pub async fn copy_manifest(
    session: &Session<'_>,
    store: &Store,
    src: &Reference,
    desc: &Descriptor,
    target: &Reference,
) -> Result<PushReport, RegistryError> {
    if src.registry() == target.registry() && src.repository() == target.repository() {
        return Ok(PushReport::default());
    }
    let mut budget = Budget::new();
    let Some(path) = budget.enter(&[], &desc.digest)? else {
        return Ok(PushReport::default());
    };
    let job = CopyJob {
        session,
        store,
        src,
        target,
    };
    job.manifest(desc, &mut budget, &path).await
}

/// What one copy works on.
struct CopyJob<'a, 's> {
    session: &'a Session<'s>,
    store: &'a Store,
    src: &'a Reference,
    target: &'a Reference,
}

impl CopyJob<'_, '_> {
    /// Copies the document `desc` at the end of `path`, its children first.
    async fn manifest(
        &self,
        desc: &Descriptor,
        budget: &mut Budget,
        path: &[Digest],
    ) -> Result<PushReport, RegistryError> {
        let (session, store, src, target) = (self.session, self.store, self.src, self.target);
        let mut report = PushReport::default();
        let src_host = session.host(src.registry(), src.repository()).await?;
        let dst_host = session.host(target.registry(), target.repository()).await?;
        let fetched = fetch_manifest(
            &src_host,
            src.repository(),
            &desc.digest.to_string(),
            Some(&desc.digest),
        )
        .await?;
        count(budget, path, &fetched)?;
        let same_registry = src.registry() == target.registry();
        match &fetched.document {
            Document::Index(entries) => {
                for c in entries {
                    if let Some(child) = budget.enter(path, &c.digest)? {
                        let r = Box::pin(self.manifest(c, budget, &child)).await?;
                        report.add(&r);
                    }
                }
            }
            Document::Manifest { config, layers } => {
                for b in std::iter::once(config).chain(layers) {
                    if !budget.mark(&b.digest) {
                        continue;
                    }
                    let from = same_registry.then(|| src.repository().to_string());
                    let fetch_from = Some((&*src_host, src.repository()));
                    let r = push_blob(&dst_host, target.repository(), b, store, from, fetch_from)
                        .await?;
                    report.add(&r);
                }
            }
        }
        put_manifest(
            &dst_host,
            target.repository(),
            &desc.digest.to_string(),
            &fetched.media_type,
            &fetched.bytes,
            &desc.digest,
        )
        .await?;
        report.manifests += 1;
        Ok(report)
    }
}
