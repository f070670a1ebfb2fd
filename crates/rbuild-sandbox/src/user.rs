//! Resolving a Dockerfile `USER` value against a root filesystem's `/etc/passwd` and
//! `/etc/group`, the way Docker and runc do.

/// The ids and home directory a step's process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (the primary group first).
    pub groups: Vec<u32>,
    /// Home directory, for `HOME` when the step's environment has none.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0].starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || f[0].starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect(),
        })
    })
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, any mix) against the
/// text of `/etc/passwd` and `/etc/group` (`None` when the file is missing).
/// Unknown names are errors; unknown numeric ids are used as they are.
pub fn resolve_user(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, String> {
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| {
                    format!("unable to find user {user_part}: no matching entries in passwd file")
                })?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user_part
            .parse::<u32>()
            .map_err(|_| format!("invalid user {user:?}"))?,
    };
    let home = match &entry {
        Some(e) if !e.home.is_empty() => e.home.to_string(),
        _ if uid == 0 => "/root".to_string(),
        _ => "/".to_string(),
    };
    let (gid, groups) = match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            let gid = resolve_group(g, group)?;
            (gid, vec![gid])
        }
        None => {
            let gid = entry.as_ref().map_or(0, |e| e.gid);
            let mut groups = vec![gid];
            if let Some(e) = &entry {
                for g in group_entries(group).filter(|g| g.members.contains(&e.name)) {
                    if !groups.contains(&g.gid) {
                        groups.push(g.gid);
                    }
                }
            }
            (gid, groups)
        }
    };
    Ok(ResolvedUser {
        uid,
        gid,
        groups,
        home,
    })
}

fn resolve_group(g: &str, group: &str) -> Result<u32, String> {
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    group_entries(group)
        .find(|e| e.name == g)
        .map(|e| e.gid)
        .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\napp:x:1000:1000::/home/app:/bin/sh\nbroken:x:abc:0::/:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:root,app\naudio:x:29:app\nnogroup:x:65534:\napp:x:1000:\n";

    fn r(user: &str) -> Result<ResolvedUser, String> {
        resolve_user(user, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_means_root_with_its_groups() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(u.groups, vec![0, 10]);
        assert_eq!(r("root").unwrap(), u);
    }

    #[test]
    fn names_resolve_with_supplementary_groups() {
        let u = r("app").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(u.groups, vec![1000, 10, 29]);
        let n = r("nobody").unwrap();
        assert_eq!((n.uid, n.gid), (65534, 65534));
    }

    #[test]
    fn explicit_group_replaces_supplementary_ones() {
        let u = r("app:audio").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 29));
        assert_eq!(u.groups, vec![29]);
        let n = r("1234:5678").unwrap();
        assert_eq!(
            (n.uid, n.gid, n.groups.clone(), n.home.as_str()),
            (1234, 5678, vec![5678], "/")
        );
    }

    #[test]
    fn unknown_numeric_uid_gets_gid_zero() {
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (4242, 0, vec![0]));
        let known = r("1000").unwrap();
        assert_eq!(known.gid, 1000);
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        assert_eq!(
            r("ghost").unwrap_err(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:ghosts").unwrap_err(),
            "unable to find group ghosts: no matching entries in group file"
        );
        assert!(resolve_user("app", None, None).unwrap_err().contains("app"));
    }

    #[test]
    fn missing_files_still_allow_numeric_users() {
        let u = resolve_user("", None, None).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(resolve_user("7:8", None, None).unwrap().gid, 8);
    }
}
