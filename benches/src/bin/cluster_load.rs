//! `cluster-load`: the scale-out test's client generator (tests/cluster/run.sh, docs/cluster.md
//! "Scale-out test").
//!
//! Opens `--clients` MQTT 5.0 connections the way a client that knows one name does: an A
//! query for `--name` to the name service (`--dns`), a TCP connection to the answer, and
//! CONNACK 0x9C/0x9D Server Reference followed at most `--max-hops` times (a loop is an
//! error). Every client holds its connection (answering the Server Keep Alive) and, when it
//! is closed or moved (DISCONNECT with Server Reference), connects again the same way. It
//! reports where the clients ended up against the ideal share by capacity, then optionally
//! kills one broker (`--kill-pid`, SIGKILL) and measures the time until every client is
//! connected again, none of them to the dead node.
//!
//! Unlike `canopy-bench` it talks to any address it is given (the test runs it inside a
//! network namespace); it is bounded in clients, parallel handshakes (`--parallel`) and time
//! (`--deadline`), and exits non-zero when a pass criterion fails.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use canopy_proto::{Connect, DecodeLimits, Packet, Protocol, ReasonCode, decode, encode};
use clap::Parser;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: 1024 * 1024,
};

/// Keep alive asked for; a node may lower it (Server Keep Alive), which is honoured.
const KEEP_ALIVE: u16 = 120;

/// Time for one TCP connect, one CONNACK, one DNS answer.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Scale-out client generator: connects through the name service and redirects.
#[derive(Debug, Parser)]
#[command(name = "cluster-load", version)]
struct Args {
    /// The name service (the root's `[dns] listen`), `ip:port`. Required unless `--direct`.
    #[arg(long)]
    dns: Option<SocketAddr>,
    /// The generic name asked (`<[cluster] service>.<[dns] zone>`).
    #[arg(long, default_value = "mqtt.canopy.local")]
    name: String,
    /// MQTT port used with the address the name service answers.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Skip the name service: connect round-robin to these `ip:port` (plumbing checks).
    #[arg(long, value_delimiter = ',')]
    direct: Vec<SocketAddr>,
    /// The brokers' MQTT addresses, for the spread (a node with no client counts too).
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<SocketAddr>,
    /// Each node's capacity, in `--nodes` order (default: all equal).
    #[arg(long, value_delimiter = ',')]
    capacity: Vec<u64>,
    /// Client connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// The last N clients speak MQTT 3.1.1: they cannot be redirected, so the node they
    /// reach proxies them to their own; they count towards "connected" but not the spread
    /// (this side cannot see where they are served).
    #[arg(long, default_value_t = 0)]
    v311: usize,
    /// Handshakes (DNS + connect + redirects) in flight at once.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
    /// Most Server References followed for one connection.
    #[arg(long, default_value_t = 5)]
    max_hops: usize,
    /// Client id prefix (`<prefix>-<n>`).
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Seconds the first phase may take to connect every client.
    #[arg(long, default_value_t = 90)]
    connect_limit: u64,
    /// Process to SIGKILL once every client is connected (a broker), then measure recovery.
    #[arg(long)]
    kill_pid: Option<u32>,
    /// The killed broker's MQTT address (left out of the second spread).
    #[arg(long)]
    kill_node: Option<SocketAddr>,
    /// Seconds to wait between the first spread and the kill (load records settle).
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Seconds the recovery may take before the run fails.
    #[arg(long, default_value_t = 10)]
    max_recover: u64,
    /// Largest allowed deviation of any node from its ideal share, as a fraction.
    #[arg(long, default_value_t = 0.10)]
    max_spread: f64,
    /// Hard limit on the whole run, seconds.
    #[arg(long, default_value_t = 180)]
    deadline: u64,
}

/// What every client task shares.
#[derive(Debug, Default)]
struct Shared {
    /// 5.0 clients connected now, per node address.
    per_node: Mutex<BTreeMap<SocketAddr, usize>>,
    /// Clients connected now, 3.1.1 ones included.
    connected: AtomicUsize,
    /// 3.1.1 clients connected now (through whichever node they reached).
    proxied: AtomicUsize,
    dns_queries: AtomicU64,
    redirects: AtomicU64,
    moves: AtomicU64,
    failures: AtomicU64,
    reconnects: AtomicU64,
    /// Most Server References one successful connection followed.
    max_hops: AtomicU64,
    /// The first failure, for the report.
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn joined(&self, node: SocketAddr, v311: bool) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        if v311 {
            self.proxied.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut m = self.per_node.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(node).or_default() += 1;
    }

