mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{TarBuilder, xattr};
use rbuild_snapshot::{SnapshotError, SparseError, unpack_layer};
use tar::EntryType;

fn mode(p: &std::path::Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn unpacks_every_entry_type() {
    let long_name = format!("etc/{}", "n".repeat(120));
    let mut tb = TarBuilder::new();
    tb.dir("./", 0o755, 0, 0, 10)
        .dir("etc/", 0o750, 1, 2, 1000)
        .file("etc/passwd", 0o644, 0, 0, 2000, b"root:x:0:0\n")
        .symlink("etc/link", "/etc/passwd")
        .hardlink("etc/hard", "etc/passwd")
        .file(&long_name, 0o600, 0, 0, 2000, b"long")
        .file("bin/su", 0o4755, 0, 0, 2000, b"su")
        .dir("tmp/", 0o1777, 0, 0, 3000)
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/sda", EntryType::Block, 8, 0)
        .node("run/fifo", EntryType::Fifo, 0, 0)
        .pax(&[
            ("SCHILY.xattr.user.test", b"hello"),
            (
                "SCHILY.xattr.security.capability",
                &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            ("SCHILY.xattr.user.overlay.redirect", b"/evil"),
            ("mtime", b"1700000000.5"),
            ("uid", b"3000000"),
        ])
        .file("bin/ping", 0o755, 0, 0, 2000, b"ping")
        .dir("usr/", 0o755, 0, 0, 4000)
        .file("usr/.wh.gone", 0o644, 0, 0, 4500, b"")
        .dir("var/", 0o755, 0, 0, 5000)
        .file("var/.wh..wh..opq", 0o644, 0, 0, 5000, b"")
        .file("var/kept", 0o644, 0, 0, 5000, b"k");
    let tar = tb.finish();

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path();
    let stats = unpack_layer(tar.as_slice(), dest).unwrap();

    assert_eq!(stats.files, 5);
    assert_eq!(stats.dirs, 5);
    assert_eq!(stats.symlinks, 1);
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.devices, 2);
    assert_eq!(stats.fifos, 1);
    assert_eq!(stats.whiteouts, 1);
    assert_eq!(stats.opaque_dirs, 1);

    let etc = fs::symlink_metadata(dest.join("etc")).unwrap();
    assert!(etc.is_dir());
    assert_eq!(etc.mode() & 0o7777, 0o750);
    assert_eq!((etc.uid(), etc.gid()), (1, 2));
    assert_eq!(etc.mtime(), 1000, "dir mtime set after its contents");
    assert_eq!(fs::symlink_metadata(dest).unwrap().mtime(), 10);

    let passwd = fs::symlink_metadata(dest.join("etc/passwd")).unwrap();
    assert_eq!(fs::read(dest.join("etc/passwd")).unwrap(), b"root:x:0:0\n");
    assert_eq!(passwd.mtime(), 2000);
    assert_eq!(passwd.mode() & 0o7777, 0o644);
    assert_eq!(
        fs::read_link(dest.join("etc/link")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    assert_eq!(
        fs::symlink_metadata(dest.join("etc/hard")).unwrap().ino(),
        passwd.ino()
    );
    assert_eq!(fs::read(dest.join(&long_name)).unwrap(), b"long");

    assert_eq!(mode(&dest.join("bin/su")), 0o4755);
    assert_eq!(mode(&dest.join("tmp")), 0o1777);
    assert_eq!(mode(&dest.join("bin")), 0o755, "implicit parents are 0755");

    let null = fs::symlink_metadata(dest.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    let sda = fs::symlink_metadata(dest.join("dev/sda")).unwrap();
    assert!(sda.file_type().is_block_device());
    assert_eq!(sda.rdev(), libc::makedev(8, 0));
    assert!(
        fs::symlink_metadata(dest.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    let ping = dest.join("bin/ping");
    assert_eq!(xattr(&ping, "user.test").as_deref(), Some(&b"hello"[..]));
    assert!(xattr(&ping, "security.capability").is_some());
    assert_eq!(
        xattr(&ping, "user.overlay.redirect"),
        None,
        "overlay xattrs are never unpacked"
    );
    let ping_meta = fs::symlink_metadata(&ping).unwrap();
    assert_eq!(ping_meta.mtime(), 1_700_000_000);
    assert_eq!(ping_meta.mtime_nsec(), 500_000_000);
    assert_eq!(ping_meta.uid(), 3_000_000, "pax uid applied");

    let gone = fs::symlink_metadata(dest.join("usr/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert_eq!(gone.mtime(), 4500);
    assert!(!dest.join("usr/.wh.gone").exists());

    assert_eq!(
        xattr(&dest.join("var"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dest.join("var/.wh..wh..opq").exists());
    assert!(dest.join("var/kept").exists());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let mut tb = TarBuilder::new();
    tb.file("a", 0o644, 0, 0, 1, b"file")
        .dir("a/", 0o755, 0, 0, 1)
        .file("a/b", 0o644, 0, 0, 1, b"b")
        .symlink("c", "/nowhere")
        .file("c", 0o644, 0, 0, 1, b"regular now");
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    assert!(dir.path().join("a").is_dir());
    assert_eq!(fs::read(dir.path().join("a/b")).unwrap(), b"b");
    let c = fs::symlink_metadata(dir.path().join("c")).unwrap();
    assert!(c.is_file());
}

fn expect_unsafe(tar: Vec<u8>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let err = unpack_layer(tar.as_slice(), &dest).unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::UnsafePath { .. } | SnapshotError::BadHardlink { .. }
        ),
        "unexpected error {err}"
    );
    root
}

#[test]
fn refuses_dotdot_escape() {
    let mut tb = TarBuilder::new();
    tb.raw_file(b"../x", b"pwned");
    let root = expect_unsafe(tb.finish());
    assert!(!root.path().join("x").exists());

    let mut tb = TarBuilder::new();
    tb.raw_file(b"a/../../x", b"pwned");
    let root = expect_unsafe(tb.finish());
    assert!(!root.path().join("x").exists());
}

#[test]
fn refuses_absolute_paths() {
    let mut tb = TarBuilder::new();
    tb.raw_file(b"/abs", b"pwned");
    expect_unsafe(tb.finish());
}

#[test]
fn refuses_writing_through_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    let mut tb = TarBuilder::new();
    tb.symlink("evil", outside.path().to_str().unwrap()).file(
        "evil/pwned",
        0o644,
        0,
        0,
        1,
        b"pwned",
    );
    expect_unsafe(tb.finish());
    assert!(!outside.path().join("pwned").exists());

    let mut tb = TarBuilder::new();
    tb.symlink("up", "..")
        .file("up/pwned", 0o644, 0, 0, 1, b"x");
    let root = expect_unsafe(tb.finish());
    assert!(!root.path().join("pwned").exists());

    // A directory entry through a symlink, and an opaque marker through one, are refused too.
    let mut tb = TarBuilder::new();
    tb.symlink("evil", outside.path().to_str().unwrap())
        .dir("evil/sub/", 0o755, 0, 0, 1);
    expect_unsafe(tb.finish());
    assert!(!outside.path().join("sub").exists());
}

#[test]
fn refuses_hardlinks_out_of_the_layer() {
    let mut tb = TarBuilder::new();
    tb.hardlink("h", "../../../etc/passwd");
    expect_unsafe(tb.finish());

    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"s").unwrap();
    let mut tb = TarBuilder::new();
    tb.symlink("evil", outside.path().to_str().unwrap())
        .hardlink("h", "evil/secret");
    expect_unsafe(tb.finish());
}

#[test]
fn refuses_a_symlink_replacing_a_file_then_write_through() {
    // After "a" becomes a symlink to the outside, "a" written again as a file replaces the link
    // and does not write through it.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    fs::write(&target, b"original").unwrap();
    let mut tb = TarBuilder::new();
    tb.symlink("a", target.to_str().unwrap())
        .file("a", 0o644, 0, 0, 1, b"replaced");
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"original");
    assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"replaced");
}

#[test]
fn whiteout_and_entry_of_the_same_name_in_one_layer() {
    let mut tb = TarBuilder::new();
    tb.file(".wh.d", 0, 0, 0, 1, b"")
        .dir("d/", 0o755, 0, 0, 1)
        .file("d/new", 0o644, 0, 0, 1, b"n")
        .dir("e/", 0o755, 0, 0, 1)
        .file(".wh.e", 0, 0, 0, 1, b"")
        .file("f", 0o644, 0, 0, 1, b"f")
        .file(".wh.f", 0, 0, 0, 1, b"");
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    for d in ["d", "e"] {
        let p = dir.path().join(d);
        assert!(p.is_dir(), "{d} stays a directory");
        assert_eq!(
            xattr(&p, "user.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{d} opaque"
        );
    }
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"f");
}

// Sparse files, in each of the four formats, built byte by byte.

const BLOCK: usize = 512;

/// A numeric header field: octal with a NUL, or base-256 when the value does not fit.
fn numeric(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() <= digits {
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
        return;
    }
    field.fill(0);
    field[0] = 0x80;
    let n = field.len();
    field[n - 8..].copy_from_slice(&value.to_be_bytes());
}

fn checksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// Sparse map entries (offset, size: 12 bytes each) from byte `at`.
fn put_map(block: &mut [u8], at: usize, map: &[(u64, u64)]) {
    for (i, (off, len)) in map.iter().enumerate() {
        let field = at + i * 24;
        numeric(&mut block[field..field + 12], *off);
        numeric(&mut block[field + 12..field + 24], *len);
    }
}

/// An old-GNU sparse header ('S'): up to 4 map entries at 386, isextended at 482, the real
/// size at 483; `size` is the data in the archive.
fn gnu_sparse_header(name: &str, size: u64, real: u64, map: &[(u64, u64)], ext: bool) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..name.len()].copy_from_slice(name.as_bytes());
    numeric(&mut b[100..108], 0o640);
    numeric(&mut b[108..116], 1001);
    numeric(&mut b[116..124], 1002);
    numeric(&mut b[124..136], size);
    numeric(&mut b[136..148], 1_500_000_000);
    b[156] = b'S';
    b[257..265].copy_from_slice(b"ustar  \0");
    put_map(&mut b, 386, map);
    b[482] = u8::from(ext);
    numeric(&mut b[483..495], real);
    checksum(&mut b);
    b
}

/// A GNU sparse extension block: up to 21 map entries, isextended at 504.
fn gnu_sparse_ext(map: &[(u64, u64)], ext: bool) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    put_map(&mut b, 0, map);
    b[504] = u8::from(ext);
    b
}

/// `data` padded to whole blocks.
fn blocks(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

/// The file a map describes: zeros with each segment's bytes at its offset.
fn expand(real: usize, segments: &[(usize, &[u8])]) -> Vec<u8> {
    let mut v = vec![0u8; real];
    for (off, data) in segments {
        v[*off..off + data.len()].copy_from_slice(data);
    }
    v
}

/// Segments of filler bytes: (offset, length, byte).
fn segments(spec: &[(usize, usize, u8)]) -> Vec<(usize, Vec<u8>)> {
    spec.iter().map(|(o, n, b)| (*o, vec![*b; *n])).collect()
}

fn map_of(segs: &[(usize, Vec<u8>)]) -> Vec<(u64, u64)> {
    segs.iter()
        .map(|(o, d)| (*o as u64, d.len() as u64))
        .collect()
}

fn data_of(segs: &[(usize, Vec<u8>)]) -> Vec<u8> {
    segs.iter().flat_map(|(_, d)| d.clone()).collect()
}

fn expanded(real: usize, segs: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(usize, &[u8])> = segs.iter().map(|(o, d)| (*o, d.as_slice())).collect();
    expand(real, &refs)
}

/// The 1.0 map as it leads the data: decimal lines, padded to a block.
fn map_1_0(map: &[(u64, u64)]) -> Vec<u8> {
    let mut text = format!("{}\n", map.len());
    for (o, n) in map {
        text.push_str(&format!("{o}\n{n}\n"));
    }
    blocks(text.as_bytes())
}

fn end_of_archive(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 2 * BLOCK]);
    tar
}

