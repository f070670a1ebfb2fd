//! Device nodes left out because this process may not create them (rootless builds):
//! counted, with the first few paths kept, so the caller can tell the user once and in
//! bounded space however many a hostile tree holds.

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
        let more = if self.count > self.first.len() as u64 {
            ", …"
        } else {
            ""
        };
        Some(format!(
            "skipped {} device node(s), creating devices is not permitted here: {}{more}",
            self.count,
            self.first.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
