//! Sparse tar entries read as dense files.
//!
//! Four encodings exist. GNU's old typeflag `S` keeps the map in the header and its
//! extension headers; the `tar` crate already expands those entries (holes as zeros) and
//! refuses maps that go backwards, overlap or disagree with the sizes. The PAX formats keep
//! the map in records — 0.0 as repeated `GNU.sparse.offset`/`GNU.sparse.numbytes`, 0.1 as
//! `GNU.sparse.map` — or, in 1.0, as decimal lines at the start of the entry's data, padded to
//! a block. [`Dense`] turns such an entry into the file it stands for, `GNU.sparse.name`
//! replacing the `GNUSparseFile.0/…` path, as Go's archive/tar (BuildKit) reads them.
//!
//! A map is checked before any byte is written: segments in order, inside the real size, and
//! exactly as much data as the map lists. Holes cost nothing in the archive, so a sparse
//! entry must also fit into the destination's free space (see [`check_space`]).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};

use tar::EntryType;

const BLOCK: u64 = 512;
/// The most segments a sparse map may have (16 bytes of memory each).
pub(crate) const MAX_SEGMENTS: u64 = 1 << 20;
/// The free space a sparse file must leave at least, as for whole layers.
const MIN_RESERVE: u64 = 16 << 20;

/// Why a sparse tar entry cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SparseError {
    /// `GNU.sparse.major`/`minor` name a format other than 0.0, 0.1 and 1.0.
    #[error("unknown sparse format {major}.{minor}")]
    UnknownVersion { major: String, minor: String },
    /// Neither `GNU.sparse.size` nor `GNU.sparse.realsize` is given.
    #[error("no real size (GNU.sparse.size or GNU.sparse.realsize)")]
    NoSize,
    /// A number in the map or a size record is not a decimal number.
    #[error("invalid number {0:?} in the sparse map")]
    BadNumber(String),
    /// The map has an offset without a size, or records out of turn.
    #[error("the sparse map does not pair offsets with sizes")]
    Unpaired,
    /// `GNU.sparse.numblocks` disagrees with the map.
    #[error("the sparse map has {found} segments, GNU.sparse.numblocks says {declared}")]
    Count { declared: String, found: usize },
    /// More segments than [`MAX_SEGMENTS`].
    #[error("the sparse map has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    /// A segment starts before the previous one ends.
    #[error("sparse segment at offset {offset} goes backwards or overlaps the one before")]
    Unordered { offset: u64 },
    /// A segment ends past the file's real size.
    #[error("sparse segment at offset {offset} of {size} bytes ends past the real size {real}")]
    PastEnd { offset: u64, size: u64, real: u64 },
    /// The 1.0 map runs past the entry's data.
    #[error("the sparse map runs past the entry's data")]
    MapTruncated,
    /// The entry holds more or less data than its map lists.
    #[error("the sparse map lists {listed} bytes of data, the entry holds {present}")]
    DataMismatch { listed: u64, present: u64 },
    /// Sparse records on an entry that is not a regular file.
    #[error("sparse records on an entry that is not a regular file")]
    NotAFile,
    /// Expanding the file would leave too little free space.
    #[error("expands to {size} bytes, but only {free} are free and {reserve} must stay free")]
    NoSpace { size: u64, free: u64, reserve: u64 },
    /// Reading the map or the free space failed.
    #[error("{0}")]
    Io(#[source] io::Error),
}

/// One stretch of data of a sparse file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    offset: u64,
    size: u64,
}

impl Segment {
    fn end(self) -> u64 {
        self.offset + self.size
    }
}

/// A PAX-format sparse file, as its records describe it.
#[derive(Debug)]
pub(crate) struct SparseFile {
    /// `GNU.sparse.name`: the file's real path.
    pub(crate) name: Option<Vec<u8>>,
    /// The size of the expanded file.
    pub(crate) real_size: u64,
    /// The map (0.0, 0.1); `None` when it leads the entry's data (1.0).
    map: Option<Vec<Segment>>,
}

