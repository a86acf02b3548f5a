//! End-to-end tests of `canopy presence set|allow|watch` against a Canopy broker started
//! in-process on a free port (anonymous access: the watcher is named by its client id).

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_canopy");
/// Upper bound for any single step; generous for a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(20);

async fn run(addr: SocketAddr, args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .arg("presence")
        .args(args)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_then_allow_then_watch_prints_the_aggregate() {
    let mut cfg = canopy_broker::config::Config::ephemeral();
    cfg.presence.offline_grace = Duration::from_secs(60);
    let broker = canopy_broker::start(cfg).await.unwrap();
    let addr = broker.mqtt_addr();
    let out = run(
        addr,
        &[
            "set",
            "--user",
            "alice",
            "--device",
            "phone",
            "--availability",
            "busy",
            "--note",
            "call",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Not yet allowed: nothing arrives (exit 27 on the timeout).
    let out = run(addr, &["watch", "alice", "-i", "bob", "-C", "1", "-W", "1"]).await;
    assert_eq!(out.status.code(), Some(27), "{}", text(&out.stderr));
    let out = run(addr, &["allow", "alice", "bob"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    for version in ["3.1.1", "5"] {
        let out = run(
            addr,
            &[
                "watch", "alice", "-V", version, "-i", "bob", "-C", "1", "-W", "10",
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["availability"], "busy");
        assert_eq!(doc["note"], "call");
        assert_eq!(doc["devices"]["phone"]["activity"], "active");
    }
    broker.shutdown().await;
}

mod authenticated {
    //! With a password file: a user's devices are its authenticated connections, a watcher
    //! is named by its user (not its client id), and another user's devices can be neither
    //! read nor written.

    use std::time::Duration;

    use canopy_client::adapter::{self, Client, Event, Options, QoS, Version};
    use tokio::sync::mpsc;

    const STEP: Duration = Duration::from_secs(10);

    fn client(port: u16, id: &str, user: &str) -> (Client, mpsc::Receiver<Event>) {
        let mut o = Options::new(Version::V5, id, "127.0.0.1", port);
        o.credentials = Some((user.to_owned(), format!("{user}-pw")));
        let (c, mut conn) = o.connect();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Ok(e) = conn.poll().await {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        });
        (c, rx)
    }

    async fn next(rx: &mut mpsc::Receiver<Event>, want: impl Fn(&Event) -> bool) -> Event {
        tokio::time::timeout(STEP, async {
            loop {
                let e = rx.recv().await.unwrap();
                if want(&e) {
                    return e;
                }
            }
        })
        .await
        .expect("event in time")
    }

    async fn publish(c: &Client, topic: &str, payload: &str) {
        let p = adapter::new_publish(
            topic,
            QoS::AtLeastOnce,
            true,
            payload.as_bytes().to_vec(),
            None,
        );
        c.publish(p).await.unwrap();
    }

    async fn subscribe(c: &Client, rx: &mut mpsc::Receiver<Event>, filter: &str) -> u8 {
        let f = adapter::filter(filter, QoS::AtLeastOnce, false, false, 0);
        c.subscribe(vec![f], None).await.unwrap();
        match next(rx, |e| matches!(e, Event::SubAck { .. })).await {
            Event::SubAck { codes, .. } => codes[0],
            _ => unreachable!(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_own_their_devices_and_watchers_are_named_by_user() {
        let dir = std::env::temp_dir().join(format!("canopy-presence-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        let text: String = ["alice", "bob", "mallory"]
            .iter()
            .map(|u| {
                let hash =
                    canopy_model::password::hash_password(format!("{u}-pw").as_bytes()).unwrap();
                format!("{u}:{hash}\n")
            })
            .collect();
        std::fs::write(&passwd, text).unwrap();
        let mut cfg = canopy_broker::config::Config::ephemeral();
        cfg.auth.password_file = Some(passwd);
        let broker = canopy_broker::start(cfg).await.unwrap();
        let port = broker.mqtt_addr().port();

        let (phone, mut phone_rx) = client(port, "alice-phone", "alice");
        next(&mut phone_rx, |e| matches!(e, Event::ConnAck { .. })).await;
        publish(
            &phone,
            "$presence/alice/devices/phone",
            r#"{"availability":"busy","activity":"active"}"#,
        )
        .await;
        next(&mut phone_rx, |e| matches!(e, Event::PubAck { .. })).await;

        // Mallory can neither write alice's devices nor read them.
        let (mallory, mut m_rx) = client(port, "m1", "mallory");
        next(&mut m_rx, |e| matches!(e, Event::ConnAck { .. })).await;
        publish(
            &mallory,
            "$presence/alice/devices/forged",
            r#"{"availability":"available","activity":"active"}"#,
        )
        .await;
        let ack = next(&mut m_rx, |e| matches!(e, Event::PubAck { .. })).await;
        assert!(matches!(ack, Event::PubAck { reason: 0x87, .. }), "{ack:?}");
        assert_eq!(
            subscribe(&mallory, &mut m_rx, "$presence/alice/devices/+").await,
            0x87
        );
        assert_eq!(
            subscribe(&mallory, &mut m_rx, "$presence/alice/watchers").await,
            0x87
        );

        // Bob (client id bob-tablet) is pending until alice lists the user bob.
        let (bob, mut b_rx) = client(port, "bob-tablet", "bob");
        next(&mut b_rx, |e| matches!(e, Event::ConnAck { .. })).await;
        assert_eq!(subscribe(&bob, &mut b_rx, "$presence/alice").await, 1);
        assert_eq!(
            subscribe(&bob, &mut b_rx, "$presence/alice/requests/bob").await,
            1
        );
        let req = next(&mut b_rx, |e| matches!(e, Event::Publish(_))).await;
        let Event::Publish(p) = req else {
            unreachable!()
        };
        assert_eq!(&p.topic[..], b"$presence/alice/requests/bob");
        publish(&phone, "$presence/alice/watchers", r#"["bob"]"#).await;
        let doc = next(
            &mut b_rx,
            |e| matches!(e, Event::Publish(p) if &p.topic[..] == b"$presence/alice"),
        )
        .await;
        let Event::Publish(p) = doc else {
            unreachable!()
        };
        let doc: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(doc["availability"], "busy");
        assert!(doc["devices"].get("forged").is_none(), "{doc}");
        broker.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
