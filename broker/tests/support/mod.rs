//! Support for tests that run the real `canopy-broker` binary: a process wrapper that
//! can be killed with SIGKILL, and a minimal MQTT 5.0 client on the project's codec.

#![allow(dead_code, clippy::unwrap_used, clippy::zombie_processes)]

pub mod dns;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use canopy_proto::{
    Connect, ConnectProperties, DecodeLimits, Packet, Protocol, PubAck, Publish, QoS, Subscribe,
    SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("canopy-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The broker binary as a child process.
pub struct BrokerProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl BrokerProcess {
    /// Starts the binary with a config on `port` and `data_dir`, and waits until it
    /// accepts connections.
    pub async fn start(data_dir: &Path, port: u16, durability: &str) -> BrokerProcess {
        let config = data_dir.join("canopy.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\ndurability = {durability:?}\nsys_interval = \"0s\"\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n[limits]\nmax_queued_messages = 1000000\nmax_queued_bytes = \"1GiB\"\n",
                data_dir.join("data")
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_canopy-broker"))
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                return BrokerProcess { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("broker did not start on {addr}");
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().code()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare MQTT 5.0 client driven packet by packet, over TCP or any other byte stream.
pub struct Client<S = TcpStream> {
    stream: S,
    rbuf: BytesMut,
    pub session_present: bool,
}

impl Client<TcpStream> {
    /// Connects with `client_id`; `clean` is Clean Start; a non-zero `expiry` keeps the
    /// session.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        clean: bool,
        expiry: u32,
    ) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        Client::over(stream, client_id, clean, expiry).await
    }

    /// Connects with a CONNECT built by the caller (protocol 5.0).
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        Client::handshake(stream, connect).await
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Client<S> {
    /// Connects over `stream` with `client_id` (see [`Client::connect`]).
    pub async fn over(
        stream: S,
        client_id: &str,
        clean: bool,
        expiry: u32,
    ) -> std::io::Result<Client<S>> {
        let connect = Connect {
            protocol: Some(Protocol::V5),
            clean_start: clean,
            keep_alive: 0,
            client_id: client_id.into(),
            properties: ConnectProperties {
                session_expiry_interval: Some(expiry),
                receive_maximum: Some(100),
                ..Default::default()
            },
            ..Default::default()
        };
        Client::handshake(stream, connect).await
    }

    /// Sends `connect` over `stream` and waits for a successful CONNACK.
    pub async fn handshake(stream: S, connect: Connect) -> std::io::Result<Client<S>> {
        let mut c = Client {
            stream,
            rbuf: BytesMut::new(),
            session_present: false,
        };
        c.send(&Packet::Connect(Box::new(connect))).await?;
        match c.recv().await? {
            Some(Packet::ConnAck(a)) if !a.reason.is_error() => {
                c.session_present = a.session_present;
                Ok(c)
            }
            other => Err(std::io::Error::other(format!("unexpected {other:?}"))),
        }
    }

    pub async fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        canopy_proto::encode(p, Protocol::V5, &mut out).map_err(std::io::Error::other)?;
        self.stream.write_all(&out).await
    }

    /// Next packet, or `None` when the connection closed.
    pub async fn recv(&mut self) -> std::io::Result<Option<Packet>> {
        let limits = DecodeLimits {
            max_packet_size: 1 << 24,
        };
        loop {
            match canopy_proto::decode(&mut self.rbuf, Protocol::V5, &limits) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Next packet within `d`; `Ok(None)` on timeout or close.
    pub async fn recv_timeout(&mut self, d: Duration) -> std::io::Result<Option<Packet>> {
        match tokio::time::timeout(d, self.recv()).await {
            Ok(r) => r,
            Err(_) => Ok(None),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> std::io::Result<()> {
        let sub = Subscribe {
            pkid: 1,
            filters: vec![(
                TopicFilter::new(filter).unwrap(),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
            properties: SubscribeProperties::default(),
        };
        self.send(&Packet::Subscribe(sub)).await?;
        match self.recv().await? {
            Some(Packet::SubAck(_)) => Ok(()),
            other => Err(std::io::Error::other(format!("unexpected {other:?}"))),
        }
    }

    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        pkid: u16,
    ) -> std::io::Result<()> {
        let p = Publish {
            dup: false,
            qos,
            retain: false,
            topic: Some(TopicName::new(topic).unwrap()),
            pkid: (qos != QoS::AtMostOnce).then_some(pkid),
            properties: Default::default(),
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        self.send(&Packet::Publish(p)).await
    }

    pub async fn ack(&mut self, p: &Packet) -> std::io::Result<()> {
        match p {
            Packet::Publish(p) if p.qos == QoS::AtLeastOnce => {
                self.send(&Packet::PubAck(PubAck::new(p.pkid.unwrap_or(0))))
                    .await
            }
            Packet::Publish(p) if p.qos == QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(PubAck::new(p.pkid.unwrap_or(0))))
                    .await
            }
            Packet::PubRel(r) => self.send(&Packet::PubComp(PubAck::new(r.pkid))).await,
            _ => Ok(()),
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Client<S> {
    /// Sends a SUBSCRIBE built by the caller and waits for its SUBACK.
    pub async fn subscribe_with(&mut self, sub: Subscribe) -> std::io::Result<()> {
        self.send(&Packet::Subscribe(sub)).await?;
        match self.recv().await? {
            Some(Packet::SubAck(a)) if a.reasons.iter().all(|r| !r.is_error()) => Ok(()),
            other => Err(std::io::Error::other(format!("unexpected {other:?}"))),
        }
    }

    /// Sends DISCONNECT 0x00.
    pub async fn disconnect(mut self) {
        let _ = self.send(&Packet::Disconnect(Default::default())).await;
    }
}
