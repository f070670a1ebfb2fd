//! The integrity check of the image store: every name's index, manifests, configs and
//! layers exist, have the size their descriptor gives and hash to their digest.

use crate::{ImageStore, ImagesError, Pass};
use rbuild_core::{Digest, Sha256Writer};
use std::collections::BTreeMap;

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Names checked.
    pub images: usize,
    /// Distinct blobs verified.
    pub blobs: usize,
    /// One line per problem, naming the image and the blob.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every name of `images` in one [`Pass`] (each document read once however many
/// names and images share it, every blob hashed once).
pub fn check(images: &ImageStore) -> Result<Report, ImagesError> {
    let mut report = Report::default();
    let mut verified: BTreeMap<Digest, Result<u64, String>> = BTreeMap::new();
    let mut pass = Pass::new(images.blobs());
    for (path, record) in images.record_files()? {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        report.images += 1;
        let needed = match pass.closure(&record.target) {
            Ok(n) => n,
            Err(e) => {
                report.problems.push(format!("{}: {e}", record.name));
                continue;
            }
        };
        for n in needed {
            let result = verified
                .entry(n.digest.clone())
                .or_insert_with(|| verify_blob(images, &n.digest));
            let problem = match result {
                Err(e) => Some(e.clone()),
                Ok(size) if *size != n.size => Some(format!(
                    "{} {} has {size} bytes, its descriptor says {}",
                    n.kind, n.digest, n.size
                )),
                Ok(_) => None,
            };
            if let Some(p) = problem {
                report
                    .problems
                    .push(format!("{}: {} {}: {p}", record.name, n.kind, n.digest));
            }
        }
    }
    report.blobs = verified.len();
    Ok(report)
}

/// Hashes one blob; its size when it matches its digest.
fn verify_blob(images: &ImageStore, digest: &Digest) -> Result<u64, String> {
    let mut file = images
        .blobs()
        .open_blob(digest)
        .map_err(|e| e.to_string())?;
    let mut w = Sha256Writer::new(std::io::sink());
    std::io::copy(&mut file, &mut w).map_err(|e| format!("reading: {e}"))?;
    let (_, found, size) = w.finish();
    if &found != digest {
        return Err(format!("content hashes to {found}"));
    }
    Ok(size)
}
