//! Image graphs whose indexes nest and repeat their entries (100 × 100 × 100): every walk
//! over them visits each digest once and stops at its budget with a clear refusal, for
//! archives (`image load`, `images`, `image inspect`) and registries
//! (`pull --all-platforms` and `push`, against small registries of the test's own that count
//! requests).

mod common;

mod registry_support;

use common::*;
use registry_support::fake::{Behaviour, FakeRegistry};
use registry_support::served::{Content, ServedRegistry};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The blobs of an image graph, by digest, and its root.
struct Graph {
    blobs: BTreeMap<String, Vec<u8>>,
    root: String,
    root_size: usize,
}

impl Graph {
    fn put(&mut self, data: Vec<u8>) -> (String, usize) {
        let digest = format!("sha256:{}", sha256_hex(&data));
        let size = data.len();
        self.blobs.insert(digest.clone(), data);
        (digest, size)
    }

    fn index(&mut self, entries: Vec<Value>, note: Option<String>) -> (String, usize) {
        let mut doc = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries});
        if let Some(n) = note {
            doc["annotations"] = json!({ "note": n });
        }
        self.put(serde_json::to_vec(&doc).unwrap())
    }
}

fn entry(media_type: &str, (digest, size): &(String, usize), platform: bool) -> Value {
    let mut e = json!({"mediaType": media_type, "digest": digest, "size": size});
    if platform {
        e["platform"] = json!({"architecture": "amd64", "os": "linux"});
    }
    e
}

/// A linux/amd64 image of one (empty) layer: its manifest.
fn image(g: &mut Graph) -> (String, usize) {
    let tar = tar::Builder::new(Vec::new()).into_inner().unwrap();
    let layer = g.put(tar.clone());
    let config = g.put(
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]},
        }))
        .unwrap(),
    );
    g.put(
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1}],
        }))
        .unwrap(),
    )
}

/// Indexes three deep, 100 entries each: the root's entries name `distinct` different
/// second-level indexes in turn (1: all the same), whose 100 entries all name one third-level
/// index, whose 100 entries all name the one manifest: 100 × 100 × 100 paths to it.
fn nested(distinct: usize) -> Graph {
    let mut g = Graph {
        blobs: BTreeMap::new(),
        root: String::new(),
        root_size: 0,
    };
    let m = image(&mut g);
    let l3 = g.index(vec![entry(MANIFEST, &m, true); 100], None);
    let l2: Vec<_> = (0..distinct)
        .map(|i| g.index(vec![entry(INDEX, &l3, false); 100], Some(i.to_string())))
        .collect();
    let root_entries = (0..100)
        .map(|i| entry(INDEX, &l2[i % distinct], false))
        .collect();
    let (root, size) = g.index(root_entries, None);
    g.root = root;
    g.root_size = size;
    g
}

/// A chain of `levels` indexes, each naming the next, ending at the image.
fn chain(levels: usize) -> Graph {
    let mut g = Graph {
        blobs: BTreeMap::new(),
        root: String::new(),
        root_size: 0,
    };
    let mut top = image(&mut g);
    let mut media_type = MANIFEST;
    for _ in 0..levels {
        top = g.index(vec![entry(media_type, &top, media_type == MANIFEST)], None);
        media_type = INDEX;
    }
    g.root = top.0;
    g.root_size = top.1;
    g
}

/// The graph as an OCI layout archive naming its root `name`.
fn archive(g: &Graph, name: &str, dest: &Path) {
    archive_of(g, &[(g.root.clone(), g.root_size, name.to_string())], dest);
}

/// The graph as an OCI layout archive whose `index.json` names `roots` (digest, size, name).
fn archive_of(g: &Graph, roots: &[(String, usize, String)], dest: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let entries: Vec<Value> = roots
        .iter()
        .map(|(digest, size, name)| {
            json!({"mediaType": INDEX, "digest": digest, "size": size,
                "annotations": {"io.containerd.image.name": name}})
        })
        .collect();
    let index = json!({"schemaVersion": 2, "manifests": entries});
    add("index.json", &serde_json::to_vec(&index).unwrap());
    for (d, data) in &g.blobs {
        add(&format!("blobs/sha256/{}", &d[7..]), data);
    }
    std::fs::write(dest, b.into_inner().unwrap()).unwrap();
}

/// `rbuild` limited to 256 MiB of address space: a walk that multiplies work runs out of
/// memory and dies instead of finishing.
fn rbuild_limited(state: &Path) -> Command {
    let mut c = Command::new("prlimit");
    c.arg(format!("--as={}", 256 << 20))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(state);
    c
}

