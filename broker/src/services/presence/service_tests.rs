//! The presence agent on a fake host: two users, three devices.

use std::time::Duration;

use canopy_proto::{Protocol, PublishProperties};

use super::*;
use crate::services::testing::{FakeHost, message};

fn agent() -> PresenceService {
    PresenceService::with_wall_clock(&PresenceConfig::default(), || 1_000)
}

const PHONE: &str = "$presence/alice/devices/phone";
const LAPTOP: &str = "$presence/alice/devices/laptop";
const DESK: &str = "$presence/bob/devices/desk";

fn doc(availability: &str, activity: &str) -> Vec<u8> {
    format!(r#"{{"availability":"{availability}","activity":"{activity}"}}"#).into_bytes()
}

fn aggregate_of(host: &FakeHost, user: &str) -> Aggregate {
    let payload = host
        .retained_payload(&format!("$presence/{user}"))
        .unwrap_or_else(|| panic!("no aggregate for {user}"));
    serde_json::from_slice(&payload).unwrap()
}

fn request_of(host: &FakeHost, user: &str, watcher: &str) -> Request {
    let payload = host
        .retained_payload(&format!("$presence/{user}/requests/{watcher}"))
        .unwrap_or_else(|| panic!("no request of {watcher} for {user}"));
    serde_json::from_slice(&payload).unwrap()
}

/// Publishes as the router does: the service sees it, then it is retained unless consumed.
fn publish_from(
    agent: &mut PresenceService,
    host: &mut FakeHost,
    from: Option<&ClientInfo>,
    topic: &str,
    payload: &[u8],
) -> Disposition {
    let msg = message(topic, payload);
    let d = agent.on_publish(host, from, &msg);
    if d == Disposition::Route {
        let mut m = (*msg).clone();
        m.retain = true;
        host.set_retained(m);
    }
    d
}

/// Subscribes `client` to `$presence/<user>` as the router does (gate, then install).
fn watch(
    agent: &mut PresenceService,
    host: &mut FakeHost,
    client: &ClientInfo,
    user: &str,
) -> Option<bool> {
    let filter = format!("$presence/{user}");
    let gate = agent.gate_subscription(host, client, &filter);
    if let Some(active) = gate {
        host.gate(&client.client_id, &filter, active);
    }
    gate
}

/// Two users, three devices: alice's phone and laptop, bob's desk.
fn two_users(agent: &mut PresenceService, host: &mut FakeHost) -> [ClientInfo; 3] {
    agent.on_start(host);
    let phone = host.connect_user("alice-phone", "alice", Protocol::V5);
    let laptop = host.connect_user("alice-laptop", "alice", Protocol::V311);
    let desk = host.connect_user("bob-desk", "bob", Protocol::V5);
    publish_from(agent, host, Some(&phone), PHONE, &doc("busy", "idle"));
    publish_from(
        agent,
        host,
        Some(&laptop),
        LAPTOP,
        &doc("do-not-disturb", "active"),
    );
    publish_from(agent, host, Some(&desk), DESK, &doc("available", "away"));
    [phone, laptop, desk]
}

#[test]
fn each_user_gets_an_aggregate_of_their_own_devices() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    two_users(&mut agent, &mut host);
    let alice = aggregate_of(&host, "alice");
    assert_eq!(alice.availability, doc::Availability::Busy);
    assert_eq!(alice.activity, doc::Activity::Active);
    assert_eq!(
        alice.devices.keys().collect::<Vec<_>>(),
        ["laptop", "phone"]
    );
    let bob = aggregate_of(&host, "bob");
    assert_eq!(bob.availability, doc::Availability::Available);
    assert_eq!(bob.devices.len(), 1);
    // A repeated, unchanged document publishes nothing new.
    let before = host.published_to("$presence/alice").len();
    let phone = host.client("alice-phone").unwrap();
    publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        PHONE,
        &doc("busy", "idle"),
    );
    assert_eq!(host.published_to("$presence/alice").len(), before);
}

#[test]
fn invalid_device_documents_are_consumed_and_change_nothing() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, ..] = two_users(&mut agent, &mut host);
    let before = aggregate_of(&host, "alice");
    for bad in [
        &b"{}"[..],
        b"not json",
        br#"{"availability":"asleep","activity":"idle"}"#,
    ] {
        assert_eq!(
            publish_from(&mut agent, &mut host, Some(&phone), PHONE, bad),
            Disposition::Consume
        );
    }
    assert_eq!(aggregate_of(&host, "alice"), before);
}