fn assert_file(path: &std::path::Path, want: &[u8], mode_bits: u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    assert!(meta.is_file(), "{} is a regular file", path.display());
    assert_eq!(meta.len(), want.len() as u64, "size of {}", path.display());
    assert!(
        fs::read(path).unwrap() == want,
        "content of {}",
        path.display()
    );
    assert_eq!(meta.mode() & 0o7777, mode_bits);
}

#[test]
fn unpacks_old_gnu_sparse_with_extension_headers() {
    // Six segments: four in the header, two in an extension block; the file ends in a hole,
    // which GNU tar writes as a last empty segment at the real size.
    let segs = segments(&[
        (0, 512, b'a'),
        (4096, 512, b'b'),
        (10_000, 1024, b'c'),
        (20_000, 512, b'd'),
        (30_000, 512, b'e'),
        (40_000, 5, b'f'),
    ]);
    let real = 50_000;
    let mut map = map_of(&segs);
    map.push((real as u64, 0));
    let data = data_of(&segs);
    let mut tar = gnu_sparse_header(
        "dir/sparse",
        data.len() as u64,
        real as u64,
        &map[..4],
        true,
    );
    tar.extend(gnu_sparse_ext(&map[4..], false));
    tar.extend(blocks(&data));
    let mut tail = TarBuilder::new();
    tail.file("after", 0o644, 0, 0, 1, b"next entry");
    tar.extend(tail.finish());

    let dir = tempfile::tempdir().unwrap();
    let stats = unpack_layer(tar.as_slice(), dir.path()).unwrap();
    let path = dir.path().join("dir/sparse");
    assert_file(&path, &expanded(real, &segs), 0o640);
    let meta = fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mtime()),
        (1001, 1002, 1_500_000_000)
    );
    assert_eq!(stats.bytes, real as u64 + 10);
    assert_eq!(fs::read(dir.path().join("after")).unwrap(), b"next entry");
}

