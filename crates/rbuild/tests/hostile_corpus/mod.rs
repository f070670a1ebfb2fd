//! The hostile-input corpus of `testdata/hostile/*.case`: parsing a case, building its layer
//! tars byte by byte (names exactly as written, no cleaning), damaging blobs as asked, and
//! writing the result as an OCI layout.

use flate2::Compression;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Write;
use std::path::Path;

/// One tar entry of a case.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir(String, u32),
    File(String, u32, String),
    Symlink(String, String),
    Hardlink(String, String),
    Node(tar::EntryType, String, u32, u32),
    PaxFile(String, String, String),
    /// A PAX 0.1 sparse file: ustar name, `GNU.sparse.name`, real size, map, data.
    SparseFile(String, String, String, String, String),
    LongFile(usize, String),
    Owned(String, u64, u64),
}

/// One layer: its entries and how its blob is written.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub entries: Vec<Entry>,
    pub compress: String,
    pub media_type: Option<String>,
    pub corrupt: Option<String>,
}

/// What a build must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Ok,
    Error(String),
    Skip,
}

/// A check of the final filesystem.
#[derive(Debug, Clone)]
pub struct Check {
    pub path: String,
    pub what: String,
    pub arg: String,
}

/// A parsed case file.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub layers: Vec<Layer>,
    pub expect: Expect,
    pub add: Expect,
    pub checks: Vec<Check>,
}

/// Every case under `dir`, by name.
pub fn load(dir: &Path, sentinel: &Path) -> Vec<Case> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p)
                .unwrap()
                .replace("{S}", &sentinel.display().to_string());
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            parse(&name, &text)
        })
        .collect()
}

fn parse(name: &str, text: &str) -> Case {
    let mut case = Case {
        name: name.to_string(),
        layers: Vec::new(),
        expect: Expect::Ok,
        add: Expect::Skip,
        checks: Vec::new(),
    };
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let rest = |n: usize| words[n..].join(" ");
        let mode = |s: &str| u32::from_str_radix(s, 8).unwrap();
        let num = |s: &str| s.parse::<u64>().unwrap();
        if words[0] == "layer" {
            case.layers.push(Layer {
                compress: "gzip".into(),
                ..Default::default()
            });
            continue;
        }
        let expect = |w: &[&str]| match w.get(1) {
            Some(&"ok") => Expect::Ok,
            Some(&"error") => Expect::Error(w[2..].join(" ")),
            _ => Expect::Skip,
        };
        match words[0] {
            "expect" => case.expect = expect(&words),
            "add" => case.add = expect(&words),
            "check" => case.checks.push(Check {
                path: words[1].to_string(),
                what: words[2].to_string(),
                arg: rest(3),
            }),
            _ => {
                let l = case
                    .layers
                    .last_mut()
                    .unwrap_or_else(|| panic!("{name}: entry before `layer`"));
                let e = match words[0] {
                    "dir" => Entry::Dir(words[1].into(), mode(words[2])),
                    "file" => Entry::File(words[1].into(), mode(words[2]), rest(3)),
                    "symlink" => Entry::Symlink(words[1].into(), words[2].into()),
                    "hardlink" => Entry::Hardlink(words[1].into(), words[2].into()),
                    "char" | "block" => Entry::Node(
                        if words[0] == "char" {
                            tar::EntryType::Char
                        } else {
                            tar::EntryType::Block
                        },
                        words[1].into(),
                        num(words[2]) as u32,
                        num(words[3]) as u32,
                    ),
                    "fifo" => Entry::Node(tar::EntryType::Fifo, words[1].into(), 0, 0),
                    "pax-file" => Entry::PaxFile(words[1].into(), words[2].into(), rest(3)),
                    "sparse-file" => Entry::SparseFile(
                        words[1].into(),
                        words[2].into(),
                        words[3].into(),
                        words[4].into(),
                        rest(5),
                    ),
                    "long-file" => Entry::LongFile(num(words[1]) as usize, rest(2)),
                    "uid" => Entry::Owned(words[1].into(), num(words[2]), num(words[3])),
                    "compress" => {
                        l.compress = words[1].into();
                        continue;
                    }
                    "media-type" => {
                        l.media_type = Some(words[1].into());
                        continue;
                    }
                    "corrupt" => {
                        l.corrupt = Some(words[1].into());
                        continue;
                    }
                    other => panic!("{name}: unknown directive {other}"),
                };
                l.entries.push(e);
            }
        }
    }
    assert!(!case.layers.is_empty(), "{name}: no layer");
    case
}

/// A ustar header with the name bytes written as given.
fn header(name: &[u8], kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    let raw = &mut h.as_ustar_mut().unwrap().name;
    let n = name.len().min(raw.len());
    raw[..n].copy_from_slice(&name[..n]);
    h
}

