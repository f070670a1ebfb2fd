//! Inputs that are big rather than malformed: a step printing 200 MB on one line, and a base
//! layer that expands far beyond the free space of the state directory's file system.

mod common;

use common::*;
use flate2::Compression;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs a build with stderr drained as it comes; returns (success, bytes of stderr, the last
/// 64 KiB of it, peak RSS of rbuild's process tree in KiB).
fn build_draining(state: &Path, ctx: &Path) -> (bool, u64, String, i64) {
    let mut cmd = build_command(state, ctx, "linux/amd64", None, &["--progress=plain"]);
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut total = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = err.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 1 << 17 {
            tail.drain(..tail.len() - (1 << 16));
        }
    }
    let status = child.wait().unwrap();
    // SAFETY: getrusage fills the struct; RUSAGE_CHILDREN covers the waited-for rbuild tree.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    (
        status.success(),
        total,
        String::from_utf8_lossy(&tail).into_owned(),
        ru.ru_maxrss,
    )
}

#[test]
fn two_hundred_megabytes_on_one_line_stream_with_flat_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN head -c 200000000 /dev/zero | tr '\\0' x\n",
        &[],
    );
    let (ok, bytes, _, rss_kib) = build_draining(&tmp.path().join("state"), &ctx);
    assert!(ok, "the build succeeds");
    assert!(bytes >= 200_000_000, "all output is shown: {bytes} bytes");
    assert!(rss_kib < 96 * 1024, "peak RSS {rss_kib} KiB stays flat");
}

#[test]
fn a_failing_step_with_a_huge_line_shows_a_bounded_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM busybox\nRUN head -c 20000000 /dev/zero | tr '\\0' y; echo; printf '\\r10%%\\r100%%\\n'; exit 4\n",
        &[],
    );
    let (ok, bytes, tail, _) = build_draining(&tmp.path().join("state"), &ctx);
    assert!(!ok);
    assert!(
        (20_000_000..20_100_000).contains(&bytes),
        "the output is shown once: {bytes} bytes"
    );
    let message = &tail[tail.find("error:").expect("an error message")..];
    assert!(message.contains("exit code 4"), "{message}");
    assert!(message.contains("[line cut]"), "{message}");
    assert!(
        message.contains("    100%"),
        "a redrawn line keeps its last state: {message}"
    );
    assert!(
        message.len() < 16 * 1024,
        "the message is bounded: {} bytes",
        message.len()
    );
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An OCI layout whose one layer is a gzip of a tar holding `size` bytes of zeros.
fn bomb_layout(dir: &Path, size: u64) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut tar_hash = Sha256::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::best());
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut emit = |b: &[u8]| {
        tar_hash.update(b);
        gz.write_all(b).unwrap();
    };
    emit(h.as_bytes());
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        emit(&zeros[..n]);
        left -= n as u64;
    }
    emit(&[0u8; 1024]);
    let diff_id = format!("sha256:{}", hex::encode(tar_hash.finalize()));
    let blob = gz.finish().unwrap();
    let put = |d: &str, data: &[u8]| {
        std::fs::write(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
            data,
        )
        .unwrap()
    };
    put(&sha(&blob), &blob);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    put(&sha(&config), &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&blob), "size": blob.len()}],
    }))
    .unwrap();
    put(&sha(&manifest), &manifest);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(&manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
fn a_layer_that_would_fill_the_disk_stops_with_a_clear_error() {
    if !precondition(
        is_root(),
        "mounting a small tmpfs as the state directory needs root",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
            .arg(&state),
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&state);
    let layout = tmp.path().join("bomb");
    bomb_layout(&layout, 1 << 30);
    let ctx = context(
        &tmp.path().join("ctx"),
        "FROM bomb\nCOPY f /f\n",
        &[("f", "f")],
    );
    let mut c = rbuild(&state);
    c.arg("build")
        .arg("--build-context")
        .arg(format!("bomb=oci-layout://{}", layout.display()))
        .arg("-o")
        .arg(format!(
            "type=local,dest={}",
            tmp.path().join("out").display()
        ))
        .arg(&ctx);
    let out = run(&mut c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("would fill up"), "{stderr}");
    assert!(
        stderr.contains("layer sha256:"),
        "the layer is named: {stderr}"
    );
    let layers = std::fs::read_dir(state.join("layers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(layers, 0, "no half-written layer is left");
    let tmp_left = std::fs::read_dir(state.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp_left, 0, "the unpack directory is removed");
    assert!(!tmp.path().join("out").exists());
}
