//! Checks of the workspace's shape against ARCHITECTURE.md: crates depend only on crates
//! listed above them in its code map, and lowering does not link the blob store.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The crates of the code map, in order: `### \`crates/NAME\`` and `### \`xtask\``.
    fn code_map() -> Vec<String> {
        let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("### `"))
            .filter_map(|l| l.split('`').next())
            .map(|p| p.trim_start_matches("crates/").to_string())
            .collect()
    }

    /// Every workspace package and the workspace packages it uses (normal dependencies).
    fn workspace_deps() -> BTreeMap<String, BTreeSet<String>> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let packages = meta["packages"].as_array().unwrap();
        let names: BTreeSet<String> = packages
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        packages
            .iter()
            .map(|p| {
                let deps = p["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| d["kind"].is_null())
                    .map(|d| d["name"].as_str().unwrap().to_string())
                    .filter(|d| names.contains(d))
                    .collect();
                (p["name"].as_str().unwrap().to_string(), deps)
            })
            .collect()
    }

    #[test]
    fn crates_use_only_crates_listed_above_them() {
        let order = code_map();
        let deps = workspace_deps();
        let listed: BTreeSet<&String> = order.iter().collect();
        let unlisted: Vec<&String> = deps.keys().filter(|c| !listed.contains(c)).collect();
        assert!(unlisted.is_empty(), "not in the code map: {unlisted:?}");
        let position = |c: &str| order.iter().position(|o| o == c).unwrap();
        let mut wrong = Vec::new();
        for (krate, uses) in &deps {
            for d in uses.iter().filter(|d| position(d) > position(krate)) {
                wrong.push(format!("{krate} uses {d}, listed below it"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn lowering_does_not_link_the_blob_store() {
        let deps = workspace_deps();
        let mut seen = BTreeSet::new();
        let mut todo = vec!["rbuild-graph".to_string()];
        while let Some(c) = todo.pop() {
            for d in &deps[&c] {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        assert!(
            !seen.contains("rbuild-store"),
            "rbuild-graph links {seen:?}"
        );
    }
}
