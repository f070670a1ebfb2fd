//! Pure helpers of the step runner: PATH lookup, overlay mount options, the step's
//! environment. No system calls here, so all of it is unit-tested without root.

use std::path::{Component, Path, PathBuf};

/// The PATH a step gets when its environment sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `name` in `path_var` (colon-separated) using `is_executable`; names with a
/// slash are returned as they are.
pub fn find_in_path(
    name: &str,
    path_var: &str,
    is_executable: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path_var
        .split(':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".")
            } else {
                Path::new(dir)
            }
        })
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// At most this many characters of a name from the step (a command, a PATH) appear in
/// an error message.
pub(crate) const SHOWN_NAME_CHARS: usize = 256;

/// `text` cut to `SHOWN_NAME_CHARS` characters, with `…` and the full length when it was
/// cut: names come from Dockerfiles and images, and a huge one must neither flood a
/// message nor overflow the pipe that carries it.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHOWN_NAME_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
    }
}

/// The value of `key` in a `K=V` environment list (the last one wins, as in execve users).
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// The environment the step's process gets: the step's own, plus `PATH` and `HOME`
/// when it lacks them (as Docker does).
pub fn step_env(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    if env_value(env, "PATH").is_none() {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if env_value(env, "HOME").is_none() {
        out.push(format!("HOME={home}"));
    }
    out
}

/// The clean absolute form of a mount target (relative ones taken from `cwd`), with
/// `.` and `..` resolved lexically; `None` for the root itself or a NUL byte.
pub fn mount_target(cwd: &str, target: &str) -> Option<String> {
    if target.contains('\0') || cwd.contains('\0') {
        return None;
    }
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{cwd}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

/// The data string of an overlay mount, and the directory to `chdir` into first when
/// the paths had to be made relative to fit in a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayData {
    /// Directory to change into before mounting, when the paths are relative.
    pub chdir: Option<PathBuf>,
    /// `lowerdir=...,upperdir=...,workdir=...,userxattr`.
    pub options: String,
}

/// Escapes the characters overlayfs treats specially in its options.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn options_for(lower: &[&Path], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = lower.iter().map(|p| escape(p)).collect();
    format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        escape(upper),
        escape(work)
    )
}

/// The deepest directory containing every path (all absolute).
pub fn common_parent(paths: &[&Path]) -> PathBuf {
    let mut common: Vec<Component> = match paths.first() {
        Some(p) => p.parent().unwrap_or(p).components().collect(),
        None => return PathBuf::from("/"),
    };
    for p in &paths[1..] {
        let parent: Vec<Component> = p.parent().unwrap_or(p).components().collect();
        let same = common
            .iter()
            .zip(&parent)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(same);
    }
    common.iter().collect()
}

