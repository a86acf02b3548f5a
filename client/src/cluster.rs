//! `canopy cluster status|assign|drain` (docs/cluster.md): reads the nodes' load records
//! (`$cluster/nodes/+`), pins a client to a node (`$cluster/assign/<client-id>`) and drains
//! a node (`$cluster/drain/<node-id>`), all as retained documents.
//!
//! Owns these commands' grammar, the status table and the topics they write. Must never
//! decide assignments itself: the brokers apply the rule (`canopy_model::cluster`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use canopy_model::cluster::{self, NodeRecord};
use clap::{Args, Subcommand};

use crate::cli::{ConnectArgs, Qos};
use crate::error::CliError;
use crate::link::{FilterRequest, Link, LinkEvent, SubscribeRequest};
use crate::options::ConnectSettings;
use crate::publish::{PublishPlan, Source};

/// How long `status` waits for more records after the last one arrived.
const QUIET: Duration = Duration::from_millis(300);

/// Arguments of `canopy cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// `status`, `assign` or `drain`.
    #[command(subcommand)]
    pub action: ClusterAction,
}

/// The subcommands of `canopy cluster`.
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterAction {
    /// Print every node's load record (`$cluster/nodes/+`): state, connections per
    /// capacity, message rates, advertised address.
    #[command(disable_help_flag = true)]
    Status(StatusArgs),
    /// Pin CLIENT to NODE (retained `$cluster/assign/CLIENT`; admins only); a connected
    /// client is moved there. `--clear` removes the pin.
    #[command(disable_help_flag = true)]
    Assign(AssignArgs),
    /// Drain NODE (retained `$cluster/drain/NODE`; admins only): it takes no new clients and
    /// moves its clients away at its move_rate. `--undo` takes it back.
    #[command(disable_help_flag = true)]
    Drain(DrainArgs),
}

/// Arguments of `canopy cluster status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Connection options (any node of the cluster).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Give up after this many seconds without any record. Default 5.
    #[arg(short = 'W', long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Print the records as JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `canopy cluster assign`.
#[derive(Debug, Clone, Args)]
pub struct AssignArgs {
    /// Connection options; `-i` must be an admin of the broker (`[config] admins`).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The client id to pin.
    pub client: String,
    /// The node id to pin it to (required unless --clear).
    pub node: Option<String>,
    /// Remove the pin: the client maps by the assignment rule again.
    #[arg(long, conflicts_with = "node")]
    pub clear: bool,
}

/// Arguments of `canopy cluster drain`.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// Connection options; `-i` must be an admin of the broker (`[config] admins`).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The node id to drain.
    pub node: String,
    /// Take the drain order back: the node takes clients again.
    #[arg(long)]
    pub undo: bool,
}

/// Runs a `canopy cluster` subcommand.
pub async fn run(args: ClusterArgs) -> Result<(), CliError> {
    match args.action {
        ClusterAction::Status(a) => status(&a).await,
        ClusterAction::Assign(a) => write(assign_plan(&a)?).await,
        ClusterAction::Drain(a) => write(drain_plan(&a)?).await,
    }
}

/// The retained QoS 1 PUBLISH of `canopy cluster assign`.
pub fn assign_plan(args: &AssignArgs) -> Result<PublishPlan, CliError> {
    let source = match (&args.node, args.clear) {
        (Some(node), false) => Source::Message(Bytes::from(node_id(node)?.to_owned())),
        (None, true) => Source::Null,
        _ => {
            return Err(CliError::Usage(
                "give the node to pin the client to, or --clear".into(),
            ));
        }
    };
    plan(&args.connect, cluster::assign_topic(&args.client), source)
}

/// The retained QoS 1 PUBLISH of `canopy cluster drain`.
pub fn drain_plan(args: &DrainArgs) -> Result<PublishPlan, CliError> {
    let node = node_id(&args.node)?;
    let source = if args.undo {
        Source::Null
    } else {
        Source::Message(Bytes::from_static(b"drain"))
    };
    plan(&args.connect, cluster::drain_topic(node), source)
}

fn node_id(node: &str) -> Result<&str, CliError> {
    if cluster::valid_node_id(node) {
        Ok(node)
    } else {
        Err(CliError::Usage(format!(
            "invalid node id `{node}`: it must be non-empty without / + #"
        )))
    }
}

fn plan(connect: &ConnectArgs, topic: String, source: Source) -> Result<PublishPlan, CliError> {
    if !rumqttc::valid_topic(&topic) {
        return Err(CliError::Usage(format!("invalid topic `{topic}`")));
    }
    Ok(PublishPlan {
        connect: ConnectSettings::from_args(connect)?,
        topic,
        source,
        qos: Qos::AtLeastOnce,
        retain: true,
        repeat: 1,
        repeat_delay: Duration::ZERO,
        properties: Default::default(),
    })
}

async fn write(plan: PublishPlan) -> Result<(), CliError> {
    let topic = plan.topic.clone();
    match crate::publish::run(plan).await {
        Err(CliError::PublishRefused { code }) => Err(CliError::Refused(format!(
            "writing {topic} was refused (reason 0x{code:02X}): only admins ([config] admins) may"
        ))),
        other => other,
    }
}