#[test]
fn unpacks_pax_sparse_0_0() {
    let segs = segments(&[(100, 10, b'x'), (5000, 3, b'y')]);
    let real = 6000;
    let mut records: Vec<(String, Vec<u8>)> = vec![
        ("GNU.sparse.size".into(), real.to_string().into_bytes()),
        ("GNU.sparse.numblocks".into(), b"2".to_vec()),
    ];
    for (o, n) in map_of(&segs) {
        records.push(("GNU.sparse.offset".into(), o.to_string().into_bytes()));
        records.push(("GNU.sparse.numbytes".into(), n.to_string().into_bytes()));
    }
    records.push(("mtime".into(), b"1700000000.25".to_vec()));
    let refs: Vec<(&str, &[u8])> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut tb = TarBuilder::new();
    tb.pax(&refs).file("s00", 0o600, 7, 8, 1, &data_of(&segs));
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    let path = dir.path().join("s00");
    assert_file(&path, &expanded(real, &segs), 0o600);
    let meta = fs::symlink_metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (7, 8));
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_700_000_000, 250_000_000)
    );
}

#[test]
fn unpacks_pax_sparse_0_1() {
    let segs = segments(&[(0, 4, b'p'), (8192, 512, b'q'), (9000, 1, b'r')]);
    let real = 12_345;
    let map: Vec<String> = map_of(&segs)
        .iter()
        .flat_map(|(o, n)| [o.to_string(), n.to_string()])
        .collect();
    let map = map.join(",");
    let mut tb = TarBuilder::new();
    tb.pax(&[
        ("GNU.sparse.major", b"0"),
        ("GNU.sparse.minor", b"1"),
        ("GNU.sparse.name", b"etc/real01"),
        ("GNU.sparse.size", real.to_string().as_bytes()),
        ("GNU.sparse.numblocks", b"3"),
        ("GNU.sparse.map", map.as_bytes()),
        ("SCHILY.xattr.user.kind", b"sparse"),
    ])
    .file(
        "etc/GNUSparseFile.0/real01",
        0o644,
        0,
        0,
        1,
        &data_of(&segs),
    );
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    let path = dir.path().join("etc/real01");
    assert_file(&path, &expanded(real, &segs), 0o644);
    assert_eq!(xattr(&path, "user.kind").as_deref(), Some(&b"sparse"[..]));
    assert!(
        !dir.path().join("etc/GNUSparseFile.0").exists(),
        "the real name is used"
    );
}

