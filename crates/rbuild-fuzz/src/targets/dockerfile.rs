//! `dockerfile-parse`: the Dockerfile parser on arbitrary bytes, then — for what parses —
//! the debug JSON view, lowering through `rbuild-graph` (bases from a fixed in-memory
//! table, so no I/O) and the lint pass. Lowering must be deterministic.

use rbuild_core::Platform;
use rbuild_graph::{BaseResolver, LowerOptions};
use rbuild_image::ImageConfig;
use std::collections::BTreeMap;

/// Dockerfile keywords, directives, flags and the syntax around them.
pub(crate) static DICTIONARY: &[&[u8]] = &[
    b"FROM ",
    b"RUN ",
    b"CMD ",
    b"LABEL ",
    b"MAINTAINER ",
    b"EXPOSE ",
    b"ENV ",
    b"ADD ",
    b"COPY ",
    b"ENTRYPOINT ",
    b"VOLUME ",
    b"USER ",
    b"WORKDIR ",
    b"ARG ",
    b"ONBUILD ",
    b"STOPSIGNAL ",
    b"HEALTHCHECK ",
    b"SHELL ",
    b" AS ",
    b"scratch",
    b"base",
    b"onbuild-base",
    b"# syntax=docker/dockerfile:1\n",
    b"# escape=`\n",
    b"# escape=\\\n",
    b"# check=error=true\n",
    b"# check=skip=all\n",
    b"\\\n",
    b"`\n",
    b"<<EOF\n",
    b"<<-EOF\n",
    b"<<'EOF'\n",
    b"<<\"EOF\"\n",
    b"\nEOF\n",
    b"<<",
    b"${",
    b"}",
    b"$",
    b"[\"",
    b"\"]",
    b"\", \"",
    b"--from=",
    b"--from=0 ",
    b"--chown=1:1 ",
    b"--chmod=755 ",
    b"--chmod=u+x ",
    b"--link ",
    b"--parents ",
    b"--exclude=*.md ",
    b"--platform=$BUILDPLATFORM ",
    b"--mount=type=cache,target=/c ",
    b"--mount=type=bind,from=0,target=/b ",
    b"--mount=type=secret,id=s ",
    b"--network=none ",
    b"--interval=1s ",
    b"NONE",
    b"TARGETARCH",
    b"BUILDPLATFORM",
    b"=",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"#",
    b"\xef\xbb\xbf",
    b"\"",
    b"'",
];

/// Base images known to the fuzz resolver; anything else fails to resolve.
struct FixedBases;

impl BaseResolver for FixedBases {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, rbuild_graph::ResolveFailure> {
        let mut c = ImageConfig {
            architecture: platform.architecture().to_string(),
            os: platform.os().to_string(),
            ..Default::default()
        };
        c.set_env("PATH", "/usr/bin:/bin");
        match reference.split(':').next().unwrap_or_default() {
            "base" | "alpine" | "busybox" | "debian" => {
                c.config.cmd = Some(vec!["sh".into()]);
                c.config.working_dir = Some("/srv".into());
                c.set_env("HOME", "/root");
            }
            "onbuild-base" => {
                c.config.on_build = Some(vec![
                    "RUN echo $HOME".into(),
                    "COPY . /app".into(),
                    "ENV X=${PATH:-y}".into(),
                    "ONBUILD RUN nested".into(),
                ]);
            }
            other => return Err(format!("image not found: {other}").into()),
        }
        Ok(c)
    }
}

const PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"];

/// Runs one input: the whole input is the Dockerfile.
pub fn dockerfile_parse(data: &[u8]) -> u64 {
    check_url_names(data);
    let df = match rbuild_dockerfile::parse("Dockerfile", data) {
        Ok(df) => df,
        Err(diags) => {
            let rendered = diags.to_string();
            assert!(!diags.0.is_empty(), "parse failed without a diagnostic");
            return crate::fingerprint((0u8, diags.0.len().min(4), first_words(&rendered)));
        }
    };
    let json = rbuild_dockerfile::to_debug_json(&df);
    let _ = serde_json::to_string(&json);
    for w in &df.warnings {
        let _ = w.to_string();
    }
    let platform = PLATFORMS[crate::fingerprint(data) as usize % PLATFORMS.len()];
    let platform: Platform = match platform.parse() {
        Ok(p) => p,
        Err(e) => panic!("built-in platform does not parse: {e}"),
    };
    let opts = LowerOptions {
        target_platform: platform,
        build_platform: Platform::new("linux", "amd64", None),
        build_args: BTreeMap::from([("A".to_string(), "1".to_string())]),
        target: None,
        all_stages: false,
    };
    let lowered = rbuild_graph::lower(&df, &opts, &mut FixedBases);
    let again = rbuild_graph::lower(&df, &opts, &mut FixedBases);
    let outcome = match (&lowered, &again) {
        (Ok(a), Ok(b)) => {
            let (ja, jb) = (serde_json::to_string(a), serde_json::to_string(b));
            assert_eq!(ja.ok(), jb.ok(), "lowering is not deterministic");
            let _ = a.build_order();
            let _ = rbuild_graph::render_lints(&a.lints);
            let mut rules: Vec<&str> = a.lints.iter().map(|l| l.rule).collect();
            rules.sort_unstable();
            rules.dedup();
            (1u8, a.stages.len().min(4), rules.join(","))
        }
        (Err(a), Err(b)) => {
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "lowering errors are not deterministic"
            );
            (2u8, a.0.len().min(2), first_words(&a.to_string()))
        }
        _ => panic!("lowering the same Dockerfile twice gave different results"),
    };
    let (lints, errors) = rbuild_graph::check(&df, &opts, &mut FixedBases);
    let _ = rbuild_graph::render_lints(&lints);
    for e in &errors {
        let _ = e.to_string();
    }
    crate::fingerprint((outcome, lints.is_empty()))
}

/// The input read as a URL's path: the name an `ADD <url>` file gets never holds a `/`, and
/// the name it is stored as is never empty, `.` or `..`.
fn check_url_names(data: &[u8]) {
    use rbuild_graph::url_name::{stored_file_name, url_file_name};
    let url = format!("http://h/{}", String::from_utf8_lossy(data));
    let name = url_file_name(&url);
    assert!(!name.contains('/'), "URL name {name:?} holds a slash");
    let stored = stored_file_name(&name);
    assert!(
        !stored.contains('/') && !matches!(stored.as_str(), "" | "." | ".."),
        "stored name {stored:?}"
    );
}

/// The start of a message's first line up to anything quoted or a colon, digits dropped, so that
/// errors of one kind share a fingerprint whatever names they mention.
fn first_words(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    let text = line.split_once(": ").map_or(line, |(_, rest)| rest);
    text.chars()
        .take_while(|c| !matches!(c, '"' | '\'' | '`' | ':'))
        .filter(|c| !c.is_ascii_digit())
        .take(32)
        .collect()
}
