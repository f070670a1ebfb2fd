//! `rbuild images`, `image ...`, `system check`, `pull`, `push`.

use crate::cli::Cli;
use crate::cli_images::{ImageCommand, LsArgs, SaveArgs};
use crate::image::inspect;
use anyhow::{Context, Result, bail};
use rbuild_core::{Digest, Reference};
use rbuild_images::{ImageStore, Pass, archive, fsck, save};
use std::collections::HashMap;
use std::process::ExitCode;

/// Runs one `rbuild image` subcommand.
pub fn dispatch(cli: &Cli, cmd: &ImageCommand) -> Result<ExitCode> {
    match cmd {
        ImageCommand::Ls(args) => ls(cli, args),
        ImageCommand::Rm { images, .. } => rm(cli, images),
        ImageCommand::Tag { source, target } => tag(cli, source, target),
        ImageCommand::Inspect {
            format,
            platform,
            images,
        } => inspect::run(cli, images, format.as_deref(), platform.as_ref()),
        ImageCommand::Prune { .. } => crate::image::prune::run(cli),
        ImageCommand::Save(args) => save_cmd(cli, args),
        ImageCommand::Load { input, quiet } => load(cli, input, *quiet),
        ImageCommand::Fsck => check(cli),
    }
}

/// Opens the store of the state directory under its shared lock.
pub(crate) fn open_store(cli: &Cli) -> Result<(ImageStore, nix::fcntl::Flock<std::fs::File>)> {
    open(cli)
}

fn open(cli: &Cli) -> Result<(ImageStore, nix::fcntl::Flock<std::fs::File>)> {
    let state = crate::state::root_dir(cli)?;
    let lock = state.lock_for_build()?;
    Ok((crate::state::images(&state)?, lock))
}

/// `rbuild images` / `image ls`: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE, PLATFORMS.
pub fn ls(cli: &Cli, args: &LsArgs) -> Result<ExitCode> {
    let (images, _lock) = open(cli)?;
    let filter = args
        .repository
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let mut rows = vec![vec![
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
        "PLATFORMS".into(),
    ]];
    // Names of one image share its summary: each image is read once.
    let mut shown: HashMap<Digest, Vec<String>> = HashMap::new();
    let mut pass = Pass::new(images.blobs());
    for record in images.list()? {
        let r = record.reference()?;
        if let Some(f) = &filter
            && (f.name() != r.name()
                || (args.repository.as_deref().is_some_and(|t| t.contains(':'))
                    && f.tag() != r.tag()))
        {
            continue;
        }
        let id = if args.no_trunc {
            record.target.digest.to_string()
        } else {
            record.target.digest.hex()[..12].to_string()
        };
        if args.quiet {
            println!("{id}");
            continue;
        }
        let columns = match shown.get(&record.target.digest) {
            Some(c) => c.clone(),
            None => {
                let c = summary_columns(&mut pass, &record.target)?;
                shown.insert(record.target.digest.clone(), c.clone());
                c
            }
        };
        let mut row = vec![
            r.familiar_name(),
            r.tag().unwrap_or("<none>").to_string(),
            id,
        ];
        row.extend(columns);
        rows.push(row);
    }
    if !args.quiet {
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// CREATED, SIZE and PLATFORMS of an image.
fn summary_columns(pass: &mut Pass<'_>, target: &rbuild_images::Target) -> Result<Vec<String>> {
    let s = inspect::summary(pass, target)?;
    let platforms = s.platforms.iter().map(|p| p.platform.to_string());
    Ok(vec![
        s.created_ago(),
        inspect::human_size(s.size),
        platforms.collect::<Vec<_>>().join(","),
    ])
}

/// Columns padded to their widest cell plus three spaces, as docker's tabwriter does.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < cols {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `image rm`: removes names (every name of an image given by id).
fn rm(cli: &Cli, texts: &[String]) -> Result<ExitCode> {
    let (images, _lock) = open(cli)?;
    let mut failed = false;
    for text in texts {
        match untag(&images, text) {
            Ok(names) => {
                for n in names {
                    println!("Untagged: {n}");
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn untag(images: &ImageStore, text: &str) -> Result<Vec<String>> {
    if let Ok(r) = Reference::parse(text)
        && r.digest().is_none()
        && let Some(rec) = images.remove(&r)?
    {
        return Ok(vec![rec.reference()?.familiar()]);
    }
    let target = images.resolve(text)?;
    let mut out = Vec::new();
    for name in images.names_of(&target.digest)? {
        let r = Reference::parse(&name)?;
        images.remove(&r)?;
        out.push(r.familiar());
    }
    Ok(out)
}

/// `image tag SOURCE TARGET`.
fn tag(cli: &Cli, source: &str, target: &str) -> Result<ExitCode> {
    let (images, _lock) = open(cli)?;
    let t = images.resolve(source)?;
    let r = Reference::parse(target)?;
    if r.digest().is_some() {
        bail!("{target}: a tag cannot contain a digest");
    }
    images.set(&r, &t)?;
    Ok(ExitCode::SUCCESS)
}

/// `image save`.
fn save_cmd(cli: &Cli, args: &SaveArgs) -> Result<ExitCode> {
    let (images, _lock) = open(cli)?;
    let format = match args.format.as_str() {
        "docker-archive" => save::Format::Docker,
        _ => save::Format::Oci,
    };
    let mut items = Vec::new();
    let mut platforms = args.platform.clone();
    if let Some(dockerfile) = &args.from_dockerfile {
        let (bases, used) = crate::build::airgap::bases(&images, dockerfile, args)?;
        items.extend(bases);
        if platforms.is_empty() {
            platforms = used;
        }
    }
    for text in &args.images {
        items.push(save::item(&images, text)?);
    }
    if items.is_empty() {
        bail!("nothing to save: name images or give --from-dockerfile");
    }
    save::save(&images, &items, &platforms, format, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `image load -i FILE`.
fn load(cli: &Cli, input: &std::path::Path, quiet: bool) -> Result<ExitCode> {
    let (images, _lock) = open(cli)?;
    let loaded = archive::load(&images, input)?;
    images.blobs().sync()?;
    for l in loaded {
        if l.names.is_empty() {
            println!("Loaded image ID: {}", l.target.digest);
        }
        for n in &l.names {
            let shown = Reference::parse(n)?.familiar();
            if quiet {
                println!("{shown}");
            } else {
                println!("Loaded image: {shown}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `system check` / `image fsck`.
pub fn check(cli: &Cli) -> Result<ExitCode> {
    let (images, _lock) = open(cli)?;
    let report = fsck::check(&images)?;
    for p in &report.problems {
        println!("{p}");
    }
    println!(
        "{} images, {} blobs verified: {}",
        report.images,
        report.blobs,
        if report.ok() {
            "ok".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
