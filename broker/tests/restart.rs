//! What survives an orderly restart on the same data directory under the disk store:
//! retained messages (with their expiry still counting), persistent sessions with their
//! subscription options, session expiry counted from the disconnect, and delayed wills.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use canopy_broker::BrokerHandle;
use canopy_broker::config::{Config, Durability};
use canopy_proto::{
    Connect, ConnectProperties, Packet, Protocol, Publish, PublishProperties, QoS, Subscribe,
    SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName, Will, WillProperties,
};
use support::{Client, temp_dir};

async fn start(dir: &Path) -> BrokerHandle {
    let mut cfg = Config::ephemeral();
    cfg.data_dir = dir.join("data");
    cfg.durability = Durability::Sync;
    canopy_broker::start(cfg).await.unwrap()
}

fn connect(id: &str, clean: bool, expiry: u32) -> Connect {
    Connect {
        protocol: Some(Protocol::V5),
        clean_start: clean,
        keep_alive: 0,
        client_id: id.into(),
        properties: ConnectProperties {
            session_expiry_interval: Some(expiry),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn next_publish(c: &mut Client, within: Duration) -> Option<Publish> {
    loop {
        match c.recv_timeout(within).await.unwrap()? {
            Packet::Publish(p) => {
                c.ack(&Packet::Publish(p.clone())).await.unwrap();
                return Some(p);
            }
            other => c.ack(&other).await.unwrap(),
        }
    }
}

#[tokio::test]
async fn retained_messages_survive_restart_with_expiry_still_counting() {
    // [MQTT-3.3.1-5] retained messages are kept; [MQTT-3.3.2-6] the expiry interval sent
    // is what is left of the original one.
    let dir = temp_dir("restart-retained");
    let b = start(&dir).await;
    let mut p = Client::connect(b.mqtt_addr(), "r-pub", true, 0)
        .await
        .unwrap();
    let msg = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: Some(TopicName::new("keep/me").unwrap()),
        pkid: Some(1),
        properties: PublishProperties {
            message_expiry_interval: Some(100),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        },
        payload: bytes::Bytes::from_static(b"kept"),
    };
    p.send(&Packet::Publish(msg)).await.unwrap();
    assert!(matches!(p.recv().await.unwrap(), Some(Packet::PubAck(_))));
    p.disconnect().await;
    b.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let b = start(&dir).await;
    let mut s = Client::connect(b.mqtt_addr(), "r-sub", true, 0)
        .await
        .unwrap();
    s.subscribe("keep/#", QoS::AtLeastOnce).await.unwrap();
    let got = next_publish(&mut s, Duration::from_secs(5))
        .await
        .expect("retained message after restart");
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"kept");
    assert_eq!(
        got.properties.user_properties,
        vec![("k".to_string(), "v".to_string())]
    );
    let left = got.properties.message_expiry_interval.unwrap();
    assert!(
        left <= 99,
        "expiry restarted from 100 instead of counting on: {left}"
    );
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn persistent_session_keeps_subscription_options_and_queue_across_restart() {
    // [MQTT-3.2.2-2] session present; the subscription identifier [MQTT-3.3.4-3] and
    // no local [MQTT-3.8.3-3] still apply after the restart.
    let dir = temp_dir("restart-session");
    let b = start(&dir).await;
    let mut s = Client::connect(b.mqtt_addr(), "opts", true, 3600)
        .await
        .unwrap();
    s.subscribe_with(Subscribe {
        pkid: 1,
        filters: vec![(
            TopicFilter::new("opts/#").unwrap(),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties {
            subscription_identifier: Some(7),
            ..Default::default()
        },
    })
    .await
    .unwrap();
    s.disconnect().await;
    let mut p = Client::connect(b.mqtt_addr(), "opts-pub", true, 0)
        .await
        .unwrap();
    p.publish("opts/a", b"while-offline", QoS::ExactlyOnce, 1)
        .await
        .unwrap();
    assert!(matches!(p.recv().await.unwrap(), Some(Packet::PubRec(_))));
    b.shutdown().await;

    let b = start(&dir).await;
    let mut s = Client::connect_with(b.mqtt_addr(), connect("opts", false, 3600))
        .await
        .unwrap();
    assert!(s.session_present);
    let got = next_publish(&mut s, Duration::from_secs(5))
        .await
        .expect("queued message after restart");
    assert_eq!(&got.payload[..], b"while-offline");
    assert_eq!(got.qos, QoS::ExactlyOnce);
    assert_eq!(got.properties.subscription_identifiers, vec![7]);
    // No local survives: our own publish does not come back.
    s.publish("opts/self", b"mine", QoS::AtLeastOnce, 9)
        .await
        .unwrap();
    let mut p = Client::connect(b.mqtt_addr(), "opts-pub2", true, 0)
        .await
        .unwrap();
    p.publish("opts/other", b"theirs", QoS::AtLeastOnce, 1)
        .await
        .unwrap();
    let got = next_publish(&mut s, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        &got.payload[..],
        b"theirs",
        "own message delivered despite no local"
    );
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn session_expiry_keeps_counting_while_the_broker_is_down() {
    // [MQTT-3.1.2-23]: the session is kept for the Session Expiry Interval after the
    // connection closes, counted from then, not from the restart.
    let dir = temp_dir("restart-expiry");
    let b = start(&dir).await;
    let s = Client::connect(b.mqtt_addr(), "short", true, 1)
        .await
        .unwrap();
    let long = Client::connect(b.mqtt_addr(), "long", true, 3600)
        .await
        .unwrap();
    s.disconnect().await;
    long.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let b = start(&dir).await;
    let s = Client::connect_with(b.mqtt_addr(), connect("short", false, 1))
        .await
        .unwrap();
    assert!(!s.session_present, "a session past its expiry came back");
    let l = Client::connect_with(b.mqtt_addr(), connect("long", false, 3600))
        .await
        .unwrap();
    assert!(l.session_present, "a session within its expiry was lost");
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn delayed_will_pending_at_shutdown_is_published_after_restart() {
    // [MQTT-3.1.3-9]: a will with a delay is published when the delay ends, even if the
    // broker restarted in between.
    let dir = temp_dir("restart-will");
    let b = start(&dir).await;
    let mut w = connect("dying", true, 3600);
    w.will = Some(Will {
        topic: TopicName::new("wills/dying").unwrap(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(1),
            ..Default::default()
        },
    });
    let c = Client::connect_with(b.mqtt_addr(), w).await.unwrap();
    drop(c); // abnormal close: the will is due in 1 s
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.shutdown().await;

    let b = start(&dir).await;
    let mut s = Client::connect(b.mqtt_addr(), "watcher", true, 0)
        .await
        .unwrap();
    s.subscribe("wills/#", QoS::AtLeastOnce).await.unwrap();
    let got = next_publish(&mut s, Duration::from_secs(5))
        .await
        .expect("delayed will after restart");
    assert_eq!(&got.payload[..], b"gone");
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn activation_state_survives_restart() {
    // SPEC §3: the activation state is part of the session and survives restarts.
    let dir = temp_dir("restart-activation");
    let b = start(&dir).await;
    let mut s = Client::connect(b.mqtt_addr(), "act", true, 3600)
        .await
        .unwrap();
    let register = |n: u16, filter: &str, on: &str| Subscribe {
        pkid: n,
        filters: vec![(
            TopicFilter::new(filter).unwrap(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties {
            user_properties: vec![("activate-on".into(), on.into())],
            ..Default::default()
        },
    };
    s.subscribe_with(register(1, "act/on-one/#", "ev/one"))
        .await
        .unwrap();
    s.subscribe_with(register(2, "act/off-one/#", "ev/two"))
        .await
        .unwrap();
    let mut p = Client::connect(b.mqtt_addr(), "act-pub", true, 0)
        .await
        .unwrap();
    p.publish("ev/one", b"", QoS::AtLeastOnce, 1).await.unwrap();
    assert!(matches!(p.recv().await.unwrap(), Some(Packet::PubAck(_))));
    s.disconnect().await;
    b.shutdown().await;

    let b = start(&dir).await;
    let mut s = Client::connect_with(b.mqtt_addr(), connect("act", false, 3600))
        .await
        .unwrap();
    assert!(s.session_present);
    let mut p = Client::connect(b.mqtt_addr(), "act-pub", true, 0)
        .await
        .unwrap();
    for (i, t) in ["act/off-one/x", "act/on-one/x"].iter().enumerate() {
        p.publish(t, t.as_bytes(), QoS::AtLeastOnce, i as u16 + 1)
            .await
            .unwrap();
        assert!(matches!(p.recv().await.unwrap(), Some(Packet::PubAck(_))));
    }
    let got = next_publish(&mut s, Duration::from_secs(5))
        .await
        .expect("the active one delivers");
    assert_eq!(&got.payload[..], b"act/on-one/x");
    assert!(
        next_publish(&mut s, Duration::from_millis(500))
            .await
            .is_none(),
        "the inactive one stays off"
    );
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