/// The `GNU.sparse.*` records of one entry, collected in order.
#[derive(Default)]
pub(crate) struct SparseRecords {
    major: Option<String>,
    minor: Option<String>,
    name: Option<Vec<u8>>,
    size: Option<String>,
    realsize: Option<String>,
    numblocks: Option<String>,
    map: Option<String>,
    /// 0.0: `GNU.sparse.offset` and `GNU.sparse.numbytes` values, alternating.
    pairs: Vec<u64>,
}

impl SparseRecords {
    /// Takes one record (`key` without the `GNU.sparse.` prefix).
    pub(crate) fn add(&mut self, key: &str, value: &[u8]) -> Result<(), SparseError> {
        let text = || String::from_utf8_lossy(value).into_owned();
        match key {
            "major" => self.major = Some(text()),
            "minor" => self.minor = Some(text()),
            "name" => self.name = Some(value.to_vec()),
            "size" => self.size = Some(text()),
            "realsize" => self.realsize = Some(text()),
            "numblocks" => self.numblocks = Some(text()),
            "map" => self.map = Some(text()),
            "offset" | "numbytes" => {
                let want_offset = self.pairs.len().is_multiple_of(2);
                if want_offset != (key == "offset") {
                    return Err(SparseError::Unpaired);
                }
                if self.pairs.len() as u64 >= 2 * MAX_SEGMENTS {
                    return Err(SparseError::TooManySegments);
                }
                self.pairs.push(number(&text())?);
            }
            _ => {}
        }
        Ok(())
    }

    /// The sparse file the records describe, `None` when they describe none (as Go decides:
    /// a version, else a 0.x map).
    pub(crate) fn finish(self) -> Result<Option<SparseFile>, SparseError> {
        let in_data = match (self.major.as_deref(), self.minor.as_deref()) {
            (Some("0"), Some("0" | "1")) => false,
            (Some("1"), Some("0")) => true,
            (None, None) if self.is_0x() => false,
            (None, None) => return Ok(None),
            (major, minor) => {
                return Err(SparseError::UnknownVersion {
                    major: major.unwrap_or_default().to_string(),
                    minor: minor.unwrap_or_default().to_string(),
                });
            }
        };
        let real = self.size.as_ref().or(self.realsize.as_ref());
        let real_size = number(real.ok_or(SparseError::NoSize)?)?;
        let map = if in_data {
            None
        } else {
            Some(self.map_0x(real_size)?)
        };
        Ok(Some(SparseFile {
            name: self.name,
            real_size,
            map,
        }))
    }

    fn is_0x(&self) -> bool {
        self.map.is_some() || self.numblocks.is_some() || !self.pairs.is_empty()
    }

    /// The 0.0 pairs or the 0.1 map, checked against `numblocks` and the real size.
    fn map_0x(&self, real: u64) -> Result<Vec<Segment>, SparseError> {
        let numbers = match self.map.as_deref() {
            Some(map) if self.pairs.is_empty() && !map.is_empty() => {
                map.split(',').map(number).collect::<Result<Vec<_>, _>>()?
            }
            _ => self.pairs.clone(),
        };
        if numbers.len() % 2 != 0 {
            return Err(SparseError::Unpaired);
        }
        if numbers.len() as u64 > 2 * MAX_SEGMENTS {
            return Err(SparseError::TooManySegments);
        }
        let mut map = MapBuilder::new(real);
        for pair in numbers.chunks_exact(2) {
            map.push(pair[0], pair[1])?;
        }
        if let Some(declared) = &self.numblocks
            && number(declared)? != map.segments.len() as u64
        {
            return Err(SparseError::Count {
                declared: declared.clone(),
                found: map.segments.len(),
            });
        }
        Ok(map.segments)
    }
}

fn number(text: &str) -> Result<u64, SparseError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let parsed = digits.then(|| text.parse().ok()).flatten();
    parsed.ok_or_else(|| SparseError::BadNumber(text.to_string()))
}

