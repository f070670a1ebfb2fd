//! Hand-filled ustar headers with PAX extensions, so the bytes depend only on the values given.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// One tar entry to be written; every header field is explicit.
#[derive(Debug, Clone)]
pub(crate) struct TarHeader {
    pub(crate) name: Vec<u8>,
    pub(crate) typeflag: u8,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) link: Vec<u8>,
    pub(crate) dev: (u32, u32),
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

impl TarHeader {
    /// A header with everything zero apart from the name and type.
    pub(crate) fn new(name: Vec<u8>, typeflag: u8) -> Self {
        TarHeader {
            name,
            typeflag,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: Vec::new(),
            dev: (0, 0),
            xattrs: Vec::new(),
        }
    }
}

/// Writes `header` (preceded by a PAX header when needed) and `size` bytes of `data`.
pub(crate) fn write_entry(
    out: &mut dyn Write,
    header: &TarHeader,
    data: Option<&mut dyn Read>,
) -> io::Result<()> {
    let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut block = [0u8; BLOCK];
    put_bytes(&mut block[0..100], &header.name);
    if header.name.len() > 100 {
        long_name(out, &mut pax, b'L', b"path", &header.name)?;
    }
    put_octal(&mut block[100..108], u64::from(header.mode & 0o7777));
    if !put_octal(&mut block[108..116], header.uid) {
        pax.push((b"uid".to_vec(), header.uid.to_string().into_bytes()));
        put_octal(&mut block[108..116], 0);
    }
    if !put_octal(&mut block[116..124], header.gid) {
        pax.push((b"gid".to_vec(), header.gid.to_string().into_bytes()));
        put_octal(&mut block[116..124], 0);
    }
    if !put_octal(&mut block[124..136], header.size) {
        pax.push((b"size".to_vec(), header.size.to_string().into_bytes()));
        put_octal(&mut block[124..136], 0);
    }
    let mtime_ok = u64::try_from(header.mtime)
        .map(|m| put_octal(&mut block[136..148], m))
        .unwrap_or(false);
    if !mtime_ok {
        pax.push((b"mtime".to_vec(), header.mtime.to_string().into_bytes()));
        put_octal(&mut block[136..148], 0);
    }
    block[156] = header.typeflag;
    put_bytes(&mut block[157..257], &header.link);
    if header.link.len() > 100 {
        long_name(out, &mut pax, b'K', b"linkpath", &header.link)?;
    }
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    put_octal(&mut block[329..337], u64::from(header.dev.0));
    put_octal(&mut block[337..345], u64::from(header.dev.1));
    for (name, value) in &header.xattrs {
        pax.push((format!("SCHILY.xattr.{name}").into_bytes(), value.clone()));
    }
    if !pax.is_empty() {
        write_pax(out, &header.name, pax)?;
    }
    set_checksum(&mut block);
    out.write_all(&block)?;
    if let Some(data) = data {
        let n = io::copy(&mut data.take(header.size), out)?;
        if n != header.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        pad(out, header.size)?;
    }
    Ok(())
}

/// A name too long for the ustar field: a PAX record `key`, or — when it holds a newline,
/// which the `tar` crate's PAX reader cannot take in a value — a GNU long name entry of
/// type `typeflag` (`L` for paths, `K` for link targets), which every reader takes.
fn long_name(
    out: &mut dyn Write,
    pax: &mut Vec<(Vec<u8>, Vec<u8>)>,
    typeflag: u8,
    key: &[u8],
    name: &[u8],
) -> io::Result<()> {
    if !name.contains(&b'\n') {
        pax.push((key.to_vec(), name.to_vec()));
        return Ok(());
    }
    let mut data = name.to_vec();
    data.push(0);
    let mut header = TarHeader::new(b"././@LongLink".to_vec(), typeflag);
    header.size = data.len() as u64;
    write_entry(out, &header, Some(&mut data.as_slice()))
}

/// Writes the end-of-archive marker: two zero blocks.
pub(crate) fn finish(out: &mut dyn Write) -> io::Result<()> {
    out.write_all(&[0u8; BLOCK * 2])
}

fn write_pax(
    out: &mut dyn Write,
    name: &[u8],
    mut records: Vec<(Vec<u8>, Vec<u8>)>,
) -> io::Result<()> {
    records.sort();
    let mut data = Vec::new();
    for (key, value) in &records {
        data.extend_from_slice(&pax_record(key, value));
    }
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let base = trimmed.rsplit(|b| *b == b'/').next().unwrap_or(trimmed);
    let mut pax_name = b"PaxHeaders.0/".to_vec();
    pax_name.extend_from_slice(base);
    pax_name.truncate(100);
    let mut header = TarHeader::new(pax_name, b'x');
    header.size = data.len() as u64;
    write_entry(out, &header, Some(&mut data.as_slice()))
}

/// One PAX record: "<len> <key>=<value>\n" where len counts the whole record.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while rest + len.to_string().len() != len {
        len = rest + len.to_string().len();
    }
    let mut rec = format!("{len} ").into_bytes();
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

fn pad(out: &mut dyn Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal followed by a NUL, as Go's archive/tar writes; false when it does not fit.
fn put_octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    true
}

fn set_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}");
    block[148..154].copy_from_slice(text.as_bytes());
    block[154] = 0;
    block[155] = b' ';
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long name or link target holding a newline (as a step may make) must come back
    /// from the `tar` crate's reader, which splits PAX records at newlines.
    #[test]
    fn long_names_with_newlines_read_back() {
        let name = format!("{}\nend", "d/".repeat(60)).into_bytes();
        let link = format!("{}\nlink", "t/".repeat(60)).into_bytes();
        let mut out = Vec::new();
        let mut file = TarHeader::new(name.clone(), b'0');
        file.xattrs.push(("user.k".into(), b"v".to_vec()));
        write_entry(&mut out, &file, Some(&mut &b""[..])).unwrap();
        let mut sym = TarHeader::new(b"s".to_vec(), b'2');
        sym.link = link.clone();
        write_entry(&mut out, &sym, None).unwrap();
        finish(&mut out).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut first = entries.next().unwrap().unwrap();
        assert_eq!(first.path_bytes().as_ref(), name.as_slice());
        let xattrs: Vec<_> = first.pax_extensions().unwrap().unwrap().collect();
        assert!(xattrs.iter().all(Result::is_ok));
        let second = entries.next().unwrap().unwrap();
        assert_eq!(second.link_name_bytes().unwrap().as_ref(), link.as_slice());
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n".to_vec());
        let long = vec![b'x'; 95];
        let rec = pax_record(b"path", &long);
        assert_eq!(rec.len(), 105);
        assert!(rec.starts_with(b"105 path="));
        // 98 bytes without the length: "100" would make 101, so 101 it is.
        let rec = pax_record(b"path", &[b'y'; 91]);
        assert_eq!(rec.len(), 101);
        assert!(rec.starts_with(b"101 path="));
    }

    #[test]
    fn octal_fields_refuse_overflow() {
        let mut f = [0u8; 8];
        assert!(put_octal(&mut f, 0o7777777));
        assert_eq!(&f, b"7777777\0");
        assert!(!put_octal(&mut f, 0o10000000));
    }
}
