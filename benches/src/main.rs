//! canopy-bench: command line of the load generator; see the library for the scenarios.
//!
//! Owns argument parsing and printing exactly one JSON result line on stdout. It never
//! prints anything else on stdout (progress bars and errors go to stderr).

use std::process::ExitCode;
use std::time::Duration;

use canopy_bench::{Options, Scenario, progress::Progress};
use canopy_proto::QoS;
use clap::Parser;

/// Load generator for MQTT brokers on this machine (loopback targets only).
#[derive(Debug, Parser)]
#[command(name = "canopy-bench", version)]
struct Cli {
    /// Scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Broker host; must resolve to loopback addresses only.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, short, default_value_t = 1883)]
    port: u16,
    /// QoS of publishes and subscriptions (0 or 1); `durable` defaults to 1.
    #[arg(long, short)]
    qos: Option<u8>,
    /// Closed loop: most messages a publisher keeps outstanding end to end.
    #[arg(long, default_value_t = 100)]
    inflight: usize,
    /// Open loop: messages per second over all publishers (`latency` defaults to 1000).
    #[arg(long)]
    rate: Option<f64>,
    /// How long to publish, e.g. `10s` (default 10s when no --count).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// How many messages to publish over all publishers.
    #[arg(long)]
    count: Option<u64>,
    /// Publishers (fanin/durable/wildcard: 8, others: 1).
    #[arg(long)]
    publishers: Option<usize>,
    /// Subscribers (fanout: 100).
    #[arg(long)]
    subscribers: Option<usize>,
    /// Payload size in bytes (at least 20 for latency stamps).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Idle connections (connections: 10000).
    #[arg(long)]
    connections: Option<usize>,
    /// Wildcard filters (wildcard: 10000).
    #[arg(long)]
    filters: Option<usize>,
    /// Retained messages (retained: 100000).
    #[arg(long)]
    retained: Option<usize>,
    /// Concurrent handshakes in `connections`.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// How long delivery may stall before what is missing counts as lost.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    drain: Duration,
    /// PID of the broker, to report its RSS from /proc/<pid>/status.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Label copied into the result (broker name, durability mode, ...).
    #[arg(long)]
    label: Option<String>,
    /// Never draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("canopy-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("canopy-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    let target = canopy_bench::target(&cli.host, cli.port).await?;
    let mut opts = Options::new(cli.scenario, target);
    if let Some(q) = cli.qos {
        opts.qos = match q {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => anyhow::bail!("--qos must be 0 or 1"),
        };
    }
    opts.inflight = cli.inflight;
    opts.rate = cli.rate;
    opts.duration = cli.duration;
    opts.count = cli.count;
    opts.publishers = cli.publishers;
    opts.subscribers = cli.subscribers;
    opts.payload = cli.payload;
    opts.connections = cli.connections;
    opts.filters = cli.filters;
    opts.retained = cli.retained;
    opts.connect_concurrency = cli.connect_concurrency;
    opts.drain = cli.drain;
    opts.broker_pid = cli.broker_pid;
    opts.label = cli.label;
    let report = canopy_bench::run(&opts, Progress::new(!cli.no_progress)).await?;
    Ok(serde_json::to_string(&report)?)
}
