//! A metabroker logs into a password-protected Canopy broker over `mqtts://` as one of its
//! `[auth] bridge_users`, and the hierarchy still flows: `$status` up, `$config` down. The
//! same metabroker with a wrong password never connects, and one logged in as an ordinary
//! user carries nothing of the hierarchy up (its hop marker grants nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use canopy_client::adapter::{self, Event, Options, Version};
use common::mosq::{self, Pki};
use common::*;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(15);

/// The upper broker: a TLS listener (first) and a plain loopback one (second), passwords
/// for `site-bridge`, `alice` and `admin`, no anonymous clients.
async fn protected_root(dir: &Path, pki: &Pki) -> canopy_broker::BrokerHandle {
    let passwd = dir.join("passwd");
    let line = |u: &str, pw: &str| {
        format!(
            "{u}:{}\n",
            canopy_model::password::hash_password(pw.as_bytes()).unwrap()
        )
    };
    let text =
        line("site-bridge", "bridge-pw") + &line("alice", "apple") + &line("admin", "root-pw");
    std::fs::write(&passwd, text).unwrap();
    let toml = format!(
        r#"
durability = "memory"
[[listener]]
bind = "127.0.0.1:0"
tls = {{ cert = "{cert}", key = "{key}" }}
[[listener]]
bind = "127.0.0.1:0"
[auth]
allow_anonymous = false
password_file = "{passwd}"
bridge_users = ["site-bridge"]
[config]
admins = ["admin"]
"#,
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        passwd = passwd.display(),
    );
    let mut cfg = canopy_broker::Config::from_toml(&toml, "root.toml").unwrap();
    cfg.data_dir = dir.join("root-data");
    canopy_broker::start(cfg).await.unwrap()
}

/// A 5.0 client logged in as `user`, subscribed to `filter`; returns its messages.
async fn user_subscriber(
    addr: SocketAddr,
    id: &str,
    login: Option<(&str, &str)>,
    filter: &str,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let mut opts = Options::new(Version::V5, id, addr.ip().to_string(), addr.port());
    opts.credentials = login.map(|(u, p)| (u.to_owned(), p.to_owned()));
    let (client, mut connection) = opts.connect();
    let adapter::Client::V5(client) = client else {
        unreachable!("a 5.0 Options builds a 5.0 client")
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match connection.poll().await {
                Ok(Event::Publish(p)) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    if tx.send((topic, p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(Event::SubAck { .. }) => {
                    let _ = acked_tx.send(());
                }
                Ok(_) => {}
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                    connection.pause().await;
                }
            }
        }
    });
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(T, acked.recv()).await.expect("SUBACK");
    (client, rx)
}

fn tls_bridge(
    name: &str,
    leaf: SocketAddr,
    root_tls: SocketAddr,
    pki: &Pki,
    login: (&str, &str),
) -> canopy_metabroker::BridgeConfig {
    let mut c = bridge(
        name,
        &url(leaf),
        &format!("mqtts://localhost:{}", root_tls.port()),
        Vec::new(),
    );
    c.hierarchy = true;
    c.remote.ca_file = Some(pki.ca.clone());
    c.remote.username = Some(login.0.to_owned());
    c.remote.password = Some(login.1.to_owned());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_user_over_mqtts_carries_the_hierarchy_and_nobody_else_does() {
    init_log();
    let dir = temp_dir("bridge-user");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = mosq::pki(&dir);
    let root = protected_root(&dir, &pki).await;
    let (root_tls, root_plain) = (root.mqtt_addrs()[0], root.mqtt_addrs()[1]);
    let leaf = broker().await;

    // A wrong password: the TLS handshake works, the login does not; never connected.
    let wrong = canopy_metabroker::Bridge::new(tls_bridge(
        "wrong",
        leaf.mqtt_addr(),
        root_tls,
        &pki,
        ("site-bridge", "guess"),
    ))
    .start()
    .unwrap();

    let (_w, mut status_at_root) =
        user_subscriber(root_plain, "watch", Some(("admin", "root-pw")), "$status/#").await;

    // An ordinary user as the bridge: connected, but its hop-marked `$status` is refused.
    let alice = canopy_metabroker::Bridge::new(tls_bridge(
        "alice",
        leaf.mqtt_addr(),
        root_tls,
        &pki,
        ("alice", "apple"),
    ))
    .start()
    .unwrap();
    wait_until(T, "alice's bridge connected", || connected(&alice)).await;
    let early = format!("early-{}", std::process::id());
    let _e = user_subscriber(leaf.mqtt_addr(), &early, None, "nothing/here").await;
    let seen = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some((topic, _)) = status_at_root.recv().await {
            if topic == format!("$status/{early}") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(!seen, "an ordinary user forwarded a status document");
    alice.shutdown().await;

    // The bridge user: `$status` of a device at the leaf reaches the root.
    let good = canopy_metabroker::Bridge::new(tls_bridge(
        "site",
        leaf.mqtt_addr(),
        root_tls,
        &pki,
        ("site-bridge", "bridge-pw"),
    ))
    .start()
    .unwrap();
    wait_until(T, "the bridge user's link connected", || connected(&good)).await;
    let dev = format!("dev-{}", std::process::id());
    let (_d, mut at_dev) =
        user_subscriber(leaf.mqtt_addr(), &dev, None, &format!("$config/{dev}")).await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (topic, payload) = tokio::time::timeout_at(deadline, status_at_root.recv())
            .await
            .expect("the device's status at the root")
            .unwrap();
        if topic == format!("$status/{dev}") {
            let doc: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(doc["state"], "online", "{doc}");
            break;
        }
    }

    // `$config` flows down: the admin writes the device's document at the root.
    let (admin, _a) = user_subscriber(
        root_plain,
        "admin-console",
        Some(("admin", "root-pw")),
        "unused/x",
    )
    .await;
    admin
        .publish(format!("$config/{dev}"), QoS::AtLeastOnce, true, "mode=eco")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (topic, payload) = tokio::time::timeout_at(deadline, at_dev.recv())
            .await
            .expect("the configuration document at the leaf")
            .unwrap();
        if topic == format!("$config/{dev}") && payload == b"mode=eco" {
            break;
        }
    }
    assert!(!connected(&wrong), "a wrong password connected");
    good.shutdown().await;
    wrong.shutdown().await;
}