#[test]
fn an_ended_connection_turns_its_device_offline_after_the_grace() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, ..] = two_users(&mut agent, &mut host);
    host.disconnect("alice-phone");
    agent.on_disconnect(&mut host, &phone, "connection lost");
    host.advance(Duration::from_millis(4_999));
    assert!(agent.poll_timeout().is_some_and(|t| t > host.now()));
    assert_eq!(
        aggregate_of(&host, "alice").devices["phone"].availability,
        doc::Availability::Busy
    );
    host.advance(Duration::from_millis(1));
    assert!(crate::services::testing::fire_due(&mut agent, &mut host));
    let alice = aggregate_of(&host, "alice");
    assert_eq!(
        alice.devices["phone"].availability,
        doc::Availability::Offline
    );
    assert_eq!(alice.devices["phone"].since, 1_000 + 5_000);
    // The laptop still decides; bob is untouched.
    assert_eq!(alice.availability, doc::Availability::DoNotDisturb);
    assert_eq!(
        aggregate_of(&host, "bob").availability,
        doc::Availability::Available
    );
}

#[test]
fn a_quick_reconnect_does_not_flicker_offline() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, ..] = two_users(&mut agent, &mut host);
    let published = host.published_to("$presence/alice").len();
    agent.on_disconnect(&mut host, &phone, "connection lost");
    host.advance(Duration::from_secs(2));
    let phone = host.connect_user("alice-phone", "alice", Protocol::V5);
    agent.on_connect(&mut host, &phone, false);
    host.advance(Duration::from_secs(10));
    assert_eq!(agent.poll_timeout(), None);
    assert_eq!(host.published_to("$presence/alice").len(), published);
}

#[test]
fn a_device_republished_from_a_new_connection_is_kept_online() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, ..] = two_users(&mut agent, &mut host);
    agent.on_disconnect(&mut host, &phone, "keepalive timeout");
    let other = host.connect_user("alice-phone-2", "alice", Protocol::V5);
    publish_from(
        &mut agent,
        &mut host,
        Some(&other),
        PHONE,
        &doc("available", "active"),
    );
    host.advance(Duration::from_secs(10));
    assert_eq!(agent.poll_timeout(), None);
    assert_eq!(
        aggregate_of(&host, "alice").availability,
        doc::Availability::Available
    );
}

#[test]
fn a_permitted_watcher_is_active_at_once() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, _, _] = two_users(&mut agent, &mut host);
    publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        "$presence/alice/watchers",
        br#"["bob"]"#,
    );
    let bob = host.connect_user("bob-phone", "bob", Protocol::V5);
    assert_eq!(watch(&mut agent, &mut host, &bob, "alice"), Some(true));
    let r = request_of(&host, "alice", "bob");
    assert_eq!(r.state, RequestState::Approved);
    assert!(r.clients.contains("bob-phone"));
}

#[test]
fn a_watcher_is_pending_until_approved_and_inactive_once_revoked() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, _, desk] = two_users(&mut agent, &mut host);
    assert_eq!(watch(&mut agent, &mut host, &desk, "alice"), Some(false));
    assert_eq!(
        request_of(&host, "alice", "bob").state,
        RequestState::Pending
    );
    assert_eq!(host.gate_state("bob-desk", "$presence/alice"), Some(false));
    // Alice adds bob: the pending subscription activates.
    publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        "$presence/alice/watchers",
        br#"["bob","carol"]"#,
    );
    assert_eq!(host.gate_state("bob-desk", "$presence/alice"), Some(true));
    assert_eq!(
        request_of(&host, "alice", "bob").state,
        RequestState::Approved
    );
    // Removal deactivates it, and the request says so.
    publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        "$presence/alice/watchers",
        br#"["carol"]"#,
    );
    assert_eq!(host.gate_state("bob-desk", "$presence/alice"), Some(false));
    assert_eq!(
        request_of(&host, "alice", "bob").state,
        RequestState::Rejected
    );
}

