//! Sparse files through a build, both directions. GNU tar writes a sparse file in each of
//! the four formats BuildKit reads (old GNU `S`, PAX 0.0, 0.1 and 1.0); one archive holds
//! all four. As a base layer and as an ADD archive, each must come out as a regular file
//! of the full size with the holes as zeros, under its real name. A file a RUN step makes
//! with holes goes into the layer as a dense regular entry.

mod common;

use common::*;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

const BLOCK: usize = 512;
const MIB: u64 = 1 << 20;

/// The GNU tar flags of each format, and a record its archive must hold to be that format.
const FORMATS: [(&str, &[&str], &str); 4] = [
    ("gnu", &["--sparse", "--format=gnu"], ""),
    (
        "p00",
        &["--format=posix", "--sparse-version=0.0"],
        "GNU.sparse.offset=",
    ),
    (
        "p01",
        &["--format=posix", "--sparse-version=0.1"],
        "GNU.sparse.map=",
    ),
    (
        "p10",
        &["--format=posix", "--sparse-version=1.0"],
        "GNU.sparse.major=1",
    ),
];

/// Writes a file with holes at `path` (data at 0 and past 1 MiB, a hole at the end) and
/// returns its content.
fn holey_file(path: &Path, seed: u64) -> Vec<u8> {
    let size = 3 * MIB + seed;
    let mut f = fs::File::create(path).unwrap();
    let tag = format!("start of {}", path.display());
    f.write_all(tag.as_bytes()).unwrap();
    let middle = MIB + seed * 4096;
    f.seek(SeekFrom::Start(middle)).unwrap();
    f.write_all(b"middle").unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o644))
        .unwrap();
    let mut want = vec![0u8; size as usize];
    want[..tag.len()].copy_from_slice(tag.as_bytes());
    want[middle as usize..middle as usize + 6].copy_from_slice(b"middle");
    want
}

/// The members of a tar archive without its end-of-archive blocks: headers are walked by
/// their size fields (and an old-GNU sparse header's extension blocks).
fn members(tar: &[u8]) -> &[u8] {
    let mut at = 0;
    while at + BLOCK <= tar.len() && tar[at..at + BLOCK].iter().any(|b| *b != 0) {
        let h = &tar[at..at + BLOCK];
        let size_text = std::str::from_utf8(&h[124..135])
            .unwrap()
            .trim_matches(['\0', ' ']);
        let size = usize::from_str_radix(size_text, 8).unwrap();
        let mut extended = h[156] == b'S' && h[482] == 1;
        at += BLOCK;
        while extended {
            extended = tar[at + 504] == 1;
            at += BLOCK;
        }
        at += size.div_ceil(BLOCK) * BLOCK;
    }
    &tar[..at]
}

/// Makes each sparse file with GNU tar in its format and returns one archive holding all of
/// them (under `sp/`) with each file's expected content.
fn sparse_archive(work: &Path) -> (Vec<u8>, Vec<(&'static str, Vec<u8>)>) {
    let src = work.join("src");
    fs::create_dir_all(src.join("sp")).unwrap();
    let mut all = Vec::new();
    let mut want = Vec::new();
    for (seed, (name, flags, record)) in FORMATS.iter().enumerate() {
        let content = holey_file(&src.join("sp").join(name), seed as u64);
        let out = work.join(format!("{name}.tar"));
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&src)
                .args(*flags)
                .arg("-cf")
                .arg(&out)
                .arg(format!("sp/{name}")),
        );
        let tar = fs::read(&out).unwrap();
        if record.is_empty() {
            assert_eq!(tar[156], b'S', "GNU tar wrote an old-GNU sparse entry");
        } else {
            let text = String::from_utf8_lossy(&tar[..4 * BLOCK]);
            assert!(text.contains(record), "{name}: {text}");
        }
        all.extend_from_slice(members(&tar));
        want.push((*name, content));
    }
    all.extend_from_slice(&[0u8; 2 * BLOCK]);
    (all, want)
}