/// Collects the retained records and prints them.
async fn status(args: &StatusArgs) -> Result<(), CliError> {
    let connect = ConnectSettings::from_args(&args.connect)?;
    let wait = Duration::from_secs(args.timeout.unwrap_or(5));
    let (mut link, _, _) = Link::open(&connect).await?;
    link.sender()
        .subscribe(SubscribeRequest {
            filters: vec![FilterRequest {
                filter: format!("{}+", cluster::NODES_PREFIX),
                qos: Qos::AtMostOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            }],
            ..Default::default()
        })
        .await?;
    let mut records: Vec<NodeRecord> = Vec::new();
    let mut limit = wait;
    loop {
        match tokio::time::timeout(limit, link.next_event()).await {
            Err(_) => break,
            Ok(Some(LinkEvent::Message(m))) => {
                if let Some(r) = NodeRecord::from_payload(&m.payload) {
                    records.retain(|x| x.node != r.node);
                    records.push(r);
                    limit = QUIET;
                }
            }
            Ok(Some(LinkEvent::Failed(f))) => return Err(f.into_error(link.addr().to_owned())),
            Ok(Some(_)) => {}
            Ok(None) => break,
        }
    }
    link.disconnect().await?;
    if records.is_empty() {
        return Err(CliError::Timeout);
    }
    records.sort_by(|a, b| a.node.cmp(&b.node));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    print!("{}", table(&records, args.json, now));
    Ok(())
}

/// The status output: JSON lines, or a table with a header.
pub fn table(records: &[NodeRecord], json: bool, now_ms: u64) -> String {
    let mut out = String::new();
    if json {
        for r in records {
            out.push_str(&r.to_json());
            out.push('\n');
        }
        return out;
    }
    out.push_str(
        "NODE         STATE     CONNECTIONS  CAPACITY  LOAD  IN/S   OUT/S  AGE    ADVERTISE\n",
    );
    for r in records {
        let load = r
            .connections
            .saturating_mul(100)
            .checked_div(r.capacity)
            .map_or_else(|| "-".to_owned(), |p| format!("{p}%"));
        let state = serde_json::to_value(r.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let age = format!("{}s", now_ms.saturating_sub(r.ts) / 1000);
        out.push_str(&format!(
            "{:<12} {:<9} {:>11}  {:>8}  {:>4}  {:>5}  {:>5}  {:<6} {}\n",
            r.node, state, r.connections, r.capacity, load, r.msgs_in, r.msgs_out, age, r.advertise
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn action(args: &[&str]) -> ClusterAction {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Cluster(c) => c.action,
            _ => panic!("not cluster"),
        }
    }

    #[test]
    fn assign_writes_the_node_id_retained_and_clear_removes_it() {
        let ClusterAction::Assign(a) =
            action(&["canopy", "cluster", "assign", "-i", "ops", "dev/7", "n2"])
        else {
            panic!()
        };
        let p = assign_plan(&a).unwrap();
        assert_eq!(p.topic, "$cluster/assign/dev/7");
        assert_eq!(p.source, Source::Message(Bytes::from_static(b"n2")));
        assert!(p.retain && p.qos == Qos::AtLeastOnce);
        let ClusterAction::Assign(a) = action(&["canopy", "cluster", "assign", "dev", "--clear"])
        else {
            panic!()
        };
        assert_eq!(assign_plan(&a).unwrap().source, Source::Null);
        let ClusterAction::Assign(a) = action(&["canopy", "cluster", "assign", "dev"]) else {
            panic!()
        };
        assert!(assign_plan(&a).is_err());
    }

    #[test]
    fn drain_writes_an_order_and_undo_clears_it() {
        let ClusterAction::Drain(d) = action(&["canopy", "cluster", "drain", "n1"]) else {
            panic!()
        };
        let p = drain_plan(&d).unwrap();
        assert_eq!(p.topic, "$cluster/drain/n1");
        assert_eq!(p.source, Source::Message(Bytes::from_static(b"drain")));
        let ClusterAction::Drain(d) = action(&["canopy", "cluster", "drain", "n1", "--undo"])
        else {
            panic!()
        };
        assert_eq!(drain_plan(&d).unwrap().source, Source::Null);
        let ClusterAction::Drain(d) = action(&["canopy", "cluster", "drain", "a+b"]) else {
            panic!()
        };
        assert!(drain_plan(&d).is_err());
    }

    #[test]
    fn status_prints_one_row_per_node() {
        let r = NodeRecord::from_payload(
            br#"{"node":"n1","advertise":"127.0.0.1:1883","connections":25,"capacity":100,"ts":1000,"state":"draining"}"#,
        )
        .unwrap();
        let t = table(std::slice::from_ref(&r), false, 4000);
        let row = t.lines().nth(1).unwrap();
        assert!(row.starts_with("n1 "), "{row}");
        for cell in ["draining", "25", "100", "25%", "3s", "127.0.0.1:1883"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert_eq!(
            table(std::slice::from_ref(&r), true, 0),
            format!("{}\n", r.to_json())
        );
    }
}
