//! COPY and ADD steps: files from the context, a stage or an image into a new layer;
//! ADD also extracts local tar archives (plain or gzip) into the destination, and both
//! write heredoc sources (`COPY <<EOF /path`) as files.

use super::{Changes, Step, StepContext, step_err};
use crate::layers::temp_dir;
use crate::{ArchiveError, ChownError, SolveError, StageResult, StepError, cache};
use rbuild_core::Digest;
use rbuild_graph::{CopyChmod, CopyFrom, CopyOp, InlineFile};
use rbuild_snapshot::{Chmod, CopyOptions, CopySource, LayerStack, SymbolicMode};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

impl Step for CopyOp {
    /// The op (sources, destination, flags, heredoc bodies) and what it reads: the content
    /// of exactly the context paths its sources name, or the source stage's key or image's
    /// digest. Chained from the parent's key; with `--link` from nothing the parent holds
    /// but the ids `--chown` resolves to.
    fn key(&self, cx: &StepContext, parent: &StageResult) -> Result<Digest, SolveError> {
        let spec_key = serde_json::to_vec(self).unwrap_or_default();
        let mut identity = identity(cx, self)?.to_string();
        for url in &self.urls {
            // Only ops with URLs get the part, so the keys of all others stay as they were.
            let id = super::url::identity(cx, url).map_err(|e| step_err(cx.op, e))?;
            identity.push_str(&format!(" {id}"));
        }
        if !self.link {
            return Ok(cache::chain(
                &parent.key,
                &[b"copy", &spec_key, identity.as_bytes()],
            ));
        }
        let chown = format!("{:?}", owner(cx, self, parent, false)?);
        Ok(cache::chain(
            &Digest::sha256(b"link"),
            &[
                cx.platform.to_string().as_bytes(),
                &super::blob_shape(cx.solver),
                &spec_key,
                identity.as_bytes(),
                chown.as_bytes(),
            ],
        ))
    }

    fn rebased(&self) -> bool {
        self.link
    }

    fn exec(&self, cx: &StepContext, parent: &StageResult) -> Result<Changes, SolveError> {
        let op = cx.op;
        let copy = self;
        let source = CopyInput::new(cx, copy)?;
        // A linked layer is made as if over an empty image: missing parents get default
        // metadata and nothing of the stage below is carried into it.
        let lowers = if copy.link {
            Vec::new()
        } else {
            parent.lowers()
        };
        let dest_stack = LayerStack::new(lowers.clone());
        let tmp = temp_dir(cx.solver.state, crate::TempKind::Copy)?;
        let out = tmp.path().join("layer");
        fs::create_dir(&out).map_err(|e| SolveError::Io(out.clone(), e))?;
        let chmod = match &copy.chmod {
            None => None,
            Some(CopyChmod::Octal(bits)) => Some(Chmod::Octal(*bits)),
            Some(CopyChmod::Symbolic(s)) => Some(Chmod::Symbolic(
                SymbolicMode::parse(s).map_err(|e| step_err(op, e))?,
            )),
        };
        let opts = CopyOptions {
            chown: owner(cx, copy, parent, true)?,
            chmod,
            exclude: copy.exclude.clone(),
            parents: copy.parents,
            workdir: copy.workdir.clone(),
        };
        let stack;
        let src = match &source {
            CopyInput::Dir(p) => CopySource::Context(p),
            CopyInput::Stack(dirs) => {
                stack = LayerStack::new(dirs.clone());
                CopySource::Stack(&stack)
            }
        };
        let (archives, plain) = match (&source, copy.add) {
            (CopyInput::Dir(ctx), true) => {
                split_archives(ctx, &copy.srcs, &copy.exclude).map_err(|e| step_err(op, e))?
            }
            _ => (Vec::new(), copy.srcs.clone()),
        };
        let mut warn = |w: String| crate::layers::warn(cx.solver.events, Some(cx.vertex), w);
        if !plain.is_empty() {
            let stats = rbuild_snapshot::copy(src, &plain, &copy.dest, &dest_stack, &out, &opts)
                .map_err(|e| step_err(op, e))?;
            report(cx, &stats);
        }
        if !archives.is_empty() {
            let dest = archive_dest(&copy.dest, &copy.workdir);
            extract_all(&archives, &lowers, tmp.path(), &out, &dest, &mut warn)
                .map_err(|e| step_err(op, e))?;
        }
        let count = plain.len() + archives.len() + copy.urls.len() + copy.contents.len();
        if !copy.urls.is_empty() {
            copy_urls(cx, copy, tmp.path(), count, (&dest_stack, &out, &opts))?;
        }
        if !copy.contents.is_empty() {
            let inline = tmp.path().join("inline");
            write_inline(&inline, &copy.contents)?;
            let names: Vec<String> = copy.contents.iter().map(|c| c.name.clone()).collect();
            let dest = dir_dest(&copy.dest, count);
            let stats = rbuild_snapshot::copy(
                CopySource::Context(&inline),
                &names,
                &dest,
                &dest_stack,
                &out,
                &opts,
            )
            .map_err(|e| step_err(op, e))?;
            report(cx, &stats);
        }
        Ok(Changes {
            _tmp: tmp,
            dir: out,
            lowers,
        })
    }
}

