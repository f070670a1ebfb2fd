//! A small driver that runs one step through the sandbox, the way the rbuild binary
//! does: helper dispatch, build namespace, emulation, run. The integration tests
//! drive it; it is also handy for trying a rootfs by hand.
//!
//! Usage: rbuild-sandbox-probe --scratch DIR (--lower DIR... --upper DIR --work DIR | --dir DIR)
//!        [--platform P] [--run-dir DIR] [--user U] [--cwd C] [--env K=V]... [--hostname H]
//!        [--hosts TEXT] [--resolv TEXT] [--network none|host] [--no-emulation] [--security sandbox|insecure]
//!        [--bind SRC:TARGET[:ro]]... [--tmpfs TARGET[:SIZE]]... -- CMD ARGS...
//!        rbuild-sandbox-probe --platforms
//!
//! Step output goes to stdout; stderr gets `emulation: ...` lines and finally
//! `outcome: {"status":...,"created":[...]}` or `error: MESSAGE` (exit status 2).

use rbuild_core::Platform;
use rbuild_sandbox::{
    Emulation, INIT_ARG, Mount, Network, PlatformSupport, Rootfs, RunSpec, Security,
};
use std::io::Write;
use std::path::PathBuf;

struct Args {
    spec: RunSpec,
    run_dir: PathBuf,
    no_emulation: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut lower = Vec::new();
    let (mut upper, mut work, mut dir, mut scratch, mut run_dir) = (None, None, None, None, None);
    let mut spec_platform = Platform::host();
    let (mut user, mut cwd, mut hostname) = (String::new(), "/".to_string(), "sandbox".to_string());
    let (mut hosts, mut resolv) = (
        "127.0.0.1 localhost\n".to_string(),
        "nameserver 127.0.0.1\n".to_string(),
    );
    let mut env = Vec::new();
    let mut network = Network::Host;
    let mut no_emulation = false;
    let mut security = Security::Sandbox;
    let mut argv = Vec::new();
    let mut mounts = Vec::new();
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--lower" => lower.push(PathBuf::from(value()?)),
            "--upper" => upper = Some(PathBuf::from(value()?)),
            "--work" => work = Some(PathBuf::from(value()?)),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--scratch" => scratch = Some(PathBuf::from(value()?)),
            "--run-dir" => run_dir = Some(PathBuf::from(value()?)),
            "--platform" => spec_platform = value()?.parse().map_err(|e| format!("{e}"))?,
            "--user" => user = value()?,
            "--cwd" => cwd = value()?,
            "--env" => env.push(value()?),
            "--hostname" => hostname = value()?,
            "--hosts" => hosts = value()?,
            "--resolv" => resolv = value()?,
            "--network" => {
                network = match value()?.as_str() {
                    "none" => Network::None,
                    "host" => Network::Host,
                    other => return Err(format!("unknown network {other}")),
                }
            }
            "--no-emulation" => no_emulation = true,
            "--security" => {
                security = match value()?.as_str() {
                    "sandbox" => Security::Sandbox,
                    "insecure" => Security::Insecure,
                    other => return Err(format!("unknown security mode {other}")),
                }
            }
            "--bind" => {
                let v = value()?;
                let mut parts = v.split(':');
                let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
                    return Err(format!("bad --bind {v}"));
                };
                mounts.push(Mount::Bind {
                    source: PathBuf::from(source),
                    target: target.to_string(),
                    readonly: parts.next() == Some("ro"),
                });
            }
            "--tmpfs" => {
                let v = value()?;
                let (target, size) = match v.split_once(':') {
                    Some((t, n)) => (t, Some(n.parse().map_err(|_| format!("bad size {n}"))?)),
                    None => (v.as_str(), None),
                };
                mounts.push(Mount::Tmpfs {
                    target: target.to_string(),
                    size,
                });
            }
            "--" => {
                argv = args.by_ref().collect();
                break;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let scratch = scratch.ok_or("--scratch is required")?;
    let rootfs = match (dir, upper, work) {
        (Some(d), None, None) => Rootfs::Dir(d),
        (None, Some(upper), Some(work)) => Rootfs::Overlay { lower, upper, work },
        _ => return Err("give either --dir or --upper and --work".into()),
    };
    let run_dir = run_dir.unwrap_or_else(|| scratch.with_extension("run"));
    Ok(Args {
        spec: RunSpec {
            rootfs,
            argv,
            env,
            cwd,
            user,
            hostname,
            hosts,
            resolv_conf: resolv,
            network,
            platform: spec_platform,
            scratch_dir: scratch,
            mounts,
            security,
        },
        run_dir,
        no_emulation,
    })
}

fn describe(support: &PlatformSupport) -> String {
    match support {
        PlatformSupport::Native => "native".into(),
        PlatformSupport::Emulated {
            interpreter,
            private,
        } => {
            format!(
                "emulated by {} (private handler: {private})",
                interpreter.display()
            )
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(INIT_ARG) {
        rbuild_sandbox::init_main();
    }
    if std::env::args().nth(1).as_deref() == Some("--platforms") {
        for line in rbuild_sandbox::platform_report() {
            println!("{line}");
        }
        return;
    }
    if let Err(e) = rbuild_sandbox::enter_build_namespace() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    if let Err(e) = probe() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn probe() -> Result<(), String> {
    let args = parse_args()?;
    let maps = rbuild_sandbox::id_maps().map_err(|e| e.to_string())?;
    eprintln!("uid_map: {}", rbuild_sandbox::format_map(&maps.uid).trim());
    let emulation = if args.no_emulation {
        Emulation::native_only()
    } else {
        std::fs::create_dir_all(&args.run_dir).map_err(|e| e.to_string())?;
        Emulation::prepare(std::slice::from_ref(&args.spec.platform), &args.run_dir)
            .map_err(|e| e.to_string())?
    };
    for (platform, support) in emulation.platforms() {
        eprintln!("emulation: {platform} {}", describe(support));
    }
    let mut stdout = std::io::stdout();
    let outcome = rbuild_sandbox::run(&args.spec, &emulation, &mut |bytes| {
        let _ = stdout.write_all(bytes);
        let _ = stdout.flush();
    })
    .map_err(|e| e.to_string())?;
    let status = match outcome.status {
        rbuild_sandbox::ExitStatus::Code(c) => format!("{{\"code\":{c}}}"),
        rbuild_sandbox::ExitStatus::Signal(s) => format!("{{\"signal\":{s}}}"),
    };
    let created: Vec<String> = outcome
        .created_paths
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    eprintln!(
        "outcome: {{\"status\":{status},\"created\":[{}]}}",
        created.join(",")
    );
    Ok(())
}