fn assert_dense_copy(dir: &Path, want: &[(&str, Vec<u8>)]) {
    for (name, content) in want {
        let path = dir.join(name);
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(meta.is_file(), "{path:?}");
        assert_eq!(meta.len(), content.len() as u64, "{path:?}");
        assert!(fs::read(&path).unwrap() == *content, "content of {path:?}");
        assert_eq!(meta.mode() & 0o7777, 0o644, "{path:?}");
    }
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        want.len(),
        "no GNUSparseFile.N entries: {names:?}"
    );
}

const DOCKERFILE: &str = "FROM sparse AS s\n\
    FROM busybox\n\
    COPY --from=s /sp /from-layer/\n\
    ADD sparse.tar /added/\n\
    RUN truncate -s 1M /holes && printf x >> /holes \
        && printf y | dd of=/dd bs=1 seek=3000000 2>/dev/null\n";

#[test]
fn sparse_files_in_every_format_unpack_dense_and_holes_are_written_dense() {
    let gnu_tar = Command::new("tar")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"));
    if !precondition(gnu_tar, "GNU tar writes the sparse formats") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (archive, want) = sparse_archive(tmp.path());
    let layout = tmp.path().join("sparse");
    single_layer_layout(&layout, &archive);
    let ctx = context(&tmp.path().join("ctx"), DOCKERFILE, &[]);
    fs::write(ctx.join("sparse.tar"), &archive).unwrap();
    let state = tmp.path().join("state");
    let layout_arg = format!("sparse=oci-layout://{}", layout.display());
    let local = tmp.path().join("local");
    let out = run(&mut build_command(
        &state,
        &ctx,
        "linux/amd64",
        None,
        &[
            "--build-context",
            &layout_arg,
            "-o",
            &format!("type=local,dest={}", local.display()),
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_dense_copy(&local.join("from-layer"), &want);
    assert_dense_copy(&local.join("added/sp"), &want);
    let mut holes = vec![0u8; MIB as usize];
    holes.push(b'x');
    assert_eq!(fs::read(local.join("holes")).unwrap(), holes);

    // The same build into an OCI tar: the RUN layer holds the files with holes as dense
    // regular entries of their full size.
    let dest = tmp.path().join("out.tar");
    let out = build(
        &state,
        &ctx,
        "linux/amd64",
        &dest,
        &["--build-context", &layout_arg],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = OciLayout::open_tar(&dest);
    let m = l.manifest_for("linux/amd64");
    let entries = l.layer_entries(&m);
    let entry = |path: &str| {
        let found = entries.iter().rev().find(|e| e.1 == path);
        found.unwrap_or_else(|| panic!("no {path} in the layers"))
    };
    let e = entry("holes");
    assert_eq!(e.2, tar::EntryType::Regular);
    assert!(e.3 == holes, "holes: {} bytes", e.3.len());
    let e = entry("dd");
    assert_eq!(e.2, tar::EntryType::Regular);
    assert_eq!(e.3.len(), 3_000_001);
    assert!(e.3[..3_000_000].iter().all(|b| *b == 0) && e.3[3_000_000] == b'y');
    for (name, content) in &want {
        let e = entry(&format!("added/sp/{name}"));
        assert_eq!(e.2, tar::EntryType::Regular, "{name}");
        assert!(e.3 == *content, "added/sp/{name} in the layer");
    }
    assert_raw_entries_dense(&l, &m);
}

/// Every entry of every layer rbuild wrote is a plain ustar entry: no sparse type, no
/// `GNU.sparse.*` record, so any reader sees the full content.
fn assert_raw_entries_dense(l: &OciLayout, manifest: &str) {
    let m = l.json(manifest);
    let layers = m["layers"].as_array().unwrap();
    // The first layers are busybox's; the build's own are the last three.
    for layer in &layers[layers.len() - 3..] {
        let blob = l.blob(layer["digest"].as_str().unwrap());
        let mut plain = Vec::new();
        use std::io::Read;
        flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut plain)
            .unwrap();
        let mut a = tar::Archive::new(&plain[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            assert_ne!(e.header().entry_type(), tar::EntryType::GNUSparse);
            if let Some(pax) = e.pax_extensions().unwrap() {
                for r in pax {
                    let key = r.unwrap().key().unwrap().to_string();
                    assert!(!key.starts_with("GNU.sparse."), "{key}");
                }
            }
        }
    }
}