/// The destination as a directory when the op copies more than one source.
fn dir_dest(dest: &str, count: usize) -> String {
    if count > 1 && !dest.ends_with('/') {
        format!("{dest}/")
    } else {
        dest.to_string()
    }
}

/// Downloads the URL sources (each in a directory of its own, as their names may repeat)
/// and copies them to the destination, unextracted.
fn copy_urls(
    cx: &StepContext,
    copy: &CopyOp,
    tmp: &Path,
    count: usize,
    (dest_stack, out, opts): (&LayerStack, &Path, &CopyOptions),
) -> Result<(), SolveError> {
    let dest = dir_dest(&copy.dest, count);
    for (i, url) in copy.urls.iter().enumerate() {
        let dir = tmp.join(format!("url-{i}"));
        super::url::write(cx, url, &dir).map_err(|e| step_err(cx.op, e))?;
        let names = [url.filename.clone()];
        let stats = rbuild_snapshot::copy(
            CopySource::Context(&dir),
            &names,
            &dest,
            dest_stack,
            out,
            opts,
        )
        .map_err(|e| step_err(cx.op, e))?;
        report(cx, &stats);
    }
    Ok(())
}

/// Warns on the step's vertex about what a copy could not do here (device nodes skipped,
/// owners that cannot be represented).
pub(crate) fn report(cx: &StepContext, stats: &rbuild_snapshot::CopyStats) {
    let noted = [
        stats.skipped_devices.warning(),
        stats.unmapped_owners.warning(),
    ];
    for w in noted.into_iter().flatten() {
        crate::layers::warn(cx.solver.events, Some(cx.vertex), w);
    }
}

/// The ids `--chown` names, resolved against the stage's /etc/passwd and /etc/group.
/// Names the image does not know are warned about on the step's vertex when `report` is
/// set (when running the step, not when computing its key).
fn owner(
    cx: &StepContext,
    copy: &CopyOp,
    parent: &StageResult,
    report: bool,
) -> Result<Option<(u32, u32)>, SolveError> {
    let Some(spec) = &copy.chown else {
        return Ok(None);
    };
    let stack = LayerStack::new(parent.lowers());
    let mut warn = |w: String| {
        if report {
            cx.solver.warn(cx.vertex, w);
        }
    };
    resolve_chown(&stack, spec, &mut warn)
        .map(Some)
        .map_err(|e| step_err(cx.op, e))
}

/// Where a COPY's files come from, ready to read.
enum CopyInput {
    Dir(PathBuf),
    Stack(Vec<PathBuf>),
}

impl CopyInput {
    /// Resolves the source, unpacking an image's layers if needed.
    fn new(cx: &StepContext, copy: &CopyOp) -> Result<CopyInput, SolveError> {
        Ok(match source(cx, copy) {
            Source::Dir(dir) => CopyInput::Dir(dir),
            Source::Stage(i) => CopyInput::Stack(built(cx, i)?.lowers()),
            Source::Image(name) => {
                CopyInput::Stack(super::image_stack(cx.solver, name, cx.platform, cx.op)?.0)
            }
        })
    }
}

/// What a COPY reads from, unresolved.
enum Source<'a> {
    /// The build context or a named directory context.
    Dir(PathBuf),
    /// An earlier stage.
    Stage(usize),
    /// An image.
    Image(&'a str),
}

fn source<'a>(cx: &StepContext, copy: &'a CopyOp) -> Source<'a> {
    match &copy.from {
        CopyFrom::Context => Source::Dir(cx.solver.sources.context().to_path_buf()),
        CopyFrom::Stage(i) => Source::Stage(*i),
        CopyFrom::Image(name) => match cx.solver.sources.named(name) {
            Some(rbuild_source::NamedContext::Dir(p)) => Source::Dir(p.clone()),
            _ => Source::Image(name),
        },
    }
}

