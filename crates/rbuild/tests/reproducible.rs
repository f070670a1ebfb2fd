//! Output bytes that depend only on the input: SOURCE_DATE_EPOCH builds in different
//! directories at different times give one index digest, and zstd layers are read by
//! skopeo and umoci.

mod common;

use common::*;
use std::process::Command;

fn hello_build(
    dir: &std::path::Path,
    out_opts: &str,
    epoch: Option<&str>,
) -> (String, std::path::PathBuf) {
    let ctx = dir.join("hello");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(repo().join("Dockerfiles/hello"))
            .arg(&ctx),
    );
    let dest = dir.join("out.tar");
    let mut c = build_command(
        &dir.join("state"),
        &ctx,
        "linux/amd64,linux/arm64",
        None,
        &[
            "-q",
            "-o",
            &format!("type=oci,dest={}{out_opts}", dest.display()),
        ],
    );
    c.env_remove("SOURCE_DATE_EPOCH");
    if let Some(e) = epoch {
        c.env("SOURCE_DATE_EPOCH", e);
    }
    let out = run_ok(&mut c);
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        dest,
    )
}

#[test]
fn source_date_epoch_builds_in_different_places_and_times_are_identical() {
    let a = tempfile::tempdir().unwrap();
    let (first, _) = hello_build(a.path(), ",rewrite-timestamp=true", Some("1700000000"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = tempfile::tempdir().unwrap();
    let (second, dest) = hello_build(b.path(), ",rewrite-timestamp=true", Some("1700000000"));
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(first, second, "same input, same index digest");
    let l = OciLayout::open_tar(&dest);
    let config = l.config(&l.manifest_for("linux/arm64"));
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn zstd_layers_are_read_by_skopeo_and_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dest) = hello_build(tmp.path(), ",compression=zstd", None);
    let l = OciLayout::open_tar(&dest);
    let manifest = l.json(&l.manifest_for("linux/amd64"));
    let layers = manifest["layers"].as_array().unwrap();
    let own = layers.last().unwrap();
    assert_eq!(
        own["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // skopeo reads every zstd layer: recompressing the image to gzip decompresses each.
    let gz = tmp.path().join("gz");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--all", "--dest-compress-format", "gzip"])
            .arg(format!("oci-archive:{}", dest.display()))
            .arg(format!("oci:{}:latest", gz.display())),
    );
    // Debian's umoci (0.4.7) predates zstd layers, so it unpacks the copy skopeo wrote; the
    // files are the ones rbuild put into the zstd layers.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gz.join("index.json")).unwrap()).unwrap();
    let list = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let list: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            gz.join("blobs/sha256")
                .join(list.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let amd64 = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()
        .clone();
    let mut single = index.clone();
    single["manifests"][0] = amd64;
    single["manifests"][0]["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "amd64"});
    std::fs::write(gz.join("index.json"), serde_json::to_vec(&single).unwrap()).unwrap();
    let bundle = tmp.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:amd64", gz.display()))
            .arg(&bundle),
    );
    let arch = std::fs::read_to_string(bundle.join("rootfs/arch")).unwrap();
    assert_eq!(arch.trim(), "x86_64");
}

#[test]
fn source_date_epoch_as_a_build_arg_sets_the_created_time() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(&tmp.path().join("ctx"), "FROM busybox\nRUN true\n", &[]);
    let dest = tmp.path().join("out.tar");
    let mut c = build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        Some(&dest),
        &["--build-arg", "SOURCE_DATE_EPOCH=86400"],
    );
    c.env_remove("SOURCE_DATE_EPOCH");
    run_ok(&mut c);
    let l = OciLayout::open_tar(&dest);
    assert_eq!(
        l.config(&l.manifest_for("linux/amd64"))["created"],
        "1970-01-02T00:00:00Z"
    );
    let refused = run(&mut build_command(
        &tmp.path().join("state"),
        &ctx,
        "linux/amd64",
        None,
        &[
            "-o",
            &format!(
                "type=local,dest={},rewrite-timestamp=true",
                tmp.path().join("d").display()
            ),
        ],
    ));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("image outputs"));
}

#[test]
fn force_compression_recompresses_the_base_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN echo x > /x\n",
        &[],
    );
    let build_with = |opts: &str, name: &str| {
        let dest = tmp.path().join(name);
        run_ok(&mut build_command(
            &tmp.path().join("state"),
            &ctx,
            "linux/amd64",
            None,
            &[
                "-o",
                &format!("type=oci,dest={},compression=zstd{opts}", dest.display()),
            ],
        ));
        let l = OciLayout::open_tar(&dest);
        let m = l.json(&l.manifest_for("linux/amd64"));
        let types: Vec<String> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["mediaType"].as_str().unwrap().to_string())
            .collect();
        (types, l)
    };
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    let (kept, _) = build_with("", "kept.tar");
    assert_eq!(
        kept[0], "application/vnd.oci.image.layer.v1.tar+gzip",
        "the base stays as it is"
    );
    assert_eq!(kept[1], zstd);
    let (forced, l) = build_with(",force-compression=true", "forced.tar");
    assert!(forced.iter().all(|t| t == zstd), "{forced:?}");
    // The recompressed base still unpacks to the same files.
    assert!(
        l.file(&l.manifest_for("linux/amd64"), "bin/busybox")
            .is_some()
    );
}