/// Segments checked as they come: in order, not overlapping, inside the real size.
struct MapBuilder {
    real: u64,
    segments: Vec<Segment>,
}

impl MapBuilder {
    fn new(real: u64) -> Self {
        MapBuilder {
            real,
            segments: Vec::new(),
        }
    }

    fn push(&mut self, offset: u64, size: u64) -> Result<(), SparseError> {
        let past_end = SparseError::PastEnd {
            offset,
            size,
            real: self.real,
        };
        let end = offset.checked_add(size).ok_or(past_end)?;
        if end > self.real {
            return Err(SparseError::PastEnd {
                offset,
                size,
                real: self.real,
            });
        }
        if self.segments.last().is_some_and(|s| offset < s.end()) {
            return Err(SparseError::Unordered { offset });
        }
        if self.segments.len() as u64 >= MAX_SEGMENTS {
            return Err(SparseError::TooManySegments);
        }
        self.segments.push(Segment { offset, size });
        Ok(())
    }
}

/// Parses a 1.0 map (decimal lines: the count, then offset and size of each segment) a
/// block at a time.
struct MapParser {
    map: MapBuilder,
    count: Option<u64>,
    offset: Option<u64>,
    digits: String,
}

impl MapParser {
    fn done(&self) -> bool {
        self.count == Some(self.map.segments.len() as u64) && self.offset.is_none()
    }

    fn feed(&mut self, block: &[u8]) -> Result<(), SparseError> {
        for &b in block {
            if self.done() {
                break;
            }
            match b {
                b'\n' => {
                    let n = number(&self.digits)?;
                    self.digits.clear();
                    self.number(n)?;
                }
                b'0'..=b'9' if self.digits.len() < 20 => self.digits.push(char::from(b)),
                _ => {
                    self.digits.push(char::from(b));
                    return Err(SparseError::BadNumber(self.digits.clone()));
                }
            }
        }
        Ok(())
    }

    fn number(&mut self, n: u64) -> Result<(), SparseError> {
        match (self.count, self.offset.take()) {
            (None, _) if n > MAX_SEGMENTS => Err(SparseError::TooManySegments),
            (None, _) => {
                self.count = Some(n);
                Ok(())
            }
            (Some(_), None) => {
                self.offset = Some(n);
                Ok(())
            }
            (Some(_), Some(offset)) => self.map.push(offset, n),
        }
    }
}

/// Reads a 1.0 map from the start of `data` (`size` bytes); returns it and the bytes it took.
fn read_map(
    data: &mut impl Read,
    size: u64,
    real: u64,
) -> Result<(Vec<Segment>, u64), SparseError> {
    let mut parser = MapParser {
        map: MapBuilder::new(real),
        count: None,
        offset: None,
        digits: String::new(),
    };
    let mut used = 0;
    let mut block = [0u8; BLOCK as usize];
    while !parser.done() {
        if size - used < BLOCK {
            return Err(SparseError::MapTruncated);
        }
        data.read_exact(&mut block).map_err(SparseError::Io)?;
        used += BLOCK;
        parser.feed(&block)?;
    }
    Ok((parser.map.segments, used))
}

/// The content of a sparse entry as the file it stands for: its data segments at their
/// offsets, zeros between and after them, `real_size` bytes in all.
pub(crate) struct Dense<R> {
    inner: R,
    segments: std::vec::IntoIter<Segment>,
    current: Option<Segment>,
    pos: u64,
    real_size: u64,
}

impl<R: Read> Dense<R> {
    /// Wraps an entry's data (`size` bytes) as described by `file`, reading a 1.0 map first.
    /// The map must list exactly the data the entry holds.
    pub(crate) fn new(mut inner: R, size: u64, file: &SparseFile) -> Result<Self, SparseError> {
        let (segments, used) = match &file.map {
            Some(map) => (map.clone(), 0),
            None => read_map(&mut inner, size, file.real_size)?,
        };
        let listed = segments.iter().map(|s| s.size).sum();
        let present = size - used;
        if listed != present {
            return Err(SparseError::DataMismatch { listed, present });
        }
        let mut segments = segments.into_iter();
        Ok(Dense {
            inner,
            current: segments.next(),
            segments,
            pos: 0,
            real_size: file.real_size,
        })
    }
}

