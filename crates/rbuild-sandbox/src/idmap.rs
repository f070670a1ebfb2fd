//! User and group id maps of a user namespace: building them for the caller,
//! formatting them for `/proc/PID/{uid,gid}_map`, and reading the current ones.

use crate::error::{SandboxError, sys};
use std::path::Path;

/// One line of an id map: `count` ids starting at `container` inside the namespace
/// are ids starting at `host` outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the namespace.
    pub container: u32,
    /// First id in the parent namespace.
    pub host: u32,
    /// How many consecutive ids are mapped.
    pub count: u32,
}

/// The uid and gid maps of a user namespace, written when the build namespace is
/// entered and read back for logs and user checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    /// Lines of `uid_map`.
    pub uid: Vec<IdMap>,
    /// Lines of `gid_map`.
    pub gid: Vec<IdMap>,
}

impl IdMaps {
    /// The whole 32-bit id space mapped onto itself: what root gets, so files keep their
    /// real owners.
    pub fn identity() -> IdMaps {
        let all = IdMap {
            container: 0,
            host: 0,
            count: u32::MAX,
        };
        IdMaps {
            uid: vec![all],
            gid: vec![all],
        }
    }

    /// Container root mapped onto one host user and group, all an unprivileged caller
    /// may write without `newuidmap`.
    pub fn single(uid: u32, gid: u32) -> IdMaps {
        IdMaps {
            uid: vec![IdMap {
                container: 0,
                host: uid,
                count: 1,
            }],
            gid: vec![IdMap {
                container: 0,
                host: gid,
                count: 1,
            }],
        }
    }

    /// The maps used by default for the calling user: identity for root, a single
    /// mapping of container root onto the caller otherwise.
    pub fn for_current_user() -> IdMaps {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        if uid == 0 {
            IdMaps::identity()
        } else {
            IdMaps::single(uid, gid)
        }
    }

    /// Whether these maps can be written straight to `/proc/PID/*_map` by a caller with
    /// these host ids (root, or only its own ids), as opposed to needing `newuidmap`.
    pub fn writable_directly_by(&self, uid: u32, gid: u32) -> bool {
        if uid == 0 {
            return true;
        }
        let own =
            |maps: &[IdMap], id: u32| maps.len() == 1 && maps[0].host == id && maps[0].count == 1;
        own(&self.uid, uid) && own(&self.gid, gid)
    }
}

/// Whether `id` (inside the namespace) is covered by one of `maps`.
pub fn is_mapped(maps: &[IdMap], id: u32) -> bool {
    maps.iter()
        .any(|m| id >= m.container && (id - m.container) < m.count)
}

/// Formats maps the way the kernel reads them: one `inside outside count` line each.
pub fn format_map(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.count))
        .collect()
}

/// Parses the text of a `uid_map` / `gid_map` file; `None` names the bad line.
pub fn parse_map(text: &str) -> Result<Vec<IdMap>, String> {
    let mut maps = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<u32> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| line.to_string())?;
        match fields.as_slice() {
            [container, host, count] => maps.push(IdMap {
                container: *container,
                host: *host,
                count: *count,
            }),
            _ => return Err(line.to_string()),
        }
    }
    Ok(maps)
}

/// Describes maps for a log line, e.g. `0→1000 (1)`.
pub fn describe_map(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{}→{} ({})", m.container, m.host, m.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The id maps of the user namespace this process runs in (read from `/proc/self`).
pub fn id_maps() -> Result<IdMaps, SandboxError> {
    Ok(IdMaps {
        uid: read_map(Path::new("/proc/self/uid_map"))?,
        gid: read_map(Path::new("/proc/self/gid_map"))?,
    })
}

fn read_map(path: &Path) -> Result<Vec<IdMap>, SandboxError> {
    let text = std::fs::read_to_string(path).map_err(sys(format!("read {}", path.display())))?;
    parse_map(&text).map_err(|line| SandboxError::IdMapSyntax {
        path: path.to_path_buf(),
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_formats_as_the_kernel_expects() {
        assert_eq!(format_map(&IdMaps::identity().uid), "0 0 4294967295\n");
    }

    #[test]
    fn single_map_formats_and_parses_back() {
        let maps = IdMaps::single(1000, 1001);
        assert_eq!(format_map(&maps.uid), "0 1000 1\n");
        assert_eq!(format_map(&maps.gid), "0 1001 1\n");
        assert_eq!(
            parse_map("         0       1000          1\n").unwrap(),
            maps.uid
        );
    }

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(parse_map("0 1 x\n").unwrap_err(), "0 1 x");
        assert_eq!(parse_map("0 1\n").unwrap_err(), "0 1");
    }

    #[test]
    fn mapped_ids() {
        let maps = parse_map("0 1000 1\n1 100000 65536\n").unwrap();
        assert!(is_mapped(&maps, 0));
        assert!(is_mapped(&maps, 65536));
        assert!(!is_mapped(&maps, 65537));
        assert!(!is_mapped(&IdMaps::single(1000, 1000).uid, 65534));
        assert!(is_mapped(&IdMaps::identity().uid, 65534));
    }

    #[test]
    fn direct_write_rules() {
        assert!(IdMaps::identity().writable_directly_by(0, 0));
        assert!(IdMaps::single(1000, 1000).writable_directly_by(1000, 1000));
        assert!(!IdMaps::single(1000, 1000).writable_directly_by(1001, 1000));
        let mut wide = IdMaps::single(1000, 1000);
        wide.uid.push(IdMap {
            container: 1,
            host: 100000,
            count: 65536,
        });
        assert!(!wide.writable_directly_by(1000, 1000));
    }
}
