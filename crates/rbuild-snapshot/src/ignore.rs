//! `.dockerignore`: which parts of the build context a build may see. rbuild applies it
//! the way BuildKit does when it transfers the context: the build works on a filtered view
//! of the context directory, so COPY, ADD, bind mounts and cache keys all see the same
//! files.

use crate::error::{IoContext, SnapshotError};
use crate::pattern::Excludes;
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use rbuild_fsroot::{Root, Target};
use std::path::{Path, PathBuf};

/// The ignore file of a build: `<Dockerfile>.dockerignore` beside the Dockerfile wins over
/// `<context>/.dockerignore`.
pub fn ignore_file(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    let beside = dockerfile.file_name().map(|n| {
        let mut name = n.to_os_string();
        name.push(".dockerignore");
        dockerfile.with_file_name(name)
    });
    beside
        .filter(|p| p.is_file())
        .or_else(|| Some(context.join(".dockerignore")).filter(|p| p.is_file()))
}

/// The patterns of a `.dockerignore` text: comments and blank lines dropped, surrounding
/// space trimmed, a leading `/` removed and `.`/`..` cleaned, `!` exceptions kept.
pub fn parse_ignore(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (neg, body) = match line.strip_prefix('!') {
            Some(rest) => ("!", rest.trim()),
            None => ("", line),
        };
        let cleaned = clean(body);
        if !cleaned.is_empty() {
            out.push(format!("{neg}{cleaned}"));
        }
    }
    out
}

fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// What [`filtered_context`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterStats {
    /// Files, links and directories carried over.
    pub kept: u64,
    /// Entries left out (a left-out directory counts once).
    pub ignored: u64,
}

/// Recreates `context` at `dest` (an empty directory) without what `patterns` exclude.
/// Files are hard-linked where possible and copied otherwise; modes and mtimes are kept.
pub fn filtered_context(
    context: &Path,
    patterns: &[String],
    dest: &Path,
) -> Result<FilterStats, SnapshotError> {
    let rules = Excludes::new(patterns).map_err(|pattern| SnapshotError::BadPattern { pattern })?;
    let out = Root::open(dest).ctx("open", dest)?;
    let mut stats = FilterStats::default();
    walk(context, &out, &mut Vec::new(), &rules, &mut stats)?;
    Ok(stats)
}

fn walk(
    src: &Path,
    out: &Root,
    rel: &mut Vec<String>,
    rules: &Excludes,
    stats: &mut FilterStats,
) -> Result<bool, SnapshotError> {
    let mut names: Vec<_> = fs::read_dir(src)
        .ctx("read", src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .ctx("read", src)?;
    names.sort();
    let mut kept_any = false;
    for name in names {
        let Some(name_str) = name.to_str() else {
            return Err(SnapshotError::NonUtf8Name {
                name: src.join(&name).display().to_string(),
            });
        };
        rel.push(name_str.to_string());
        let parts: Vec<&str> = rel.iter().map(String::as_str).collect();
        let excluded = rules.excluded(&parts);
        let from = src.join(&name);
        let meta = fs::symlink_metadata(&from).ctx("stat", &from)?;
        let to_path = out.display(Path::new(&rel.join("/")));
        let kept = if meta.is_dir() {
            if excluded && !rules.has_exceptions() {
                false
            } else {
                let to = out.at_components(rel).ctx("open", &to_path)?;
                to.mkdir(0o755).ctx("create", &to_path)?;
                let inner = walk(&from, out, rel, rules, stats)?;
                if excluded && !inner {
                    to.remove(true).ctx("remove", &to_path)?;
                    false
                } else {
                    copy_meta(&meta, &to)?;
                    true
                }
            }
        } else if excluded {
            false
        } else {
            let to = out.at_components(rel).ctx("open", &to_path)?;
            carry(&from, &to, &meta)?;
            true
        };
        if kept {
            stats.kept += 1;
            kept_any = true;
        } else if excluded {
            stats.ignored += 1;
        }
        rel.pop();
    }
    Ok(kept_any)
}

fn carry(from: &Path, to: &Target<'_>, meta: &fs::Metadata) -> Result<(), SnapshotError> {
    let to_path = to.display();
    if meta.file_type().is_symlink() {
        let target = fs::read_link(from).ctx("read link", from)?;
        return to.symlink(target.as_os_str()).ctx("symlink", &to_path);
    }
    if !meta.is_file() {
        // Sockets, fifos and devices are not part of a build context.
        return Ok(());
    }
    if to.hard_link_to_path(from).is_ok() {
        return Ok(());
    }
    let mut input = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)
        .ctx("open", from)?;
    let mut output = to.create_file(0o600).ctx("create", &to_path)?;
    std::io::copy(&mut input, &mut output).ctx("copy", from)?;
    copy_meta(meta, to)
}

fn copy_meta(meta: &fs::Metadata, to: &Target<'_>) -> Result<(), SnapshotError> {
    let to_path = to.display();
    to.chmod(meta.mode() & 0o7777).ctx("chmod", &to_path)?;
    to.set_times(meta.mtime(), meta.mtime_nsec() as u32)
        .ctx("set mtime", &to_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_text_is_cleaned_like_docker() {
        let text = "# comment\n\n  /build/  \n!build/keep.txt\n./a/../b\n*.log\n";
        assert_eq!(
            parse_ignore(text),
            vec!["build", "!build/keep.txt", "b", "*.log"]
        );
    }

    #[test]
    fn filtered_context_leaves_out_ignored_paths_and_keeps_exceptions() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        for f in [
            "a.txt",
            "x.log",
            "sub/y.log",
            "build/out.bin",
            "build/keep.txt",
            ".git/HEAD",
        ] {
            let p = ctx.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        let patterns = parse_ignore("*.log\nbuild\n!build/keep.txt\n.git\n");
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        filtered_context(&ctx, &patterns, &dest).unwrap();
        let mut found = Vec::new();
        for e in walkdir(&dest) {
            found.push(e.strip_prefix(&dest).unwrap().display().to_string());
        }
        found.sort();
        assert_eq!(
            found,
            vec!["a.txt", "build", "build/keep.txt", "sub", "sub/y.log"]
        );
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".dockerignore"), "a").unwrap();
        assert_eq!(
            ignore_file(dir.path(), &dir.path().join("Dockerfile")),
            Some(dir.path().join(".dockerignore"))
        );
        fs::write(dir.path().join("Dockerfile.dockerignore"), "b").unwrap();
        assert_eq!(
            ignore_file(dir.path(), &dir.path().join("Dockerfile")),
            Some(dir.path().join("Dockerfile.dockerignore"))
        );
    }

    fn walkdir(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap().flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walkdir(&e.path()));
            }
        }
        out
    }
}
