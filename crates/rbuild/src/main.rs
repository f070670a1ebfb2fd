//! The `rbuild` command.

mod build;
mod cli;
mod cli_images;
mod image;
mod login;
mod progress;
mod prune;
mod registry;
mod run;
mod state;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(rbuild_sandbox::INIT_ARG) {
        rbuild_sandbox::init_main();
    }
    let cli = cli::Cli::parse();
    init_logging(cli.debug);
    registry::set_timeouts(&cli);
    let result = match &cli.command {
        cli::Command::Build(args) => build::run(&cli, args),
        cli::Command::Debug(cli::DebugCommand::Parse { file, json }) => debug_parse(file, *json),
        cli::Command::Prune { cache_mounts } => prune(&cli, *cache_mounts),
        cli::Command::Run(args) => run::run(&cli, args),
        cli::Command::Images(args) => image::cmd::ls(&cli, args),
        cli::Command::Image(cmd) => image::cmd::dispatch(&cli, cmd),
        cli::Command::Manifest(cmd) => image::manifest::run(&cli, cmd),
        cli::Command::Pull(args) => image::transfer::pull(&cli, args),
        cli::Command::Push(args) => image::transfer::push(&cli, args),
        cli::Command::System(cli_images::SystemCommand::Check) => image::cmd::check(&cli),
        cli::Command::Login(args) => login::login(args),
        cli::Command::Logout { registry } => login::logout(registry.as_deref()),
        cli::Command::Imagetools(cmd) => image::imagetools::run(cmd),
        cli::Command::Platforms => {
            for line in rbuild_sandbox::platform_report() {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Errors quote Dockerfiles, archives and servers: no control sequence of theirs
            // reaches the terminal.
            let text = rbuild_core::text::sanitize_lines(&render_error(&e), MAX_ERROR_LINE);
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}

/// The longest line of an error message that is shown, in characters.
const MAX_ERROR_LINE: usize = 8192;

/// An error and its causes on one line, each cause once: a cause whose text the message
/// already contains (typed errors often show their source) is not repeated.
fn render_error(e: &anyhow::Error) -> String {
    rbuild_core::text::error_chain(e.as_ref())
}

fn prune(cli: &cli::Cli, cache_mounts: bool) -> anyhow::Result<ExitCode> {
    let root = cli.root.clone().unwrap_or_else(build::default_root);
    if !root.exists() {
        println!("Total: 0.0 MB reclaimed");
        return Ok(ExitCode::SUCCESS);
    }
    let state = rbuild_solver::StateDir::create(&root)?;
    // SAFETY: single-threaded until the namespace is entered.
    unsafe { std::env::set_var("RBUILD_ROOT", state.root()) };
    rbuild_sandbox::enter_build_namespace()?;
    prune::run(&state, cache_mounts)
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RBUILD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn debug_parse(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let src =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    let name = file.display().to_string();
    let df = match rbuild_dockerfile::parse(&name, &src) {
        Ok(df) => df,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &df.warnings {
        eprintln!("{w}");
    }
    let value = rbuild_dockerfile::to_debug_json(&df);
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for inst in &df.instructions {
            println!(
                "{}:{}: {}",
                name,
                inst.span.line,
                inst.original.lines().next().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::render_error;

    #[derive(Debug, thiserror::Error)]
    #[error("chmod /x: {source}")]
    struct WithSource {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_the_message_already_shows_is_not_repeated() {
        let inner = WithSource {
            // EACCES
            source: std::io::Error::from_raw_os_error(13),
        };
        let e = anyhow::Error::new(inner).context("exporting");
        assert_eq!(
            render_error(&e),
            "exporting: chmod /x: Permission denied (os error 13)"
        );
    }
}
