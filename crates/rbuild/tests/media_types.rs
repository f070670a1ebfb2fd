//! `-o …,oci-mediatypes=false`: Docker's schema 2 media types, checked against what
//! BuildKit writes (recorded below) and read back by skopeo, podman and buildah.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What BuildKit v0.32.0 (buildctl, dockerfile.v0, `FROM localhost:5000/busybox` with OCI
/// types, `COPY hi /hi`, linux/amd64 + linux/arm64) wrote, observed once by hand:
/// - `type=oci,oci-mediatypes=false`: index.json (OCI index) names a
///   `…manifest.list.v2+json`; its entries are `…manifest.v2+json`; configs
///   `…container.image.v1+json`; gzip layers `…rootfs.diff.tar.gzip`, the base layer with
///   the digest it has under its OCI type. No `annotations` in the list or manifests.
/// - the same with `compression=uncompressed,force-compression=true`: `…rootfs.diff.tar`.
/// - with `compression=zstd,force-compression=true`: BuildKit succeeds and writes
///   [`BUILDKIT_DOCKER_ZSTD`], which no Docker schema defines; skopeo 1.9 then fails with
///   [`SKOPEO_ON_BUILDKIT_ZSTD`]. rbuild refuses that combination instead.
/// - any annotation with `oci-mediatypes=false`: [`BUILDKIT_ANNOTATION_ERROR`].
/// - defaults: `type=oci`, `type=docker` and `type=image,push=true` all write OCI types,
///   also over a base image with Docker types.
const BUILDKIT_DOCKER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const SKOPEO_ON_BUILDKIT_ZSTD: &str = "unsupported docker v2s2 media type";
const BUILDKIT_ANNOTATION_ERROR: &str = "cannot export annotations with \"oci-mediatypes=false\"";

/// A context that adds one file to busybox.
fn copy_context(dir: &Path) -> PathBuf {
    context(
        dir,
        "FROM busybox\nCOPY hi /hi\n",
        &[("hi", "hello media types\n")],
    )
}

/// Builds `ctx` for `platforms` with `-o OUTPUT` (and `extra`), fixed timestamps.
fn build_with(
    state: &Path,
    ctx: &Path,
    platforms: &str,
    output: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut c = build_command(state, ctx, platforms, None, &["-o", output]);
    c.args(extra).env("SOURCE_DATE_EPOCH", "1700000000");
    run(&mut c)
}

/// The root descriptor of an OCI layout (index.json's single entry).
fn root(layout: &OciLayout) -> Value {
    let list = layout.index["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", layout.index);
    list[0].clone()
}

/// Checks that every descriptor under `root` has Docker types, and returns the
/// (manifest, config, layer) digests, in order.
fn assert_docker_types(layout: &OciLayout, root: &Value, layer_type: &str) -> Vec<String> {
    assert_eq!(root["mediaType"], DOCKER_LIST);
    let list = layout.json(root["digest"].as_str().unwrap());
    assert_eq!(list["mediaType"], DOCKER_LIST);
    assert!(list.get("annotations").is_none(), "{list}");
    let mut digests = Vec::new();
    for entry in list["manifests"].as_array().unwrap() {
        assert_eq!(entry["mediaType"], DOCKER_MANIFEST, "{entry}");
        let d = entry["digest"].as_str().unwrap();
        let m = layout.json(d);
        assert_eq!(m["mediaType"], DOCKER_MANIFEST);
        assert_eq!(m["schemaVersion"], 2);
        assert!(m.get("annotations").is_none(), "{m}");
        assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
        digests.push(d.to_string());
        digests.push(m["config"]["digest"].as_str().unwrap().to_string());
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], layer_type, "{l}");
            digests.push(l["digest"].as_str().unwrap().to_string());
        }
    }
    digests
}