/// A stage built earlier in this build.
fn built<'a>(cx: &'a StepContext, i: usize) -> Result<&'a StageResult, SolveError> {
    cx.done
        .get(&i)
        .ok_or_else(|| step_err(cx.op, StepError::StageNotBuilt(i)))
}

/// What the step reads from its source, as a digest, without unpacking anything: for a
/// directory, the contents of exactly the paths the sources name; for a stage its key, for
/// an image its manifest digest.
fn identity(cx: &StepContext, copy: &CopyOp) -> Result<Digest, SolveError> {
    let op = cx.op;
    let dir = match source(cx, copy) {
        Source::Dir(dir) => dir,
        Source::Stage(i) => return Ok(built(cx, i)?.key.clone()),
        Source::Image(name) => {
            return Ok(cx
                .solver
                .sources
                .image(name, cx.platform, cx.solver.store)
                .map_err(|e| step_err(op, e))?
                .manifest_digest);
        }
    };
    let mut paths = Vec::new();
    for src in &copy.srcs {
        let found =
            rbuild_snapshot::source_paths(&dir, src, &copy.exclude).map_err(|e| step_err(op, e))?;
        paths.extend(found);
    }
    cx.solver
        .sources
        .content_hash(&dir, &paths)
        .map_err(|source| step_err(op, StepError::Context { dir, source }))
}

/// Resolves `--chown=user[:group]` against the destination's /etc/passwd and /etc/group.
/// A name the image does not know is told to `warn` (for the step's vertex).
pub(crate) fn resolve_chown(
    stack: &LayerStack,
    spec: &str,
    warn: &mut dyn FnMut(String),
) -> Result<(u32, u32), ChownError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |path: &str| -> String {
        stack
            .resolve(path)
            .ok()
            .flatten()
            .and_then(|e| fs::read_to_string(e.host_path).ok())
            .unwrap_or_default()
    };
    let lookup = |db: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        db.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                let id = f.get(field).and_then(|x| x.parse().ok())?;
                Some((id, f.get(3).and_then(|x| x.parse().ok())))
            })?
        })
    };
    let passwd = read("/etc/passwd");
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        // A name the image does not know resolves to 0, with a warning, as in BuildKit.
        Err(_) => lookup(&passwd, user, 2).unwrap_or_else(|| {
            warn(format!(
                "user {user:?} is not in the image's /etc/passwd; using uid 0"
            ));
            (0, None)
        }),
    };
    let gid = match group {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&read("/etc/group"), g, 2)
                .map(|x| x.0)
                .unwrap_or_else(|| {
                    warn(format!(
                        "group {g:?} is not in the image's /etc/group; using gid 0"
                    ));
                    0
                }),
        },
    };
    Ok((uid, gid))
}

/// How a local ADD source is compressed, when it is a tar archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archive {
    Tar,
    Gzip,
}

/// A local archive an ADD extracts: opened once, through `rbuild-fsroot`, so what is
/// extracted is the file that was recognised, and no link leads out of the context.
#[derive(Debug)]
struct ArchiveFile {
    /// Its path, for messages.
    path: PathBuf,
    /// The open file.
    file: fs::File,
    /// How it is compressed.
    kind: Archive,
}

/// Splits ADD sources into local tar archives (extracted) and everything else (copied).
/// A wildcard is expanded first, so the archives it matches are extracted too (the other
/// matches are copied); directories and symlinks are copied as they are.
fn split_archives(
    context: &Path,
    srcs: &[String],
    exclude: &[String],
) -> Result<(Vec<ArchiveFile>, Vec<String>), ArchiveError> {
    let root = rbuild_fsroot::Root::open(context).map_err(|source| ArchiveError::Read {
        path: context.to_path_buf(),
        source,
    })?;
    let mut archives = Vec::new();
    let mut plain = Vec::new();
    for src in srcs {
        if !src.contains(['*', '?', '[', '\\']) {
            match local_archive(&root, src)? {
                Some(found) => archives.push(found),
                None => plain.push(src.clone()),
            }
            continue;
        }
        let matches =
            rbuild_snapshot::expand_sources(context, src, exclude).map_err(ArchiveError::Expand)?;
        let mut rest = Vec::new();
        for m in &matches {
            match local_archive(&root, &unescape(m))? {
                Some(found) => archives.push(found),
                None => rest.push(m.clone()),
            }
        }
        // Nothing extracted: the pattern is copied as written (and reports its own errors).
        if rest.len() == matches.len() {
            plain.push(src.clone());
        } else {
            plain.extend(rest);
        }
    }
    Ok((archives, plain))
}

