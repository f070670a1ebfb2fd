//! Small helpers shared by the commands: running programs visibly, hashing, paths.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The workspace root: the directory above this crate.
pub fn repo_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .context("xtask has no parent directory")?;
    Ok(root.to_path_buf())
}

/// Prints a headline for one stage of a command.
pub fn step(message: &str) {
    println!("==> {message}");
}

/// Prints an informational line.
pub fn info(message: &str) {
    println!("    {message}");
}

/// A `cargo` command, using the cargo that runs xtask when known.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line as a shell-like string, for printing.
pub fn show(cmd: &Command) -> String {
    let mut words = vec![quote(cmd.get_program())];
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited stdio after printing it; fails on a nonzero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    println!("$ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", show(cmd));
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout; fails with its stderr on a nonzero exit.
pub fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(out.stdout)
}

/// Like [`output`], as trimmed UTF-8 text.
pub fn output_text(cmd: &mut Command) -> Result<String> {
    let bytes = output(cmd)?;
    let text =
        String::from_utf8(bytes).with_context(|| format!("{} printed non-UTF-8", show(cmd)))?;
    Ok(text.trim().to_string())
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `program` is found on `PATH`.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// A fresh, empty directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/xtask-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Result<TempDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xtask-{label}-{}-{n}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        unmount_under(&self.0);
        let _ = remove_tree(&self.0);
    }
}

/// Unmounts every mount at or below `dir`, deepest first. Container tools (buildah
/// after a failed build, in particular) can leave their storage mounted.
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let mut points = mount_points_under(&mounts, dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let quiet = |cmd: &mut Command| {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !quiet(Command::new("umount").arg(&point)) {
            quiet(Command::new("umount").arg("-l").arg(&point));
        }
    }
}

/// The mount points in a `/proc/self/mounts` text that are `dir` or below it.
fn mount_points_under(mounts: &str, dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(unescape_mount_path)
        .filter(|point| point == dir || point.starts_with(&format!("{dir}/")))
        .collect()
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mount paths.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a directory tree, first making every directory in it writable
/// (container storage leaves read-only directories behind).
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            let _ = Command::new("chmod")
                .arg("-R")
                .arg("u+rwx")
                .arg(dir)
                .status();
            std::fs::remove_dir_all(dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_quotes_only_words_that_need_it() {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y", "a b", "it's"]);
        assert_eq!(show(&cmd), r"apt-get install -y 'a b' 'it'\''s'");
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn mount_points_below_a_directory() {
        let mounts = "\
overlay / overlay rw 0 0
/dev/vda /tmp/x/root/overlay ext4 rw 0 0
overlay /tmp/x/root/overlay/abc/merged overlay rw 0 0
tmpfs /tmp/xy tmpfs rw 0 0
tmpfs /tmp/x/with\\040space tmpfs rw 0 0
";
        assert_eq!(
            mount_points_under(mounts, Path::new("/tmp/x")),
            [
                "/tmp/x/root/overlay",
                "/tmp/x/root/overlay/abc/merged",
                "/tmp/x/with space"
            ]
        );
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let tmp = TempDir::new("util-test").unwrap();
        let path = tmp.path().to_path_buf();
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(tmp);
        assert!(!path.exists());
    }
}
