//! The repairs at a disconnect, on rumqttc state driven by hand (no network): a packet
//! "written" is one rumqttc numbered and whose queued event the poller was handed.

use rumqttc::v5::mqttbytes::v5::{Packet, PubComp, PubRec};
use rumqttc::v5::{EventLoop, Request};

use super::*;

/// A poller with no network behind it: its bookkeeping shared with the pump, and the
/// receiving end of its events.
fn poller() -> (
    Poller,
    Arc<Mutex<Correlation>>,
    mpsc::UnboundedReceiver<LinkEvent>,
) {
    let shared = Arc::new(Mutex::new(Correlation::default()));
    let (events, rx) = mpsc::unbounded_channel();
    let poller = Poller {
        side: Side::Remote,
        shared: shared.clone(),
        epoch: Arc::new(AtomicU64::new(0)),
        inflight: HashMap::new(),
        drained: VecDeque::new(),
        incoming_qos2: HashSet::new(),
        awaiting_rel: HashSet::new(),
        connected_once: true,
        down: false,
        events,
        client_id: "repair".to_owned(),
        subscribed: HashMap::new(),
    };
    (poller, shared, rx)
}

fn connection(version: Version, inflight: u16) -> (Client, Connection) {
    let mut options = Options::new(version, "repair", "127.0.0.1", 1883);
    options.max_inflight = Some(inflight);
    options.connect()
}

fn v5(connection: &mut Connection) -> &mut EventLoop {
    connection.v5_loop().expect("a 5.0 connection")
}

fn publish(seq: u64) -> Publish {
    Publish::new("t", QoS::ExactlyOnce, seq.to_string(), None)
}

/// Hands the poller every event rumqttc queued, as the polling loop does.
fn poll_events(poller: &mut Poller, connection: &mut Connection) {
    while let Some(e) = connection.next_queued() {
        if let Some(ev) = translate(e) {
            poller.on_ev(ev).unwrap();
        }
    }
}

/// rumqttc takes `request` and writes it; the write succeeds. The packet id written.
fn send(poller: &mut Poller, connection: &mut Connection, request: Request) -> u16 {
    let written = v5(connection)
        .state
        .handle_outgoing_packet(request)
        .unwrap();
    poll_events(poller, connection);
    match written {
        Some(Packet::Publish(p)) => p.pkid,
        _ => 0,
    }
}

/// The broker takes over packet id `pkid` (PUBREC, PUBCOMP).
fn complete(poller: &mut Poller, connection: &mut Connection, pkid: u16) {
    let pubrec = Packet::PubRec(PubRec::new(pkid, None));
    v5(connection).state.handle_incoming_packet(pubrec).unwrap();
    poll_events(poller, connection);
    let pubcomp = Packet::PubComp(PubComp::new(pkid, None));
    v5(connection)
        .state
        .handle_incoming_packet(pubcomp)
        .unwrap();
    poll_events(poller, connection);
}

/// Payloads of the publishes rumqttc will resend, in resend order.
fn pending_payloads(connection: &mut Connection) -> Vec<String> {
    v5(connection)
        .pending
        .iter()
        .filter_map(|r| match r {
            Request::Publish(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => None,
        })
        .collect()
}

/// The reconnected link resends pending in order; the broker PUBRECs each: the pump's
/// sequences acknowledged, in order.
fn resend_and_ack(
    poller: &mut Poller,
    connection: &mut Connection,
    rx: &mut mpsc::UnboundedReceiver<LinkEvent>,
) -> Vec<u64> {
    while let Some(request) = v5(connection).pending.pop_front() {
        let pkid = send(poller, connection, request);
        if pkid != 0 {
            complete(poller, connection, pkid);
        }
    }
    let mut acked = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let LinkEvent::Acked { seq, .. } = e {
            acked.push(seq);
        }
    }
    acked
}

