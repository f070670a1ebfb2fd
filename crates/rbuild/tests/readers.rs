//! Every image exporter's output read by the tools people use on it: skopeo, umoci and
//! `buildah pull oci-archive:`; and zstd layers unpacked by an umoci that reads them
//! (`cargo xtask test` fetches umoci 0.6 and names it in `RBUILD_TEST_UMOCI`).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A context whose image differs per platform: a copied file and `uname -m` from a RUN.
fn arch_context(dir: &Path) -> PathBuf {
    context(
        dir,
        "FROM busybox\nCOPY hi /hi\nRUN uname -m > /arch\n",
        &[("hi", "read by every reader\n")],
    )
}

/// Every regular file of a platform's image as the layers say (last layer wins), read by
/// the tests' own layout reader.
fn files_of(layout: &OciLayout, platform: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (_, path, kind, content, _, _) in layout.layer_entries(&layout.manifest_for(platform)) {
        let path = path.trim_start_matches("./").to_string();
        if kind == tar::EntryType::Regular {
            files.insert(path, content);
        } else {
            files.remove(&path);
        }
    }
    files
}

/// Checks that the rootfs umoci unpacked holds exactly the layers' regular files.
fn assert_rootfs_matches(rootfs: &Path, expected: &BTreeMap<String, Vec<u8>>, platform: &str) {
    assert!(expected.len() > 2, "{platform}: {expected:?}");
    for (path, content) in expected {
        let found =
            std::fs::read(rootfs.join(path)).unwrap_or_else(|e| panic!("{platform}: {path}: {e}"));
        assert!(found == *content, "{platform}: {path} differs");
    }
}

/// skopeo reads the archive (raw root = the layout's root blob) and copies it to `dir:`.
fn check_skopeo(archive: &Path, layout: &OciLayout, work: &Path) {
    let root = layout.index["manifests"][0]["digest"].as_str().unwrap();
    let src = format!("oci-archive:{}", archive.display());
    let raw = run_ok(Command::new("skopeo").args(["inspect", "--raw", &src]));
    assert_eq!(raw.stdout, layout.blob(root), "{src}");
    let dir = work.join("skopeo-dir");
    run_ok(Command::new("skopeo").args(["copy", "--all", &src, &format!("dir:{}", dir.display())]));
    assert_eq!(
        std::fs::read(dir.join("manifest.json")).unwrap(),
        layout.blob(root)
    );
}

/// `buildah pull oci-archive:` for `platform` stores the image with its config.
fn check_buildah(archive: &Path, layout: &OciLayout, platform: &str, work: &Path) {
    let arch = platform.rsplit('/').next().unwrap();
    let pulled = run_ok(container_tool("buildah", &work.join("buildah")).args([
        "pull",
        "--arch",
        arch,
        &format!("oci-archive:{}", archive.display()),
    ]));
    let id = String::from_utf8_lossy(&pulled.stdout).trim().to_string();
    let config = &layout.json(&layout.manifest_for(platform))["config"]["digest"];
    assert_eq!(format!("sha256:{id}"), *config, "{platform}");
    let inspect = run_ok(container_tool("buildah", &work.join("buildah")).args([
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.OCIv1.Architecture}}",
        &id,
    ]));
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), arch);
}

/// Builds `output` (with `dest=` filled in) for `platforms` and checks every reader.
fn check_exporter(kind: &str, keys: &str, platforms: &[&str], umoci_reads: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = arch_context(&tmp.path().join("ctx"));
    let dest = tmp.path().join("out.tar");
    let output = format!("type={kind},dest={}{keys}", dest.display());
    let mut c = build_command(
        &tmp.path().join("state"),
        &ctx,
        &platforms.join(","),
        None,
        &["-t", "readers:1", "-o", &output],
    );
    let out = run(&mut c);
    assert!(out.status.success(), "{output}: {}", stderr(&out));
    let layout = OciLayout::open_tar(&dest);
    check_skopeo(&dest, &layout, tmp.path());
    for p in platforms {
        check_buildah(&dest, &layout, p, tmp.path());
        let files = files_of(&layout, p);
        assert_eq!(files["arch"], format!("{}\n", expected_uname(p)).as_bytes());
        assert_eq!(files["hi"], b"read by every reader\n");
        if umoci_reads {
            let rootfs = umoci_unpack_with(Path::new("umoci"), &dest, tmp.path(), p);
            assert_rootfs_matches(&rootfs, &files, p);
        }
    }
    if kind == "docker" {
        let info = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("docker-archive:{}", dest.display())),
        );
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(
            info["Architecture"],
            platforms[0].rsplit('/').next().unwrap()
        );
    }
}

fn readers_installed() -> bool {
    precondition(
        have("skopeo") && have("umoci") && have("buildah"),
        "skopeo, umoci and buildah are installed",
    )
}

#[test]
fn oci_archives_are_read_by_skopeo_umoci_and_buildah() {
    if !readers_installed() {
        return;
    }
    check_exporter("oci", "", &["linux/amd64", "linux/arm64"], true);
}

#[test]
fn docker_archives_are_read_by_skopeo_umoci_and_buildah() {
    if !readers_installed() {
        return;
    }
    check_exporter("docker", "", &["linux/arm64"], true);
}

/// umoci (0.4.7 and 0.6.0 alike) unpacks only OCI manifests ("descriptor does not point to
/// ispec.MediaTypeImageManifest"), so Docker-typed outputs are read by skopeo and buildah.
#[test]
fn docker_media_type_outputs_are_read_by_skopeo_and_buildah() {
    if !readers_installed() {
        return;
    }
    let both = ["linux/amd64", "linux/arm64"];
    check_exporter("oci", ",oci-mediatypes=false", &both, false);
    check_exporter("docker", ",oci-mediatypes=false", &["linux/amd64"], false);
}

/// The umoci `cargo xtask test` provides for zstd layers.
fn zstd_umoci() -> Option<PathBuf> {
    let path = std::env::var_os("RBUILD_TEST_UMOCI").map(PathBuf::from);
    let ok = path.as_ref().is_some_and(|p| p.is_file());
    precondition(
        ok,
        "RBUILD_TEST_UMOCI names an umoci that reads zstd layers (cargo xtask tools)",
    )
    .then_some(())?;
    path
}

#[test]
fn a_zstd_build_is_unpacked_by_umoci_for_each_platform() {
    let Some(umoci) = zstd_umoci() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ctx = arch_context(&tmp.path().join("ctx"));
    let dest = tmp.path().join("out.tar");
    let platforms = ["linux/amd64", "linux/arm64"];
    let output = format!(
        "type=oci,dest={},compression=zstd,force-compression=true",
        dest.display()
    );
    let mut c = build_command(
        &tmp.path().join("state"),
        &ctx,
        &platforms.join(","),
        None,
        &["-o", &output],
    );
    let out = run(&mut c);
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = OciLayout::open_tar(&dest);
    for p in platforms {
        let m = layout.json(&layout.manifest_for(p));
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(
                l["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+zstd"
            );
            let blob = layout.blob(l["digest"].as_str().unwrap());
            assert_eq!(&blob[..4], [0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        }
        let files = files_of(&layout, p);
        assert_eq!(files["arch"], format!("{}\n", expected_uname(p)).as_bytes());
        let rootfs = umoci_unpack_with(&umoci, &dest, tmp.path(), p);
        assert_rootfs_matches(&rootfs, &files, p);
    }
}
