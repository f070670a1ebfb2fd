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

    /// Each code-map section's `Uses:` list (crate names without `rbuild-`), or `None`
    /// where it says "every crate above" or "all".
    fn stated_uses() -> BTreeMap<String, Option<BTreeSet<String>>> {
        let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
        let mut out = BTreeMap::new();
        for section in text.split("\n### `").skip(1) {
            let name = section.split('`').next().unwrap_or_default();
            let name = name.trim_start_matches("crates/").to_string();
            let Some((_, rest)) = section.split_once("Uses:") else {
                continue;
            };
            let list = rest.split(['.', ';', '(']).next().unwrap_or_default();
            let list = list.split_whitespace().collect::<Vec<_>>().join(" ");
            let uses = match list.as_str() {
                "every crate above" | "all" => None,
                "nothing of rbuild's" => Some(BTreeSet::new()),
                l => Some(
                    l.split(',')
                        .map(|u| format!("rbuild-{}", u.trim()))
                        .collect(),
                ),
            };
            out.insert(name, uses);
        }
        out
    }

    #[test]
    fn each_crate_uses_what_its_section_says() {
        let deps = workspace_deps();
        let mut wrong = Vec::new();
        for (krate, stated) in stated_uses() {
            let Some(stated) = stated else { continue };
            let real = deps.get(&krate).cloned().unwrap_or_default();
            if stated != real {
                wrong.push(format!("{krate}: says {stated:?}, uses {real:?}"));
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

#[cfg(test)]
mod state_paths {
    use std::path::{Path, PathBuf};

    /// The names at the top of the state directory (`rbuild-state`'s layout).
    const LAYOUT: &[&str] = &[
        "store",
        "layers",
        "cache",
        "urls",
        "tmp",
        "run",
        "cache-mounts",
        "lock",
        "images",
        "rbuild-state",
    ];

    /// Crates that may join these names: the owner of the layout, the store (its own
    /// directory holds `tmp/`), and the tools that make scratch directories of their own.
    const ALLOWED: &[&str] = &["rbuild-state", "rbuild-store", "rbuild-fuzz"];

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn only_the_state_crate_joins_state_directory_paths() {
        let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates");
        let mut found = Vec::new();
        for krate in std::fs::read_dir(&crates).unwrap().flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            if ALLOWED.contains(&name.as_str()) {
                continue;
            }
            let mut files = Vec::new();
            rust_files(&krate.path().join("src"), &mut files);
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap();
                // Unit tests make scratch directories of their own.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (i, line) in code.lines().enumerate() {
                    let joins = LAYOUT
                        .iter()
                        .any(|n| line.contains(&format!("join(\"{n}\")")));
                    if joins {
                        found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "state paths joined outside StateDir: {found:#?}"
        );
    }
}
