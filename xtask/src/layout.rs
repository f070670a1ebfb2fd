//! OCI image layouts: assembling the fixture images, writing them byte for byte
//! reproducibly, and reading any layout back with every blob verified.

use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::util;

/// Media type of an OCI image index.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed layer.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Annotation naming an image in a layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `PATH` every fixture image sets.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An OCI platform, as it appears in descriptors and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `arm`.
    pub architecture: String,
    /// e.g. `v7`.
    pub variant: Option<String>,
}

impl Platform {
    /// A Linux platform.
    pub fn linux(architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    fn to_json(&self) -> Value {
        let mut value = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(variant) = &self.variant {
            value["variant"] = json!(variant);
        }
        value
    }

    fn from_json(value: &Value) -> Option<Platform> {
        Some(Platform {
            os: value.get("os")?.as_str()?.to_string(),
            architecture: value.get("architecture")?.as_str()?.to_string(),
            variant: value
                .get("variant")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Content with its media type and digest, ready to be stored as a blob.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The media type descriptors give it.
    pub media_type: &'static str,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The exact bytes.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// Hashes `bytes`.
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        let digest = format!("sha256:{}", util::sha256_hex(&bytes));
        Blob {
            media_type,
            digest,
            bytes,
        }
    }

    /// A JSON blob of `value`, serialised compactly in key insertion order.
    pub fn json(media_type: &'static str, value: &Value) -> Result<Blob> {
        Ok(Blob::new(media_type, serde_json::to_vec(value)?))
    }

    /// The OCI descriptor pointing at this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// What one platform's fixture image is made of.
#[derive(Debug, Clone)]
pub struct ImageInput {
    /// Its platform.
    pub platform: Platform,
    /// The uncompressed layer tar.
    pub layer_tar: Vec<u8>,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// The config's `Cmd`.
    pub cmd: Vec<String>,
}

/// One platform's image: layer, config and manifest blobs.
#[derive(Debug, Clone)]
pub struct Image {
    /// Its platform.
    pub platform: Platform,
    /// The gzip layer.
    pub layer: Blob,
    /// The image config.
    pub config: Blob,
    /// The image manifest.
    pub manifest: Blob,
}

impl Image {
    /// Builds the image for one input: gzip layer, config (no `created`, so no clock), manifest.
    pub fn build(input: &ImageInput) -> Result<Image> {
        let diff_id = format!("sha256:{}", util::sha256_hex(&input.layer_tar));
        let layer = Blob::new(LAYER_GZIP, crate::rootfs::gzip(&input.layer_tar)?);
        let mut config = input.platform.to_json();
        config["config"] = json!({ "Env": [DEFAULT_PATH], "Cmd": input.cmd });
        config["rootfs"] = json!({ "type": "layers", "diff_ids": [diff_id] });
        config["history"] = json!([{ "created_by": input.created_by }]);
        let config = Blob::json(CONFIG, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        });
        let manifest = Blob::json(MANIFEST, &manifest)?;
        Ok(Image {
            platform: input.platform.clone(),
            layer,
            config,
            manifest,
        })
    }

    fn platform_descriptor(&self) -> Value {
        let mut descriptor = self.manifest.descriptor();
        descriptor["platform"] = self.platform.to_json();
        descriptor
    }

    fn blobs(&self) -> [&Blob; 3] {
        [&self.layer, &self.config, &self.manifest]
    }
}

fn named(mut descriptor: Value, name: &str) -> Value {
    descriptor["annotations"] = json!({ REF_NAME: name });
    descriptor
}

fn top_index(descriptor: Value) -> Value {
    json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": [descriptor] })
}

/// Writes a layout whose index.json names (`ref_name`) one image index blob that
/// lists every image with its platform. Returns the digest of that image index.
pub fn write_multi_platform(dir: &Path, images: &[Image], ref_name: &str) -> Result<String> {
    let manifests: Vec<Value> = images.iter().map(Image::platform_descriptor).collect();
    let nested = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": manifests });
    let nested = Blob::json(INDEX, &nested)?;
    let mut blobs: Vec<&Blob> = images.iter().flat_map(Image::blobs).collect();
    blobs.push(&nested);
    write_layout(
        dir,
        &blobs,
        &top_index(named(nested.descriptor(), ref_name)),
    )?;
    Ok(nested.digest.clone())
}

/// Writes a layout whose index.json names (`ref_name`) one image manifest directly.
/// Returns the manifest digest.
pub fn write_single_platform(dir: &Path, image: &Image, ref_name: &str) -> Result<String> {
    let index = top_index(named(image.platform_descriptor(), ref_name));
    write_layout(dir, &image.blobs(), &index)?;
    Ok(image.manifest.digest.clone())
}

/// Writes `oci-layout`, `index.json` and `blobs/sha256/*` into a sibling temp
/// directory, then swaps it in for `dir`, so a half-written layout is never seen.
fn write_layout(dir: &Path, blobs: &[&Blob], index: &Value) -> Result<()> {
    let name = dir
        .file_name()
        .context("layout path has no file name")?
        .to_string_lossy();
    let parent = dir.parent().context("layout path has no parent")?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    util::remove_tree(&tmp)?;
    let blob_dir = tmp.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir)
        .with_context(|| format!("cannot create {}", blob_dir.display()))?;
    std::fs::write(tmp.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for blob in blobs {
        let hex = hex_part(&blob.digest)?;
        std::fs::write(blob_dir.join(hex), &blob.bytes)?;
    }
    let mut index_bytes = serde_json::to_vec(index)?;
    index_bytes.push(b'\n');
    std::fs::write(tmp.join("index.json"), index_bytes)?;
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    util::remove_tree(&old)?;
    if dir.exists() {
        std::fs::rename(dir, &old)
            .with_context(|| format!("cannot move {} aside", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("cannot create {}", dir.display()))?;
    util::remove_tree(&old)?;
    Ok(())
}

fn hex_part(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest:?}"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("malformed digest {digest:?}");
    }
    Ok(hex)
}

/// A platform image found in a layout, with its blobs verified.
#[derive(Debug, Clone)]
pub struct FoundImage {
    /// The platform named by the descriptor that led here, else by the config.
    pub platform: Platform,
    /// The manifest digest.
    pub manifest_digest: String,
    /// The layers, bottom first: (media type, digest).
    pub layers: Vec<(String, String)>,
}

/// Reads a blob, checking its size (when given) and digest.
pub fn read_blob(layout: &Path, digest: &str, size: Option<u64>) -> Result<Vec<u8>> {
    let path = layout.join("blobs/sha256").join(hex_part(digest)?);
    let bytes = std::fs::read(&path).with_context(|| format!("missing blob {}", path.display()))?;
    if let Some(size) = size
        && bytes.len() as u64 != size
    {
        bail!(
            "blob {digest} has {} bytes, descriptor says {size}",
            bytes.len()
        );
    }
    let found = format!("sha256:{}", util::sha256_hex(&bytes));
    if found != digest {
        bail!("blob {digest} hashes to {found}");
    }
    Ok(bytes)
}

fn read_descriptor_blob(layout: &Path, descriptor: &Value) -> Result<(String, Vec<u8>)> {
    let digest = descriptor
        .get("digest")
        .and_then(Value::as_str)
        .context("descriptor without digest")?;
    let size = descriptor.get("size").and_then(Value::as_u64);
    Ok((digest.to_string(), read_blob(layout, digest, size)?))
}

/// Walks a layout from `index.json` (through nested indexes) to every image,
/// verifying each blob's size and digest on the way, including layers.
pub fn read_layout(layout: &Path) -> Result<Vec<FoundImage>> {
    let marker = std::fs::read(layout.join("oci-layout"))
        .with_context(|| format!("{} is not an OCI layout", layout.display()))?;
    let marker: Value = serde_json::from_slice(&marker).context("oci-layout is not JSON")?;
    if marker.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
        bail!("{}: unsupported oci-layout {marker}", layout.display());
    }
    let index = std::fs::read(layout.join("index.json"))
        .with_context(|| format!("{}: no index.json", layout.display()))?;
    let index: Value = serde_json::from_slice(&index).context("index.json is not JSON")?;
    let mut found = Vec::new();
    walk_index(layout, &index, 0, &mut found)?;
    Ok(found)
}

fn walk_index(
    layout: &Path,
    index: &Value,
    depth: usize,
    found: &mut Vec<FoundImage>,
) -> Result<()> {
    if depth > 4 {
        bail!("image indexes nested too deeply");
    }
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .context("index without manifests")?;
    for descriptor in manifests {
        let media_type = descriptor
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (digest, bytes) = read_descriptor_blob(layout, descriptor)?;
        let value: Value =
            serde_json::from_slice(&bytes).with_context(|| format!("{digest} is not JSON"))?;
        let is_index = matches!(media_type, INDEX | DOCKER_MANIFEST_LIST)
            || (media_type.is_empty() && value.get("manifests").is_some());
        if is_index {
            walk_index(layout, &value, depth + 1, found)?;
        } else if matches!(media_type, MANIFEST | DOCKER_MANIFEST) || media_type.is_empty() {
            let platform = descriptor.get("platform").and_then(Platform::from_json);
            found.push(read_image(layout, &digest, &value, platform)?);
        } else {
            bail!("{digest}: unexpected media type {media_type:?}");
        }
    }
    Ok(())
}

fn read_image(
    layout: &Path,
    digest: &str,
    manifest: &Value,
    platform: Option<Platform>,
) -> Result<FoundImage> {
    let config_descriptor = manifest.get("config").context("manifest without config")?;
    let (_, config_bytes) = read_descriptor_blob(layout, config_descriptor)?;
    let config: Value = serde_json::from_slice(&config_bytes).context("config is not JSON")?;
    let from_config = Platform::from_json(&config);
    let platform = platform
        .or_else(|| from_config.clone())
        .with_context(|| format!("{digest}: no platform in descriptor or config"))?;
    if from_config.as_ref().is_some_and(|c| c != &platform) {
        bail!(
            "{digest}: descriptor says {platform}, config says {}",
            config
        );
    }
    let mut layers = Vec::new();
    for layer in manifest
        .get("layers")
        .and_then(Value::as_array)
        .context("manifest without layers")?
    {
        let (layer_digest, _) = read_descriptor_blob(layout, layer)?;
        let media_type = layer
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        layers.push((media_type, layer_digest));
    }
    Ok(FoundImage {
        platform,
        manifest_digest: digest.to_string(),
        layers,
    })
}

/// The contents of the regular file `path` (relative to `/`) in an image's
/// filesystem, applying layers bottom to top with OCI whiteouts.
pub fn read_image_file(layout: &Path, image: &FoundImage, path: &str) -> Result<Option<Vec<u8>>> {
    let path = path.trim_start_matches('/');
    let mut current = None;
    for (media_type, digest) in &image.layers {
        let bytes = read_blob(layout, digest, None)?;
        let reader: Box<dyn Read + '_> = if media_type.ends_with("gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(bytes.as_slice()))
        } else if media_type.ends_with(".tar") || media_type.ends_with("tar") {
            Box::new(bytes.as_slice())
        } else {
            bail!("{digest}: cannot read layers of type {media_type:?}");
        };
        let mut archive = tar::Archive::new(reader);
        // Within one layer a whiteout only hides lower layers; an entry wins.
        let mut removed = false;
        let mut provided = None;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let name = name.trim_start_matches("./").trim_end_matches('/');
            let is_dir = entry.header().entry_type().is_dir();
            match layer_effect(name, is_dir, path) {
                Effect::None => {}
                Effect::Remove => removed = true,
                Effect::Replace if entry.header().entry_type().is_file() => {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data)?;
                    provided = Some(Some(data));
                }
                Effect::Replace => provided = Some(None),
            }
        }
        if let Some(file) = provided {
            current = file;
        } else if removed {
            current = None;
        }
    }
    Ok(current)
}

