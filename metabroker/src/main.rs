//! `canopy-metabroker`: runs one bridge per `--config` file until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Bridges MQTT brokers by routes (SPEC §4). Give `--config` once per remote.
#[derive(Parser, Debug)]
#[command(name = "canopy-metabroker", version)]
struct Args {
    /// Bridge configuration file (TOML); repeat for several remotes in one process.
    #[arg(long = "config", short = 'c', required = true)]
    config: Vec<PathBuf>,
    /// Log filter when RUST_LOG is not set.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let configs = args
        .config
        .iter()
        .map(|p| canopy_metabroker::BridgeConfig::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let handles = canopy_metabroker::spawn(configs).context("starting bridges")?;
    for h in &handles {
        tracing::info!(bridge = h.name(), "bridge started");
    }
    shutdown_signal().await;
    for h in handles {
        h.shutdown().await;
    }
    Ok(())
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