/// Builds the overlay options for `lower` (top-most first), `upper` and `work`,
/// switching to paths relative to their common parent when the absolute form would
/// not fit in `limit` bytes (the kernel copies one page of mount data).
pub fn overlay_data(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    limit: usize,
) -> Result<OverlayData, String> {
    let lower_refs: Vec<&Path> = lower.iter().map(PathBuf::as_path).collect();
    let options = options_for(&lower_refs, upper, work);
    if options.len() < limit {
        return Ok(OverlayData {
            chdir: None,
            options,
        });
    }
    let mut all = lower_refs.clone();
    all.push(upper);
    all.push(work);
    let parent = common_parent(&all);
    let rel = |p: &Path| -> PathBuf {
        p.strip_prefix(&parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let lower_rel: Vec<PathBuf> = lower_refs.iter().map(|p| rel(p)).collect();
    let lower_rel_refs: Vec<&Path> = lower_rel.iter().map(PathBuf::as_path).collect();
    let options = options_for(&lower_rel_refs, &rel(upper), &rel(work));
    if options.len() >= limit {
        return Err(format!(
            "{} lower layers make overlay options of {} bytes, more than the kernel accepts ({limit})",
            lower.len(),
            options.len()
        ));
    }
    Ok(OverlayData {
        chdir: Some(parent),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_for_messages() {
        assert_eq!(shorten("sh"), "sh");
        let long = "é".repeat(70_000);
        let shown = shorten(&long);
        assert!(shown.starts_with(&"é".repeat(SHOWN_NAME_CHARS)));
        assert!(shown.ends_with("é… (140000 bytes)"), "{shown}");
    }

    #[test]
    fn path_lookup_uses_the_first_executable_match() {
        let exists = |p: &Path| p == Path::new("/usr/bin/sh") || p == Path::new("/bin/sh");
        assert_eq!(
            find_in_path("sh", DEFAULT_PATH, exists),
            Some(PathBuf::from("/usr/bin/sh"))
        );
        assert_eq!(
            find_in_path("sh", "/bin:/usr/bin", exists),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_in_path("nope", DEFAULT_PATH, exists), None);
        assert_eq!(
            find_in_path("./x", "", |_| false),
            Some(PathBuf::from("./x"))
        );
    }

    #[test]
    fn env_defaults_are_added_only_when_missing() {
        let env = vec!["A=1".to_string(), "PATH=/bin".to_string()];
        assert_eq!(
            step_env(&env, "/root"),
            vec!["A=1", "PATH=/bin", "HOME=/root"]
        );
        let env = vec!["HOME=/h".to_string()];
        assert_eq!(
            step_env(&env, "/root"),
            vec!["HOME=/h".to_string(), format!("PATH={DEFAULT_PATH}")]
        );
        assert_eq!(env_value(&["PATHX=1".to_string()], "PATH"), None);
    }

    #[test]
    fn mount_targets_are_cleaned() {
        assert_eq!(
            mount_target("/", "/run/secrets/x").as_deref(),
            Some("/run/secrets/x")
        );
        assert_eq!(
            mount_target("/app", "cache/./go/").as_deref(),
            Some("/app/cache/go")
        );
        assert_eq!(
            mount_target("/app", "../../../etc").as_deref(),
            Some("/etc")
        );
        assert_eq!(mount_target("/app", "/a/../b").as_deref(), Some("/b"));
        assert_eq!(mount_target("/", "/"), None);
        assert_eq!(mount_target("/app", ".."), None);
        assert_eq!(mount_target("/", "/x\0"), None);
    }

    #[test]
    fn overlay_options_in_absolute_form() {
        let data = overlay_data(
            &[PathBuf::from("/s/l2"), PathBuf::from("/s/l1")],
            Path::new("/s/up"),
            Path::new("/s/work"),
            4096,
        )
        .unwrap();
        assert_eq!(data.chdir, None);
        assert_eq!(
            data.options,
            "lowerdir=/s/l2:/s/l1,upperdir=/s/up,workdir=/s/work,userxattr"
        );
    }

    #[test]
    fn overlay_options_escape_separators() {
        let data = overlay_data(
            &[PathBuf::from("/a:b,c")],
            Path::new("/u"),
            Path::new("/w"),
            4096,
        )
        .unwrap();
        assert_eq!(
            data.options,
            r"lowerdir=/a\:b\,c,upperdir=/u,workdir=/w,userxattr"
        );
    }

    #[test]
    fn long_overlay_options_become_relative() {
        let base = "/var/lib/rbuild/snapshots/a-rather-long-directory-name-for-layers";
        let lower: Vec<PathBuf> = (0..40)
            .map(|i| PathBuf::from(format!("{base}/{i:064}/fs")))
            .collect();
        let data = overlay_data(
            &lower,
            Path::new(&format!("{base}/up/fs")),
            Path::new(&format!("{base}/up/work")),
            4096,
        )
        .unwrap();
        assert_eq!(data.chdir, Some(PathBuf::from(base)));
        assert!(data.options.starts_with(&format!("lowerdir={:064}/fs:", 0)));
        assert!(
            data.options
                .ends_with(",upperdir=up/fs,workdir=up/work,userxattr")
        );
        assert!(data.options.len() < 4096);
        let too_many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("{base}/{i:064}/fs")))
            .collect();
        assert!(overlay_data(&too_many, Path::new("/u"), Path::new("/w"), 4096).is_err());
    }

    #[test]
    fn common_parent_of_paths() {
        assert_eq!(
            common_parent(&[Path::new("/a/b/c"), Path::new("/a/b/d/e")]),
            PathBuf::from("/a/b")
        );
        assert_eq!(
            common_parent(&[Path::new("/x/1"), Path::new("/y/2")]),
            PathBuf::from("/")
        );
    }
}