#[test]
fn a_decision_on_the_request_approves_or_rejects() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, _, desk] = two_users(&mut agent, &mut host);
    watch(&mut agent, &mut host, &desk, "alice");
    let topic = "$presence/alice/requests/bob";
    let d = publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        topic,
        br#"{"state":"approved"}"#,
    );
    assert_eq!(d, Disposition::Consume);
    assert_eq!(host.gate_state("bob-desk", "$presence/alice"), Some(true));
    assert_eq!(
        host.published_to("$presence/alice/watchers")
            .last()
            .map(|b| b.to_vec()),
        Some(br#"["bob"]"#.to_vec())
    );
    publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        topic,
        br#"{"state":"rejected"}"#,
    );
    assert_eq!(host.gate_state("bob-desk", "$presence/alice"), Some(false));
    assert_eq!(
        request_of(&host, "alice", "bob").state,
        RequestState::Rejected
    );
    // A rejected watcher who subscribes again stays rejected (and inactive).
    let again = host.connect_user("bob-tablet", "bob", Protocol::V311);
    assert_eq!(watch(&mut agent, &mut host, &again, "alice"), Some(false));
    assert_eq!(
        request_of(&host, "alice", "bob").state,
        RequestState::Rejected
    );
}

#[test]
fn star_permits_everyone_and_own_presence_is_not_gated() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, _, desk] = two_users(&mut agent, &mut host);
    assert_eq!(watch(&mut agent, &mut host, &phone, "alice"), None);
    publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        "$presence/alice/watchers",
        b"\"*\"",
    );
    assert_eq!(watch(&mut agent, &mut host, &desk, "alice"), Some(true));
    // Anonymous watchers go by their client id.
    let anon = host.connect("kiosk", false, Protocol::V311);
    assert_eq!(watch(&mut agent, &mut host, &anon, "alice"), Some(true));
    assert_eq!(
        request_of(&host, "alice", "kiosk").state,
        RequestState::Approved
    );
    assert_eq!(
        agent.gate_subscription(&mut host, &desk, "$presence/alice/devices/phone"),
        None
    );
}

#[test]
fn requests_watchers_and_devices_survive_a_restart() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    let [phone, _, desk] = two_users(&mut agent, &mut host);
    publish_from(
        &mut agent,
        &mut host,
        Some(&phone),
        "$presence/alice/watchers",
        br#"["carol"]"#,
    );
    watch(&mut agent, &mut host, &desk, "alice");
    let gated = host.gated.clone();
    // Restart: a new agent over the retained documents; connections are gone.
    let mut host = FakeHost::with_retained(host.retained_messages());
    host.gated = gated;
    let mut agent = self::agent();
    agent.on_start(&mut host);
    assert_eq!(
        request_of(&host, "alice", "bob").state,
        RequestState::Pending
    );
    // Approval after the restart activates the subscription kept in bob's session.
    publish_from(
        &mut agent,
        &mut host,
        None,
        "$presence/alice/watchers",
        br#"["carol","bob"]"#,
    );
    assert_eq!(host.gate_state("bob-desk", "$presence/alice"), Some(true));
    // Devices that do not come back turn offline one grace after the start.
    host.advance(Duration::from_secs(5));
    assert!(crate::services::testing::fire_due(&mut agent, &mut host));
    assert_eq!(
        aggregate_of(&host, "alice").availability,
        doc::Availability::Offline
    );
    assert_eq!(
        aggregate_of(&host, "bob").availability,
        doc::Availability::Offline
    );
}

#[test]
fn forwarded_documents_are_routed_untouched() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    agent.on_start(&mut host);
    let bridge = host.connect("leaf-bridge", true, Protocol::V5);
    let props = PublishProperties {
        user_properties: vec![(
            canopy_model::hops::HOPS_PROPERTY.to_owned(),
            "leaf".to_owned(),
        )],
        ..Default::default()
    };
    let msg = crate::services::testing::message_with(PHONE, &doc("busy", "idle"), props);
    assert_eq!(
        agent.on_publish(&mut host, Some(&bridge), &msg),
        Disposition::Route
    );
    assert!(host.published_to("$presence/alice").is_empty());
}

#[test]
fn features_advertise_the_agent_and_a_disabled_agent_does_nothing() {
    let (mut agent, mut host) = (agent(), FakeHost::new());
    agent.on_start(&mut host);
    assert_eq!(
        host.retained_payload(FEATURES_TOPIC).as_deref(),
        Some(&br#"{"presence":true}"#[..])
    );
    let config = PresenceConfig {
        enabled: false,
        ..Default::default()
    };
    let (mut off, mut host) = (PresenceService::new(&config), FakeHost::new());
    off.on_start(&mut host);
    assert_eq!(
        host.retained_payload(FEATURES_TOPIC).as_deref(),
        Some(&br#"{"presence":false}"#[..])
    );
    assert!(off.topics().is_empty());
    let bob = host.connect_user("bob", "bob", Protocol::V5);
    assert_eq!(
        off.gate_subscription(&mut host, &bob, "$presence/alice"),
        None
    );
}
