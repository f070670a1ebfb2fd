//! Copying manifests between repositories (`imagetools create`): blobs are mounted when
//! source and target are repositories of the same registry, downloaded into the store and
//! uploaded otherwise; then the manifest is put by digest.

use crate::error::RegistryError;
use crate::manifest::{Descriptor, Document};
use crate::pull::fetch_manifest;
use crate::push::{PushReport, push_blob, put_manifest};
use crate::session::Session;
use rbuild_core::Reference;
use rbuild_store::Store;

/// Makes the manifest (or index) `desc` of `src` exist in `target`'s repository.
pub async fn copy_manifest(
    session: &Session<'_>,
    store: &Store,
    src: &Reference,
    desc: &Descriptor,
    target: &Reference,
) -> Result<PushReport, RegistryError> {
    let mut report = PushReport::default();
    if src.registry() == target.registry() && src.repository() == target.repository() {
        return Ok(report);
    }
    let src_host = session.host(src.registry(), src.repository()).await?;
    let dst_host = session.host(target.registry(), target.repository()).await?;
    let fetched = fetch_manifest(
        &src_host,
        src.repository(),
        &desc.digest.to_string(),
        Some(&desc.digest),
    )
    .await?;
    let same_registry = src.registry() == target.registry();
    let children: Vec<Descriptor> = match &fetched.document {
        Document::Index(entries) => entries.clone(),
        Document::Manifest { config, layers } => std::iter::once(config.clone())
            .chain(layers.iter().cloned())
            .collect(),
    };
    if let Document::Index(_) = &fetched.document {
        for c in &children {
            let r = Box::pin(copy_manifest(session, store, src, c, target)).await?;
            report.add(&r);
        }
    } else {
        for b in &children {
            let from = same_registry.then(|| src.repository().to_string());
            let fetch_from = Some((&*src_host, src.repository()));
            let r = push_blob(&dst_host, target.repository(), b, store, from, fetch_from).await?;
            report.add(&r);
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
