//! `rbuild login` and `rbuild logout`, as `docker login` / `docker logout`.

use crate::cli::LoginArgs;
use anyhow::{Context, Result, bail};
use rbuild_core::reference::{DOCKER_HUB, normalize_registry};
use rbuild_registry::login::Stored;
use rbuild_registry::{Credential, Registry};
use std::io::Read;
use std::process::ExitCode;

fn registry_name(given: Option<&str>) -> String {
    normalize_registry(given.unwrap_or(DOCKER_HUB))
}

/// Verifies the credentials against the registry, then saves them.
pub fn login(args: &LoginArgs) -> Result<ExitCode> {
    let registry = registry_name(args.registry.as_deref());
    let username = args
        .username
        .clone()
        .filter(|u| !u.is_empty())
        .context("rbuild login needs --username (and --password-stdin)")?;
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut p)
                .context("reading the password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give the password on standard input with --password-stdin"),
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let credential = Credential {
        username,
        secret: password,
    };
    Registry::new(crate::registry::load_config()?)
        .verify_login(&registry, &credential)
        .with_context(|| format!("logging in to {registry}"))?;
    match rbuild_registry::login::store(&registry, &credential)? {
        Stored::File(p) => eprintln!("credentials saved in {}", p.display()),
        Stored::Helper(h) => eprintln!("credentials saved with docker-credential-{h}"),
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Removes the saved credentials of a registry.
pub fn logout(registry: Option<&str>) -> Result<ExitCode> {
    let registry = registry_name(registry);
    if rbuild_registry::login::remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
