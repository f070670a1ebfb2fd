//! The machine's limits for layer work, measured on the same bytes with the crates
//! rbuild itself uses: sha256, gzip -6 and zstd -3 on every core, and rbuild-image's
//! `LayerWriter` (diff id, compression, blob digest and store write in one pass).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rbuild_image::{Compression, LayerWriter};
use rbuild_store::Store;
use sha2::{Digest, Sha256};

use super::cases::XorShift;
use super::report::{self, median_duration};
use crate::util;

const MIB: usize = 1 << 20;
/// Bytes per block of the mixed data: a third random, two thirds text.
const BLOCK: usize = 64 * 1024;

/// Throughput of one operation on the mixed and on the random data.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// What was measured.
    pub name: String,
    /// MiB/s on the mixed data.
    pub mixed: f64,
    /// MiB/s on the random data.
    pub random: f64,
    /// Output size over input size on the mixed data, for compressors.
    pub mixed_ratio: Option<f64>,
}

/// The measured limits plus the rate of reading `/dev/urandom`.
pub struct Limits {
    /// One line per operation.
    pub lines: Vec<Limit>,
    /// MiB/s read from `/dev/urandom` on one core.
    pub urandom: f64,
    /// MiB of each data set.
    pub mib: usize,
    /// Seconds the bigfile case's command takes run directly on the host (see
    /// [`bigfile_command_seconds`]), when measured.
    pub bigfile_command: Option<f64>,
}

/// Times the bigfile case's RUN command (`busybox head -c BYTES /dev/urandom > FILE`) run
/// directly on the host, writing to the bench's disk: the part of the RUN step that is the
/// command's own work. `None` without a host busybox.
pub fn bigfile_command_seconds(bytes: u64) -> Option<f64> {
    let dir = util::TempDir::new("bench-bigfile-command").ok()?;
    let out = std::fs::File::create(dir.path().join("big")).ok()?;
    let start = Instant::now();
    let status = std::process::Command::new("busybox")
        .args(["head", "-c", &bytes.to_string(), "/dev/urandom"])
        .stdout(out)
        .status()
        .ok()?;
    status.success().then(|| start.elapsed().as_secs_f64())
}

/// What an operation returns: its output size in bytes, when it has one.
type Op<'a> = dyn Fn(&[u8]) -> Result<Option<u64>> + 'a;

/// Measures every limit on `mib` MiB of mixed and of random data, median of `reps`.
pub fn measure(mib: usize, reps: usize) -> Result<Limits> {
    let mixed = mixed_data(mib * MIB);
    let mut random = vec![0u8; mib * MIB];
    XorShift::new(0xb16_f11e).fill(&mut random);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let store_dir = util::TempDir::new("bench-limits")?;
    let store = Store::open(store_dir.path()).context("cannot open a blob store")?;
    let ops: Vec<(String, Box<Op<'_>>)> = vec![
        ("sha256, 1 core".into(), Box::new(sha256)),
        (
            format!("gzip -6 (flate2 zlib-rs), 1 MiB members, {threads} threads"),
            Box::new(move |d| gzip_parallel(d, threads)),
        ),
        (
            format!("zstd -3, {threads} threads"),
            Box::new(move |d| zstd_parallel(d, threads)),
        ),
        (
            "rbuild LayerWriter gzip-6".into(),
            Box::new(|d| layer(&store, d, Compression::Gzip(6))),
        ),
        (
            "rbuild LayerWriter zstd-3".into(),
            Box::new(|d| layer(&store, d, Compression::Zstd(3))),
        ),
    ];
    let mut lines = Vec::new();
    for (name, op) in &ops {
        let (mixed_rate, out) = rate(op, &mixed, reps)?;
        let (random_rate, _) = rate(op, &random, reps)?;
        lines.push(Limit {
            name: name.clone(),
            mixed: mixed_rate,
            random: random_rate,
            mixed_ratio: out.map(|o| o as f64 / mixed.len() as f64),
        });
    }
    Ok(Limits {
        lines,
        urandom: urandom_rate(mib * MIB)?,
        mib,
        bigfile_command: None,
    })
}

/// MiB/s of `op` on `data` (median of `reps`) and its last output size.
fn rate(op: &Op<'_>, data: &[u8], reps: usize) -> Result<(f64, Option<u64>)> {
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        out = op(data)?;
        times.push(start.elapsed());
    }
    let time = median_duration(&times).unwrap_or(Duration::ZERO);
    Ok((mib_per_second(data.len() as u64, time), out))
}

/// Bytes over time in MiB/s (0 for no time).
pub fn mib_per_second(bytes: u64, time: Duration) -> f64 {
    if time.is_zero() {
        return 0.0;
    }
    bytes as f64 / MIB as f64 / time.as_secs_f64()
}

