//! The DNS status listener (SPEC §5 "Status"): a small authoritative UDP name server that
//! answers `<label>.status.<zone>` from the [`StatusBook`], so that a system that knows only
//! DNS and ping can check a device. In a cluster (SPEC §6) it is also the name service:
//! `<service>.<zone>` names the least loaded live node ([`NameService`]).
//!
//! Owns the wire handling (through hickory-proto), the mapping from query names to client ids
//! ([`client_id_to_label`] and its inverse) and the answer rules:
//!
//! | query | answer |
//! |---|---|
//! | A `<label>.status.<zone>` | `good_ip` when the client's latest status is online, `bad_ip` when it is offline or was never seen |
//! | TXT `<label>.status.<zone>` | the status document (JSON); no answer (NODATA) when the client was never seen |
//! | ANY `<label>.status.<zone>` | the A record, and the TXT record when the client was seen |
//! | A or ANY `<service>.<zone>` (with `[cluster]`) | the IPv4 address of the node the cluster view picks (lowest load per capacity among `up` nodes; this node's own before any record arrived), TTL at most 5 s; no answer (NODATA) when no node is up or its advertised host is not an IPv4 address |
//! | any other type at `<label>.status.<zone>`, `<service>.<zone>`, `status.<zone>` or `<zone>` | NOERROR with no answer (NODATA) |
//! | any other name | NXDOMAIN |
//! | an opcode other than QUERY, or a class other than IN | REFUSED |
//! | a datagram with a readable header but an unreadable body, or not exactly one question | FORMERR |
//! | a datagram shorter than a header, or a response | dropped |
//!
//! Must never panic on a datagram, never answer a response (no loops between servers), never
//! write to the status book and never block the runtime: one datagram is answered at a time
//! from an in-memory table. It never chooses a node itself: the cluster view does
//! ([`NameService::pick`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::net::UdpSocket;

use crate::config::{Config, DnsConfig};
use crate::services::cluster::ClusterBook;
use crate::services::status::{State, StatusBook};

/// Prefix of a label that carries a client id in base32 (see [`client_id_to_label`]).
pub const ENCODED_PREFIX: &str = "x--";

/// The label under the zone that holds the client names.
const STATUS_LABEL: &[u8] = b"status";

/// Longest DNS label, in bytes (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// Largest datagram read; longer ones are cut and then fail to parse (FORMERR).
const RECV_BUFFER: usize = 4096;

/// Largest UDP answer without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_LIMIT: usize = 512;

/// Largest UDP answer we send to an EDNS client, whatever it advertises (the DNS flag day 2020
/// value, which avoids IP fragmentation).
const EDNS_UDP_LIMIT: u16 = 1232;

/// Longest character-string inside a TXT record (RFC 1035 §3.3.14).
const TXT_CHUNK: usize = 255;

/// RFC 4648 base32 alphabet, lower case.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Longest TTL of a name service answer: a client asks again soon and meets the new choice.
pub const SERVICE_MAX_TTL: Duration = Duration::from_secs(5);

/// The advertised `host:port` of the node the name service names now, or `None` when no
/// node is up (draining and down nodes are never picked).
pub type Pick = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The name service of a cluster node: `<label>.<zone>` answers the node [`Self::pick`] names.
#[derive(Clone)]
pub struct NameService {
    /// The label under the zone (`[cluster] service`, default `mqtt`).
    pub label: String,
    /// TTL of its answers; capped at [`SERVICE_MAX_TTL`].
    pub ttl: Duration,
    /// The cluster view's choice (the least loaded live node).
    pub pick: Pick,
}

impl std::fmt::Debug for NameService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameService")
            .field("label", &self.label)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The name service of a cluster node (`None` without `[cluster]`): `<[cluster] service>`
/// under the zone names `book`'s least loaded live node; its TTL is `load_interval` rounded
/// up to whole seconds, at least 1 and at most [`SERVICE_MAX_TTL`].
pub fn name_service(config: &Config, book: Arc<ClusterBook>) -> Option<NameService> {
    let cluster = config.cluster.as_ref()?;
    let secs = cluster.load_interval.as_millis().div_ceil(1000);
    let ttl = Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX).max(1));
    Some(NameService {
        label: cluster.service.clone(),
        ttl: ttl.min(SERVICE_MAX_TTL),
        pick: Arc::new(move || book.least_loaded().map(|n| n.advertise)),
    })
}

/// The IPv4 address in an advertised `host:port` (or bare host), if its host is one.
pub fn advertised_ipv4(advertise: &str) -> Option<Ipv4Addr> {
    let ip = match advertise.parse::<SocketAddr>() {
        Ok(addr) => addr.ip(),
        Err(_) => advertise.parse::<IpAddr>().ok()?,
    };
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

/// Answers DNS queries on `socket` from `book` (and, in a cluster, `names`) until the task
/// is aborted.
pub async fn serve(
    socket: UdpSocket,
    cfg: DnsConfig,
    book: Arc<StatusBook>,
    names: Option<NameService>,
) {
    let responder = Responder::new(&cfg, book).with_names(names);
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // An ICMP error from an earlier answer can surface here; it ends nothing.
                tracing::debug!(%error, "dns: receive failed");
                continue;
            }
        };
        let Some(answer) = buf.get(..len).and_then(|q| responder.answer(q)) else {
            tracing::debug!(%peer, len, "dns: dropped an unreadable datagram");
            continue;
        };
        if let Err(error) = socket.send_to(&answer, peer).await {
            tracing::debug!(%peer, %error, "dns: send failed");
        }
    }
}