    fn left(&self, node: SocketAddr, v311: bool) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
        if v311 {
            self.proxied.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let mut m = self.per_node.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&node) {
            *n = n.saturating_sub(1);
        }
    }

    fn count(&self, node: SocketAddr) -> usize {
        let m = self.per_node.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&node).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> BTreeMap<SocketAddr, usize> {
        self.per_node
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if args.dns.is_none() && args.direct.is_empty() {
        bail!("give --dns (the name service) or --direct");
    }
    if !args.capacity.is_empty() && args.capacity.len() != args.nodes.len() {
        bail!("--capacity needs one value per --nodes entry");
    }
    let hard_stop = Instant::now() + Duration::from_secs(args.deadline);
    let shared = Arc::new(Shared::default());
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let (stop_tx, stop) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let (args, shared, gate, stop) = (args.clone(), shared.clone(), gate.clone(), stop.clone());
        tasks.spawn(client(i, args, shared, gate, stop));
    }
    let mut ok = true;
    let all = wait_for(
        &shared,
        args.clients,
        None,
        Duration::from_secs(args.connect_limit),
    )
    .await;
    let connect_secs = started.elapsed().as_secs_f64();
    println!(
        "phase 1: {} of {} clients connected in {connect_secs:.1} s ({} of them 3.1.1, proxied); dns queries {}, redirects {}, failed attempts {}",
        shared.connected.load(Ordering::Relaxed),
        args.clients,
        shared.proxied.load(Ordering::Relaxed),
        shared.dns_queries.load(Ordering::Relaxed),
        shared.redirects.load(Ordering::Relaxed),
        shared.failures.load(Ordering::Relaxed),
    );
    if !all {
        println!(
            "FAIL: not every client connected within {} s",
            args.connect_limit
        );
        ok = false;
    }
    ok &= spread("spread", &args, &args.nodes, &shared.snapshot());
    if let (Some(pid), true) = (args.kill_pid, all) {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        let victims = args.kill_node.map_or(0, |n| shared.count(n));
        let before = (
            shared.redirects.load(Ordering::Relaxed),
            shared.reconnects.load(Ordering::Relaxed),
        );
        let killed = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -9 {pid} failed");
        }
        let limit = Duration::from_secs(args.max_recover.max(1) * 3);
        let recovered = wait_for(&shared, args.clients, args.kill_node, limit).await;
        let secs = killed.elapsed().as_secs_f64();
        println!(
            "phase 2: killed pid {pid} holding {victims} clients; {} connected again in {secs:.2} s \
             (limit {} s); reconnects {}, redirects {}",
            if recovered { "all" } else { "NOT all" },
            args.max_recover,
            shared.reconnects.load(Ordering::Relaxed) - before.1,
            shared.redirects.load(Ordering::Relaxed) - before.0,
        );
        if !recovered || secs > args.max_recover as f64 {
            println!("FAIL: recovery took longer than {} s", args.max_recover);
            ok = false;
        }
        let live: Vec<SocketAddr> = args
            .nodes
            .iter()
            .copied()
            .filter(|n| Some(*n) != args.kill_node)
            .collect();
        ok &= spread("spread after the kill", &args, &live, &shared.snapshot());
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout_at(hard_stop.into(), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    println!(
        "totals: dns queries {}, redirects {} (at most {} for one connection), moves {}, reconnects {}, failed attempts {}, run {:.1} s",
        shared.dns_queries.load(Ordering::Relaxed),
        shared.redirects.load(Ordering::Relaxed),
        shared.max_hops.load(Ordering::Relaxed),
        shared.moves.load(Ordering::Relaxed),
        shared.reconnects.load(Ordering::Relaxed),
        shared.failures.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    if let Some(e) = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        println!("first failed attempt: {e}");
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// Waits until `want` clients are connected and none to `dead`, for at most `limit`.
async fn wait_for(shared: &Shared, want: usize, dead: Option<SocketAddr>, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        let done = shared.connected.load(Ordering::Relaxed) >= want
            && dead.is_none_or(|d| shared.count(d) == 0);
        if done {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints clients per node against the ideal share by capacity; whether it is within
/// `--max-spread`.
fn spread(
    what: &str,
    args: &Args,
    nodes: &[SocketAddr],
    counts: &BTreeMap<SocketAddr, usize>,
) -> bool {
    let cap = |n: &SocketAddr| -> f64 {
        args.nodes
            .iter()
            .position(|x| x == n)
            .and_then(|i| args.capacity.get(i))
            .map_or(1.0, |c| *c as f64)
    };
    let total: usize = nodes
        .iter()
        .map(|n| counts.get(n).copied().unwrap_or(0))
        .sum();
    let caps: f64 = nodes.iter().map(cap).sum();
    let mut worst = 0.0f64;
    let mut parts = Vec::new();
    for n in nodes {
        let got = counts.get(n).copied().unwrap_or(0);
        let ideal = total as f64 * cap(n) / caps;
        let dev = if ideal > 0.0 {
            (got as f64 - ideal).abs() / ideal
        } else {
            0.0
        };
        worst = worst.max(dev);
        parts.push(format!("{}={got}", n.ip()));
    }
    let elsewhere: usize = counts
        .iter()
        .filter(|(n, _)| !nodes.contains(n))
        .map(|(_, c)| *c)
        .sum();
    println!(
        "{what}: {} (ideal {:.0} each by capacity); worst deviation {:.1} % (limit {:.0} %){}",
        parts.join(" "),
        total as f64 / nodes.len().max(1) as f64,
        worst * 100.0,
        args.max_spread * 100.0,
        if elsewhere > 0 {
            format!("; {elsewhere} on other addresses")
        } else {
            String::new()
        },
    );
    let ok = worst <= args.max_spread && elsewhere == 0;
    if !ok {
        println!("FAIL: {what} beyond the limit");
    }
    ok
}

/// One client: connect, hold, reconnect, until told to stop.
async fn client(
    i: usize,
    args: Arc<Args>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let id = format!("{}-{i}", args.prefix);
    let v311 = i >= args.clients.saturating_sub(args.v311);
    let mut next: Option<SocketAddr> = None;
    let mut first = true;
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = {
            let Ok(_permit) = gate.acquire().await else {
                return;
            };
            establish(i, &id, v311, &args, &shared, next.take()).await
        };
        match attempt {
            Ok((conn, node, keep_alive)) => {
                backoff = Duration::from_millis(50);
                if !first {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                shared.joined(node, v311);
                let moved = tokio::select! {
                    m = hold(conn, keep_alive, args.port) => m,
                    _ = stop.wait_for(|s| *s) => None,
                };
                shared.left(node, v311);
                if let Some(to) = moved {
                    shared.moves.fetch_add(1, Ordering::Relaxed);
                    next = Some(to);
                }
            }
            Err(e) => {
                if shared.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                    *shared.first_error.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("{id}: {e:#}"));
                }
                let jitter = Duration::from_millis((i as u64 * 7919) % 50);
                tokio::select! {
                    _ = tokio::time::sleep(backoff + jitter) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_millis(800));
            }
        }
    }
}

/// Finds this client's node: the name service's answer (or `start`), then Server References.
/// Returns the open connection, the node's address and the keep alive in force.
async fn establish(
    i: usize,
    id: &str,
    v311: bool,
    args: &Args,
    shared: &Shared,
    start: Option<SocketAddr>,
) -> anyhow::Result<(Conn, SocketAddr, u16)> {
    let mut target = match (start, args.dns) {
        (Some(t), _) => t,
        (None, _) if !args.direct.is_empty() => args.direct[i % args.direct.len()],
        (None, Some(dns)) => {
            shared.dns_queries.fetch_add(1, Ordering::Relaxed);
            SocketAddr::new(IpAddr::V4(resolve(dns, &args.name).await?), args.port)
        }
        (None, None) => bail!("no way to find a node"),
    };
    let mut seen = HashSet::new();
    for hop in 0..=args.max_hops {
        if !seen.insert(target) {
            bail!("redirect loop at {target}");
        }
        let protocol = if v311 { Protocol::V311 } else { Protocol::V5 };
        let mut conn = Conn::open(target, protocol).await?;
        let connect = Connect {
            protocol: Some(protocol),
            clean_start: true,
            keep_alive: KEEP_ALIVE,
            client_id: id.to_owned(),
            ..Connect::default()
        };
        conn.send(&Packet::Connect(Box::new(connect))).await?;
        let ack = match tokio::time::timeout(STEP_TIMEOUT, conn.next()).await {
            Ok(Ok(Packet::ConnAck(ack))) => ack,
            Ok(Ok(other)) => bail!("expected CONNACK, got type {}", other.packet_type()),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("no CONNACK from {target}"),
        };
        match ack.reason {
            ReasonCode::SUCCESS => {
                shared.max_hops.fetch_max(hop as u64, Ordering::Relaxed);
                let ka = ack.properties.server_keep_alive.unwrap_or(KEEP_ALIVE);
                return Ok((conn, target, ka));
            }
            ReasonCode::USE_ANOTHER_SERVER | ReasonCode::SERVER_MOVED => {
                shared.redirects.fetch_add(1, Ordering::Relaxed);
                let reference = ack
                    .properties
                    .server_reference
                    .context("0x9C without Server Reference")?;
                target = parse_reference(&reference, args.port).await?;
            }
            other => bail!("CONNACK {:#04x} from {target}", other.0),
        }
    }
    bail!("more than {} redirects", args.max_hops)
}

/// The first address of a Server Reference (`host:port`, `host`, space-separated list).
async fn parse_reference(reference: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let first = reference
        .split_whitespace()
        .next()
        .context("empty Server Reference")?;
    if let Ok(a) = first.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = first.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let with_port = if first.contains(':') {
        first.to_owned()
    } else {
        format!("{first}:{port}")
    };
    tokio::net::lookup_host(with_port)
        .await?
        .next()
        .context("Server Reference does not resolve")
}

/// One A query for `name` to `dns` over UDP (three tries).
async fn resolve(dns: SocketAddr, name: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    let bind: SocketAddr = if dns.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
    let socket = UdpSocket::bind(bind).await?;
    let qname = Name::from_ascii(name)?;
    for attempt in 0u16..3 {
        let id = (std::process::id() as u16).wrapping_add(attempt.wrapping_mul(7));
        let mut q = Message::new(id, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(qname.clone(), RecordType::A));
        socket.send_to(&q.to_vec()?, dns).await?;
        let mut buf = [0u8; 1500];
        let Ok(got) =
            tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
        else {
            continue;
        };
        let (len, _) = got?;
        let answer = Message::from_vec(buf.get(..len).unwrap_or_default())?;
        let ip = answer.answers.iter().find_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        });
        return ip.with_context(|| {
            format!(
                "no A record for {name} ({:?})",
                answer.metadata.response_code
            )
        });
    }
    bail!("no answer from the name service at {dns}")
}