/// The config and layer digests of a platform's manifest (what the media types must not
/// change).
fn content_digests(layout: &OciLayout, platform: &str) -> Vec<String> {
    let m = layout.json(&layout.manifest_for(platform));
    let mut out = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_string());
    }
    out
}

#[test]
fn two_platforms_with_docker_media_types_match_buildkit_and_keep_every_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ctx = copy_context(&tmp.path().join("ctx"));
    let docker = tmp.path().join("docker.tar");
    let oci = tmp.path().join("oci.tar");
    let both = "linux/amd64,linux/arm64";
    let out = build_with(
        &state,
        &ctx,
        both,
        &format!("type=oci,dest={},oci-mediatypes=false", docker.display()),
        &["-t", "media:1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = build_with(
        &state,
        &ctx,
        both,
        &format!("type=oci,dest={}", oci.display()),
        &["-t", "media:1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let d = OciLayout::open_tar(&docker);
    let o = OciLayout::open_tar(&oci);
    let droot = root(&d);
    assert_eq!(
        droot["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    let digests = assert_docker_types(&d, &droot, DOCKER_GZIP);
    assert_eq!(digests.len(), 2 * 4, "{digests:?}");
    assert_eq!(root(&o)["mediaType"], OCI_INDEX);
    let fixture = OciLayout::open_dir(&busybox_layout());
    for p in ["linux/amd64", "linux/arm64"] {
        // Same config and layer blobs; only the descriptors' types differ.
        assert_eq!(content_digests(&d, p), content_digests(&o, p), "{p}");
        let om = o.json(&o.manifest_for(p));
        assert_eq!(om["mediaType"], OCI_MANIFEST);
        assert_eq!(om["config"]["mediaType"], OCI_CONFIG);
        // The base layer came with an OCI type and keeps its digest under Docker's type.
        let base = fixture.json(&fixture.manifest_for(p));
        assert_eq!(base["layers"][0]["mediaType"], OCI_GZIP);
        assert_eq!(
            content_digests(&d, p)[1],
            base["layers"][0]["digest"].as_str().unwrap()
        );
        assert_eq!(
            d.file(&d.manifest_for(p), "hi").unwrap(),
            b"hello media types\n"
        );
    }
}

#[test]
fn docker_media_types_are_read_by_skopeo_podman_and_buildah() {
    if !precondition(
        have("skopeo") && have("podman") && have("buildah"),
        "skopeo, podman and buildah are installed",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ctx = copy_context(&tmp.path().join("ctx"));
    let out_tar = tmp.path().join("out.tar");
    let out = build_with(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64,linux/arm64",
        &format!("type=oci,dest={},oci-mediatypes=false", out_tar.display()),
        &["-t", "media:1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = OciLayout::open_tar(&out_tar);
    let list_digest = root(&layout)["digest"].as_str().unwrap().to_string();
    let list = layout.blob(&list_digest).to_vec();

    // skopeo (1.9) finds index.json entries by name only among OCI types, so the archive is
    // named by its only image.
    let archive = format!("oci-archive:{}", out_tar.display());
    let raw = run_ok(Command::new("skopeo").args(["inspect", "--raw", &archive]));
    assert_eq!(raw.stdout, list);
    let dir = tmp.path().join("dir");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--all",
        &archive,
        &format!("dir:{}", dir.display()),
    ]));
    assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), list);
    for p in ["linux/amd64", "linux/arm64"] {
        let m = layout.manifest_for(p);
        let hex = m.trim_start_matches("sha256:");
        let copied = std::fs::read(dir.join(format!("{hex}.manifest.json"))).unwrap();
        assert_eq!(copied, layout.blob(&m), "{p}");
    }

    // podman load takes the host's platform; buildah pulls arm64 from the same archive.
    let pod = tmp.path().join("podman");
    run_ok(
        container_tool("podman", &pod)
            .arg("load")
            .arg("-i")
            .arg(&out_tar),
    );
    let inspect = run_ok(container_tool("podman", &pod).args([
        "image",
        "inspect",
        "--format",
        "{{.Architecture}} {{.ManifestType}}",
        "docker.io/library/media:1",
    ]));
    let host = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        format!("{host} {DOCKER_MANIFEST}")
    );
    let bu = tmp.path().join("buildah");
    let pulled = run_ok(container_tool("buildah", &bu).args(["pull", "--arch", "arm64", &archive]));
    let id = String::from_utf8_lossy(&pulled.stdout).trim().to_string();
    let arm = layout.config(&layout.manifest_for("linux/arm64"));
    assert_eq!(
        format!("sha256:{id}"),
        layout.json(&layout.manifest_for("linux/arm64"))["config"]["digest"]
    );
    assert_eq!(arm["architecture"], "arm64");
    let manifest = run_ok(container_tool("buildah", &bu).args([
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.OCIv1.Architecture}} {{.Manifest}}",
        &id,
    ]));
    let text = String::from_utf8_lossy(&manifest.stdout);
    assert!(text.starts_with("arm64 {"), "{text}");
    assert!(text.contains(DOCKER_MANIFEST), "{text}");
}

