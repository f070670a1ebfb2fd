//! Seed inputs made in code: small tar streams with hostile shapes for `tar-unpack`
//! (`cargo xtask fuzz --make-seeds` writes them under `fuzz/corpus/tar-unpack/`).

/// A minimal ustar writer for seeds: every field is given, nothing is checked, so it can
/// write what a hostile layer would.
#[derive(Debug, Default)]
pub struct TarBuilder {
    out: Vec<u8>,
}

/// Type flags used by the seeds.
pub mod kind {
    /// Regular file.
    pub const FILE: u8 = b'0';
    /// Hard link.
    pub const HARDLINK: u8 = b'1';
    /// Symbolic link.
    pub const SYMLINK: u8 = b'2';
    /// Character device.
    pub const CHAR: u8 = b'3';
    /// Directory.
    pub const DIR: u8 = b'5';
    /// Fifo.
    pub const FIFO: u8 = b'6';
    /// PAX extended header for the next entry.
    pub const PAX: u8 = b'x';
    /// GNU long name for the next entry.
    pub const GNU_LONGNAME: u8 = b'L';
    /// GNU long link name for the next entry.
    pub const GNU_LONGLINK: u8 = b'K';
}

impl TarBuilder {
    /// An empty stream.
    pub fn new() -> TarBuilder {
        TarBuilder::default()
    }

    /// Appends one header (name and link cut to 100 bytes) and its data, padded to 512.
    pub fn entry(
        &mut self,
        kind: u8,
        name: &[u8],
        link: &[u8],
        mode: u32,
        data: &[u8],
    ) -> &mut Self {
        let mut h = [0u8; 512];
        put(&mut h[0..100], name);
        put(&mut h[100..108], format!("{mode:07o}").as_bytes());
        put(&mut h[108..116], b"0000000");
        put(&mut h[116..124], b"0000000");
        put(&mut h[124..136], format!("{:011o}", data.len()).as_bytes());
        put(&mut h[136..148], b"14000000000");
        h[156] = kind;
        put(&mut h[157..257], link);
        put(&mut h[257..263], b"ustar\0");
        put(&mut h[263..265], b"00");
        if kind == kind::CHAR {
            put(&mut h[329..337], b"0000001");
            put(&mut h[337..345], b"0000003");
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(kind::FILE, name.as_bytes(), b"", 0o644, data)
    }

    /// A directory.
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(kind::DIR, name.as_bytes(), b"", 0o755, b"")
    }

    /// A symlink `name -> target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            kind::SYMLINK,
            name.as_bytes(),
            target.as_bytes(),
            0o777,
            b"",
        )
    }

    /// A hard link `name` to the earlier entry `target`.
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            kind::HARDLINK,
            name.as_bytes(),
            target.as_bytes(),
            0o644,
            b"",
        )
    }

    /// A PAX header with `key=value` records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len.to_string().len() + rest > len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.entry(kind::PAX, b"././@PaxHeader", b"", 0o644, &body)
    }

    /// The stream with its two zero end blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// The tar seeds: (file name, stream). Names end in `.bin`, not `.tar`.
pub fn tar_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let long = "d/".repeat(60) + "long-file-name";
    vec![
        (
            "plain.bin",
            TarBuilder::new()
                .dir("a/")
                .file("a/f", b"hello\n")
                .symlink("a/l", "f")
                .hardlink("a/h", "a/f")
                .entry(kind::FIFO, b"a/p", b"", 0o644, b"")
                .entry(kind::CHAR, b"a/null", b"", 0o666, b"")
                .finish(),
        ),
        (
            "dotdot.bin",
            TarBuilder::new()
                .file("../escape", b"x")
                .file("a/../../escape2", b"x")
                .file("./ok/../../../sentinel/keep", b"x")
                .finish(),
        ),
        (
            "absolute.bin",
            TarBuilder::new()
                .file("/abs-file", b"x")
                .file("/etc/rbuild-fuzz", b"x")
                .symlink("abs", "/")
                .file("abs/through-abs", b"x")
                .finish(),
        ),
        (
            "symlink-then-file.bin",
            TarBuilder::new()
                .symlink("up", "..")
                .file("up/sentinel/keep", b"overwritten")
                .symlink("s", "../sentinel")
                .file("s/keep", b"overwritten")
                .symlink("d", "../sentinel/sub")
                .dir("d/new/")
                .finish(),
        ),
        (
            "hardlinks.bin",
            TarBuilder::new()
                .hardlink("h-out", "../sentinel/keep")
                .hardlink("h-abs", "/etc/passwd")
                .file("f", b"1")
                .hardlink("h", "f")
                .file("h", b"through the link")
                .symlink("l", "../sentinel/keep")
                .hardlink("hl", "l")
                .finish(),
        ),
        (
            "whiteouts.bin",
            TarBuilder::new()
                .dir("a/")
                .file("a/.wh.b", b"")
                .file("a/.wh..wh..opq", b"")
                .file(".wh..wh.plnk", b"")
                .file(".wh.", b"")
                .file(".wh...", b"")
                .file("a/.wh.../x", b"")
                .finish(),
        ),
        (
            "pax.bin",
            TarBuilder::new()
                .pax(&[("path", b"../../outer/pax-escape")])
                .file("innocent", b"x")
                .pax(&[("path", long.as_bytes()), ("SCHILY.xattr.user.k", b"v")])
                .file("short", b"long name via pax")
                .pax(&[("linkpath", b"/etc/shadow")])
                .symlink("pl", "x")
                .pax(&[("mtime", b"1.5"), ("uid", b"4294967296"), ("size", b"3")])
                .file("sized", b"abc")
                .finish(),
        ),
        (
            "gnu-long.bin",
            TarBuilder::new()
                .entry(
                    kind::GNU_LONGNAME,
                    b"././@LongLink",
                    b"",
                    0o644,
                    format!("{long}\0").as_bytes(),
                )
                .file("cut", b"gnu long name")
                .entry(
                    kind::GNU_LONGLINK,
                    b"././@LongLink",
                    b"",
                    0o644,
                    b"../../../../outer/keep\0",
                )
                .symlink("gl", "x")
                .finish(),
        ),
        (
            "replace.bin",
            TarBuilder::new()
                .dir("d/")
                .file("d/x", b"1")
                .file("d", b"dir becomes file")
                .file("d/y", b"under a file")
                .symlink("e", "d")
                .dir("e/")
                .entry(kind::DIR, b"ro/", b"", 0o000, b"")
                .file("ro/inside", b"x")
                .finish(),
        ),
    ]
}
