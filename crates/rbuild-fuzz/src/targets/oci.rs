//! `oci-json`: the readers of OCI layouts and image configs, and the string parsers of
//! digests, platforms and `--build-context` values.
//!
//! The input is a list of documents separated by `\n---\n`. Every document goes through
//! the `ImageIndex`, `ImageManifest` and `ImageConfig` readers (with a serialise-and-read-
//! back check), and every line of it through `Digest`, `Platform` and `NamedContext`
//! parsing. Then the documents become an OCI layout on disk — the first is `index.json`,
//! every one is also a blob — and `rbuild_source::resolve_layout` reads it. In a document,
//! `@D<n>` stands for `sha256:<hex>` of document `n` and `@S<n>` for its size, so inputs can
//! link index → manifest → config; a document may only refer to later ones.

use rbuild_core::{Digest, Platform};
use rbuild_image::ImageConfig;
use rbuild_source::{LayoutRef, NamedContext};
use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};

/// JSON keys and values of OCI documents, and the placeholders this target understands.
pub(crate) static DICTIONARY: &[&[u8]] = &[
    b"\n---\n",
    b"@D1",
    b"@D2",
    b"@D3",
    b"@S1",
    b"@S2",
    b"@S3",
    b"\"@D1\"",
    b"{\"schemaVersion\":2,",
    b"\"mediaType\":",
    b"\"manifests\":[",
    b"\"layers\":[",
    b"\"config\":{",
    b"\"digest\":",
    b"\"size\":",
    b"\"platform\":{",
    b"\"os\":\"linux\"",
    b"\"architecture\":\"arm64\"",
    b"\"architecture\":\"arm\"",
    b"\"variant\":\"v7\"",
    b"\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\"}",
    b"\"application/vnd.oci.image.index.v1+json\"",
    b"\"application/vnd.oci.image.manifest.v1+json\"",
    b"\"application/vnd.docker.distribution.manifest.list.v2+json\"",
    b"\"application/vnd.oci.image.config.v1+json\"",
    b"\"application/vnd.oci.image.layer.v1.tar+gzip\"",
    b"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[",
    b"\"Env\":[",
    b"\"Healthcheck\":{",
    b"\"history\":[",
    b"sha256:",
    b"sha512:",
    b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"linux/amd64",
    b"linux/arm/v7",
    b"aarch64",
    b"arm64/v8",
    b"oci-layout://",
    b"@sha256:",
    b":latest",
    b"docker-image://",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"\\u0000",
    b"\\ud800",
    b",",
    b":",
];

const SEPARATOR: &[u8] = b"\n---\n";

/// Runs one input; see the module docs for its layout.
pub fn oci_json(data: &[u8]) -> u64 {
    let docs = split_docs(data);
    let mut outcome = Vec::new();
    for doc in &docs {
        outcome.push(parse_documents(doc));
        for line in String::from_utf8_lossy(doc).lines() {
            outcome.push(parse_strings(line));
        }
    }
    outcome.truncate(8);
    let layout = resolve(&docs);
    crate::fingerprint((outcome, layout))
}

fn split_docs(data: &[u8]) -> Vec<Vec<u8>> {
    let mut docs = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        docs.push(rest[..i].to_vec());
        rest = &rest[i + SEPARATOR.len()..];
    }
    docs.push(rest.to_vec());
    docs.truncate(8);
    docs
}