/// Deterministic data: 64 KiB blocks, every third random, the others text-like lines.
pub fn mixed_data(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "layer", "image", "build", "stage", "copy", "run", "the", "of", "cache", "digest",
        "manifest", "platform", "lib", "usr", "bin", "share", "0", "1", "42", "index",
    ];
    let mut rng = XorShift::new(0x3d_1ced);
    let mut out = Vec::with_capacity(len + BLOCK);
    let mut block = 0;
    while out.len() < len {
        let end = out.len() + BLOCK;
        if block % 3 == 0 {
            let start = out.len();
            out.resize(end, 0);
            rng.fill(&mut out[start..]);
        }
        while out.len() < end {
            let n = rng.next_u64();
            out.extend_from_slice(WORDS[(n % WORDS.len() as u64) as usize].as_bytes());
            out.push(match n % 11 {
                0 => b'\n',
                _ => b' ',
            });
        }
        out.truncate(end);
        block += 1;
    }
    out.truncate(len);
    out
}

fn sha256(data: &[u8]) -> Result<Option<u64>> {
    std::hint::black_box(Sha256::digest(data));
    Ok(None)
}

/// gzip -6 of `data` in independent 1 MiB members (as rbuild's parallel gzip cuts a
/// layer), the members dealt out round-robin to `threads` threads.
fn gzip_parallel(data: &[u8], threads: usize) -> Result<Option<u64>> {
    let threads = threads.max(1);
    let sizes = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    data.chunks(MIB)
                        .skip(t)
                        .step_by(threads)
                        .map(gzip)
                        .sum::<Result<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("gzip thread panicked")))
            })
            .collect::<Result<Vec<u64>>>()
    })?;
    Ok(Some(sizes.iter().sum()))
}

fn gzip(data: &[u8]) -> Result<u64> {
    let mut gz = flate2::write::GzEncoder::new(Counter(0), flate2::Compression::new(6));
    gz.write_all(data)?;
    Ok(gz.finish()?.0)
}

fn zstd_parallel(data: &[u8], threads: usize) -> Result<Option<u64>> {
    let mut z = zstd::stream::write::Encoder::new(Counter(0), 3)?;
    z.multithread(u32::try_from(threads).unwrap_or(1))?;
    z.write_all(data)?;
    Ok(Some(z.finish()?.0))
}

/// A whole layer commit's data path: the blob ends up in `store`.
fn layer(store: &Store, data: &[u8], compression: Compression) -> Result<Option<u64>> {
    let mut w = LayerWriter::new(store, compression)?;
    w.write_all(data)?;
    let blob = w.finish()?;
    let path = store.blob_path(&blob.digest);
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(Some(blob.size))
}

/// A `Write` that only counts.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// MiB/s of reading `len` bytes from `/dev/urandom` in 64 KiB reads.
fn urandom_rate(len: usize) -> Result<f64> {
    let mut file = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    let mut left = len;
    while left > 0 {
        let n = file.read(&mut buf[..left.min(BLOCK)])?;
        if n == 0 {
            break;
        }
        left -= n;
    }
    Ok(mib_per_second((len - left) as u64, start.elapsed()))
}

/// The limits as a table.
pub fn table(limits: &Limits) -> String {
    let mut lines = vec![
        ["operation", "mixed MiB/s", "random MiB/s", "mixed out/in"]
            .map(String::from)
            .to_vec(),
    ];
    for l in &limits.lines {
        lines.push(vec![
            l.name.clone(),
            format!("{:.0}", l.mixed),
            format!("{:.0}", l.random),
            l.mixed_ratio
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    lines.push(vec![
        "read /dev/urandom, 1 core".into(),
        "-".into(),
        format!("{:.0}", limits.urandom),
        "-".into(),
    ]);
    report::align(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_data_is_deterministic_and_partly_compressible() {
        let data = mixed_data(3 * BLOCK + 100);
        assert_eq!(data.len(), 3 * BLOCK + 100);
        assert_eq!(data, mixed_data(3 * BLOCK + 100));
        let out = gzip(&data).unwrap() as usize;
        assert!(out < data.len() * 2 / 3, "{out} of {}", data.len());
        assert!(out > data.len() / 4, "{out} of {}", data.len());
    }

    #[test]
    fn parallel_compressors_count_their_output() {
        let data = mixed_data(BLOCK * 2);
        let gz = gzip_parallel(&data, 3).unwrap().unwrap();
        assert!(gz > 0 && gz < data.len() as u64);
        let z = zstd_parallel(&data, 2).unwrap().unwrap();
        assert!(z > 0 && z < data.len() as u64);
    }

    #[test]
    fn rates_are_mib_per_second() {
        assert_eq!(mib_per_second(3 << 20, Duration::from_secs(2)), 1.5);
        assert_eq!(mib_per_second(1, Duration::ZERO), 0.0);
    }
}
