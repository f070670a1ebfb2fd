//! The integrity check of the image store: every name's index, manifests, configs and
//! layers exist, have the size their descriptor gives and hash to their digest.

use crate::{ImageStore, ImagesError, walk};
use rbuild_core::{Digest, Sha256Writer};
use std::collections::{BTreeMap, HashMap};

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

/// Checks every name of `images` (each image's documents read once however many names
/// it has, every blob hashed once).
pub fn check(images: &ImageStore) -> Result<Report, ImagesError> {
    let mut report = Report::default();
    let mut verified: BTreeMap<Digest, Result<u64, String>> = BTreeMap::new();
    let mut closures: HashMap<(Digest, u64, String), Result<Vec<walk::Needed>, String>> =
        HashMap::new();
    for (path, record) in images.record_files()? {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        report.images += 1;
        let closure = closures
            .entry((
                record.target.digest.clone(),
                record.target.size,
                record.target.media_type.clone(),
            ))
            .or_insert_with(|| {
                walk::closure(images.blobs(), &record.target).map_err(|e| e.to_string())
            });
        let needed = match closure {
            Ok(n) => n,
            Err(e) => {
                report.problems.push(format!("{}: {e}", record.name));
                continue;
            }
        };
        for n in needed.iter() {
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