/// The archive at `src` (relative to the context, links on the way resolved inside it)
/// when it is a regular file holding one.
fn local_archive(
    context: &rbuild_fsroot::Root,
    src: &str,
) -> Result<Option<ArchiveFile>, ArchiveError> {
    let rel = rbuild_graph::clean_path(&format!("/{src}"));
    let Ok(target) = context.at_in_root(Path::new(rel.trim_start_matches('/'))) else {
        return Ok(None);
    };
    if !matches!(target.stat(), Ok(Some(st)) if st.kind == rbuild_fsroot::FileKind::File) {
        return Ok(None);
    }
    let path = target.display();
    let file = target.open_file().map_err(|source| ArchiveError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(archive_kind(&file, &path)?.map(|kind| ArchiveFile { path, file, kind }))
}

/// Undoes the wildcard escaping of `rbuild_snapshot::expand_sources`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads the first bytes of `file` (at `path`): a tar archive (plain or gzip) to extract,
/// `None` for a file to copy as is, or an error for compressions rbuild cannot read.
fn archive_kind(file: &fs::File, path: &Path) -> Result<Option<Archive>, ArchiveError> {
    let read = |source| ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::new();
    rewound(file)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(read)?;
    let compressed = |kind: &'static str| {
        Err(ArchiveError::Unsupported {
            path: path.to_path_buf(),
            kind,
        })
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::new();
        let f = rewound(file).map_err(read)?;
        let _ = flate2::read::GzDecoder::new(f)
            .take(512)
            .read_to_end(&mut inner);
        return Ok(is_tar(&inner).then_some(Archive::Gzip));
    }
    if head.starts_with(b"BZh") {
        return compressed("bzip2");
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return compressed("xz");
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return compressed("zstd");
    }
    Ok(is_tar(&head).then_some(Archive::Tar))
}

/// `file` read from its start again (the descriptor is shared: one position).
fn rewound(file: &fs::File) -> std::io::Result<&fs::File> {
    use std::io::Seek;
    let mut f = file;
    f.rewind()?;
    Ok(file)
}

/// Whether a 512-byte block is a tar header (ustar or GNU magic).
fn is_tar(block: &[u8]) -> bool {
    block.len() >= 262 && &block[257..262] == b"ustar"
}

/// The directory an archive is extracted into, absolute in the image.
fn archive_dest(dest: &str, workdir: &str) -> String {
    if dest.starts_with('/') || workdir.is_empty() {
        format!("/{dest}")
    } else {
        format!("{workdir}/{dest}")
    }
}

/// Extracts the archives in turn into `dest` of the stage's tree: an overlay of `lowers`
/// with `out` as its upper directory, mounted below `tmp`, so that `out` receives exactly
/// the changes (whiteouts for what an entry replaced included). Device nodes an archive
/// held that could not be created are told to `warn`.
fn extract_all(
    archives: &[ArchiveFile],
    lowers: &[PathBuf],
    tmp: &Path,
    out: &Path,
    dest: &str,
    warn: &mut dyn FnMut(String),
) -> Result<(), ArchiveError> {
    let dirs = ["merged", "work", "empty"].map(|d| tmp.join(d));
    for dir in &dirs {
        fs::create_dir(dir).map_err(|source| ArchiveError::Read {
            path: dir.clone(),
            source,
        })?;
    }
    let [merged, work, empty] = dirs;
    let mount = rbuild_sandbox::OverlayMount::new(lowers, &empty, out, &work, &merged)
        .map_err(ArchiveError::Mount)?;
    for archive in archives {
        let stats = extract(archive, mount.path(), dest)?;
        let noted = [
            stats.skipped_devices.warning(),
            stats.unmapped_owners.warning(),
        ];
        for w in noted.into_iter().flatten() {
            let name = archive
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            warn(format!("{name}: {w}"));
        }
    }
    Ok(())
}