#[derive(Debug, PartialEq, Eq)]
enum Effect {
    None,
    Remove,
    Replace,
}

/// What a layer entry named `name` (a directory when `is_dir`) does to the file at `path`.
fn layer_effect(name: &str, is_dir: bool, path: &str) -> Effect {
    if name == path {
        return Effect::Replace;
    }
    let (dir, base) = match name.rsplit_once('/') {
        Some((dir, base)) => (dir, base),
        None => ("", name),
    };
    let Some(hidden) = base.strip_prefix(".wh.") else {
        // A non-directory replacing an ancestor also removes the file.
        return if !is_dir && path.starts_with(&format!("{name}/")) {
            Effect::Remove
        } else {
            Effect::None
        };
    };
    let inside = |prefix: &str| prefix.is_empty() || path.starts_with(&format!("{prefix}/"));
    if hidden == ".wh..opq" {
        return if inside(dir) {
            Effect::Remove
        } else {
            Effect::None
        };
    }
    let target = if dir.is_empty() {
        hidden.to_string()
    } else {
        format!("{dir}/{hidden}")
    };
    if path == target || path.starts_with(&format!("{target}/")) {
        Effect::Remove
    } else {
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs;

    fn inputs() -> Vec<ImageInput> {
        [("amd64", None), ("arm", Some("v7"))]
            .iter()
            .map(|(arch, variant)| {
                let applets = rootfs::parse_applets("sh\nls\n");
                let entries =
                    rootfs::busybox_entries(format!("busybox for {arch}").as_bytes(), &applets);
                ImageInput {
                    platform: Platform::linux(arch, *variant),
                    layer_tar: rootfs::tar_bytes(&entries).unwrap(),
                    created_by: format!("test {arch}"),
                    cmd: vec!["sh".to_string()],
                }
            })
            .collect()
    }

    fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                    files.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn same_input_gives_byte_identical_layouts() {
        let tmp = util::TempDir::new("layout-test").unwrap();
        let mut digests = Vec::new();
        for run in ["a", "b"] {
            let images: Vec<Image> = inputs().iter().map(|i| Image::build(i).unwrap()).collect();
            let dir = tmp.path().join(run);
            digests.push(write_multi_platform(&dir, &images, "latest").unwrap());
        }
        assert_eq!(digests[0], digests[1]);
        assert_eq!(tree(&tmp.path().join("a")), tree(&tmp.path().join("b")));
    }

    #[test]
    fn multi_platform_layout_reads_back_with_platforms() {
        let tmp = util::TempDir::new("layout-test").unwrap();
        let images: Vec<Image> = inputs().iter().map(|i| Image::build(i).unwrap()).collect();
        let dir = tmp.path().join("multi");
        write_multi_platform(&dir, &images, "latest").unwrap();

        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let top = &index["manifests"][0];
        assert_eq!(top["mediaType"], INDEX);
        assert_eq!(top["annotations"][REF_NAME], "latest");
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);

        let found = read_layout(&dir).unwrap();
        let platforms: Vec<String> = found.iter().map(|f| f.platform.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm/v7"]);
        let arm = &found[1];
        assert_eq!(arm.manifest_digest, images[1].manifest.digest);
        let config: Value = serde_json::from_slice(&images[1].config.bytes).unwrap();
        assert_eq!(config["variant"], "v7");
        assert_eq!(config["config"]["Cmd"][0], "sh");
        assert!(config.get("created").is_none());
        let diff_id = format!("sha256:{}", util::sha256_hex(&inputs()[1].layer_tar));
        assert_eq!(config["rootfs"]["diff_ids"][0], json!(diff_id));
        let busybox = read_image_file(&dir, arm, "/bin/busybox").unwrap();
        assert_eq!(busybox.as_deref(), Some(&b"busybox for arm"[..]));
        assert_eq!(read_image_file(&dir, arm, "bin/sh").unwrap(), None);
    }

    #[test]
    fn single_platform_layout_points_at_the_manifest() {
        let tmp = util::TempDir::new("layout-test").unwrap();
        let image = Image::build(&inputs()[0]).unwrap();
        let dir = tmp.path().join("single");
        let digest = write_single_platform(&dir, &image, "latest").unwrap();
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["mediaType"], MANIFEST);
        assert_eq!(index["manifests"][0]["digest"], json!(digest));
        let found = read_layout(&dir).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].manifest_digest, digest);
        assert_eq!(
            std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count(),
            3
        );
    }

    #[test]
    fn corrupt_blob_is_detected() {
        let tmp = util::TempDir::new("layout-test").unwrap();
        let image = Image::build(&inputs()[0]).unwrap();
        let dir = tmp.path().join("single");
        write_single_platform(&dir, &image, "latest").unwrap();
        let layer = dir
            .join("blobs/sha256")
            .join(hex_part(&image.layer.digest).unwrap());
        let mut bytes = std::fs::read(&layer).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&layer, bytes).unwrap();
        let err = read_layout(&dir).unwrap_err().to_string();
        assert!(err.contains("hashes to"), "{err}");
    }

    #[test]
    fn whiteouts_hide_files() {
        assert_eq!(layer_effect("arch", false, "arch"), Effect::Replace);
        assert_eq!(layer_effect(".wh.arch", false, "arch"), Effect::Remove);
        assert_eq!(layer_effect("etc/.wh.x", false, "etc/x"), Effect::Remove);
        assert_eq!(layer_effect("etc/.wh.x", false, "etc/xy"), Effect::None);
        assert_eq!(
            layer_effect("etc/.wh..wh..opq", false, "etc/a/b"),
            Effect::Remove
        );
        assert_eq!(
            layer_effect("etc/.wh..wh..opq", false, "etcx/a"),
            Effect::None
        );
        assert_eq!(layer_effect(".wh.etc", false, "etc/a"), Effect::Remove);
        assert_eq!(layer_effect("etc", false, "etc/a"), Effect::Remove);
        assert_eq!(layer_effect("etc", true, "etc/a"), Effect::None);
        assert_eq!(layer_effect("etc/b", false, "etc/a"), Effect::None);
    }
}
