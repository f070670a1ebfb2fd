//! Driving a target: the fuzz loop on an executor thread, a watchdog for hangs, crash
//! files, CPU-time accounting, and the in-flight record that lets a supervising parent
//! save the input that killed a child process outright (stack overflow, abort).

use crate::engine::{Mutator, Rng};
use crate::{FuzzError, Target};
use sha2::{Digest as _, Sha256};
use std::any::Any;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// How one fuzz run is set up.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// Stop after this much CPU time (user + system) of the process.
    pub cpu_seconds: f64,
    /// PRNG seed; the same seed, corpus and target give the same inputs.
    pub seed: u64,
    /// Directories whose files seed the corpus.
    pub corpus_dirs: Vec<PathBuf>,
    /// Crash inputs go to `<crash_dir>/<sha256>`.
    pub crash_dir: PathBuf,
    /// An input running longer than this is a hang.
    pub hang_after: Duration,
    /// Record each input here before running it (see [`InFlight`]).
    pub in_flight: Option<PathBuf>,
    /// Largest number of inputs kept in the in-memory corpus.
    pub max_corpus: usize,
    /// Go on after a panic (saving the first input of each distinct panic) instead of
    /// stopping at the first one. A hang always stops the run.
    pub keep_going: bool,
}

/// What went wrong with one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashKind {
    /// The target panicked.
    Panic,
    /// The target took longer than the hang limit.
    Hang,
    /// The process died (signal); seen by the supervising parent.
    Killed,
}

/// A failing input, written to disk.
#[derive(Debug, Clone)]
pub struct Crash {
    /// Panic, hang or death.
    pub kind: CrashKind,
    /// The panic message or a description.
    pub message: String,
    /// Where the input was written.
    pub path: PathBuf,
}

/// The figures of a finished (or crashed) fuzz run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run (seeds included).
    pub iterations: u64,
    /// User CPU seconds of the process.
    pub user_seconds: f64,
    /// System CPU seconds of the process.
    pub system_seconds: f64,
    /// Files the corpus started with.
    pub seeds: usize,
    /// Inputs in the corpus at the end (seeds plus inputs with new outcomes).
    pub corpus: usize,
    /// Distinct outcome fingerprints seen.
    pub outcomes: usize,
    /// The distinct crashes found (without `keep_going`, at most the one that ended the run).
    pub crashes: Vec<Crash>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "target:     {}", self.target)?;
        writeln!(f, "iterations: {}", self.iterations)?;
        writeln!(
            f,
            "cpu time:   {:.1} s (user {:.1} s + sys {:.1} s)",
            self.user_seconds + self.system_seconds,
            self.user_seconds,
            self.system_seconds
        )?;
        writeln!(
            f,
            "corpus:     {} entries ({} seeds, {} distinct outcomes)",
            self.corpus, self.seeds, self.outcomes
        )?;
        write!(f, "crashes:    {}", self.crashes.len())?;
        for c in &self.crashes {
            write!(
                f,
                "\n  {:?}: {}\n    {}",
                c.kind,
                c.path.display(),
                c.message
            )?;
        }
        Ok(())
    }
}

/// User and system CPU seconds used so far by this process (all threads).
pub fn cpu_time() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// Replaces the panic hook with one that records the first panic's message and location
/// (for the crash report) instead of printing every caught panic.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let mut slot = LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                let msg = payload_text(info.payload());
                *slot = Some(match info.location() {
                    Some(l) => format!("{msg} (at {}:{})", l.file(), l.line()),
                    None => msg,
                });
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// The message of the panic that produced `payload`: the one the hook recorded (with its
/// location) when there is one, else the payload's text.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    let recorded = LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
    recorded.unwrap_or_else(|| payload_text(payload))
}

/// Runs one input with panics caught; `Err` carries the panic message.
pub fn run_one(target: &Target, input: &[u8]) -> Result<u64, String> {
    install_panic_hook();
    LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
    std::panic::catch_unwind(|| (target.run)(input)).map_err(|p| panic_text(p.as_ref()))
}

/// Reads every regular file directly in `dirs` (sorted by name, missing dirs skipped).
pub fn load_files(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, FuzzError> {
    let mut out = Vec::new();
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FuzzError::io("read dir", dir, e)),
        };
        let mut paths = Vec::new();
        for e in entries {
            let e = e.map_err(|err| FuzzError::io("read dir", dir, err))?;
            if e.file_type().is_ok_and(|t| t.is_file()) {
                paths.push(e.path());
            }
        }
        paths.sort();
        for p in paths {
            let data = fs::read(&p).map_err(|e| FuzzError::io("read", &p, e))?;
            out.push((p, data));
        }
    }
    Ok(out)
}

