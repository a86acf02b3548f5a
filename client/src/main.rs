//! The `canopy` binary: parses the command line, sets up logging, runs the subcommand and
//! turns its outcome into an exit status. All behaviour lives in the `canopy_client` library.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use canopy_client::cli::{Cli, Command};
use canopy_client::{
    CliError, cluster, config_doc, passwd, presence, publish, resource, subscribe,
};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_logging(cli.log_level.as_deref()) {
        eprintln!("Error: {error:#}");
        return ExitCode::from(1);
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .map(|runtime| runtime.block_on(run(cli.command)));
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(CliError::Timeout)) => {
            eprintln!("Timed out");
            ExitCode::from(canopy_client::error::EXIT_TIMEOUT as u8)
        }
        Ok(Err(error)) => {
            eprintln!("Error: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Pub(args) => publish::run(publish::PublishPlan::from_args(&args)?).await,
        Command::Sub(args) => subscribe::run(subscribe::SubscribePlan::from_args(&args)?).await,
        Command::Config(args) => config_doc::run(args).await,
        Command::Resource(args) => resource::run(args).await,
        Command::Presence(args) => presence::run(args).await,
        Command::Passwd(args) => passwd::run(&args),
        Command::Cluster(args) => cluster::run(args).await,
    }
}

/// `--log-level` wins, then `RUST_LOG`, then `warn` (`error` for rumqttc). Logs go to
/// stderr, never stdout.
fn init_logging(level: Option<&str>) -> Result<()> {
    let filter = match level {
        Some(directive) => EnvFilter::try_new(directive)?,
        // rumqttc warns about refused acks that the command reports itself, more clearly.
        None => EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new("warn,rumqttc=error"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