/// The three JSON readers; a document that reads must serialise and read back equal.
fn parse_documents(doc: &[u8]) -> u8 {
    let mut ok = 0u8;
    if let Ok(index) = serde_json::from_slice::<oci_spec::image::ImageIndex>(doc) {
        ok |= 1;
        if let Ok(text) = serde_json::to_string(&index) {
            let back = serde_json::from_str::<oci_spec::image::ImageIndex>(&text);
            assert_eq!(
                back.ok().as_ref(),
                Some(&index),
                "index does not read back: {text}"
            );
        }
    }
    if let Ok(manifest) = serde_json::from_slice::<oci_spec::image::ImageManifest>(doc) {
        ok |= 2;
        if let Ok(text) = serde_json::to_string(&manifest) {
            let back = serde_json::from_str::<oci_spec::image::ImageManifest>(&text);
            assert_eq!(
                back.ok().as_ref(),
                Some(&manifest),
                "manifest does not read back: {text}"
            );
        }
    }
    if let Ok(config) = ImageConfig::from_json(doc) {
        ok |= 4;
        let text = match config.to_json() {
            Ok(t) => t,
            Err(e) => panic!("a config that was read cannot be written: {e}"),
        };
        let back = ImageConfig::from_json(&text);
        assert_eq!(
            back.as_ref().ok(),
            Some(&config),
            "config does not read back: {}",
            String::from_utf8_lossy(&text)
        );
        let _ = config.env("PATH");
    }
    ok
}