impl<R: Read> Read for Dense<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(s) = self.current
            && self.pos >= s.end()
        {
            self.current = self.segments.next();
        }
        let (until, data) = match self.current {
            Some(s) if self.pos >= s.offset => (s.end(), true),
            Some(s) => (s.offset, false),
            None => (self.real_size, false),
        };
        let want = usize::try_from(until - self.pos).map_or(buf.len(), |n| n.min(buf.len()));
        let n = if data {
            let n = self.inner.read(&mut buf[..want])?;
            if n == 0 && want > 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            n
        } else {
            buf[..want].fill(0);
            want
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// The content of a regular-file entry, dense whatever its format: a GNU `S` entry as the
/// `tar` crate expands it, a PAX sparse one (`sparse`) through [`Dense`]. A sparse entry must
/// fit into the free space of the file system holding `dir`.
pub(crate) fn content<'e, R: Read>(
    entry: &'e mut tar::Entry<'_, R>,
    sparse: Option<&SparseFile>,
    dir: BorrowedFd<'_>,
) -> Result<Box<dyn Read + 'e>, SparseError> {
    if let Some(file) = sparse {
        check_space(dir, file.real_size)?;
        let size = entry.size();
        return Ok(Box::new(Dense::new(entry, size, file)?));
    }
    if entry.header().entry_type() == EntryType::GNUSparse {
        check_space(dir, entry.size())?;
    }
    Ok(Box::new(entry))
}

/// Refuses a sparse file of `size` bytes when writing it would leave less than the larger
/// of 16 MiB and 1% free on the file system holding `dir` (the limit layers have).
pub(crate) fn check_space(dir: BorrowedFd<'_>, size: u64) -> Result<(), SparseError> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a valid descriptor and a buffer of the right type.
    if unsafe { libc::fstatvfs(dir.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(SparseError::Io(io::Error::last_os_error()));
    }
    // SAFETY: fstatvfs succeeded, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize;
    let free = st.f_bavail.saturating_mul(frsize);
    let reserve = (st.f_blocks.saturating_mul(frsize) / 100).max(MIN_RESERVE);
    if size > free.saturating_sub(reserve) {
        return Err(SparseError::NoSpace {
            size,
            free,
            reserve,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(map: Option<Vec<Segment>>, real_size: u64) -> SparseFile {
        SparseFile {
            name: None,
            real_size,
            map,
        }
    }

    #[test]
    fn dense_fills_holes_with_zeros() {
        let map = vec![
            Segment { offset: 2, size: 2 },
            Segment { offset: 4, size: 0 },
            Segment { offset: 6, size: 1 },
        ];
        let mut out = Vec::new();
        Dense::new(&b"abc"[..], 3, &file(Some(map), 9))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"\0\0ab\0\0c\0\0");
    }

    #[test]
    fn map_1_0_is_read_from_the_data() {
        let mut data = b"2\n0\n1\n5\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"xyz");
        let mut out = Vec::new();
        Dense::new(&data[..], data.len() as u64, &file(None, 8))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"x\0\0\0\0yz\0");
    }

    #[test]
    fn bad_maps_are_refused() {
        let mut m = MapBuilder::new(10);
        m.push(4, 2).unwrap();
        assert!(matches!(m.push(5, 1), Err(SparseError::Unordered { .. })));
        assert!(matches!(m.push(8, 3), Err(SparseError::PastEnd { .. })));
        assert!(matches!(
            m.push(u64::MAX, 2),
            Err(SparseError::PastEnd { .. })
        ));
        assert!(matches!(number("+1"), Err(SparseError::BadNumber(_))));
        assert!(matches!(number(""), Err(SparseError::BadNumber(_))));
    }
}