/// Asserts `out` ended by exiting (not by a signal) with `success`.
fn exited(out: &Output, success: bool) {
    assert!(
        out.status.code().is_some(),
        "killed by a signal: {:?}",
        out.status
    );
    assert_eq!(out.status.success(), success, "{}", stderr(out));
}

/// `images` of `state` exits normally and lists a linux/amd64 image.
fn lists_amd64(state: &Path) {
    let listed = run(rbuild_limited(state).arg("images"));
    exited(&listed, true);
    assert!(
        stdout(&listed).contains("linux/amd64"),
        "{}",
        stdout(&listed)
    );
}

/// `cmd` run with the store's document reads logged; the digests it read more than once.
fn read_twice(cmd: &mut Command) -> Vec<String> {
    let out = run(cmd.env("RBUILD_LOG", "rbuild_store=debug"));
    exited(&out, true);
    let mut reads: BTreeMap<String, u32> = BTreeMap::new();
    for line in stderr(&out).lines() {
        if let Some(d) = line.split("reading document ").nth(1) {
            *reads.entry(d.trim().to_string()).or_default() += 1;
        }
    }
    assert!(
        !reads.is_empty(),
        "no document reads logged: {}",
        stderr(&out)
    );
    reads
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(d, n)| format!("{d} ({n} times)"))
        .collect()
}

#[test]
fn many_names_and_roots_over_one_graph_read_each_document_once() {
    let tmp = tempfile::tempdir().unwrap();
    // 200 names of one nested image.
    let state = tmp.path().join("names");
    let g = nested(1);
    let names: Vec<_> = (0..200)
        .map(|i| {
            (
                g.root.clone(),
                g.root_size,
                format!("docker.io/library/n:{i}"),
            )
        })
        .collect();
    archive_of(&g, &names, &tmp.path().join("names.tar"));
    let load = ["image", "load", "-i"];
    let names_tar = tmp.path().join("names.tar");
    assert_eq!(
        read_twice(rbuild_limited(&state).args(load).arg(&names_tar)),
        Vec::<String>::new()
    );
    assert_eq!(
        read_twice(rbuild_limited(&state).arg("images")),
        Vec::<String>::new()
    );
    assert_eq!(
        read_twice(rbuild_limited(&state).args(["system", "check"])),
        Vec::<String>::new()
    );
    assert_eq!(
        read_twice(rbuild_limited(&state).args(["image", "prune"])),
        Vec::<String>::new()
    );
    // 100 different roots over the same indexes below them: each command reads those once.
    let state = tmp.path().join("roots");
    let mut g = nested(1);
    let below = g.blobs[&g.root].clone();
    let entries = serde_json::from_slice::<Value>(&below).unwrap()["manifests"].clone();
    let roots: Vec<_> = (0..100)
        .map(|i| {
            let (d, size) = g.index(entries.as_array().unwrap().clone(), Some(i.to_string()));
            (d, size, format!("docker.io/library/r:{i}"))
        })
        .collect();
    let roots_tar = tmp.path().join("roots.tar");
    archive_of(&g, &roots, &roots_tar);
    assert_eq!(
        read_twice(rbuild_limited(&state).args(load).arg(&roots_tar)),
        Vec::<String>::new()
    );
    let listed = run(rbuild_limited(&state).arg("images"));
    assert_eq!(stdout(&listed).matches("linux/amd64").count(), 100);
    for cmd in [&["images"][..], &["system", "check"], &["image", "prune"]] {
        assert_eq!(
            read_twice(rbuild_limited(&state).args(cmd)),
            Vec::<String>::new(),
            "{cmd:?}"
        );
    }
}

#[test]
fn repeated_nested_indexes_list_and_inspect_within_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let path = tmp.path().join("nested.tar");
    let g = nested(1);
    archive(&g, "docker.io/library/nested:1", &path);
    let loaded = run(rbuild_limited(&state)
        .args(["image", "load", "-i"])
        .arg(&path));
    exited(&loaded, true);
    let listed = run(rbuild_limited(&state).arg("images"));
    exited(&listed, true);
    let row = stdout(&listed)
        .lines()
        .find(|l| l.starts_with("nested "))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(row.contains("linux/amd64"), "{}", stdout(&listed));
    assert!(row.contains(&g.root[7..19]), "{row}");
    let inspected = run(rbuild_limited(&state).args(["image", "inspect", "nested:1"]));
    exited(&inspected, true);
    let docs: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 1, "one platform, listed once: {docs:?}");
    assert_eq!(docs[0]["Architecture"], "amd64");
    let check = run(rbuild_limited(&state).args(["system", "check"]));
    exited(&check, true);
}