/// `Digest`, `Platform` and `NamedContext` parsing of one line, with round-trip checks.
fn parse_strings(line: &str) -> u8 {
    let mut ok = 0u8;
    if let Ok(d) = line.parse::<Digest>() {
        ok |= 1;
        assert_eq!(d.to_string(), line, "a digest does not display as written");
        let _ = d.short();
        let json = serde_json::to_string(&d).ok();
        let back = json.and_then(|j| serde_json::from_str::<Digest>(&j).ok());
        assert_eq!(back.as_ref(), Some(&d), "digest does not survive JSON");
    }
    if let Ok(p) = line.parse::<Platform>() {
        ok |= 2;
        let shown = p.to_string();
        let again = shown.parse::<Platform>();
        assert_eq!(
            again.ok().as_ref(),
            Some(&p),
            "{line:?} → {shown:?} does not parse back"
        );
        assert!(p.matches(&p), "{p} does not match itself");
        let _ = (
            p.qemu_name(),
            p.uname_machine(),
            p.runs_natively_on(&Platform::host()),
        );
    }
    match NamedContext::parse(line) {
        Ok(c) => {
            ok |= 4;
            if let NamedContext::OciLayout { .. } = &c {
                let shown = c.to_string();
                let again = NamedContext::parse(&shown);
                assert_eq!(
                    again.ok().as_ref(),
                    Some(&c),
                    "{line:?} → {shown:?} does not parse back"
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    ok
}

/// Where one thread writes its layouts: a private temp dir, reused across inputs.
struct Scratch {
    dir: tempfile::TempDir,
    n: u64,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

const PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64", "linux/arm/v7"];

/// Writes `docs` as an OCI layout and resolves it; the outcome is a small number for the
/// fingerprint. Harness I/O failures (not the code under test) panic.
fn resolve(docs: &[Vec<u8>]) -> u8 {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let dir = match tempfile::Builder::new()
                .prefix("rbuild-fuzz-oci.")
                .tempdir()
            {
                Ok(d) => d,
                Err(e) => panic!("harness: cannot create a temp dir: {e}"),
            };
            *slot = Some(Scratch { dir, n: 0 });
        }
        let Some(scratch) = slot.as_mut() else {
            unreachable!("scratch was just set");
        };
        scratch.n += 1;
        let work = scratch.dir.path().join(format!("{}", scratch.n));
        let outcome = resolve_in(&work, docs);
        if let Err(e) = fs::remove_dir_all(&work) {
            panic!("harness: cannot remove {}: {e}", work.display());
        }
        outcome
    })
}

fn resolve_in(work: &Path, docs: &[Vec<u8>]) -> u8 {
    let layout = work.join("layout");
    let blobs = layout.join("blobs/sha256");
    harness(fs::create_dir_all(&blobs), &blobs);
    // Fill in placeholders from the last document to the first.
    let mut filled: Vec<Vec<u8>> = vec![Vec::new(); docs.len()];
    let mut digests: Vec<Option<(Digest, usize)>> = vec![None; docs.len()];
    for i in (0..docs.len()).rev() {
        let doc = substitute(&docs[i], &digests);
        let d = Digest::sha256(&doc);
        let path = blobs.join(d.hex());
        harness(fs::write(&path, &doc), &path);
        digests[i] = Some((d, doc.len()));
        filled[i] = doc;
    }
    let index = layout.join("index.json");
    harness(fs::write(&index, &filled[0]), &index);
    let store = work.join("store");
    let store = match rbuild_store::Store::open(&store) {
        Ok(s) => s,
        Err(e) => panic!("harness: cannot open a store: {e}"),
    };
    let pick = crate::fingerprint(&docs[0]) as usize;
    let platform: Platform = match PLATFORMS[pick % PLATFORMS.len()].parse() {
        Ok(p) => p,
        Err(e) => panic!("built-in platform does not parse: {e}"),
    };
    let reference = match pick / PLATFORMS.len() % 3 {
        0 => LayoutRef::Tag(None),
        1 => LayoutRef::Tag(Some("latest".into())),
        _ => match digests.get(1).and_then(|d| d.as_ref()) {
            Some((d, _)) => LayoutRef::Digest(d.clone()),
            None => LayoutRef::Tag(None),
        },
    };
    match rbuild_source::resolve_layout(&layout, &reference, &platform, &store) {
        Ok(img) => {
            assert_eq!(
                img.layers.len(),
                img.config.rootfs.diff_ids.len(),
                "resolved image has as many layers as diff ids"
            );
            for l in &img.layers {
                assert!(
                    store.contains(&l.digest),
                    "layer {} was not imported",
                    l.digest
                );
            }
            100
        }
        Err(e) => {
            let _ = e.to_string();
            error_kind(&e)
        }
    }
}

fn error_kind(e: &rbuild_source::SourceError) -> u8 {
    use rbuild_source::SourceError as E;
    match e {
        E::Store(_) => 1,
        E::Io { .. } => 2,
        E::Malformed { .. } => 3,
        E::NotInLayout { .. } => 4,
        E::NoPlatform { .. } => 5,
        E::BadContext(..) => 6,
        _ => 7,
    }
}

/// Replaces `@D<n>` / `@S<n>` by the digest / size of document `n` where it is known.
fn substitute(doc: &[u8], digests: &[Option<(Digest, usize)>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    while i < doc.len() {
        if doc[i] == b'@' && i + 2 < doc.len() && doc[i + 2].is_ascii_digit() {
            let n = usize::from(doc[i + 2] - b'0');
            if let Some(Some((d, size))) = digests.get(n) {
                match doc[i + 1] {
                    b'D' => {
                        out.extend_from_slice(d.to_string().as_bytes());
                        i += 3;
                        continue;
                    }
                    b'S' => {
                        out.extend_from_slice(size.to_string().as_bytes());
                        i += 3;
                        continue;
                    }
                    _ => {}
                }
            }
        }
        out.push(doc[i]);
        i += 1;
    }
    out
}

fn harness<T>(r: std::io::Result<T>, path: &Path) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("harness: {}: {e}", PathBuf::from(path).display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_link_documents_into_a_layout_that_resolves() {
        let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/oci-json/layout-nested.json");
        let docs = split_docs(&fs::read(seed).unwrap());
        assert_eq!(docs.len(), 6);
        let dir = tempfile::tempdir().unwrap();
        // Whatever platform and reference the input picks, the layout has an image for it
        // or says which platforms it has.
        let outcome = resolve_in(&dir.path().join("w"), &docs);
        assert!(
            outcome == 100 || outcome == 5 || outcome == 4,
            "outcome {outcome}"
        );
    }

    #[test]
    fn substitute_fills_known_documents_only() {
        let d = Digest::sha256(b"x");
        let out = substitute(b"@D1 @S1 @D2 @X1", &[None, Some((d.clone(), 1))]);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{d} 1 @D2 @X1"));
    }
}
