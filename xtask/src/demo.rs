//! `cargo xtask demo`: one multi-platform build of `Dockerfiles/hello` from the
//! offline fixture, then what is inside the resulting image for each platform.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::layout::{self, Platform};
use crate::{apt, fixtures, util};

/// Runs the demo from the repository root `root`.
pub fn run(root: &Path) -> Result<()> {
    util::step("system packages");
    apt::deps()?;
    util::step("fixture images");
    let platforms = fixtures::run(root, false)?;
    let rbuild = build_rbuild(root)?;

    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir)?;
    let archive = Path::new("target/demo/hello.tar");
    let platform_list = platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(",");
    util::step(&format!("building Dockerfiles/hello for {platform_list}"));
    let mut build = Command::new(&rbuild);
    build
        .current_dir(root)
        .arg("build")
        .args(["--platform", &platform_list])
        .args([
            "--build-context",
            "busybox=oci-layout://testdata/images/busybox",
        ])
        .args(["-t", "hello:1"])
        .args(["-o", "type=oci,dest=target/demo/hello.tar"])
        .arg("Dockerfiles/hello");
    util::run(&mut build)?;

    util::step("the image index");
    let mut inspect = Command::new("skopeo");
    inspect
        .current_dir(root)
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()));
    println!("$ {}", util::show(&inspect));
    let raw = util::output(&mut inspect)?;
    let value: serde_json::Value =
        serde_json::from_slice(&raw).context("skopeo printed something that is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);

    util::step("/arch in each platform's image");
    let layout_dir = out_dir.join("hello-layout");
    unpack_archive(&root.join(archive), &layout_dir)?;
    let images = layout::read_layout(&layout_dir)?;
    let mut without_arch = Vec::new();
    for image in &images {
        let arch = layout::read_image_file(&layout_dir, image, "/arch")?
            .map(|bytes| String::from_utf8_lossy(&bytes).trim_end().to_string());
        if arch.is_none() {
            without_arch.push(image.platform.to_string());
        }
        let arch = arch.unwrap_or_else(|| "(no /arch file)".to_string());
        println!(
            "{:<16} {}  /arch: {arch}",
            image.platform.to_string(),
            image.manifest_digest
        );
    }
    let missing: Vec<String> = platforms
        .iter()
        .filter(|p| !images.iter().any(|i| &i.platform == *p))
        .map(Platform::to_string)
        .collect();
    if !missing.is_empty() {
        bail!("the image lacks platforms: {}", missing.join(", "));
    }
    if !without_arch.is_empty() {
        bail!(
            "no /arch file in the images for {}",
            without_arch.join(", ")
        );
    }
    Ok(())
}

/// `cargo build --release -p rbuild`, returning the binary's path; or, when the
/// environment variable `RBUILD_BIN` names a binary, that binary unbuilt.
pub fn build_rbuild(root: &Path) -> Result<PathBuf> {
    if let Some(binary) = std::env::var_os("RBUILD_BIN") {
        let binary = PathBuf::from(binary);
        util::info(&format!("using RBUILD_BIN={}", binary.display()));
        if !binary.is_file() {
            bail!("RBUILD_BIN={} is not a file", binary.display());
        }
        return Ok(binary);
    }
    util::step("building rbuild (release)");
    let mut cmd = util::cargo();
    cmd.current_dir(root)
        .args(["build", "--release", "-p", "rbuild"]);
    util::run(&mut cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("release/rbuild");
    if !binary.is_file() {
        bail!("{} was not built", binary.display());
    }
    Ok(binary)
}

/// Extracts an OCI archive (a tar of an image layout) into a fresh `dest`.
pub fn unpack_archive(archive: &Path, dest: &Path) -> Result<()> {
    util::remove_tree(dest)?;
    std::fs::create_dir_all(dest)?;
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    tar.set_preserve_permissions(false);
    for entry in tar.entries()? {
        let mut entry = entry?;
        // unpack_in refuses paths that would leave `dest`.
        if !entry.unpack_in(dest)? {
            bail!("{}: unsafe path in archive", archive.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Image, ImageInput};
    use crate::rootfs::{self, Entry, Kind};

    #[test]
    fn unpacked_archive_reads_back_with_arch_file() {
        let tmp = util::TempDir::new("demo-test").unwrap();
        let mut entries = rootfs::busybox_entries(b"bb", &[]);
        entries.push(Entry {
            path: "arch".into(),
            mode: 0o644,
            kind: Kind::File(b"aarch64\n".to_vec()),
        });
        let input = ImageInput {
            platform: Platform::linux("arm64", None),
            layer_tar: rootfs::tar_bytes(&entries).unwrap(),
            created_by: "test".into(),
            cmd: vec!["sh".to_string()],
        };
        let image = Image::build(&input).unwrap();
        let dir = tmp.path().join("layout");
        layout::write_multi_platform(&dir, &[image], "latest").unwrap();

        // Pack the layout as an OCI archive, the way `-o type=oci` writes one.
        let archive = tmp.path().join("image.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        builder.append_dir_all(".", &dir).unwrap();
        builder.finish().unwrap();

        let unpacked = tmp.path().join("unpacked");
        unpack_archive(&archive, &unpacked).unwrap();
        let images = layout::read_layout(&unpacked).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].platform.to_string(), "linux/arm64");
        let arch = layout::read_image_file(&unpacked, &images[0], "/arch").unwrap();
        assert_eq!(arch.as_deref(), Some(&b"aarch64\n"[..]));
    }
}
