//! Event-activated subscriptions (docs/activation.md): registration through 5.0
//! SUBSCRIBE user properties and the 3.1.1 `$ctl/subscribe` document, activation by
//! live and retained events, replay without gaps or duplicates, deactivation, reconnect,
//! bad registrations and the `$SYS` counts. Canopy features: skipped in external mode.

use std::time::Duration;

use canopy_tests::wire::{self, Props, Publish, V5, V311};
use canopy_tests::{QUIET, RawClient, Settings, TestBroker, unique};

both_versions!(
    inactive_subscription_receives_nothing_until_activated,
    activation_replays_retained_then_live_without_gap_or_duplicate,
    deactivation_stops_delivery_and_the_deactivating_message_still_arrives,
    activating_message_is_not_delivered_live,
    most_recent_retained_event_sets_the_initial_state,
    activation_state_survives_reconnect,
    bad_registration_is_refused_and_changes_nothing,
);

/// Registers `filter` with activation parameters: 5.0 through SUBSCRIBE user
/// properties, 3.1.1 through `$ctl/subscribe`.
async fn register(c: &mut RawClient, v: u8, filter: &str, params: &[(&str, &str)]) {
    if v == V5 {
        let mut props = Props::new();
        for (k, val) in params {
            props = props.user(k, val);
        }
        let s = c.subscribe_opts(7, &[(filter, 1)], props).await;
        assert_eq!(s.codes, vec![1], "SUBACK {s:?}");
    } else {
        let mut doc = serde_json::json!({ "filter": filter, "qos": 1 });
        for (k, val) in params {
            doc[k.replace('-', "_")] = serde_json::Value::from(*val);
        }
        // QoS 0: a replay or an error may overtake the PUBACK of a QoS 1 registration
        // (acknowledgements wait for the store), which is legal but awkward to assert.
        c.publish("$ctl/subscribe", doc.to_string().as_bytes(), 0, false)
            .await;
    }
}

/// A subscriber that registered `filter` with activation `params`, and a publisher.
async fn registered_pair(
    b: &TestBroker,
    v: u8,
    filter: &str,
    params: &[(&str, &str)],
) -> (RawClient, RawClient) {
    let mut s = RawClient::connect(b.addr(), v, &unique("s")).await;
    register(&mut s, v, filter, params).await;
    let p = RawClient::connect(b.addr(), v, &unique("p")).await;
    (s, p)
}

async fn broker(test: &str) -> Option<TestBroker> {
    TestBroker::start_with(Settings::default(), test).await
}

