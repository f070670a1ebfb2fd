//! What an unpack or copy could not do as asked in this user namespace (rootless builds):
//! device nodes left out, owners that cannot be represented. Counted, with the first few
//! paths kept, so the caller can tell the user once and in bounded space however many a
//! hostile tree holds.

/// How many paths are kept for the message.
const KEPT: usize = 5;

/// The device nodes an unpack or copy skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SkippedDevices {
    /// How many were skipped.
    pub count: u64,
    /// The first few paths, as the tree or archive names them (outside text: sanitise
    /// before showing).
    pub first: Vec<String>,
}

impl SkippedDevices {
    /// Records one skipped node at `path`.
    pub(crate) fn note(&mut self, path: &str) {
        self.count += 1;
        if self.first.len() < KEPT {
            self.first.push(path.to_string());
        }
        tracing::debug!(
            path,
            "skipping device node: creating devices is not permitted here"
        );
    }

    /// The warning a user should see, when any node was skipped (paths unsanitised).
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        Some(format!(
            "skipped {} device node(s), creating devices is not permitted here: {}",
            self.count,
            listed(self.count, &self.first)
        ))
    }
}

/// Entries whose owner the user namespace cannot represent (outside the mapped range in a
/// rootless build, or `4294967295`): they were left owned by 0:0. Counted, with the first
/// few distinct owners and an entry of each kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnmappedOwners {
    /// How many entries kept 0:0.
    pub count: u64,
    /// The first few, as `path (uid:gid)`, one per distinct owner (outside text: sanitise
    /// before showing).
    pub first: Vec<String>,
    owners: Vec<(u32, u32)>,
}

impl UnmappedOwners {
    /// Records that `path` could not be given `uid:gid`.
    pub(crate) fn note(&mut self, path: &str, uid: u32, gid: u32) {
        self.count += 1;
        if self.first.len() < KEPT && !self.owners.contains(&(uid, gid)) {
            self.owners.push((uid, gid));
            self.first.push(format!("{path} ({uid}:{gid})"));
        }
        tracing::debug!(
            path,
            uid,
            gid,
            "owner cannot be represented here, keeping 0:0"
        );
    }

    /// The warning a user should see, when any owner was not kept (paths unsanitised).
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        Some(format!(
            "{} entr(y/ies) kept owner 0:0, their owner cannot be represented here (unmapped id): {}",
            self.count,
            listed(self.count, &self.first)
        ))
    }
}

/// `first` joined, with `…` when `count` says there were more.
fn listed(count: u64, first: &[String]) -> String {
    let more = if count > first.len() as u64 {
        ", …"
    } else {
        ""
    };
    format!("{}{more}", first.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_owners_list_each_owner_once() {
        let mut s = UnmappedOwners::default();
        assert_eq!(s.warning(), None);
        for i in 0..100 {
            s.note(&format!("f{i}"), 100_000 + i % 2, 7);
        }
        assert_eq!(s.count, 100);
        assert_eq!(
            s.warning().unwrap(),
            "100 entr(y/ies) kept owner 0:0, their owner cannot be represented here (unmapped id): f0 (100000:7), f1 (100001:7), …"
        );
    }

    #[test]
    fn keeps_a_bounded_number_of_paths() {
        let mut s = SkippedDevices::default();
        assert_eq!(s.warning(), None);
        for i in 0..1000 {
            s.note(&format!("dev/n{i}"));
        }
        assert_eq!(s.count, 1000);
        assert_eq!(s.first.len(), KEPT);
        assert_eq!(
            s.warning().unwrap(),
            "skipped 1000 device node(s), creating devices is not permitted here: dev/n0, dev/n1, dev/n2, dev/n3, dev/n4, …"
        );
    }
}