/// Writes `input` to `<dir>/<sha256 of input>` and returns the path.
pub fn save_crash(dir: &Path, input: &[u8]) -> Result<PathBuf, FuzzError> {
    fs::create_dir_all(dir).map_err(|e| FuzzError::io("create", dir, e))?;
    let path = dir.join(hex::encode(Sha256::digest(input)));
    fs::write(&path, input).map_err(|e| FuzzError::io("write", &path, e))?;
    Ok(path)
}

/// A file-backed shared mapping holding the input being run (length, then bytes). Writes
/// to it survive the process being killed, so a supervising parent can read the input that
/// killed it.
pub struct InFlight {
    map: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value and only written through `&mut self`.
unsafe impl Send for InFlight {}

impl InFlight {
    /// Creates (or truncates) `path` to hold inputs up to `max_len` bytes and maps it.
    pub fn create(path: &Path, max_len: usize) -> Result<InFlight, FuzzError> {
        let len = 8 + max_len;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| FuzzError::io("create", path, e))?;
        file.set_len(len as u64)
            .map_err(|e| FuzzError::io("resize", path, e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: mapping `len` bytes of a file of that length, shared, read-write.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(FuzzError::io("mmap", path, std::io::Error::last_os_error()));
        }
        Ok(InFlight {
            map: map.cast(),
            len,
        })
    }

    /// Records `input` (cut to the mapping's size) as the one running now.
    pub fn record(&mut self, input: &[u8]) {
        let n = input.len().min(self.len - 8);
        // SAFETY: the mapping is `self.len` bytes long and `8 + n <= self.len`.
        unsafe {
            std::ptr::copy_nonoverlapping((n as u64).to_le_bytes().as_ptr(), self.map, 8);
            std::ptr::copy_nonoverlapping(input.as_ptr(), self.map.add(8), n);
        }
    }

    /// Reads the input recorded in the file at `path`, as written by [`InFlight::record`].
    pub fn read(path: &Path) -> Result<Vec<u8>, FuzzError> {
        let data = fs::read(path).map_err(|e| FuzzError::io("read", path, e))?;
        let Some((len, rest)) = data.split_first_chunk::<8>() else {
            return Err(FuzzError::Worker(format!(
                "{} is too short",
                path.display()
            )));
        };
        let n = usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
        Ok(rest[..n.min(rest.len())].to_vec())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `create` mapped.
        unsafe {
            libc::munmap(self.map.cast(), self.len);
        }
    }
}

/// State the executor shares with the watchdog.
struct Shared {
    current: Mutex<Vec<u8>>,
    /// Milliseconds since `epoch` at which the running input started, plus one; 0 = idle.
    started: AtomicU64,
    epoch: Instant,
}

enum Event {
    Done(Box<Report>),
    /// A new distinct panic; the run goes on.
    Found(Vec<u8>, String),
    Panicked(Vec<u8>, String, Box<Report>),
}

/// Fuzzes `target` until the CPU budget is used or an input fails. A panic or hang is
/// written to `crash_dir` and listed in [`Report::crashes`].
pub fn fuzz(target: &'static Target, opts: &FuzzOptions) -> Result<Report, FuzzError> {
    install_panic_hook();
    let seeds = load_files(&opts.corpus_dirs)?;
    let shared = Arc::new(Shared {
        current: Mutex::new(Vec::new()),
        started: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let in_flight = match &opts.in_flight {
        Some(p) => Some(InFlight::create(
            p,
            target
                .max_len
                .max(seeds.iter().map(|s| s.1.len()).max().unwrap_or(0)),
        )?),
        None => None,
    };
    let (tx, rx) = channel();
    let exec_shared = Arc::clone(&shared);
    let exec_opts = opts.clone();
    std::thread::Builder::new()
        .name(format!("fuzz-{}", target.name))
        .stack_size(64 << 20)
        .spawn(move || {
            let event = executor(target, &exec_opts, seeds, &exec_shared, in_flight, &tx);
            let _ = tx.send(event);
        })
        .map_err(|e| FuzzError::Worker(format!("cannot start the fuzz thread: {e}")))?;

    let hang_ms = opts.hang_after.as_millis() as u64;
    let mut found = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Done(mut report)) => {
                report.crashes = found;
                return Ok(*report);
            }
            Ok(Event::Found(input, message)) => {
                let path = save_crash(&opts.crash_dir, &input)?;
                eprintln!("crash: panic: {message}\n  input: {}", path.display());
                found.push(Crash {
                    kind: CrashKind::Panic,
                    message,
                    path,
                });
            }
            Ok(Event::Panicked(input, message, mut report)) => {
                let path = save_crash(&opts.crash_dir, &input)?;
                found.push(Crash {
                    kind: CrashKind::Panic,
                    message,
                    path,
                });
                report.crashes = found;
                return Ok(*report);
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(FuzzError::Worker("the fuzz thread went away".into()));
            }
            Err(RecvTimeoutError::Timeout) => {
                let started = shared.started.load(Ordering::Acquire);
                let now = shared.epoch.elapsed().as_millis() as u64 + 1;
                if started != 0 && now.saturating_sub(started) > hang_ms {
                    let input = shared
                        .current
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    let path = save_crash(&opts.crash_dir, &input)?;
                    let (user, sys) = cpu_time();
                    found.push(Crash {
                        kind: CrashKind::Hang,
                        message: format!(
                            "input ran for more than {:.1} s",
                            opts.hang_after.as_secs_f64()
                        ),
                        path,
                    });
                    return Ok(Report {
                        target: target.name,
                        iterations: 0,
                        user_seconds: user,
                        system_seconds: sys,
                        seeds: 0,
                        corpus: 0,
                        outcomes: 0,
                        crashes: found,
                    });
                }
            }
        }
    }
}

