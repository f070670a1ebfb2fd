//! gzip on every core: the input is cut into fixed 1 MiB blocks, each compressed as a gzip
//! member of its own by a pool of threads, and the members are written in order.
//!
//! A stream of concatenated members is valid gzip (RFC 1952 §2.2) and every reader takes it
//! (Go's `compress/gzip` reads multistream by default, as do zlib's `gunzip`, pigz and
//! flate2's `MultiGzDecoder`). The block size is fixed and each member is compressed alone,
//! so the output bytes depend only on the input and the level — never on the core count.
//! Headers carry no name and mtime 0.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread;

/// Uncompressed bytes per gzip member.
pub(crate) const BLOCK: usize = 1 << 20;

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

/// A `Write` that gzips into `sink` on `threads` worker threads; a writer thread puts the
/// members in order into the sink (so hashing and writing the output run beside the
/// caller, which hashes and produces the input).
pub(crate) struct ParGzWriter<W: Write + Send + 'static> {
    buf: Vec<u8>,
    next_seq: u64,
    jobs: Option<mpsc::SyncSender<Job>>,
    /// One message per member written to the sink.
    written: mpsc::Receiver<()>,
    in_flight: usize,
    max_in_flight: usize,
    workers: Vec<thread::JoinHandle<()>>,
    writer: Option<thread::JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ParGzWriter<W> {
    /// A writer compressing at `level` (0-9) on `threads` threads (at least one).
    pub(crate) fn new(sink: W, level: u32, threads: usize) -> ParGzWriter<W> {
        let threads = threads.max(1);
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads * 2);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let (written_tx, written_rx) = mpsc::channel::<()>();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = job_rx.clone();
                let tx = done_tx.clone();
                thread::spawn(move || worker(&rx, &tx, level))
            })
            .collect();
        let writer = thread::spawn(move || write_in_order(sink, &done_rx, &written_tx));
        ParGzWriter {
            buf: Vec::with_capacity(BLOCK),
            next_seq: 0,
            jobs: Some(job_tx),
            written: written_rx,
            in_flight: 0,
            max_in_flight: threads * 3,
            workers,
            writer: Some(writer),
        }
    }

    /// Compresses what is left, writes every member and returns the sink.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.next_seq == 0 {
            self.submit()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let writer = self.writer.take().ok_or_else(closed)?;
        let mut sink = writer.join().map_err(|_| closed())??;
        sink.flush()?;
        Ok(sink)
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.written.recv().map_err(|_| self.writer_error())?;
            self.in_flight -= 1;
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let jobs = self.jobs.as_ref().ok_or_else(closed)?;
        if jobs.send((self.next_seq, block)).is_err() {
            return Err(self.writer_error());
        }
        self.next_seq += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// The writer thread's error, once it has stopped early.
    fn writer_error(&mut self) -> io::Error {
        self.jobs = None;
        match self.writer.take().map(thread::JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => closed(),
        }
    }
}

/// The writer thread: members into `sink` in sequence order, one `written` per member.
fn write_in_order<W: Write>(
    mut sink: W,
    done: &mpsc::Receiver<Done>,
    written: &mpsc::Sender<()>,
) -> io::Result<W> {
    let mut pending = BTreeMap::new();
    let mut next_out = 0u64;
    while let Ok((seq, member)) = done.recv() {
        pending.insert(seq, member?);
        while let Some(member) = pending.remove(&next_out) {
            sink.write_all(&member)?;
            next_out += 1;
            let _ = written.send(());
        }
    }
    Ok(sink)
}

fn closed() -> io::Error {
    io::Error::other("gzip worker threads stopped")
}

fn worker(rx: &std::sync::Mutex<mpsc::Receiver<Job>>, tx: &mpsc::Sender<Done>, level: u32) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok((seq, block)) = job else {
            return;
        };
        if tx.send((seq, gzip_member(&block, level))).is_err() {
            return;
        }
    }
}

/// One gzip member of `data`: no name, mtime 0, the level's compression — or stored
/// deflate blocks when the block looks incompressible (already compressed or random data
/// only costs time at any level). The choice depends on the bytes alone, so the output
/// stays the same for the same input.
fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let level = if incompressible(data) {
        0
    } else {
        level.min(9)
    };
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::new(level));
    gz.write_all(data)?;
    gz.finish()
}

/// Whether a block's byte histogram is so flat (more than 7.99 bits of entropy per byte)
/// that deflate cannot shrink it noticeably.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < 64 * 1024 {
        return false;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.99
}

impl<W: Write + Send + 'static> Write for ParGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn compress(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), 6, threads);
        for chunk in data.chunks(70_000) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 1;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b'a' + (i % 7) as u8
                }
            })
            .collect()
    }

    #[test]
    fn output_is_the_same_for_any_thread_count_and_reads_back() {
        let data = sample(3 * BLOCK + 12_345);
        let one = compress(&data, 1);
        assert_eq!(one, compress(&data, 2));
        assert_eq!(one, compress(&data, 5));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn random_blocks_are_stored_and_read_back() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let data: Vec<u8> = (0..2 * BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(incompressible(&data[..BLOCK]));
        assert!(!incompressible(&sample(BLOCK)));
        let out = compress(&data, 2);
        assert!(out.len() > data.len(), "stored, not squeezed");
        assert!(out.len() < data.len() + data.len() / 100);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn empty_input_is_one_empty_member() {
        let out = compress(b"", 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert!(!out.is_empty());
    }
}