/// Extracts `archive` into `dest` inside the tree at `rootfs` (see
/// [`rbuild_snapshot::extract_archive`]).
fn extract(
    archive: &ArchiveFile,
    rootfs: &Path,
    dest: &str,
) -> Result<rbuild_snapshot::UnpackStats, ArchiveError> {
    let path = &archive.path;
    let file = rewound(&archive.file).map_err(|source| ArchiveError::Read {
        path: path.clone(),
        source,
    })?;
    let reader: Box<dyn Read + '_> = match archive.kind {
        Archive::Tar => Box::new(std::io::BufReader::new(file)),
        Archive::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            file,
        ))),
    };
    rbuild_snapshot::extract_archive(reader, rootfs, dest).map_err(|source| ArchiveError::Extract {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes heredoc sources as files (mode 0644, as BuildKit's inline documents).
fn write_inline(dir: &Path, files: &[InlineFile]) -> Result<(), SolveError> {
    fs::create_dir_all(dir).map_err(|e| SolveError::Io(dir.to_path_buf(), e))?;
    for f in files {
        let p = dir.join(&f.name);
        fs::write(&p, &f.content).map_err(|e| SolveError::Io(p.clone(), e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
            .map_err(|e| SolveError::Io(p.clone(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A header block with the ustar magic and two zero blocks: enough for detection.
    fn tar_bytes() -> Vec<u8> {
        let mut block = vec![0u8; 512];
        block[..1].copy_from_slice(b"f");
        block[257..263].copy_from_slice(b"ustar\0");
        block.extend(vec![0u8; 1024]);
        block
    }

    #[test]
    fn archives_are_recognised_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_bytes();
        fs::write(dir.path().join("a.tar"), &tar).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        fs::write(dir.path().join("a.bin"), gz.finish().unwrap()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"not a tar").unwrap();
        fs::write(dir.path().join("notes.gz"), gz.finish().unwrap()).unwrap();
        fs::write(dir.path().join("x.tar.bz2"), b"BZh91AY&SY").unwrap();
        fs::write(dir.path().join("plain.txt"), b"hello").unwrap();
        let kind = |name: &str| {
            let path = dir.path().join(name);
            archive_kind(&fs::File::open(&path).unwrap(), &path)
        };
        assert_eq!(kind("a.tar").unwrap(), Some(Archive::Tar));
        assert_eq!(kind("a.bin").unwrap(), Some(Archive::Gzip));
        assert_eq!(kind("notes.gz").unwrap(), None);
        assert_eq!(kind("plain.txt").unwrap(), None);
        let e = kind("x.tar.bz2").unwrap_err().to_string();
        assert!(
            e.contains("bzip2-compressed archives are not supported"),
            "{e}"
        );
        let found = |archives: Vec<ArchiveFile>| -> Vec<(PathBuf, Archive)> {
            archives.into_iter().map(|a| (a.path, a.kind)).collect()
        };
        let srcs = vec!["a.tar".to_string(), "plain.txt".into(), "*.bin".into()];
        let (archives, plain) = split_archives(dir.path(), &srcs, &[]).unwrap();
        assert_eq!(
            found(archives),
            vec![
                (dir.path().join("a.tar"), Archive::Tar),
                (dir.path().join("a.bin"), Archive::Gzip)
            ]
        );
        assert_eq!(plain, vec!["plain.txt".to_string()]);
        let srcs = vec!["*.t*".to_string()];
        let (archives, plain) =
            split_archives(dir.path(), &srcs, &["x*".to_string(), "p*".into()]).unwrap();
        assert_eq!(
            found(archives),
            vec![(dir.path().join("a.tar"), Archive::Tar)]
        );
        assert!(plain.is_empty(), "{plain:?}");
        let srcs = vec!["p*.txt".to_string()];
        let (archives, plain) = split_archives(dir.path(), &srcs, &[]).unwrap();
        assert!(archives.is_empty());
        assert_eq!(plain, vec!["p*.txt".to_string()]);
    }

    /// A context directory linked out of the context leads nowhere outside it: the archive
    /// behind it is not found (and so copied as written, failing as a missing source).
    #[test]
    fn archives_behind_links_resolve_inside_the_context() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("secret.tar"), tar_bytes()).unwrap();
        let ctx = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), ctx.path().join("out")).unwrap();
        fs::create_dir(ctx.path().join("in")).unwrap();
        fs::write(ctx.path().join("in/real.tar"), tar_bytes()).unwrap();
        std::os::unix::fs::symlink("/in", ctx.path().join("abs")).unwrap();
        let srcs = vec!["out/secret.tar".to_string(), "abs/real.tar".into()];
        let (archives, plain) = split_archives(ctx.path(), &srcs, &[]).unwrap();
        assert_eq!(plain, vec!["out/secret.tar".to_string()]);
        assert_eq!(archives.len(), 1);
        assert_eq!(archives[0].kind, Archive::Tar);
    }
}