/// Holds an established connection: answers the keep alive, returns when it ends — with
/// the Server Reference when the node moved the client (DISCONNECT 0x9C/0x9D).
async fn hold(mut conn: Conn, keep_alive: u16, port: u16) -> Option<SocketAddr> {
    let ping_every = Duration::from_secs(u64::from(keep_alive.max(2)) / 2);
    loop {
        match tokio::time::timeout(ping_every, conn.next()).await {
            Err(_) => {
                if conn.send(&Packet::PingReq).await.is_err() {
                    return None;
                }
            }
            Ok(Ok(Packet::Disconnect(d))) => {
                let reference = d.properties.server_reference?;
                return parse_reference(&reference, port).await.ok();
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
        }
    }
}

/// A connection with its read buffer.
struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    protocol: Protocol,
}

impl Conn {
    async fn open(addr: SocketAddr, protocol: Protocol) -> anyhow::Result<Conn> {
        let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connect to {addr} timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            rbuf: BytesMut::new(),
            protocol,
        })
    }

    async fn send(&mut self, p: &Packet) -> anyhow::Result<()> {
        let mut buf = BytesMut::new();
        encode(p, self.protocol, &mut buf)?;
        self.stream.write_all(&buf).await?;
        Ok(())
    }

    /// The next packet; an error at the end of the stream.
    async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = decode(&mut self.rbuf, self.protocol, &LIMITS)? {
                // An idle connection keeps no read buffer.
                if self.rbuf.is_empty() {
                    self.rbuf = BytesMut::new();
                }
                return Ok(p);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 256 {
                self.rbuf.reserve(1024);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("closed");
            }
        }
    }
}