fn set_link(h: &mut tar::Header, target: &str) {
    let raw = &mut h.as_ustar_mut().unwrap().linkname;
    let n = target.len().min(raw.len());
    raw[..n].copy_from_slice(&target.as_bytes()[..n]);
}

fn push(out: &mut Vec<u8>, mut h: tar::Header, data: &[u8]) {
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn push_pax(out: &mut Vec<u8>, path: &str) {
    push_pax_records(out, &[("path", path)]);
}

fn push_pax_records(out: &mut Vec<u8>, records: &[(&str, &str)]) {
    let rec: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    push(
        out,
        header(
            b"PaxHeader",
            tar::EntryType::XHeader,
            0o644,
            rec.len() as u64,
        ),
        &rec,
    );
}

/// The uncompressed tar of a layer.
pub fn tar_bytes(layer: &Layer) -> Vec<u8> {
    use tar::EntryType as T;
    let mut out = Vec::new();
    for e in &layer.entries {
        match e {
            Entry::Dir(p, m) => push(&mut out, header(p.as_bytes(), T::Directory, *m, 0), b""),
            Entry::File(p, m, text) => push(
                &mut out,
                header(p.as_bytes(), T::Regular, *m, text.len() as u64),
                text.as_bytes(),
            ),
            Entry::Symlink(p, t) => {
                let mut h = header(p.as_bytes(), T::Symlink, 0o777, 0);
                set_link(&mut h, t);
                push(&mut out, h, b"");
            }
            Entry::Hardlink(p, t) => {
                let mut h = header(p.as_bytes(), T::Link, 0o644, 0);
                set_link(&mut h, t);
                push(&mut out, h, b"");
            }
            Entry::Node(kind, p, major, minor) => {
                let mut h = header(p.as_bytes(), *kind, 0o644, 0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                push(&mut out, h, b"");
            }
            Entry::PaxFile(name, path, text) => {
                push_pax(&mut out, path);
                push(
                    &mut out,
                    header(name.as_bytes(), T::Regular, 0o644, text.len() as u64),
                    text.as_bytes(),
                );
            }
            Entry::SparseFile(name, real, size, map, text) => {
                push_pax_records(
                    &mut out,
                    &[
                        ("GNU.sparse.major", "0"),
                        ("GNU.sparse.minor", "1"),
                        ("GNU.sparse.name", real),
                        ("GNU.sparse.size", size),
                        ("GNU.sparse.map", map),
                    ],
                );
                push(
                    &mut out,
                    header(name.as_bytes(), T::Regular, 0o644, text.len() as u64),
                    text.as_bytes(),
                );
            }
            Entry::LongFile(len, text) => {
                // Components of 49 characters, so that no single name exceeds NAME_MAX.
                let name: String = (0..*len)
                    .map(|i| if i % 50 == 49 { '/' } else { 'n' })
                    .collect::<String>()
                    .trim_end_matches('/')
                    .to_string();
                push_pax(&mut out, &name);
                push(
                    &mut out,
                    header(
                        &name.as_bytes()[..100],
                        T::Regular,
                        0o644,
                        text.len() as u64,
                    ),
                    text.as_bytes(),
                );
            }
            Entry::Owned(p, uid, gid) => {
                let mut h = header(p.as_bytes(), T::Regular, 0o644, 0);
                h.set_uid(*uid);
                h.set_gid(*gid);
                push(&mut out, h, b"");
            }
        }
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn put_blob(layout: &Path, digest: &str, data: &[u8]) {
    let hexd = digest.trim_start_matches("sha256:");
    fs::write(layout.join("blobs/sha256").join(hexd), data).unwrap();
}

/// Writes the case's layers as a one-platform (linux/amd64) OCI layout at `layout`.
pub fn write_layout(case: &Case, layout: &Path) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for layer in &case.layers {
        let tar = tar_bytes(layer);
        let mut diff_id = sha(&tar);
        let (mut blob, media) = match layer.compress.as_str() {
            "none" => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            "zstd" => (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            _ => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
                gz.write_all(&tar).unwrap();
                (
                    gz.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
        };
        let media = layer
            .media_type
            .clone()
            .unwrap_or_else(|| media.to_string());
        let mut size = blob.len() as i64;
        match layer.corrupt.as_deref() {
            Some("truncate") => {
                blob.truncate(blob.len() / 2);
                size = blob.len() as i64;
            }
            Some("size") => size += 1,
            Some("diffid") => diff_id = sha(b"something else"),
            _ => {}
        }
        let mut digest = sha(&blob);
        if layer.corrupt.as_deref() == Some("digest") {
            digest = sha(b"not this layer");
        }
        put_blob(layout, &digest, &blob);
        diff_ids.push(diff_id);
        descs.push(serde_json::json!({"mediaType": media, "digest": digest, "size": size}));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    put_blob(layout, &sha(&config), &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    put_blob(layout, &sha(&manifest), &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest), "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}