/// `image load` of `g`, archived as `docker.io/library/NAME:1`, into a fresh state
/// directory; it must fail (not be killed). The temporary directory and rbuild's stderr.
fn load_refused(g: &Graph, name: &str) -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(format!("{name}.tar"));
    archive(g, &format!("docker.io/library/{name}:1"), &path);
    let loaded = run(rbuild_limited(&tmp.path().join("state"))
        .args(["image", "load", "-i"])
        .arg(&path));
    exited(&loaded, false);
    let err = stderr(&loaded);
    (tmp, err)
}

#[test]
fn too_many_entries_are_refused_on_load_and_nothing_is_named() {
    // 100 different second-level indexes: 100 + 100 × 100 + 100 entries even when each
    // digest is read once, past the 10,000 an image may have.
    let g = nested(100);
    let (tmp, err) = load_refused(&g, "wide");
    let state = tmp.path().join("state");
    assert!(
        err.contains("image refused: more than 10000 index and manifest entries"),
        "{err}"
    );
    assert!(err.contains(&format!("at {} > sha256:", g.root)), "{err}");
    let listed = run(rbuild_limited(&state).arg("images"));
    exited(&listed, true);
    assert!(!stdout(&listed).contains("wide"), "{}", stdout(&listed));
}

#[test]
fn indexes_nested_too_deep_are_refused_on_load() {
    let g = chain(12);
    let (_tmp, err) = load_refused(&g, "deep");
    assert!(
        err.contains("image refused: indexes nested more than 8 deep"),
        "{err}"
    );
    assert!(err.contains(&format!("at {} > ", g.root)), "{err}");
}

/// A registry serving `g` as `nested:1`, answering at most `max_gets` GETs.
fn serve(g: &Graph, max_gets: u32) -> ServedRegistry {
    let mut content = Content {
        max_gets,
        ..Content::default()
    };
    for (d, data) in &g.blobs {
        let doc: Value = serde_json::from_slice(data).unwrap_or_default();
        match doc["mediaType"].as_str() {
            Some(mt @ (INDEX | MANIFEST)) => {
                content
                    .manifests
                    .insert(d.clone(), (mt.into(), data.clone()));
            }
            _ => {
                content.blobs.insert(d.clone(), data.clone());
            }
        }
    }
    let root = content.manifests[&g.root].clone();
    content.manifests.insert("1".into(), root);
    ServedRegistry::start(content)
}

/// `rbuild pull --all-platforms` of `nested:1` from `reg`, with a client environment of
/// the test's own (no credentials, no config).
fn pull_all(tmp: &Path, state: &Path, reg: &ServedRegistry) -> Output {
    let mut c = rbuild_limited(state);
    c.env("DOCKER_CONFIG", tmp.join("docker"))
        .env("RBUILD_CONFIG", tmp.join("rbuild.toml"))
        .env("REGISTRY_AUTH_FILE", tmp.join("auth.json"))
        .env("RBUILD_CERTS_D", tmp.join("certs.d"))
        .env_remove("XDG_RUNTIME_DIR")
        .args(["pull", "--all-platforms"])
        .arg(format!("{}/nested:1", reg.host()));
    run(&mut c)
}

/// Asserts no path was fetched more than once.
fn each_fetched_once(reg: &ServedRegistry) {
    let gets = reg.gets();
    let repeated: Vec<_> = gets
        .iter()
        .filter(|(p, n)| **n > 1 && p.as_str() != "/v2/")
        .collect();
    assert!(repeated.is_empty(), "fetched again: {repeated:?}");
}

#[test]
fn pull_all_platforms_fetches_each_digest_once() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let g = nested(1);
    let reg = serve(&g, 500);
    let out = pull_all(tmp.path(), &state, &reg);
    exited(&out, true);
    assert_eq!(stdout(&out).trim(), g.root);
    each_fetched_once(&reg);
    let gets = reg.gets();
    let manifests = gets.keys().filter(|p| p.contains("/manifests/")).count();
    let blobs = gets.keys().filter(|p| p.contains("/blobs/")).count();
    // The tag, the three indexes below the root by digest, the manifest; config and layer.
    assert_eq!((manifests, blobs), (4, 2), "{gets:?}");
    lists_amd64(&state);
}