/// The label (or labels) under `status.<zone>` that names `client_id` in DNS.
///
/// An id that is already a valid DNS label — 1 to 63 ASCII letters, digits and `-`, not
/// starting or ending with `-`, and not starting with `x--` in any case — is used as it is
/// (`dev1` -> `dev1`). Any other id is written as `x--` followed by the unpadded lower-case
/// base32 (RFC 4648) of its UTF-8 bytes (`kitchen/sensor 1` -> `x--nnuxiy3imvxc643fnzzw64rage`),
/// split into labels of at most 63 characters joined by `.` when it is longer than one label.
/// The whole name must still fit DNS's 253 characters, which leaves room for ids of about 140
/// bytes under the default zone.
pub fn client_id_to_label(client_id: &str) -> String {
    if is_plain_label(client_id.as_bytes()) {
        return client_id.to_owned();
    }
    let encoded = format!("{ENCODED_PREFIX}{}", base32_encode(client_id.as_bytes()));
    let chunks: Vec<&str> = encoded
        .as_bytes()
        .chunks(MAX_LABEL)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    chunks.join(".")
}

/// The client id named by the labels under `status.<zone>` (lower-cased, in order), or `None`
/// when they name no client. `Some((id, exact))`: `exact` is false for a plain label, which is
/// looked up ignoring case.
fn labels_to_client_id(labels: &[Vec<u8>]) -> Option<(String, bool)> {
    match labels {
        [label] if is_plain_label(label) => Some((String::from_utf8(label.clone()).ok()?, false)),
        [] => None,
        _ => {
            let joined: Vec<u8> = labels.concat();
            let text = joined.strip_prefix(ENCODED_PREFIX.as_bytes())?;
            // Every label but the last must be full, as `client_id_to_label` cuts them.
            let full = labels
                .split_last()
                .is_some_and(|(_, head)| head.iter().all(|l| l.len() == MAX_LABEL));
            if !full {
                return None;
            }
            let bytes = base32_decode(text)?;
            Some((String::from_utf8(bytes).ok()?, true))
        }
    }
}

/// Whether `label` is a client id used verbatim as a DNS label.
fn is_plain_label(label: &[u8]) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && label.first() != Some(&b'-')
        && label.last() != Some(&b'-')
        && !label
            .get(..ENCODED_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(ENCODED_PREFIX.as_bytes()))
}

/// Unpadded lower-case base32 of `bytes`.
fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes unpadded base32 (either case); `None` for a character outside the alphabet, an
/// impossible length, or non-zero trailing bits (so every id has exactly one spelling).
fn base32_decode(text: &[u8]) -> Option<Vec<u8>> {
    if matches!(text.len() % 8, 1 | 3 | 6) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let value = BASE32
            .iter()
            .position(|&a| a == c.to_ascii_lowercase())
            .and_then(|v| u32::try_from(v).ok())?;
        acc = (acc << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
        acc &= (1 << bits) - 1;
    }
    (acc == 0).then_some(out)
}

/// Builds answers; holds the configuration in the form the lookups need.
struct Responder {
    /// The zone's labels, lower-case, most specific first (`["canopy", "local"]`).
    zone: Vec<Vec<u8>>,
    good: A,
    bad: A,
    ttl: u32,
    book: Arc<StatusBook>,
    /// The name service's label (lower-case), TTL and choice, in a cluster.
    names: Option<(Vec<u8>, u32, Pick)>,
}

/// What a query name refers to.
enum Target {
    /// Not in the zone, or in it but not an existing name.
    Nowhere,
    /// `<zone>` or `status.<zone>`: names that exist with no records we serve.
    Structural,
    /// `<label>.status.<zone>` naming this client id (`exact`: match case exactly).
    Client { id: String, exact: bool },
    /// `<service>.<zone>`: the name service.
    Service,
}

impl Responder {
    fn new(cfg: &DnsConfig, book: Arc<StatusBook>) -> Responder {
        let zone = cfg
            .zone
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .map(|l| l.to_ascii_lowercase().into_bytes())
            .collect();
        Responder {
            zone,
            good: A(cfg.good_ip),
            bad: A(cfg.bad_ip),
            ttl: u32::try_from(cfg.ttl.as_secs()).unwrap_or(u32::MAX),
            book,
            names: None,
        }
    }

    /// Adds the name service.
    fn with_names(mut self, names: Option<NameService>) -> Responder {
        self.names = names.map(|n| {
            let ttl = n.ttl.min(SERVICE_MAX_TTL).as_secs();
            let ttl = u32::try_from(ttl).unwrap_or(0);
            (n.label.to_ascii_lowercase().into_bytes(), ttl, n.pick)
        });
        self
    }

