//! Helpers for the security tests: a throw-away PKI made with rcgen at run time (no key is
//! ever committed), brokers with password/ACL files and TLS or WebSocket listeners on free
//! loopback ports, and a raw CONNECT that reports the CONNACK byte for byte.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use canopy_broker::config::{Config, ListenerConfig, TlsConfig};
use canopy_proto::{Connect, DecodeLimits, Packet, Protocol};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const STEP: Duration = Duration::from_secs(15);

/// A fresh directory under the system temp dir, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d =
            std::env::temp_dir().join(format!("canopy-sec-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CA, server certificate for `localhost`/127.0.0.1 and two client certificates (CN `alice`
/// and CN `mallory` from another CA), as PEM files in `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

pub fn pki(dir: &Dir) -> Pki {
    let ca1 = ca("canopy test CA");
    let ca2 = ca("rogue CA");
    let leaf = |issuer: &CertifiedIssuer<'static, KeyPair>, names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (sc, sk) = leaf(
        &ca1,
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
    );
    let (cc, ck) = leaf(&ca1, Vec::new(), "alice");
    let (rc, rk) = leaf(&ca2, Vec::new(), "mallory");
    Pki {
        ca: dir.write("ca.pem", &ca1.pem()),
        server_cert: dir.write("server.pem", &sc),
        server_key: dir.write("server.key", &sk),
        client_cert: dir.write("client.pem", &cc),
        client_key: dir.write("client.key", &ck),
        rogue_cert: dir.write("rogue.pem", &rc),
        rogue_key: dir.write("rogue.key", &rk),
    }
}

/// A loopback listener on a free port with these layers.
pub fn listener(tls: Option<&Pki>, client_ca: bool, websocket: bool) -> ListenerConfig {
    ListenerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: tls.map(|p| TlsConfig {
            cert: p.server_cert.clone(),
            key: p.server_key.clone(),
            client_ca: client_ca.then(|| p.ca.clone()),
        }),
        websocket,
        use_identity_as_username: false,
    }
}

/// An ephemeral config with exactly these listeners.
pub fn config(listeners: Vec<ListenerConfig>) -> Config {
    Config {
        listener: listeners,
        ..Config::ephemeral()
    }
}

/// A rustls connector trusting `ca`, presenting `client` (cert, key) when given.
pub fn connector(ca: &Path, client: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// TLS to `addr` as `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// A CONNECT with these credentials.
pub fn connect(
    protocol: Protocol,
    id: &str,
    user: Option<&str>,
    password: Option<&[u8]>,
) -> Connect {
    Connect {
        protocol: Some(protocol),
        clean_start: true,
        keep_alive: 0,
        client_id: id.to_owned(),
        username: user.map(str::to_owned),
        password: password.map(Bytes::copy_from_slice),
        ..Default::default()
    }
}

/// Sends `c` over `stream` and returns the CONNACK's raw bytes (3.1.1: exactly 4), or an
/// empty vector when the connection closed first.
pub async fn connack_bytes<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    c: Connect,
) -> Vec<u8> {
    let protocol = c.protocol.unwrap();
    let mut out = BytesMut::new();
    canopy_proto::encode(&Packet::Connect(Box::new(c)), protocol, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = BytesMut::new();
    let limits = DecodeLimits {
        max_packet_size: 1 << 20,
    };
    loop {
        let mut probe = buf.clone();
        if let Ok(Some(_)) = canopy_proto::decode(&mut probe, protocol, &limits) {
            let used = buf.len() - probe.len();
            return buf[..used].to_vec();
        }
        match tokio::time::timeout(STEP, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Vec::new(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("no CONNACK and no close within {STEP:?}"),
        }
    }
}

/// The CONNACK reason (5.0) or return code (3.1.1), or `None` when the connection closed
/// without one.
pub async fn connack_code<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    c: Connect,
) -> Option<u8> {
    let bytes = connack_bytes(stream, c).await;
    bytes.get(3).copied()
}

/// A bare client of either protocol over TCP, packet by packet.
pub struct Raw {
    pub stream: TcpStream,
    pub protocol: Protocol,
    rbuf: BytesMut,
    next_pkid: u16,
}

impl Raw {
    /// Connects with `c` and expects CONNACK success.
    pub async fn connect(addr: SocketAddr, c: Connect) -> Raw {
        let protocol = c.protocol.unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let code = connack_code(&mut stream, c).await;
        assert_eq!(code, Some(0), "CONNACK");
        Raw {
            stream,
            protocol,
            rbuf: BytesMut::new(),
            next_pkid: 1,
        }
    }

    pub async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        canopy_proto::encode(&p, self.protocol, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet within `d`, or `None` (timeout or close).
    pub async fn recv(&mut self, d: Duration) -> Option<Packet> {
        let limits = DecodeLimits {
            max_packet_size: 1 << 20,
        };
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = canopy_proto::decode(&mut self.rbuf, self.protocol, &limits).unwrap() {
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }

    /// SUBSCRIBE at QoS 1; returns the SUBACK's code for the filter.
    pub async fn subscribe(&mut self, filter: &str) -> u8 {
        let pkid = self.pkid();
        self.send(Packet::Subscribe(canopy_proto::Subscribe {
            pkid,
            filters: vec![(
                canopy_proto::TopicFilter::new(filter).unwrap(),
                canopy_proto::SubscriptionOptions {
                    qos: canopy_proto::QoS::AtLeastOnce,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        }))
        .await;
        loop {
            match self.recv(STEP).await {
                Some(Packet::SubAck(a)) if a.pkid == pkid => return a.reasons[0].0,
                Some(_) => {}
                None => panic!("no SUBACK"),
            }
        }
    }

    /// PUBLISH at QoS 1; returns the PUBACK's reason code.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> u8 {
        let pkid = self.pkid();
        self.send(Packet::Publish(canopy_proto::Publish {
            dup: false,
            qos: canopy_proto::QoS::AtLeastOnce,
            retain,
            topic: Some(canopy_proto::TopicName::new(topic).unwrap()),
            pkid: Some(pkid),
            properties: Default::default(),
            payload: Bytes::copy_from_slice(payload),
        }))
        .await;
        loop {
            match self.recv(STEP).await {
                Some(Packet::PubAck(a)) if a.pkid == pkid => return a.reason.0,
                Some(_) => {}
                None => panic!("no PUBACK"),
            }
        }
    }

    /// Topics of the PUBLISHes received until one arrives on `until` (acknowledging each).
    pub async fn topics_until(&mut self, until: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.recv(STEP).await {
                Some(Packet::Publish(p)) => {
                    if let Some(pkid) = p.pkid {
                        self.send(Packet::PubAck(canopy_proto::PubAck::new(pkid)))
                            .await;
                    }
                    let t = p.topic.map(|t| t.to_string()).unwrap_or_default();
                    let done = t == until;
                    seen.push(t);
                    if done {
                        return seen;
                    }
                }
                Some(_) => {}
                None => panic!("{until} never arrived; saw {seen:?}"),
            }
        }
    }
}