#[test]
fn unpacks_pax_sparse_1_0() {
    let segs = segments(&[(1024, 700, b'm'), (1 << 20, 2, b'n')]);
    let real = (1 << 20) + 4096;
    let mut data = map_1_0(&map_of(&segs));
    data.extend(data_of(&segs));
    let mut tb = TarBuilder::new();
    tb.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"var/lib/db"),
        ("GNU.sparse.realsize", real.to_string().as_bytes()),
    ])
    .file("var/lib/GNUSparseFile.123/db", 0o4755, 0, 0, 1, &data)
    .file("var/lib/next", 0o644, 0, 0, 1, b"n");
    let dir = tempfile::tempdir().unwrap();
    let stats = unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    assert_file(
        &dir.path().join("var/lib/db"),
        &expanded(real, &segs),
        0o4755,
    );
    assert_eq!(fs::read(dir.path().join("var/lib/next")).unwrap(), b"n");
    assert_eq!(stats.files, 2);
    assert_eq!(stats.bytes, real as u64 + 1);
}

#[test]
fn unpacks_an_all_hole_pax_sparse_file() {
    let mut tb = TarBuilder::new();
    tb.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"holes"),
        ("GNU.sparse.realsize", b"3000"),
    ])
    .file("GNUSparseFile.0/holes", 0o644, 0, 0, 1, &map_1_0(&[]));
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(tb.finish().as_slice(), dir.path()).unwrap();
    assert_file(&dir.path().join("holes"), &[0u8; 3000], 0o644);
}

