//! Scarce resources as topics (SPEC §7, docs/resources.md): FIFO grants with positions,
//! 5.0 Response Topic and Correlation Data, lease expiry and renewal, release on
//! disconnect, a full queue, slots back to back, the retained summary, a restart with
//! holders and waiters, and the access rule on answer topics. Canopy features: skipped in
//! external mode.

use std::time::Duration;

use canopy_broker::config::{Config, Durability, ResourceConfig, ResourceMode};
use canopy_tests::wire::{self, V5, prop};
use canopy_tests::{QUIET, RawClient, TestBroker, is_external, unique};
use serde_json::{Value, json};

both_versions!(
    grants_come_in_fifo_order_and_waiters_hear_every_position,
    the_retained_summary_follows_every_change,
    a_lease_that_is_not_renewed_expires_and_the_next_is_granted,
    a_renewed_lease_keeps_its_grant,
    a_clean_session_frees_its_unit_when_its_connection_drops,
    a_full_queue_refuses,
    slots_are_scheduled_back_to_back_and_granted_when_they_begin,
    a_restart_keeps_holders_and_waiters_of_persistent_sessions,
    a_client_cannot_read_another_clients_answers,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_0_request_is_answered_on_its_response_topic_with_its_correlation_data() {
    let name = unique("lic");
    let Some(b) = broker_with("response_topic", |c| {
        c.resource = vec![resource(&name, 1, 60_000)]
    })
    .await
    else {
        return;
    };
    let id = unique("a");
    let reply = format!("replies/{id}");
    let mut a = RawClient::connect(b.addr(), V5, &id).await;
    a.subscribe(&reply, 1).await;
    let props = wire::Props::new()
        .string(prop::RESPONSE_TOPIC, &reply)
        .binary(prop::CORRELATION_DATA, b"req-1");
    a.send(
        &wire::Publish::new(V5, &format!("$resource/{name}/acquire"), b"")
            .props(props)
            .encode(),
    )
    .await;
    let m = a.receive_and_ack(1).await.remove(0);
    assert_eq!(m.topic, reply);
    assert_eq!(m.props.bin(prop::CORRELATION_DATA), Some(&b"req-1"[..]));
    let answer: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(answer["state"], "granted");
}

/// A resource `name` with `max` units and a lease of `lease_ms`.
fn resource(name: &str, max: u32, lease_ms: u64) -> ResourceConfig {
    ResourceConfig {
        name: name.to_owned(),
        max_concurrent: max,
        lease: Duration::from_millis(lease_ms),
        queue_limit: 100,
        mode: ResourceMode::Queue,
        slot: Duration::from_secs(60),
        grace: Duration::ZERO,
    }
}

async fn broker_with(test: &str, edit: impl FnOnce(&mut Config)) -> Option<TestBroker> {
    if is_external() {
        eprintln!("skipped in external mode: {test}");
        return None;
    }
    Some(TestBroker::start_config(edit).await)
}

/// A client of one resource, subscribed to its own answer topic.
struct Agent {
    c: RawClient,
    id: String,
    name: String,
}

impl Agent {
    async fn join(b: &TestBroker, v: u8, name: &str, id: &str) -> Agent {
        Self::join_with(b, wire::Connect::new(v, id), name).await
    }

    /// A persistent session (3.1.1 clean session 0, 5.0 session expiry one hour).
    async fn join_persistent(b: &TestBroker, v: u8, name: &str, id: &str) -> Agent {
        let mut c = wire::Connect::new(v, id).clean(false);
        if v == V5 {
            c = c.props(wire::Props::new().u32(prop::SESSION_EXPIRY, 3600));
        }
        Self::join_with(b, c, name).await
    }

    async fn join_with(b: &TestBroker, connect: wire::Connect, name: &str) -> Agent {
        let id = connect.client_id.clone();
        let (mut c, _) = RawClient::connect_with(b.addr(), &connect).await;
        c.subscribe(&format!("$resource/{name}/client/{id}"), 1)
            .await;
        Agent {
            c,
            id,
            name: name.to_owned(),
        }
    }

    /// Publishes a request at QoS 0 (so no PUBACK races with the answer).
    async fn request(&mut self, verb: &str, payload: &[u8]) {
        let topic = format!("$resource/{}/{verb}", self.name);
        let v = self.c.version;
        self.c
            .send(&wire::Publish::new(v, &topic, payload).encode())
            .await;
    }

    /// The next answer on this client's own topic (acknowledged).
    async fn answer(&mut self) -> Value {
        let m = self.c.receive_and_ack(1).await.remove(0);
        assert_eq!(
            m.topic,
            format!("$resource/{}/client/{}", self.name, self.id)
        );
        serde_json::from_slice(&m.payload).unwrap()
    }

    async fn expect(&mut self, expected: Value) {
        let mut got = self.answer().await;
        if let Some(obj) = got.as_object_mut() {
            obj.remove("expires");
        }
        assert_eq!(got, expected, "answer to {}", self.id);
    }
}

async fn grants_come_in_fifo_order_and_waiters_hear_every_position(v: u8) {
    let name = unique("lic");
    let Some(b) = broker_with("fifo", |c| c.resource = vec![resource(&name, 1, 60_000)]).await
    else {
        return;
    };
    let mut a = Agent::join(&b, v, &name, &unique("a")).await;
    let mut w1 = Agent::join(&b, v, &name, &unique("w1")).await;
    let mut w2 = Agent::join(&b, v, &name, &unique("w2")).await;
    let mut w3 = Agent::join(&b, v, &name, &unique("w3")).await;
    a.request("acquire", b"").await;
    let granted = a.answer().await;
    assert_eq!(
        (granted["state"].as_str(), granted["grant"].as_u64()),
        (Some("granted"), Some(1))
    );
    assert!(granted["expires"].as_u64().unwrap() > 1_600_000_000_000);
    for (i, w) in [&mut w1, &mut w2, &mut w3].into_iter().enumerate() {
        w.request("acquire", b"").await;
        w.expect(json!({"state": "queued", "position": i + 1}))
            .await;
    }
    w2.request("release", b"").await;
    w2.expect(json!({"state": "released"})).await;
    w3.expect(json!({"state": "queued", "position": 2})).await;
    w1.c.expect_nothing(QUIET).await;
    a.request("release", b"").await;
    a.expect(json!({"state": "released", "grant": 1})).await;
    w1.expect(json!({"state": "granted", "grant": 2})).await;
    w3.expect(json!({"state": "queued", "position": 1})).await;
    w1.request("release", b"").await;
    w3.expect(json!({"state": "granted", "grant": 3})).await;
}

async fn the_retained_summary_follows_every_change(v: u8) {
    let name = unique("lic");
    let Some(b) = broker_with("summary", |c| c.resource = vec![resource(&name, 2, 60_000)]).await
    else {
        return;
    };
    let mut watch = RawClient::connect(b.addr(), v, &unique("watch")).await;
    watch.subscribe(&format!("$resource/{name}"), 0).await;
    let first = watch.recv_publish().await;
    assert!(first.retain, "the summary is retained");
    let doc: Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(
        doc,
        json!({"in_use": 0, "max": 2, "queued": 0, "next_slot": null})
    );
    let mut a = Agent::join(&b, v, &name, &unique("a")).await;
    a.request("acquire", b"").await;
    a.answer().await;
    let m = watch.recv_publish().await;
    let doc: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(doc["in_use"], 1);
}

async fn a_lease_that_is_not_renewed_expires_and_the_next_is_granted(v: u8) {
    let name = unique("lic");
    let Some(b) = broker_with("expiry", |c| c.resource = vec![resource(&name, 1, 60_000)]).await
    else {
        return;
    };
    let mut a = Agent::join(&b, v, &name, &unique("a")).await;
    let mut w = Agent::join(&b, v, &name, &unique("w")).await;
    a.request("acquire", br#"{"lease":"300ms"}"#).await;
    let granted = a.answer().await;
    w.request("acquire", b"").await;
    w.expect(json!({"state": "queued", "position": 1})).await;
    a.expect(json!({"state": "expired", "grant": 1})).await;
    let next = w.answer().await;
    assert_eq!(
        (next["state"].as_str(), next["grant"].as_u64()),
        (Some("granted"), Some(2))
    );
    assert!(next["expires"].as_u64() > granted["expires"].as_u64());
}

async fn a_renewed_lease_keeps_its_grant(v: u8) {
    let name = unique("lic");
    let Some(b) = broker_with("renewal", |c| c.resource = vec![resource(&name, 1, 600)]).await
    else {
        return;
    };
    let mut a = Agent::join(&b, v, &name, &unique("a")).await;
    a.request("acquire", b"").await;
    let first = a.answer().await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.request("acquire", b"").await;
        let renewed = a.answer().await;
        assert_eq!(renewed["grant"], first["grant"], "same grant number");
        assert!(renewed["expires"].as_u64() > first["expires"].as_u64());
    }
    a.request("release", b"").await;
    a.expect(json!({"state": "released", "grant": 1})).await;
}

async fn a_clean_session_frees_its_unit_when_its_connection_drops(v: u8) {
    let name = unique("lic");
    let Some(b) = broker_with("disconnect", |c| {
        c.resource = vec![resource(&name, 1, 60_000)]
    })
    .await
    else {
        return;
    };
    let mut a = Agent::join(&b, v, &name, &unique("a")).await;
    let mut w = Agent::join(&b, v, &name, &unique("w")).await;
    a.request("acquire", b"").await;
    a.answer().await;
    w.request("acquire", b"").await;
    w.expect(json!({"state": "queued", "position": 1})).await;
    drop(a); // the socket closes without DISCONNECT
    w.expect(json!({"state": "granted", "grant": 2})).await;
}

async fn a_full_queue_refuses(v: u8) {
    let name = unique("lic");
    let Some(b) = broker_with("queue_full", |c| {
        c.resource = vec![ResourceConfig {
            queue_limit: 1,
            ..resource(&name, 1, 60_000)
        }];
    })
    .await
    else {
        return;
    };
    let mut a = Agent::join(&b, v, &name, &unique("a")).await;
    let mut w = Agent::join(&b, v, &name, &unique("w")).await;
    let mut x = Agent::join(&b, v, &name, &unique("x")).await;
    a.request("acquire", b"").await;
    a.answer().await;
    w.request("acquire", b"").await;
    w.answer().await;
    x.request("acquire", b"").await;
    x.expect(json!({"state": "refused", "reason": "queue full"}))
        .await;
}

async fn slots_are_scheduled_back_to_back_and_granted_when_they_begin(v: u8) {
    let name = unique("rig");
    let Some(b) = broker_with("slots", |c| {
        c.resource = vec![ResourceConfig {
            mode: ResourceMode::Slots,
            slot: Duration::from_millis(400),
            ..resource(&name, 1, 400)
        }];
    })
    .await
    else {
        return;
    };
    let mut a = Agent::join(&b, v, &name, &unique("a")).await;
    let mut c = Agent::join(&b, v, &name, &unique("c")).await;
    a.request("reserve", b"").await;
    let first = a.answer().await;
    assert_eq!(first["state"], "scheduled");
    assert_eq!(
        a.answer().await["state"],
        "granted",
        "the first slot begins now"
    );
    c.request("reserve", b"").await;
    let second = c.answer().await;
    assert_eq!(second["state"], "scheduled");
    assert_eq!(second["slot_start"], first["slot_end"], "back to back");
    a.expect(json!({"state": "expired", "grant": 1})).await;
    let granted = c.answer().await;
    assert_eq!(granted["state"], "granted");
    assert_eq!(granted["expires"], second["slot_end"]);
}

async fn a_restart_keeps_holders_and_waiters_of_persistent_sessions(v: u8) {
    if is_external() {
        return;
    }
    let name = unique("lic");
    let dir = std::env::temp_dir().join(unique("resources-restart"));
    let config = |c: &mut Config| {
        c.data_dir = dir.clone();
        c.durability = Durability::Sync;
        c.resource = vec![resource(&name, 1, 60_000)];
    };
    let b = TestBroker::start_config(config).await;
    let (ida, idw) = (unique("a"), unique("w"));
    let mut a = Agent::join_persistent(&b, v, &name, &ida).await;
    let mut w = Agent::join_persistent(&b, v, &name, &idw).await;
    let mut gone = Agent::join(&b, v, &name, &unique("gone")).await;
    a.request("acquire", b"").await;
    a.answer().await;
    w.request("acquire", b"").await;
    w.expect(json!({"state": "queued", "position": 1})).await;
    gone.request("acquire", b"").await;
    gone.expect(json!({"state": "queued", "position": 2})).await;
    a.c.disconnect().await;
    w.c.disconnect().await;
    b.shutdown().await;

    let b = TestBroker::start_config(config).await;
    let mut watch = RawClient::connect(b.addr(), v, &unique("watch")).await;
    watch.subscribe(&format!("$resource/{name}"), 0).await;
    let doc: Value = serde_json::from_slice(&watch.recv_publish().await.payload).unwrap();
    assert_eq!(
        doc,
        json!({"in_use": 1, "max": 1, "queued": 1, "next_slot": null}),
        "a still holds, w still waits, the clean session's place is gone"
    );
    let mut w = Agent::join_persistent(&b, v, &name, &idw).await;
    let mut a = Agent::join_persistent(&b, v, &name, &ida).await;
    a.request("release", b"").await;
    a.expect(json!({"state": "released", "grant": 1})).await;
    let mut last = w.answer().await;
    while last["state"] == "queued" {
        last = w.answer().await;
    }
    assert_eq!(
        (last["state"].as_str(), last["grant"].as_u64()),
        (Some("granted"), Some(2)),
        "grant numbers keep growing across the restart"
    );
}

async fn a_client_cannot_read_another_clients_answers(v: u8) {
    let name = unique("lic");
    let Some(b) = broker_with("access", |c| c.resource = vec![resource(&name, 1, 60_000)]).await
    else {
        return;
    };
    let victim = unique("victim");
    let mut spy = RawClient::connect(b.addr(), v, &unique("spy")).await;
    let s = spy
        .subscribe_opts(
            1,
            &[(&format!("$resource/{name}/client/{victim}"), 1)],
            wire::Props::new(),
        )
        .await;
    assert!(
        s.codes[0] >= 0x80,
        "SUBACK refuses another client's answers: {s:?}"
    );
    let s = spy
        .subscribe_opts(
            2,
            &[(&format!("$resource/{name}/state"), 1)],
            wire::Props::new(),
        )
        .await;
    assert!(s.codes[0] >= 0x80, "nobody reads the state document: {s:?}");
    // A wildcard may be granted or refused; either way no answer of another client arrives.
    spy.subscribe_opts(
        3,
        &[(&format!("$resource/{name}/#"), 1)],
        wire::Props::new(),
    )
    .await;
    let mut a = Agent::join(&b, v, &name, &victim).await;
    a.request("acquire", b"").await;
    a.answer().await;
    let seen = spy.collect_publishes(QUIET).await;
    assert!(
        seen.iter().all(|m| m.topic == format!("$resource/{name}")),
        "only the summary reaches a wildcard subscriber: {:?}",
        seen.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
}