    /// The answer to one datagram, encoded, or `None` to send nothing.
    fn answer(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        let mut decoder = BinDecoder::new(datagram);
        let header = Header::read(&mut decoder).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let reply_meta = Metadata::response_from_request(&header.metadata);
        let request = match Message::from_vec(datagram) {
            Ok(request) if request.queries.len() == 1 => request,
            _ => return encode_bare(reply_meta, ResponseCode::FormErr),
        };
        let mut response = Message::response(header.metadata.id, header.metadata.op_code);
        response.metadata = reply_meta;
        response.metadata.authoritative = true;
        response.queries = request.queries.clone();
        let limit = match &request.edns {
            Some(edns) => {
                let mut reply_edns = Edns::new();
                reply_edns.set_max_payload(EDNS_UDP_LIMIT);
                response.set_edns(reply_edns);
                usize::from(edns.max_payload().clamp(512, EDNS_UDP_LIMIT))
            }
            None => PLAIN_UDP_LIMIT,
        };
        let query = request.queries.first()?;
        let code = if header.metadata.op_code != OpCode::Query
            || !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
        {
            ResponseCode::Refused
        } else {
            match self.target(query.name()) {
                Target::Nowhere => ResponseCode::NXDomain,
                Target::Structural => ResponseCode::NoError,
                Target::Client { id, exact } => {
                    response.answers = self.records(query.name(), query.query_type(), &id, exact);
                    ResponseCode::NoError
                }
                Target::Service => {
                    response.answers = self.service_records(query.name(), query.query_type());
                    ResponseCode::NoError
                }
            }
        };
        response.metadata.response_code = code;
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        response.answers.clear();
        response.metadata.truncation = true;
        response.to_vec().ok()
    }

    /// Classifies a query name against the zone.
    fn target(&self, name: &Name) -> Target {
        let labels: Vec<Vec<u8>> = name.iter().map(|l| l.to_ascii_lowercase()).collect();
        let Some(split) = labels.len().checked_sub(self.zone.len()) else {
            return Target::Nowhere;
        };
        let (inner, zone) = labels.split_at(split);
        if zone != self.zone.as_slice() {
            return Target::Nowhere;
        }
        if let ([only], Some((label, _, _))) = (inner, &self.names)
            && only == label
        {
            return Target::Service;
        }
        match inner.split_last() {
            None => Target::Structural,
            Some((status, client)) if status.as_slice() == STATUS_LABEL => {
                if client.is_empty() {
                    return Target::Structural;
                }
                // Decode from the labels as sent: base32 text is case-insensitive anyway.
                match labels_to_client_id(client) {
                    Some((id, exact)) => Target::Client { id, exact },
                    None => Target::Nowhere,
                }
            }
            Some(_) => Target::Nowhere,
        }
    }

    /// The records for `qtype` at a client's name.
    fn records(&self, name: &Name, qtype: RecordType, id: &str, exact: bool) -> Vec<Record> {
        let doc = if exact {
            self.book.get(id)
        } else {
            self.book.get_ignore_case(id)
        };
        let online = doc.as_ref().is_some_and(|d| d.state == State::Online);
        let a = || {
            let ip = if online { self.good } else { self.bad };
            Record::from_rdata(name.clone(), self.ttl, RData::A(ip))
        };
        let txt = || {
            doc.as_ref().map(|d| {
                let chunks = txt_chunks(&d.to_json());
                Record::from_rdata(name.clone(), self.ttl, RData::TXT(TXT::new(chunks)))
            })
        };
        match qtype {
            RecordType::A => vec![a()],
            RecordType::TXT => txt().into_iter().collect(),
            RecordType::ANY => std::iter::once(a()).chain(txt()).collect(),
            _ => Vec::new(),
        }
    }
}

impl Responder {
    /// The name service's records for `qtype`: the picked node's IPv4 address for A and ANY.
    fn service_records(&self, name: &Name, qtype: RecordType) -> Vec<Record> {
        let Some((_, ttl, pick)) = &self.names else {
            return Vec::new();
        };
        if !matches!(qtype, RecordType::A | RecordType::ANY) {
            return Vec::new();
        }
        let picked = pick();
        match picked.as_deref().and_then(advertised_ipv4) {
            Some(ip) => vec![Record::from_rdata(name.clone(), *ttl, RData::A(A(ip)))],
            None => {
                tracing::debug!(?picked, "dns: no live node with an IPv4 address to name");
                Vec::new()
            }
        }
    }
}

/// `text` cut into TXT character-strings of at most 255 bytes, at character boundaries.
fn txt_chunks(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > TXT_CHUNK {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// A response with no sections and `code`.
fn encode_bare(mut metadata: Metadata, code: ResponseCode) -> Option<Vec<u8>> {
    metadata.response_code = code;
    let mut message = Message::response(metadata.id, metadata.op_code);
    message.metadata = metadata;
    message.to_vec().ok()
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "dns_service_tests.rs"]
mod service_tests;