#[test]
fn pull_all_platforms_refuses_past_the_budget_and_names_nothing() {
    for (g, message) in [
        (
            nested(100),
            "image refused: more than 10000 index and manifest entries",
        ),
        (chain(12), "image refused: indexes nested more than 8 deep"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let reg = serve(&g, 500);
        let out = pull_all(tmp.path(), &state, &reg);
        exited(&out, false);
        let err = stderr(&out);
        assert!(err.contains(message), "{err}");
        assert!(err.contains(&format!("at {} > sha256:", g.root)), "{err}");
        each_fetched_once(&reg);
        let listed = run(rbuild_limited(&state).arg("images"));
        exited(&listed, true);
        assert!(!stdout(&listed).contains("nested"), "{}", stdout(&listed));
    }
}

#[test]
fn an_index_json_of_too_many_entries_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let path = tmp.path().join("many.tar");
    let g = Graph {
        blobs: BTreeMap::new(),
        root: String::new(),
        root_size: 0,
    };
    // 20,000 different images (none of them present): the walk over index.json itself is
    // bounded before anything is read or compared.
    let roots: Vec<_> = (0..20_000u32)
        .map(|i| {
            let digest = format!("sha256:{}", sha256_hex(&i.to_le_bytes()));
            (digest, 100, format!("docker.io/library/m:{i}"))
        })
        .collect();
    archive_of(&g, &roots, &path);
    let loaded = run(rbuild_limited(&state)
        .args(["image", "load", "-i"])
        .arg(&path));
    exited(&loaded, false);
    let err = stderr(&loaded);
    assert!(
        err.contains("index.json: image refused: more than 10000 index and manifest entries"),
        "{err}"
    );
}

#[test]
fn a_digest_naming_a_large_blob_is_not_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // A stored blob of 300 MiB (as a layer would be), named by digest on the command line:
    // taken as an index or manifest, it is refused by its size before it is read.
    exited(&run(rbuild_limited(&state).arg("images")), true);
    let blob = vec![b' '; 300 << 20];
    let hex = sha256_hex(&blob);
    let dir = state.join("store/blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), &blob).unwrap();
    drop(blob);
    let out = run(rbuild_limited(&state).args(["image", "inspect", &format!("sha256:{hex}")]));
    exited(&out, false);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "image refused: a manifest or index of {} bytes (at most 4194304 are read), at sha256:{hex}",
            300 << 20
        )),
        "{err}"
    );
}

#[test]
fn a_config_larger_than_a_manifest_may_be_still_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let path = tmp.path().join("big-config.tar");
    let mut g = Graph {
        blobs: BTreeMap::new(),
        root: String::new(),
        root_size: 0,
    };
    // Configs are not manifests: one of 5 MiB (a long label) counts toward the walk's
    // bytes but is not held to the 4 MiB of one manifest or index.
    let config = g.put(
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"big": "x".repeat(5 << 20)}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap(),
    );
    let m = g.put(
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
            "layers": [],
        }))
        .unwrap(),
    );
    let (root, size) = g.index(vec![entry(MANIFEST, &m, true)], None);
    g.root = root;
    g.root_size = size;
    archive(&g, "docker.io/library/big:1", &path);
    exited(
        &run(rbuild_limited(&state)
            .args(["image", "load", "-i"])
            .arg(&path)),
        true,
    );
    lists_amd64(&state);
}

#[test]
fn push_of_repeated_nested_indexes_reads_and_puts_each_document_once() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let path = tmp.path().join("nested.tar");
    let g = nested(1);
    archive(&g, "docker.io/library/nested:1", &path);
    exited(
        &run(rbuild_limited(&state)
            .args(["image", "load", "-i"])
            .arg(&path)),
        true,
    );
    let reg = FakeRegistry::start(Behaviour::default());
    let dest = format!("{}/nested:1", reg.host());
    let twice = read_twice(
        rbuild_limited(&state)
            .env("DOCKER_CONFIG", tmp.path().join("docker"))
            .args(["push", "nested:1", &dest]),
    );
    assert_eq!(twice, Vec::<String>::new());
    let puts: Vec<String> = reg
        .seen()
        .into_iter()
        .map(|s| s.line)
        .filter(|l| l.starts_with("PUT ") && l.contains("/manifests/"))
        .collect();
    // The manifest, the third- and second-level indexes by digest, the root by tag.
    assert_eq!(puts.len(), 4, "{puts:?}");
    assert_eq!(
        reg.manifest("nested", "1").as_deref(),
        g.blobs.get(&g.root).map(Vec::as_slice)
    );
}