/// Unpacks a 0.1 sparse entry with `map`, `real` size and `data`; must fail with a sparse
/// error whose reason `check` accepts, creating nothing.
fn expect_sparse_error(records: &[(&str, &[u8])], data: &[u8], check: fn(&SparseError) -> bool) {
    let mut tb = TarBuilder::new();
    tb.pax(records)
        .file("GNUSparseFile.0/f", 0o644, 0, 0, 1, data);
    let dir = tempfile::tempdir().unwrap();
    let err = unpack_layer(tb.finish().as_slice(), dir.path()).unwrap_err();
    match &err {
        SnapshotError::Sparse { reason, .. } => assert!(check(reason), "{err}"),
        other => panic!("expected a sparse error, got {other}"),
    }
    assert!(
        fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing created"
    );
}

fn map_0_1<'a>(map: &'a str, size: &'a str) -> [(&'a str, &'a [u8]); 5] {
    [
        ("GNU.sparse.major", b"0"),
        ("GNU.sparse.minor", b"1"),
        ("GNU.sparse.name", b"f"),
        ("GNU.sparse.size", size.as_bytes()),
        ("GNU.sparse.map", map.as_bytes()),
    ]
}

#[test]
fn refuses_hostile_pax_sparse_maps() {
    use SparseError as E;
    // Offsets going backwards, overlapping segments.
    expect_sparse_error(&map_0_1("100,5,50,5", "200"), &[1; 10], |e| {
        matches!(e, E::Unordered { offset: 50 })
    });
    expect_sparse_error(&map_0_1("0,10,5,10", "200"), &[1; 20], |e| {
        matches!(e, E::Unordered { .. })
    });
    // A segment past the real size, or overflowing.
    expect_sparse_error(&map_0_1("0,10", "5"), &[1; 10], |e| {
        matches!(e, E::PastEnd { real: 5, .. })
    });
    expect_sparse_error(
        &map_0_1("18446744073709551615,2", "18446744073709551615"),
        &[1; 2],
        |e| matches!(e, E::PastEnd { .. }),
    );
    // More or less data than the map lists.
    expect_sparse_error(&map_0_1("0,10", "100"), &[1; 4], |e| {
        matches!(
            e,
            E::DataMismatch {
                listed: 10,
                present: 4
            }
        )
    });
    expect_sparse_error(&map_0_1("0,1", "100"), &[1; 4], |e| {
        matches!(
            e,
            E::DataMismatch {
                listed: 1,
                present: 4
            }
        )
    });
    // Malformed maps and numbers.
    expect_sparse_error(&map_0_1("0,1,2", "100"), &[1], |e| matches!(e, E::Unpaired));
    expect_sparse_error(&map_0_1("0,-1", "100"), &[], |e| {
        matches!(e, E::BadNumber(_))
    });
    expect_sparse_error(&map_0_1("0,1", "lots"), &[1], |e| {
        matches!(e, E::BadNumber(_))
    });
    // A map longer than the data (1.0: its lines run past the entry).
    let records_1_0: [(&str, &[u8]); 4] = [
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"f"),
        ("GNU.sparse.realsize", b"100000000"),
    ];
    let long_map = map_1_0(&(0..200).map(|i| (i * 10, 1)).collect::<Vec<_>>());
    expect_sparse_error(&records_1_0, &long_map[..BLOCK], |e| {
        matches!(e, E::MapTruncated)
    });
    // A 1.0 map claiming billions of segments is refused before anything is read.
    expect_sparse_error(&records_1_0, &blocks(b"99999999999\n"), |e| {
        matches!(e, E::TooManySegments)
    });
    expect_sparse_error(&records_1_0, &blocks(b"1\n0\nx\n"), |e| {
        matches!(e, E::BadNumber(_))
    });
    // A version nobody writes, and no real size.
    expect_sparse_error(
        &[("GNU.sparse.major", b"2"), ("GNU.sparse.minor", b"0")],
        &[],
        |e| matches!(e, E::UnknownVersion { .. }),
    );
    expect_sparse_error(
        &[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")],
        &[],
        |e| matches!(e, E::NoSize),
    );
}

