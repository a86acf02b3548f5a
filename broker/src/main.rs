//! `canopy-broker`: runs the broker until SIGTERM or SIGINT.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use canopy_broker::Config;
use canopy_model::config_error::{ConfigError, Violation};
use clap::Parser;

/// Canopy MQTT broker (MQTT 3.1, 3.1.1 and 5.0).
///
/// With no arguments it serves MQTT on 127.0.0.1:1883 with its data in ./canopy-data.
#[derive(Debug, Parser)]
#[command(name = "canopy-broker", version, about, long_about = None)]
struct Args {
    /// TOML configuration file (see docs/configuration.md); every key has a default.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `canopy_broker=trace` (overrides RUST_LOG and
    /// the file's `log_level`).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,

    /// Check the configuration file and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => match load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("canopy-broker: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if args.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    init_logging(args.log_level.as_deref(), config.log_level.as_deref());
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr: the log may be the same stream.
            eprintln!("canopy-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and validates `path`, then checks that every file it names can be opened, so
/// `--check-config` catches a missing `password_file` before a start would.
fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    let config = Config::from_toml(&text, &origin)?;
    for (key, file) in config.named_files() {
        if let Err(e) = std::fs::File::open(&file) {
            let violation = Violation {
                key,
                message: format!("cannot read {}: {e}", file.display()),
            };
            return Err(canopy_model::config_error::locate(
                violation, &text, &origin,
            ));
        }
    }
    Ok(config)
}

/// Log filter precedence: `--log-level`, then `RUST_LOG`, then the file's `log_level`,
/// then `info`.
fn init_logging(flag: Option<&str>, file: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = flag
        .and_then(|l| EnvFilter::try_new(l).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .or_else(|| file.and_then(|l| EnvFilter::try_new(l).ok()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        canopy_broker::run(config, shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; stopping"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; stopping"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