#[test]
fn uncompressed_layers_get_dockers_tar_type() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = copy_context(&tmp.path().join("ctx"));
    let out_tar = tmp.path().join("out.tar");
    let out = build_with(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64,linux/arm64",
        &format!(
            "type=oci,dest={},oci-mediatypes=false,compression=uncompressed,force-compression=true",
            out_tar.display()
        ),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = OciLayout::open_tar(&out_tar);
    assert_docker_types(&layout, &root(&layout), DOCKER_TAR);
    let m = layout.json(&layout.manifest_for("linux/amd64"));
    for l in m["layers"].as_array().unwrap() {
        let blob = layout.blob(l["digest"].as_str().unwrap());
        assert_eq!(&blob[257..262], b"ustar", "an uncompressed layer is a tar");
    }
}

#[test]
fn zstd_with_docker_media_types_fails_before_building() {
    assert!(BUILDKIT_DOCKER_ZSTD.starts_with("application/vnd.docker."));
    assert!(!SKOPEO_ON_BUILDKIT_ZSTD.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let ctx = copy_context(&tmp.path().join("ctx"));
    let dest = tmp.path().join("out.tar");
    for output in [
        format!(
            "type=oci,dest={},compression=zstd,oci-mediatypes=false",
            dest.display()
        ),
        "type=registry,name=127.0.0.1:9/x:1,compression=zstd,oci-mediatypes=false".to_string(),
    ] {
        let out = build_with(&tmp.path().join("state"), &ctx, "linux/amd64", &output, &[]);
        assert_eq!(out.status.code(), Some(1), "{output}");
        let err = stderr(&out);
        assert!(
            err.contains("compression=zstd needs OCI media types")
                && err.contains("no zstd layer type"),
            "{err}"
        );
        assert!(
            !err.contains("#1 "),
            "failed after starting the build: {err}"
        );
        assert!(!dest.exists());
    }
}

#[test]
fn annotations_with_docker_media_types_are_refused_as_buildkit_does() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = copy_context(&tmp.path().join("ctx"));
    let dest = tmp.path().join("out.tar");
    let base = format!("type=oci,dest={},oci-mediatypes=false", dest.display());
    for (output, extra) in [
        (format!("{base},annotation.a=b"), vec![]),
        (format!("{base},annotation-index-descriptor.a=b"), vec![]),
        (
            base.clone(),
            vec!["--annotation", "manifest-descriptor:a=b"],
        ),
    ] {
        let out = build_with(
            &tmp.path().join("state"),
            &ctx,
            "linux/amd64",
            &output,
            &extra,
        );
        assert_eq!(out.status.code(), Some(1), "{output} {extra:?}");
        let err = stderr(&out);
        assert!(err.contains(BUILDKIT_ANNOTATION_ERROR), "{err}");
        assert!(!dest.exists());
    }
}