#[test]
fn refuses_a_sparse_file_larger_than_the_free_space() {
    // 1 PiB of holes behind a few bytes: refused up front, nothing written.
    let huge = (1u64 << 50).to_string();
    expect_sparse_error(
        &[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"f"),
            ("GNU.sparse.realsize", huge.as_bytes()),
        ],
        &map_1_0(&[]),
        |e| matches!(e, SparseError::NoSpace { size, .. } if *size == 1 << 50),
    );
    expect_sparse_error(&map_0_1("0,1", &huge), b"x", |e| {
        matches!(e, SparseError::NoSpace { .. })
    });
    // The same in the old GNU format, whose map the tar crate reads.
    let real = 1u64 << 50;
    let mut tar = gnu_sparse_header("big", 1, real, &[(0, 1), (real, 0)], false);
    tar.extend(blocks(b"x"));
    let dir = tempfile::tempdir().unwrap();
    let err = unpack_layer(end_of_archive(tar).as_slice(), dir.path()).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Sparse { reason: SparseError::NoSpace { size, .. }, .. } if *size == real),
        "{err}"
    );
    assert!(!dir.path().join("big").exists());
}

#[test]
fn refuses_hostile_old_gnu_sparse_maps() {
    type Case = (&'static [(u64, u64)], u64, u64);
    let cases: [Case; 3] = [
        // Backwards.
        (&[(4096, 512), (0, 512)], 1024, 8192),
        // Overlapping.
        (&[(0, 1024), (512, 512)], 1536, 8192),
        // More data listed than the entry holds.
        (&[(0, 512), (1024, 512)], 512, 8192),
    ];
    for (map, size, real) in cases {
        let mut tar = gnu_sparse_header("bad", size, real, map, false);
        tar.extend(vec![b'z'; size as usize]);
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_layer(end_of_archive(tar).as_slice(), dir.path()).unwrap_err();
        assert!(matches!(err, SnapshotError::TarRead(_)), "{map:?}: {err}");
        assert!(!dir.path().join("bad").exists());
    }
}

#[test]
fn a_sparse_name_cannot_escape() {
    let mut tb = TarBuilder::new();
    tb.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"../escaped"),
        ("GNU.sparse.realsize", b"10"),
    ])
    .file("GNUSparseFile.0/ok", 0o644, 0, 0, 1, &map_1_0(&[]));
    let root = expect_unsafe(tb.finish());
    assert!(!root.path().join("escaped").exists());
}

#[test]
fn a_whiteout_of_a_name_that_is_not_utf8_is_a_whiteout() {
    use std::os::unix::ffi::OsStrExt;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    let name = std::path::Path::new(std::ffi::OsStr::from_bytes(b".wh.\x80"));
    b.append_data(&mut h, name, &b""[..]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stats = unpack_layer(b.into_inner().unwrap().as_slice(), dir.path()).unwrap();
    assert_eq!(stats.whiteouts, 1);
    let hidden = dir.path().join(std::ffi::OsStr::from_bytes(b"\x80"));
    let meta = std::fs::symlink_metadata(hidden).unwrap();
    assert!(meta.file_type().is_char_device() && meta.rdev() == 0);
    assert!(
        !dir.path()
            .join(std::ffi::OsStr::from_bytes(b".wh.\x80"))
            .exists()
    );
}
