//! `canopy-metabroker`: runs one bridge per `--config` file until SIGINT/SIGTERM.
//!
//! Owns the command line, logging set-up and the exit codes: 2 for a configuration the
//! bridges cannot start with (one line naming file, line and key; never a backtrace), 1 when
//! a bridge cannot be started, 0 after a clean stop.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Bridges MQTT brokers by routes: forwards topics between a local and a remote broker,
/// with remaps, an on-disk queue while a side is away, and a loop guard.
///
/// Give `--config` once per remote broker. The file format is described in
/// docs/metabroker.md; `--check-config` checks the files and exits.
#[derive(Parser, Debug)]
#[command(name = "canopy-metabroker", version)]
struct Args {
    /// Bridge configuration file (TOML); repeat for several remotes in one process.
    #[arg(long = "config", short = 'c', required = true, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Log filter when RUST_LOG is not set (`info`, `debug`, `canopy_metabroker=trace`).
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log_level: String,
    /// Check the configuration files and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut configs = Vec::with_capacity(args.config.len());
    for path in &args.config {
        match canopy_metabroker::BridgeConfig::load(path) {
            Ok(c) => configs.push(c),
            Err(e) => {
                eprintln!("canopy-metabroker: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("canopy-metabroker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let handles = match canopy_metabroker::spawn(configs) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("canopy-metabroker: starting bridges: {e}");
                return ExitCode::FAILURE;
            }
        };
        for h in &handles {
            tracing::info!(bridge = h.name(), "bridge started");
        }
        shutdown_signal().await;
        for h in handles {
            h.shutdown().await;
        }
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