fn executor(
    target: &'static Target,
    opts: &FuzzOptions,
    seeds: Vec<(PathBuf, Vec<u8>)>,
    shared: &Shared,
    mut in_flight: Option<InFlight>,
    tx: &std::sync::mpsc::Sender<Event>,
) -> Event {
    let mutator = Mutator::new(target.dictionary, target.max_len, target.block);
    let mut rng = Rng::new(opts.seed);
    let mut corpus: Vec<Vec<u8>> = seeds.into_iter().map(|(_, d)| d).collect();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let n_seeds = corpus.len();
    let mut outcomes = HashSet::new();
    let mut iterations = 0u64;
    let report = |iterations, corpus: &Vec<Vec<u8>>, outcomes: &HashSet<u64>| {
        let (user, sys) = cpu_time();
        Box::new(Report {
            target: target.name,
            iterations,
            user_seconds: user,
            system_seconds: sys,
            seeds: n_seeds,
            corpus: corpus.len(),
            outcomes: outcomes.len(),
            crashes: Vec::new(),
        })
    };
    let mut next_seed = 0usize;
    let mut seen_panics = HashSet::new();
    loop {
        let input = if next_seed < n_seeds {
            next_seed += 1;
            corpus[next_seed - 1].clone()
        } else {
            let base = &corpus[rng.below(corpus.len())];
            let other = &corpus[rng.below(corpus.len())];
            mutator.mutate(&mut rng, base, other)
        };
        if let Some(f) = in_flight.as_mut() {
            f.record(&input);
        }
        {
            let mut cur = shared.current.lock().unwrap_or_else(|p| p.into_inner());
            cur.clear();
            cur.extend_from_slice(&input);
        }
        shared.started.store(
            shared.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::Release,
        );
        let result = run_one(target, &input);
        shared.started.store(0, Ordering::Release);
        iterations += 1;
        match result {
            Ok(fp) => {
                if outcomes.insert(fp) && next_seed >= n_seeds {
                    if corpus.len() < opts.max_corpus {
                        corpus.push(input);
                    } else {
                        let slot = n_seeds + rng.below(corpus.len() - n_seeds);
                        if let Some(s) = corpus.get_mut(slot) {
                            *s = input;
                        }
                    }
                }
            }
            Err(message) if opts.keep_going => {
                if seen_panics.insert(panic_site(&message))
                    && tx.send(Event::Found(input, message)).is_err()
                {
                    return Event::Done(report(iterations, &corpus, &outcomes));
                }
            }
            Err(message) => {
                return Event::Panicked(input, message, report(iterations, &corpus, &outcomes));
            }
        }
        if iterations & 31 == 0 && next_seed >= n_seeds {
            let (user, sys) = cpu_time();
            if user + sys >= opts.cpu_seconds {
                return Event::Done(report(iterations, &corpus, &outcomes));
            }
        }
    }
}

/// What makes two panics the same for `keep_going`: the message up to its first quote or
/// digit (names and numbers vary between inputs) and the panic location, if any.
fn panic_site(message: &str) -> String {
    let (text, location) = match message.rfind(" (at ") {
        Some(i) => message.split_at(i),
        None => (message, ""),
    };
    let kind: String = text
        .chars()
        .take_while(|c| !matches!(c, '"' | '\'') && !c.is_ascii_digit())
        .take(60)
        .collect();
    kind + location
}
