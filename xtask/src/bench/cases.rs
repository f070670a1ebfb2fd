//! The benchmark cases: directories under `Dockerfiles/bench/`, the platform sets each
//! is built for, and the generated context of `smallfiles`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::layout::Platform;
use crate::util;

/// One benchmark case: a directory with a Dockerfile, also its build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The directory name.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
}

/// The case whose context is generated at bench time.
pub const SMALLFILES: &str = "smallfiles";
/// The case built natively and for a foreign platform, not for both at once.
pub const FOREIGN: &str = "foreign";
/// The case that writes one large layer.
pub const BIGFILE: &str = "bigfile";
/// Size of the file the bigfile case writes.
pub const BIGFILE_BYTES: u64 = 1 << 30;
/// The cases `--quick` runs.
pub const QUICK: &[&str] = &["hello", "manysteps"];

/// Files in the generated smallfiles context.
const SMALL_FILES: usize = 20_000;
/// Files per directory of the generated context.
const FILES_PER_DIR: usize = 200;

/// Subdirectories of `dir` holding a `Dockerfile`, by name; none when `dir` is absent.
pub fn find_cases(dir: &Path) -> Result<Vec<Case>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut cases: Vec<Case> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            Some(Case { name, dir })
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// The platform sets a case is built for: amd64 alone, then amd64 with arm64 (the
/// foreign case: arm64 alone instead). Without arm64 in the fixture, amd64 only;
/// `quick` also means amd64 only.
pub fn platform_sets(case: &str, have_arm64: bool, quick: bool) -> Vec<Vec<Platform>> {
    let amd64 = Platform::linux("amd64", None);
    let arm64 = Platform::linux("arm64", None);
    let mut sets = vec![vec![amd64.clone()]];
    if have_arm64 && !quick {
        if case == FOREIGN {
            sets.push(vec![arm64]);
        } else {
            sets.push(vec![amd64, arm64]);
        }
    }
    sets
}

/// A short name for a platform set: the architectures joined by `+`.
pub fn platform_label(set: &[Platform]) -> String {
    set.iter()
        .map(|p| p.architecture.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// The `--platform` value for a set.
pub fn platform_arg(set: &[Platform]) -> String {
    set.iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A case ready to build: its own directory, or for smallfiles a generated copy (which
/// lives as long as this value).
pub struct Prepared {
    /// The case, its `dir` being the context to build.
    pub case: Case,
    _generated: Option<util::TempDir>,
}

impl Prepared {
    /// Prepares `case`; generates the smallfiles context into a temp directory.
    pub fn new(case: &Case) -> Result<Prepared> {
        if case.name != SMALLFILES {
            return Ok(Prepared {
                case: case.clone(),
                _generated: None,
            });
        }
        let tmp = util::TempDir::new("bench-smallfiles")?;
        let dockerfile = case.dir.join("Dockerfile");
        std::fs::copy(&dockerfile, tmp.path().join("Dockerfile"))
            .with_context(|| format!("cannot copy {}", dockerfile.display()))?;
        let bytes = write_small_files(&tmp.path().join("files"))?;
        util::info(&format!(
            "generated {SMALL_FILES} files, {bytes} bytes, in {}",
            tmp.path().display()
        ));
        Ok(Prepared {
            case: Case {
                name: case.name.clone(),
                dir: tmp.path().to_path_buf(),
            },
            _generated: Some(tmp),
        })
    }
}

/// Writes the smallfiles tree under `dir`; returns the bytes written.
fn write_small_files(dir: &Path) -> Result<u64> {
    let mut rng = XorShift::new(0x5eed_f11e);
    let mut total = 0;
    for i in 0..SMALL_FILES {
        let sub = dir.join(format!("d{:03}", i / FILES_PER_DIR));
        if i % FILES_PER_DIR == 0 {
            std::fs::create_dir_all(&sub)
                .with_context(|| format!("cannot create {}", sub.display()))?;
        }
        let content = small_file(&mut rng, i);
        let path = sub.join(format!("f{i:05}.txt"));
        std::fs::write(&path, &content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        total += content.len() as u64;
    }
    Ok(total)
}

/// One file of the smallfiles tree: 524 to 1572 bytes (1048 on average), half text
/// lines, half hex of pseudo-random numbers.
fn small_file(rng: &mut XorShift, index: usize) -> Vec<u8> {
    let len = 524 + (rng.next_u64() % 1049) as usize;
    let mut out = format!("file {index}\n").into_bytes();
    while out.len() < len {
        let n = rng.next_u64();
        let line = if n & 1 == 0 {
            format!("line {} of file {index}\n", n % 1000)
        } else {
            format!("{n:016x}{:016x}\n", rng.next_u64())
        };
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// A small deterministic pseudo-random generator (xorshift64*): the same bytes on every
/// machine, fast enough to fill hundreds of MiB.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a nonzero seed (zero is replaced by a constant).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_directories_with_a_dockerfile() {
        let tmp = util::TempDir::new("bench-test").unwrap();
        assert!(find_cases(&tmp.path().join("absent")).unwrap().is_empty());
        for (name, dockerfile) in [("b-copy", true), ("a-run", true), ("empty", false)] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
            if dockerfile {
                std::fs::write(tmp.path().join(name).join("Dockerfile"), "FROM busybox\n").unwrap();
            }
        }
        std::fs::write(tmp.path().join("README.md"), "").unwrap();
        let names: Vec<String> = find_cases(tmp.path())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a-run", "b-copy"]);
    }

    #[test]
    fn platform_sets_per_case() {
        let labels = |case: &str, arm64: bool, quick: bool| {
            platform_sets(case, arm64, quick)
                .iter()
                .map(|s| platform_label(s))
                .collect::<Vec<_>>()
        };
        assert_eq!(labels("hello", true, false), ["amd64", "amd64+arm64"]);
        assert_eq!(labels(FOREIGN, true, false), ["amd64", "arm64"]);
        assert_eq!(labels("hello", false, false), ["amd64"]);
        assert_eq!(labels("hello", true, true), ["amd64"]);
        let both = &platform_sets("hello", true, false)[1];
        assert_eq!(platform_arg(both), "linux/amd64,linux/arm64");
    }

    #[test]
    fn small_files_are_deterministic_and_about_a_kilobyte() {
        let files = |seed| {
            let mut rng = XorShift::new(seed);
            (0..200)
                .map(|i| small_file(&mut rng, i))
                .collect::<Vec<_>>()
        };
        let a = files(1);
        assert_eq!(a, files(1));
        assert_ne!(a, files(2));
        let total: usize = a.iter().map(Vec::len).sum();
        assert!(a.iter().all(|f| (524..=1572).contains(&f.len())));
        assert!(
            (900..1200).contains(&(total / a.len())),
            "{}",
            total / a.len()
        );
    }

    #[test]
    fn xorshift_fills_partial_chunks() {
        let mut buf = [0u8; 13];
        XorShift::new(7).fill(&mut buf);
        let mut again = [0u8; 13];
        XorShift::new(7).fill(&mut again);
        assert_eq!(buf, again);
        assert!(buf.iter().any(|&b| b != 0));
    }
}
