//! The MQTT 3.1.1 side of a link: rumqttc v4 options, the polling loop and its repairs, and
//! the translation of 3.1.1 publishes into the 5.0 terms the pump speaks (no properties).
//!
//! Owns: the v4 `EventLoop`. Must never publish, subscribe or ack (the pump does, through
//! the client); it only translates events for the shared bookkeeping.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Publish};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Request};

use super::{Ev, Poller, Setup, channel_capacity, v4_qos};

pub(super) fn start(setup: Setup<'_>, will: Option<LastWill>, poller: Poller) -> AsyncClient {
    let mut opts = MqttOptions::new(setup.client_id, setup.broker_addr(), setup.target.port);
    opts.set_transport(setup.transport.clone())
        .set_manual_acks(true)
        .set_clean_session(false)
        .set_keep_alive(setup.endpoint.keep_alive.max(Duration::from_secs(5)))
        .set_pending_throttle(Duration::ZERO)
        .set_request_channel_capacity(channel_capacity(setup.max_inflight))
        .set_inflight(setup.max_inflight.saturating_add(1));
    if let (Some(u), Some(p)) = (&setup.endpoint.username, &setup.endpoint.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    if let Some(will) = will {
        opts.set_last_will(rumqttc::LastWill::new(
            String::from_utf8_lossy(&will.topic).into_owned(),
            will.message.to_vec(),
            v4_qos(will.qos),
            will.retain,
        ));
    }
    let (client, eventloop) = AsyncClient::new(opts, channel_capacity(setup.max_inflight));
    tokio::spawn(run(poller, eventloop));
    client
}

async fn run(mut poller: Poller, mut eventloop: EventLoop) {
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                if let Some(ev) = translate(event)
                    && poller.on_ev(ev).is_err()
                {
                    return;
                }
            }
            Err(e) => {
                repair(&mut poller, &mut eventloop);
                if poller.went_down(e.to_string()).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn v5_qos(q: rumqttc::QoS) -> QoS {
    match q {
        rumqttc::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn translate(event: Event) -> Option<Ev> {
    Some(match event {
        Event::Incoming(Packet::ConnAck(ack)) => Ev::ConnAck {
            session_present: ack.session_present,
        },
        Event::Incoming(Packet::Publish(p)) => {
            let mut v5 = Publish::new(p.topic, v5_qos(p.qos), p.payload, None);
            v5.pkid = p.pkid;
            v5.retain = p.retain;
            v5.dup = p.dup;
            Ev::Publish(Box::new(v5))
        }
        Event::Outgoing(Outgoing::PubRec(pkid)) => Ev::OutgoingPubRec(pkid),
        Event::Incoming(Packet::PubRel(rel)) => Ev::IncomingPubRel(rel.pkid),
        Event::Outgoing(Outgoing::Publish(pkid)) => Ev::OutgoingPublish(pkid),
        Event::Outgoing(Outgoing::Subscribe(pkid)) => Ev::OutgoingSubscribe(pkid),
        Event::Incoming(Packet::SubAck(ack)) => Ev::SubAck {
            pkid: ack.pkid,
            refused: ack
                .return_codes
                .iter()
                .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                .then(|| "SUBACK 0x80 Failure".to_owned()),
        },
        // 3.1.1 acknowledgements carry no reason code: an ack is an acceptance.
        Event::Incoming(Packet::PubAck(ack)) => Ev::Acked {
            pkid: ack.pkid,
            accepted: true,
        },
        Event::Incoming(Packet::PubRec(rec)) => Ev::Acked {
            pkid: rec.pkid,
            accepted: true,
        },
        _ => return None,
    })
}

/// After rumqttc's own `clean()`: order pending publishes by first-send order, note which
/// unnumbered requests were moved there, re-register incoming QoS 2 ids.
fn repair(poller: &mut Poller, eventloop: &mut EventLoop) {
    let pending: Vec<Request> = eventloop.pending.drain(..).collect();
    let (mut publishes, others): (Vec<Request>, Vec<Request>) = pending
        .into_iter()
        .partition(|r| matches!(r, Request::Publish(p) if p.qos != rumqttc::QoS::AtMostOnce));
    let unnumbered = publishes
        .iter()
        .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
        .count();
    poller.note_drained(unnumbered);
    publishes.sort_by_key(|r| match r {
        Request::Publish(p) => poller.first_sent(p.pkid),
        _ => u64::MAX,
    });
    eventloop.pending.extend(others);
    eventloop.pending.extend(publishes);
    for pkid in &poller.awaiting_rel {
        let mut fake = rumqttc::Publish::new("", rumqttc::QoS::ExactlyOnce, Vec::new());
        fake.pkid = *pkid;
        if eventloop
            .state
            .handle_incoming_packet(Packet::Publish(fake))
            .is_ok()
        {
            eventloop.state.events.pop_back();
        }
    }
}