#[test]
fn outputs_disagreeing_on_media_types_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = copy_context(&tmp.path().join("ctx"));
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    let mut c = build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        None,
        &[
            "-o",
            &format!("type=oci,dest={}", a.display()),
            "-o",
            &format!("type=oci,dest={},oci-mediatypes=false", b.display()),
        ],
    );
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("different media types"),
        "{}",
        stderr(&out)
    );
}

/// A copy of the busybox fixture whose amd64 image has Docker types (same config and
/// layer blobs, a rewritten manifest), as `skopeo copy --format v2s2` makes them.
fn docker_typed_base(dir: &Path) -> (PathBuf, Vec<String>) {
    let fixture = OciLayout::open_dir(&busybox_layout());
    let digest = fixture.manifest_for("linux/amd64");
    let mut m = fixture.json(&digest);
    m["mediaType"] = DOCKER_MANIFEST.into();
    m["config"]["mediaType"] = DOCKER_CONFIG.into();
    let mut keep = vec![
        digest.clone(),
        m["config"]["digest"].as_str().unwrap().to_string(),
    ];
    for l in m["layers"].as_array_mut().unwrap() {
        assert_eq!(l["mediaType"], OCI_GZIP);
        l["mediaType"] = DOCKER_GZIP.into();
        keep.push(l["digest"].as_str().unwrap().to_string());
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for d in &keep[1..] {
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), fixture.blob(d)).unwrap();
    }
    std::fs::write(blobs.join(sha256_hex(&bytes)), &bytes).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": DOCKER_MANIFEST,
        "digest": format!("sha256:{}", sha256_hex(&bytes)),
        "size": bytes.len(),
        "platform": {"os": "linux", "architecture": "amd64"},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (dir.to_path_buf(), keep[2..].to_vec())
}

#[test]
fn a_base_with_docker_types_gets_oci_types_by_default_with_its_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, base_layers) = docker_typed_base(&tmp.path().join("base"));
    let ctx = copy_context(&tmp.path().join("ctx"));
    let state = tmp.path().join("state");
    for kind in ["oci", "docker"] {
        let dest = tmp.path().join(format!("{kind}.tar"));
        let mut c = rbuild(&state);
        c.args(["build", "--platform", "linux/amd64", "--build-context"])
            .arg(format!("busybox=oci-layout://{}", base.display()))
            .arg("-o")
            .arg(format!("type={kind},dest={}", dest.display()))
            .arg(&ctx);
        let out = run(&mut c);
        assert!(out.status.success(), "{}", stderr(&out));
        let layout = OciLayout::open_tar(&dest);
        let r = root(&layout);
        assert_eq!(r["mediaType"], OCI_MANIFEST, "type={kind}");
        let m = layout.json(r["digest"].as_str().unwrap());
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
        let layers = m["layers"].as_array().unwrap();
        assert!(layers.iter().all(|l| l["mediaType"] == OCI_GZIP), "{m}");
        let digests: Vec<&str> = layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        assert_eq!(digests[..base_layers.len()], base_layers[..]);
    }
}

#[test]
fn type_docker_with_docker_media_types_is_a_docker_archive() {
    if !precondition(have("skopeo"), "skopeo is installed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ctx = copy_context(&tmp.path().join("ctx"));
    let dest = tmp.path().join("d.tar");
    let out = build_with(
        &tmp.path().join("state"),
        &ctx,
        "linux/arm64",
        &format!("type=docker,dest={},oci-mediatypes=false", dest.display()),
        &["-t", "media:2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = OciLayout::open_tar(&dest);
    let r = root(&layout);
    assert_eq!(r["mediaType"], DOCKER_MANIFEST);
    let m = layout.json(r["digest"].as_str().unwrap());
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
    let info = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", dest.display())),
    );
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["Architecture"], "arm64");
}