#[test]
fn publish_whose_write_failed_is_resent_after_the_older_unacked_one() {
    // [MQTT-4.6.0-1]: re-sent in the order the originals were sent.
    let (mut poller, shared, mut rx) = poller();
    let (client, mut conn) = connection(Version::V5, 65);
    shared.lock().unwrap().fifo.extend(1..=4);
    // 1 and 2 are written; the broker takes over 1, 2 is lost with the connection.
    let first = send(&mut poller, &mut conn, Request::Publish(publish(1)));
    send(&mut poller, &mut conn, Request::Publish(publish(2)));
    complete(&mut poller, &mut conn, first);
    // 3 is numbered but its write fails: its event stays queued inside rumqttc.
    let numbered = Request::Publish(publish(3));
    v5(&mut conn)
        .state
        .handle_outgoing_packet(numbered)
        .unwrap();
    // 4 is still in the request channel.
    client.try_publish(publish(4)).unwrap();
    v5(&mut conn).clean();
    poller.repair(&mut conn);
    assert_eq!(pending_payloads(&mut conn), ["2", "3", "4"]);
    let acked = resend_and_ack(&mut poller, &mut conn, &mut rx);
    assert_eq!(
        acked,
        [1, 2, 3, 4],
        "packet ids still map to the pump's sequences"
    );
}

#[test]
fn wrapped_packet_ids_are_resent_in_first_send_order() {
    // [MQTT-4.6.0-1] when packet id 1 is reused for a later publish.
    let (mut poller, shared, mut rx) = poller();
    let (_client, mut conn) = connection(Version::V5, 3);
    shared.lock().unwrap().fifo.extend(1..=4);
    let ids: Vec<u16> = (1..=3)
        .map(|seq| send(&mut poller, &mut conn, Request::Publish(publish(seq))))
        .collect();
    complete(&mut poller, &mut conn, ids[0]);
    let reused = send(&mut poller, &mut conn, Request::Publish(publish(4)));
    assert_eq!(reused, ids[0], "the packet id wrapped");
    v5(&mut conn).clean();
    poller.repair(&mut conn);
    assert_eq!(pending_payloads(&mut conn), ["2", "3", "4"]);
    assert_eq!(
        resend_and_ack(&mut poller, &mut conn, &mut rx),
        [1, 2, 3, 4]
    );
}

#[test]
fn publish_whose_write_failed_on_3_1_1_is_resent_after_the_older_unacked_one() {
    // [MQTT-4.6.0-1]: re-sent in the order the originals were sent.
    let v4_publish = |seq: u64| {
        rumqttc::Request::Publish(rumqttc::Publish::new(
            "t",
            rumqttc::QoS::ExactlyOnce,
            seq.to_string(),
        ))
    };
    let (mut poller, shared, _rx) = poller();
    let (client, mut conn) = connection(Version::V311, 16);
    shared.lock().unwrap().fifo.extend(1..=3);
    // 1 is written and lost with the connection.
    let el = conn.v4_loop().expect("a 3.1.1 connection");
    el.state.handle_outgoing_packet(v4_publish(1)).unwrap();
    poll_events(&mut poller, &mut conn);
    // 2 is numbered but its write fails: its event stays queued inside rumqttc.
    let el = conn.v4_loop().expect("a 3.1.1 connection");
    el.state.handle_outgoing_packet(v4_publish(2)).unwrap();
    // 3 is still in the request channel.
    client.try_publish(publish(3)).unwrap();
    conn.v4_loop().expect("a 3.1.1 connection").clean();
    poller.repair(&mut conn);
    let el = conn.v4_loop().expect("a 3.1.1 connection");
    let order: Vec<String> = el
        .pending
        .iter()
        .filter_map(|r| match r {
            rumqttc::Request::Publish(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["1", "2", "3"]);
    assert_eq!(poller.inflight.values().copied().max(), Some(2));
    assert_eq!(poller.drained, [3]);
}

#[test]
fn refused_config_subscription_says_which_admins_entry_to_add() {
    let m = refusal_message(
        Side::Remote,
        "$config/#",
        "Not authorized (0x87)",
        "site-remote",
    );
    assert!(
        m.starts_with(
            "the remote broker refused the subscription to \"$config/#\" (Not authorized (0x87))"
        ),
        "{m}"
    );
    assert!(
        m.contains("add \"site-remote\" to `admins` in the [config] table"),
        "{m}"
    );
    let m = refusal_message(Side::Local, "map/#", "Failure (0x80)", "x");
    assert!(m.contains("local broker allows client \"x\""), "{m}");
}
