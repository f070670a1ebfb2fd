//! `image inspect` and the per-image facts `images` shows (size, created, platforms).

use crate::cli::Cli;
use anyhow::{Result, bail};
use rbuild_core::{Platform, Reference};
use rbuild_images::walk::PlatformImage;
use rbuild_images::{ImageStore, Pass, Target};
use std::collections::BTreeSet;
use std::process::ExitCode;

/// What `images` shows of one image.
pub struct Summary {
    /// Every platform's image.
    pub platforms: Vec<PlatformImage>,
    /// Bytes of the distinct configs and layers.
    pub size: u64,
    /// Creation time of the newest platform image (Unix seconds).
    pub created: Option<i64>,
}

impl Summary {
    /// `2 hours ago`, as docker prints it.
    pub fn created_ago(&self) -> String {
        match self.created {
            Some(t) => format!("{} ago", human_duration(now() - t)),
            None => "N/A".into(),
        }
    }
}

/// Reads every platform of `target` within `pass` (what an earlier image of the pass read
/// is not read again).
pub fn summary(pass: &mut Pass<'_>, target: &Target) -> Result<Summary> {
    let platforms = pass.platform_images(target)?;
    let mut seen = BTreeSet::new();
    let mut size = 0;
    for p in &platforms {
        for l in &p.layers {
            if seen.insert(l.digest.clone()) {
                size += l.size;
            }
        }
    }
    let created = platforms
        .iter()
        .filter_map(|p| p.config.created.as_deref().and_then(parse_rfc3339))
        .max();
    Ok(Summary {
        platforms,
        size,
        created,
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05Z`, fractions and
/// offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => (time, "Z"),
    };
    let mut c = clock.splitn(3, ':');
    let h: i64 = c.next()?.parse().ok()?;
    let mi: i64 = c.next()?.parse().ok()?;
    let sec: i64 = c.next()?.split('.').next()?.parse().ok()?;
    let off = match offset.as_bytes().first() {
        Some(b'+') | Some(b'-') => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (oh, om) = offset[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
        _ => 0,
    };
    Some(days_from_civil(y, mo, da) * 86400 + h * 3600 + mi * 60 + sec - off)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A duration as docker's `HumanDuration` words it.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{d} days"),
        _ if h < 24 * 30 * 2 => format!("{} weeks", d / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
    }
}

/// A size as docker prints it: three significant digits, decimal units (`4.26MB`).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let text = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", units[u])
}

/// `image inspect`: docker's JSON array, or each image through the template.
pub fn run(
    cli: &Cli,
    texts: &[String],
    format: Option<&str>,
    platform: Option<&Platform>,
) -> Result<ExitCode> {
    let root = crate::state::root_dir(cli)?;
    let images = crate::state::images(&root)?;
    let mut docs = Vec::new();
    for text in texts {
        docs.push(document(&images, text, platform)?);
    }
    match format {
        Some(t) => {
            let tpl = crate::image::template::Template::parse(t)?;
            for d in &docs {
                println!("{}", tpl.render(d)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&docs)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker's inspect document of one platform of an image.
fn document(
    images: &ImageStore,
    text: &str,
    platform: Option<&Platform>,
) -> Result<serde_json::Value> {
    let target = images.resolve(text)?;
    let s = summary(&mut Pass::new(images.blobs()), &target)?;
    let host = Platform::host();
    let chosen = match platform {
        Some(p) => s.platforms.iter().find(|i| p.matches(&i.platform)),
        None => s
            .platforms
            .iter()
            .find(|i| host.matches(&i.platform))
            .or(s.platforms.first()),
    };
    let Some(img) = chosen else {
        bail!(
            "{text} has no image for platform {} (it has: {})",
            platform.map(|p| p.to_string()).unwrap_or_default(),
            s.platforms
                .iter()
                .map(|p| p.platform.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let names = images.names_of(&target.digest)?;
    let familiar: Vec<String> = names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .collect::<Vec<_>>()
        .iter()
        .map(|r| r.familiar())
        .collect();
    let digests: Vec<String> = names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .map(|r| format!("{}@{}", r.familiar_name(), target.digest))
        .collect();
    let c = &img.config;
    let mut doc = serde_json::json!({
        "Id": target.digest.to_string(),
        "RepoTags": familiar,
        "RepoDigests": digests,
        "Created": c.created.clone().unwrap_or_default(),
        "Author": c.author.clone().unwrap_or_default(),
        "Config": serde_json::to_value(&c.config)?,
        "Architecture": img.platform.architecture(),
        "Os": img.platform.os(),
        "Size": img.size(),
        "RootFS": {"Type": "layers", "Layers": c.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        "Descriptor": {"mediaType": img.manifest.media_type, "digest": img.manifest.digest.to_string(), "size": img.manifest.size},
        "Platforms": s.platforms.iter().map(|p| p.platform.to_string()).collect::<Vec<_>>(),
    });
    if let (Some(v), Some(o)) = (img.platform.variant(), doc.as_object_mut()) {
        o.insert("Variant".into(), v.into());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_as_docker_prints_them() {
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(4_000_000), "4MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01Z"), Some(86401));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.5+01:00"),
            Some(1709204400)
        );
    }
}
