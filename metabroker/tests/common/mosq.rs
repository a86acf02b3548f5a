//! Test support: a throwaway Debian `mosquitto` with any listeners, and a throwaway CA.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use canopy_metabroker::Direction;
use rumqttc::v5::mqttbytes::QoS;
use tokio::process::{Child, Command};

use super::{publisher, route, subscriber};
use std::net::SocketAddr;

/// The `mosquitto` binary, if installed.
pub fn mosquitto_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// The `mosquitto` binary for a test that needs it. Missing, the test fails with the
/// install command, unless `CANOPY_SKIP_EXTERNAL=1` is set (README, "Tests"): then it says
/// SKIPPED and returns `None`, and the caller returns.
pub fn require_mosquitto() -> Option<PathBuf> {
    if let Some(path) = mosquitto_path() {
        return Some(path);
    }
    if std::env::var_os("CANOPY_SKIP_EXTERNAL").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED (CANOPY_SKIP_EXTERNAL=1): mosquitto is not installed");
        return None;
    }
    panic!(
        "mosquitto is not installed: apt-get install mosquitto \
         (or set CANOPY_SKIP_EXTERNAL=1 to skip the tests that need it)"
    );
}

/// A running mosquitto; killed on drop.
pub struct Mosquitto {
    pub child: Child,
    pub ports: Vec<u16>,
    pub dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts mosquitto with `n` listeners; `conf(ports, dir)` writes the whole configuration.
/// Ready once every port accepts TCP connections. Retries with new ports a few times.
pub async fn start(bin: &Path, n: usize, conf: impl Fn(&[u16], &Path) -> String) -> Mosquitto {
    let dir = super::temp_dir("mosq");
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..5 {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let file = dir.join("mosquitto.conf");
        std::fs::write(&file, conf(&ports, &dir)).unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut ready = false;
        while tokio::time::Instant::now() < deadline && !ready {
            ready = true;
            for p in &ports {
                if tokio::net::TcpStream::connect(("127.0.0.1", *p))
                    .await
                    .is_err()
                {
                    ready = false;
                }
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if !ready {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if ready {
            return Mosquitto { child, ports, dir };
        }
        let _ = child.kill().await;
    }
    panic!("mosquitto did not start");
}

/// A throwaway CA, a server certificate for `localhost`/127.0.0.1 and a client certificate,
/// all written as PEM files into `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "canopy test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "localhost");
    let (client_cert, client_key) = leaf(Vec::new(), "metabroker");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Publishes `up/t` on the Canopy side and `down/t` on mosquitto's plain listener until each
/// crossed once; both routes of [`routes`] must work.
pub async fn assert_both_ways(canopy: SocketAddr, plain: SocketAddr, tag: &str) {
    let (_s, mut at_mosq) =
        subscriber(plain, &format!("{tag}-ms"), &["up/#"], QoS::AtLeastOnce).await;
    let (_c, mut at_canopy) =
        subscriber(canopy, &format!("{tag}-cs"), &["down/#"], QoS::AtLeastOnce).await;
    let up = publisher(canopy, &format!("{tag}-cp")).await;
    let down = publisher(plain, &format!("{tag}-mp")).await;
    let mut crossed = (None, None);
    for i in 0..50 {
        if crossed.0.is_none() {
            up.publish("up/t", QoS::AtLeastOnce, false, format!("u{i}"))
                .await
                .unwrap();
        }
        if crossed.1.is_none() {
            down.publish("down/t", QoS::AtLeastOnce, false, format!("d{i}"))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(g) = at_mosq.try_recv() {
            crossed.0 = Some(g);
        }
        if let Ok(g) = at_canopy.try_recv() {
            crossed.1 = Some(g);
        }
        if crossed.0.is_some() && crossed.1.is_some() {
            break;
        }
    }
    assert_eq!(
        crossed
            .0
            .expect("nothing crossed canopy -> mosquitto")
            .topic,
        "up/t"
    );
    assert_eq!(
        crossed
            .1
            .expect("nothing crossed mosquitto -> canopy")
            .topic,
        "down/t"
    );
}

pub fn routes() -> Vec<canopy_metabroker::RouteConfig> {
    vec![
        route(Direction::Out, "up/#", None, 1),
        route(Direction::In, "down/#", None, 1),
    ]
}
