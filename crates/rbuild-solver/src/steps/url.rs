//! `ADD http(s)://…` sources: resolved to a content digest for the cache key (the
//! `--checksum` without fetching; otherwise a download, conditional on the last one the
//! state directory remembers) and written as one file, mode 0600, its mtime the
//! `Last-Modified` the server sent (else the Unix epoch), as BuildKit's http source does.

use super::StepContext;
use rbuild_graph::UrlSource;
use rbuild_source::{UrlFetch, UrlRecord, UrlRequest};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a URL source could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The build was started without a way to download (no network side).
    #[error("ADD {url}: this command does not download URLs")]
    NoFetcher {
        /// The URL.
        url: String,
    },
    /// The download failed.
    #[error(transparent)]
    Fetch(Box<rbuild_registry::RegistryError>),
    /// A 304 came to a request that named no earlier download.
    #[error("{url}: 304 Not Modified to an unconditional request")]
    NotModified {
        /// The URL.
        url: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// What the cache key takes from a URL source: the `--checksum`, else the digest and
/// `Last-Modified` of the current content (downloaded or revalidated).
pub(crate) fn identity(cx: &StepContext, src: &UrlSource) -> Result<String, UrlError> {
    if let Some(sum) = &src.checksum {
        return Ok(sum.to_string());
    }
    let r = resolve(cx, src)?;
    Ok(format!(
        "{} {}",
        r.digest,
        r.last_modified.as_deref().unwrap_or("")
    ))
}

/// The current download of `src`, once per build.
fn resolve(cx: &StepContext, src: &UrlSource) -> Result<UrlRecord, UrlError> {
    cx.solver.sources.url(&src.url, || match &src.checksum {
        Some(sum) => pinned(cx, src, sum),
        None => revalidate(cx, src),
    })
}

/// Without `--checksum`: asks the server whether the remembered download is current
/// (its blob still stored), downloading the content when it is not.
fn revalidate(cx: &StepContext, src: &UrlSource) -> Result<UrlRecord, UrlError> {
    let known = remembered(cx, &src.url);
    let req = UrlRequest {
        url: &src.url,
        known: known.as_ref(),
        expected: None,
    };
    match fetch(cx, &req)? {
        UrlFetch::NotModified => known.ok_or_else(|| UrlError::NotModified {
            url: src.url.clone(),
        }),
        UrlFetch::Stored(record) => remember(cx, record),
    }
}

/// With `--checksum`: the remembered download when it has that digest, else a download
/// that must have it (a mismatch stores nothing).
fn pinned(
    cx: &StepContext,
    src: &UrlSource,
    sum: &rbuild_core::Digest,
) -> Result<UrlRecord, UrlError> {
    if let Some(r) = remembered(cx, &src.url).filter(|r| &r.digest == sum) {
        return Ok(r);
    }
    let req = UrlRequest {
        url: &src.url,
        known: None,
        expected: Some(sum),
    };
    match fetch(cx, &req)? {
        UrlFetch::Stored(record) => remember(cx, record),
        UrlFetch::NotModified => Err(UrlError::NotModified {
            url: src.url.clone(),
        }),
    }
}

fn fetch(cx: &StepContext, req: &UrlRequest) -> Result<UrlFetch, UrlError> {
    cx.solver
        .sources
        .fetch_url(req, cx.solver.store)
        .ok_or_else(|| UrlError::NoFetcher {
            url: req.url.to_string(),
        })?
        .map_err(UrlError::Fetch)
}

/// The last download of `url` the state directory remembers, if its blob is stored.
fn remembered(cx: &StepContext, url: &str) -> Option<UrlRecord> {
    let text = fs::read(cx.solver.state.url_record(url)).ok()?;
    let r: UrlRecord = serde_json::from_slice(&text).ok()?;
    (r.url == url && cx.solver.store.blob_size(&r.digest) == Some(r.size)).then_some(r)
}

/// Remembers a download (written aside and renamed, so a reader never sees half).
fn remember(cx: &StepContext, record: UrlRecord) -> Result<UrlRecord, UrlError> {
    let path = cx.solver.state.url_record(&record.url);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UrlError::Io { path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let body = serde_json::to_vec(&record).map_err(|e| io_err(&tmp)(e.into()))?;
    fs::write(&tmp, body).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(record)
}

/// Writes the content of `src` into `dir` under its stored name (never a path: see
/// [`rbuild_graph::url_name`]): mode 0600, mtime `Last-Modified`. The write goes through
/// `rbuild-fsroot`, so no name can reach outside `dir`.
pub(crate) fn write(cx: &StepContext, src: &UrlSource, dir: &Path) -> Result<(), UrlError> {
    let record = resolve(cx, src)?;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UrlError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let root = rbuild_fsroot::Root::open(dir).map_err(io_err(dir))?;
    let name = rbuild_graph::url_name::stored_file_name(&src.filename);
    let target = root.at(Path::new(&name)).map_err(io_err(dir))?;
    let blob = cx.solver.store.blob_path(&record.digest);
    let mut from = fs::File::open(&blob).map_err(io_err(&blob))?;
    let mut to = target
        .create_file(0o600)
        .map_err(io_err(&target.display()))?;
    io::copy(&mut from, &mut to).map_err(io_err(&target.display()))?;
    // The mode is set again: the umask may have taken bits from the one asked at creation.
    target.chmod(0o600).map_err(io_err(&target.display()))?;
    let (sec, nsec) = unix_time(mtime(record.last_modified.as_deref()));
    target
        .set_times(sec, nsec)
        .map_err(io_err(&target.display()))
}

/// A time as seconds and nanoseconds since the Unix epoch (earlier times clamp to it).
fn unix_time(t: SystemTime) -> (i64, u32) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}

/// `Last-Modified` as a time; the Unix epoch when absent or unreadable (BuildKit).
fn mtime(last_modified: Option<&str>) -> SystemTime {
    last_modified
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn mtime_is_last_modified_or_the_epoch() {
        let t = mtime(Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_secs(784_111_777)
        );
        assert_eq!(mtime(None), SystemTime::UNIX_EPOCH);
        assert_eq!(mtime(Some("yesterday")), SystemTime::UNIX_EPOCH);
    }
}