/// Payloads (as text) received within [`QUIET`], acknowledging QoS 1.
async fn texts(c: &mut RawClient) -> Vec<String> {
    payloads(c, QUIET)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// Payloads received within `within`, acknowledging QoS 1.
async fn payloads(c: &mut RawClient, within: Duration) -> Vec<(String, bool)> {
    c.collect_publishes(within)
        .await
        .into_iter()
        .map(|m| (String::from_utf8_lossy(&m.payload).into_owned(), m.retain))
        .collect()
}

async fn inactive_subscription_receives_nothing_until_activated(v: u8) {
    let Some(b) = broker("inactive_subscription_receives_nothing").await else {
        return;
    };
    let t = unique("act");
    let (mut s, mut p) = registered_pair(
        &b,
        v,
        &format!("{t}/data/#"),
        &[("activate-on", &format!("{t}/on"))],
    )
    .await;
    p.publish(&format!("{t}/data/1"), b"before", 1, false).await;
    s.expect_nothing(QUIET).await;
    p.publish(&format!("{t}/on"), b"", 1, false).await;
    p.publish(&format!("{t}/data/2"), b"after", 1, false).await;
    assert_eq!(
        payloads(&mut s, QUIET).await,
        vec![("after".to_string(), false)]
    );
}

async fn activation_replays_retained_then_live_without_gap_or_duplicate(v: u8) {
    // Retained messages that arrived while inactive are delivered on activation (RETAIN
    // set, as on a new subscription [MQTT-3.3.1-9]), then live ones, none twice, none lost.
    let Some(b) = broker("activation_replays_retained").await else {
        return;
    };
    let t = unique("rep");
    let (mut s, mut p) = registered_pair(
        &b,
        v,
        &format!("{t}/data/#"),
        &[("activate-on", &format!("{t}/on"))],
    )
    .await;
    p.publish(&format!("{t}/data/r"), b"kept", 1, true).await;
    // One burst: the activation and 20 live messages back to back on one connection.
    let mut burst = Publish::new(v, &format!("{t}/on"), b"")
        .qos(1, 100)
        .encode();
    for i in 0..20u16 {
        burst.extend(
            Publish::new(v, &format!("{t}/data/live"), format!("{i}").as_bytes())
                .qos(1, 200 + i)
                .encode(),
        );
    }
    p.send(&burst).await;
    let got = s.receive_and_ack(21).await;
    assert_eq!(
        (got[0].payload.as_slice(), got[0].retain),
        (&b"kept"[..], true),
        "{got:?}"
    );
    let live: Vec<String> = got[1..]
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(live, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(got[1..].iter().all(|m| !m.retain));
    s.expect_nothing(QUIET).await;
}

async fn deactivation_stops_delivery_and_the_deactivating_message_still_arrives(v: u8) {
    // Switches apply after the message that causes them: a deactivating message that
    // matches the filter is still delivered; the ones after it are not.
    let Some(b) = broker("deactivation_stops_delivery").await else {
        return;
    };
    let t = unique("deact");
    let (mut s, mut p) = registered_pair(
        &b,
        v,
        &format!("{t}/#"),
        &[
            ("activate-on", &format!("{t}/ctl/on")),
            ("deactivate-on", &format!("{t}/ctl/off")),
            ("initial", "active"),
        ],
    )
    .await;
    p.publish(&format!("{t}/x"), b"1", 1, false).await;
    p.publish(&format!("{t}/ctl/off"), b"off", 1, false).await;
    p.publish(&format!("{t}/x"), b"2", 1, false).await;
    let got: Vec<String> = texts(&mut s).await;
    assert_eq!(got, vec!["1", "off"]);
    p.publish(&format!("{t}/ctl/on"), b"on", 1, false).await;
    p.publish(&format!("{t}/x"), b"3", 1, false).await;
    let got: Vec<String> = texts(&mut s).await;
    assert_eq!(
        got,
        vec!["3"],
        "the activating message is not delivered live"
    );
}

async fn activating_message_is_not_delivered_live(v: u8) {
    let Some(b) = broker("activating_message_is_not_delivered").await else {
        return;
    };
    let t = unique("self");
    let (mut s, mut p) = registered_pair(
        &b,
        v,
        &format!("{t}/#"),
        &[("activate-on", &format!("{t}/go")), ("replay", "none")],
    )
    .await;
    p.publish(&format!("{t}/go"), b"go", 1, false).await;
    p.publish(&format!("{t}/next"), b"next", 1, false).await;
    let got: Vec<String> = texts(&mut s).await;
    assert_eq!(got, vec!["next"]);
}

async fn most_recent_retained_event_sets_the_initial_state(v: u8) {
    // SPEC §3: a retained event standing on an activation or deactivation topic at
    // SUBSCRIBE time sets the initial state; the most recent one wins.
    let Some(b) = broker("most_recent_retained_event").await else {
        return;
    };
    let t = unique("init");
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&format!("{t}/ev/off"), b"", 1, false).await;
    p.publish(&format!("{t}/ev/on"), b"1", 1, true).await;
    p.publish(&format!("{t}/data"), b"d", 1, true).await;
    let params = [
        ("activate-on", format!("{t}/ev/on")),
        ("deactivate-on", format!("{t}/ev/off")),
    ];
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut s = RawClient::connect(b.addr(), v, &unique("s1")).await;
    register(&mut s, v, &format!("{t}/data"), &params).await;
    assert_eq!(
        payloads(&mut s, QUIET).await,
        vec![("d".to_string(), true)],
        "retained 'on' -> active"
    );
    p.publish(&format!("{t}/ev/off"), b"1", 1, true).await;
    let mut s2 = RawClient::connect(b.addr(), v, &unique("s2")).await;
    register(&mut s2, v, &format!("{t}/data"), &params).await;
    s2.expect_nothing(QUIET).await;
    p.publish(&format!("{t}/data"), b"d2", 1, true).await;
    s2.expect_nothing(QUIET).await;
}

async fn activation_state_survives_reconnect(v: u8) {
    let Some(b) = broker("activation_state_survives_reconnect").await else {
        return;
    };
    let t = unique("keep");
    let id = unique("persist");
    let connect = || {
        let c = wire::Connect::new(v, &id).clean(false);
        if v == V5 {
            c.props(Props::new().u32(wire::prop::SESSION_EXPIRY, 600))
        } else {
            c
        }
    };
    let (mut s, _) = RawClient::connect_with(b.addr(), &connect()).await;
    register(
        &mut s,
        v,
        &format!("{t}/data"),
        &[("activate-on", &format!("{t}/on"))],
    )
    .await;
    s.disconnect().await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    p.publish(&format!("{t}/data"), b"while-inactive", 1, false)
        .await;
    let (mut s, ack) = RawClient::connect_with(b.addr(), &connect()).await;
    assert!(ack.session_present);
    s.expect_nothing(QUIET).await;
    p.publish(&format!("{t}/on"), b"", 1, false).await;
    s.disconnect().await;
    p.publish(&format!("{t}/data"), b"while-away", 1, false)
        .await;
    let (mut s, _) = RawClient::connect_with(b.addr(), &connect()).await;
    let got: Vec<String> = texts(&mut s).await;
    assert_eq!(
        got,
        vec!["while-away"],
        "active state and its queue survive the reconnect"
    );
}

async fn bad_registration_is_refused_and_changes_nothing(v: u8) {
    let Some(b) = broker("bad_registration").await else {
        return;
    };
    let t = unique("bad");
    let id = unique("s");
    let mut s = RawClient::connect(b.addr(), v, &id).await;
    let mut p = RawClient::connect(b.addr(), v, &unique("p")).await;
    if v == V5 {
        // Invalid activation filter: 0x8F; invalid value: 0x83; both with a reason string.
        let sa = s
            .subscribe_opts(
                3,
                &[(&format!("{t}/d"), 1)],
                Props::new().user("activate-on", "a/#/b"),
            )
            .await;
        assert_eq!(sa.codes, vec![0x8F]);
        assert!(
            sa.props
                .str(wire::prop::REASON_STRING)
                .is_some_and(|r| r.contains("activate-on"))
        );
        let sa = s
            .subscribe_opts(
                4,
                &[(&format!("{t}/d"), 1)],
                Props::new()
                    .user("activate-on", "x")
                    .user("initial", "maybe"),
            )
            .await;
        assert_eq!(sa.codes, vec![0x83]);
    } else {
        s.subscribe(&format!("$ctl/errors/{id}"), 0).await;
        s.publish("$ctl/subscribe", b"{not json", 0, false).await;
        let e = s.recv_publish().await;
        assert_eq!(e.topic, format!("$ctl/errors/{id}"));
        let doc: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        assert!(doc["error"].as_str().unwrap().contains("JSON"), "{doc}");
        let bad = serde_json::json!({"filter": format!("{t}/d"), "activate_on": "a/#/b"});
        s.publish("$ctl/subscribe", bad.to_string().as_bytes(), 0, false)
            .await;
        let e = s.recv_publish().await;
        assert!(String::from_utf8_lossy(&e.payload).contains("activate-on"));
    }
    // Nothing was registered: the filter gets nothing, even after the would-be event.
    p.publish("x", b"", 0, false).await;
    p.publish(&format!("{t}/d"), b"d", 1, false).await;
    s.expect_nothing(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_document_naming_a_client_id_registers_for_that_session() {
    // What `mosquitto_pub -t '$ctl/subscribe'` does (docs/activation.md): a short-lived
    // publisher registers for a subscriber's session by naming its client id; errors go,
    // retained, to `$ctl/errors/<that id>`, so they can be read afterwards.
    let Some(b) = broker("ctl_names_a_session").await else {
        return;
    };
    let t = unique("ctlid");
    let viewer = unique("viewer");
    let mut s = RawClient::connect(b.addr(), V311, &viewer).await;
    s.subscribe(&format!("{t}/data/#"), 1).await;
    let mut tool = RawClient::connect(b.addr(), V311, &unique("tool")).await;
    let doc = serde_json::json!({
        "client_id": viewer, "filter": format!("{t}/data/#"), "qos": 1,
        "activate_on": format!("{t}/on"),
    });
    tool.publish("$ctl/subscribe", doc.to_string().as_bytes(), 1, false)
        .await;
    tool.disconnect().await;
    let mut p = RawClient::connect(b.addr(), V311, &unique("p")).await;
    p.publish(&format!("{t}/data/1"), b"before", 1, false).await;
    s.expect_nothing(QUIET).await;
    p.publish(&format!("{t}/on"), b"", 1, false).await;
    p.publish(&format!("{t}/data/2"), b"after", 1, false).await;
    assert_eq!(texts(&mut s).await, vec!["after"]);

    // A mistake in a document naming the viewer reaches the viewer's error topic, and
    // stays there (retained): the viewer sees it when it subscribes afterwards.
    let mut tool = RawClient::connect(b.addr(), V311, &unique("tool")).await;
    let bad = serde_json::json!({
        "client_id": viewer, "filter": format!("{t}/data/#"),
        "activate_on": format!("{t}/on"), "initail": "active",
    });
    tool.publish("$ctl/subscribe", bad.to_string().as_bytes(), 1, false)
        .await;
    tool.disconnect().await;
    s.subscribe(&format!("$ctl/errors/{viewer}"), 0).await;
    let e = s.recv_publish().await;
    assert!(e.retain, "the error is retained");
    let doc: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
    assert!(doc["error"].as_str().unwrap().contains("initail"), "{doc}");

    // Naming a session that does not exist is an error on that id's topic, which the
    // client of that id finds when it comes.
    let ghost = unique("ghost");
    let mut tool = RawClient::connect(b.addr(), V311, &unique("tool")).await;
    let doc = serde_json::json!({
        "client_id": ghost, "filter": "g/#", "activate_on": "g/on",
    });
    tool.publish("$ctl/subscribe", doc.to_string().as_bytes(), 1, false)
        .await;
    tool.disconnect().await;
    let mut g = RawClient::connect(b.addr(), V311, &ghost).await;
    g.subscribe(&format!("$ctl/errors/{ghost}"), 0).await;
    let e = g.recv_publish().await;
    let doc: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
    assert!(
        doc["error"].as_str().unwrap().contains("no session"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_counts_active_and_inactive_subscriptions() {
    let settings = Settings {
        sys_interval: Some(Duration::from_millis(200)),
        ..Settings::default()
    };
    let Some(b) = TestBroker::start_with(settings, "sys_counts_active_and_inactive").await else {
        return;
    };
    let t = unique("sys");
    let mut s = RawClient::connect(b.addr(), V311, &unique("s")).await;
    register(
        &mut s,
        V311,
        &format!("{t}/a"),
        &[("activate-on", &format!("{t}/on"))],
    )
    .await;
    register(
        &mut s,
        V311,
        &format!("{t}/b"),
        &[("activate-on", &format!("{t}/on2"))],
    )
    .await;
    let mut w = RawClient::connect(b.addr(), V311, &unique("w")).await;
    w.subscribe("$SYS/broker/subscriptions/inactive", 0).await;
    wait_for_count(&mut w, "2").await;
    let mut p = RawClient::connect(b.addr(), V311, &unique("p")).await;
    p.publish(&format!("{t}/on"), b"", 1, false).await;
    wait_for_count(&mut w, "1").await;
}

/// Reads `$SYS` publications until one carries `want` (at most 20 of them).
async fn wait_for_count(w: &mut RawClient, want: &str) {
    let mut last = String::new();
    for _ in 0..20 {
        let m = w.recv_publish().await;
        last = String::from_utf8_lossy(&m.payload).into_owned();
        if last == want {
            return;
        }
    }
    assert_eq!(last, want);
}
