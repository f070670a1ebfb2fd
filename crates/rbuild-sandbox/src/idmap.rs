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

    /// Every id these maps cover mapped onto itself: what root gets when it already runs
    /// in a user namespace (a container), where only the ids of its own maps exist.
    pub fn identity_over(&self) -> IdMaps {
        let same = |maps: &[IdMap]| {
            maps.iter()
                .map(|m| IdMap {
                    container: m.container,
                    host: m.container,
                    count: m.count,
                })
                .collect()
        };
        IdMaps {
            uid: same(&self.uid),
            gid: same(&self.gid),
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

    /// The maps used by default for the calling user: identity for root; for anyone
    /// else container root onto the caller plus container ids 1..=65536 onto the
    /// caller's subordinate ids when `/etc/subuid`, `/etc/subgid` and
    /// `newuidmap`/`newgidmap` allow it, or only container root otherwise.
    pub fn for_current_user() -> IdMaps {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        if uid == 0 {
            return id_maps()
                .map(|own| own.identity_over())
                .unwrap_or_else(|_| IdMaps::identity());
        }
        if map_helper("newuidmap").is_none() || map_helper("newgidmap").is_none() {
            tracing::debug!("newuidmap/newgidmap not found; mapping only container root");
            return IdMaps::single(uid, gid);
        }
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let range = |file: &str| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            usable_range(&subid_ranges(&text, name.as_deref(), uid))
        };
        IdMaps::with_subids(uid, gid, range("/etc/subuid"), range("/etc/subgid"))
    }

    /// Container root onto `uid`/`gid` and, when both ranges are given, container ids
    /// 1..=count onto them (count at most [`SUBID_MAPPED`]); only root otherwise.
    pub fn with_subids(
        uid: u32,
        gid: u32,
        subuid: Option<SubidRange>,
        subgid: Option<SubidRange>,
    ) -> IdMaps {
        let (Some(su), Some(sg)) = (subuid, subgid) else {
            return IdMaps::single(uid, gid);
        };
        let maps = |own: u32, range: SubidRange| {
            vec![
                IdMap {
                    container: 0,
                    host: own,
                    count: 1,
                },
                IdMap {
                    container: 1,
                    host: range.start,
                    count: range.count.min(SUBID_MAPPED),
                },
            ]
        };
        IdMaps {
            uid: maps(uid, su),
            gid: maps(gid, sg),
        }
    }

    /// Whether more than container root is mapped (subordinate ids or identity).
    pub fn is_full(&self) -> bool {
        self.uid.iter().map(|m| u64::from(m.count)).sum::<u64>() > 1
            && self.gid.iter().map(|m| u64::from(m.count)).sum::<u64>() > 1
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

/// The fewest subordinate ids a range must hold to be used: enough for every id
/// images commonly use (up to `nobody`, 65534).
pub const SUBID_MIN_RANGE: u32 = 65535;

/// How many subordinate ids are mapped at most (container ids 1..=65536).
pub const SUBID_MAPPED: u32 = 65536;

/// One `name:start:count` line of `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubidRange {
    /// First subordinate id on the host.
    pub start: u32,
    /// How many ids the range holds.
    pub count: u32,
}

/// The ranges of `/etc/subuid`-format `text` that belong to the user `name` or `uid`
/// (entries may name the user or give its number).
pub fn subid_ranges(text: &str, name: Option<&str>, uid: u32) -> Vec<SubidRange> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let owner = f.next()?;
            let start = f.next()?.trim().parse().ok()?;
            let count = f.next()?.trim().parse().ok()?;
            let mine = Some(owner) == name || owner.parse::<u32>().ok() == Some(uid);
            mine.then_some(SubidRange { start, count })
        })
        .collect()
}

/// The first range with at least [`SUBID_MIN_RANGE`] ids.
pub fn usable_range(ranges: &[SubidRange]) -> Option<SubidRange> {
    ranges.iter().copied().find(|r| r.count >= SUBID_MIN_RANGE)
}

/// Where the setuid helper `name` (`newuidmap`, `newgidmap`) is installed, if anywhere.
pub(crate) fn map_helper(name: &str) -> Option<std::path::PathBuf> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
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

    const SUBUID: &str =
        "# comment\nother:200000:65536\nalice:100000:65536\n1001:300000:70000\nbob:400000:1000\n";

    #[test]
    fn subid_entries_match_by_name_or_uid() {
        assert_eq!(
            subid_ranges(SUBUID, Some("alice"), 1000),
            vec![SubidRange {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            subid_ranges(SUBUID, None, 1001),
            vec![SubidRange {
                start: 300000,
                count: 70000
            }]
        );
        assert!(subid_ranges(SUBUID, Some("carol"), 1002).is_empty());
        assert_eq!(usable_range(&subid_ranges(SUBUID, Some("bob"), 5)), None);
        assert!(subid_ranges("garbage\nx:y:z\n", Some("x"), 0).is_empty());
    }

    #[test]
    fn subordinate_ranges_extend_the_map() {
        let range = usable_range(&subid_ranges(SUBUID, None, 1001));
        let maps = IdMaps::with_subids(1001, 1002, range, range);
        assert_eq!(format_map(&maps.uid), "0 1001 1\n1 300000 65536\n");
        assert_eq!(format_map(&maps.gid), "0 1002 1\n1 300000 65536\n");
        assert!(maps.is_full());
        assert!(is_mapped(&maps.uid, 1000) && is_mapped(&maps.uid, 65536));
        assert!(!is_mapped(&maps.uid, 65537));
        assert!(!maps.writable_directly_by(1001, 1002));
        let only_root = IdMaps::with_subids(1001, 1002, range, None);
        assert_eq!(only_root, IdMaps::single(1001, 1002));
        assert!(!only_root.is_full());
        assert!(IdMaps::identity().is_full());
    }

    #[test]
    fn root_in_a_container_maps_only_its_own_ids() {
        let own = IdMaps {
            uid: parse_map("0 1000 1\n1 100000 65536\n").unwrap(),
            gid: parse_map("0 1000 1\n").unwrap(),
        };
        let id = own.identity_over();
        assert_eq!(format_map(&id.uid), "0 0 1\n1 1 65536\n");
        assert_eq!(format_map(&id.gid), "0 0 1\n");
        assert_eq!(IdMaps::identity().identity_over(), IdMaps::identity());
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
