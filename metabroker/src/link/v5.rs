//! The MQTT 5.0 side of a link: rumqttc v5 options, the polling loop and its repairs.
//!
//! Owns: the v5 `EventLoop`. Must never publish, subscribe or ack (the pump does, through
//! the client); it only translates events for the shared bookkeeping.

use std::time::Duration;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    LastWill, Packet, PubAckReason, PubRecReason, Publish, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions, Request};

use super::{Ev, Poller, Setup, channel_capacity};

pub(super) fn start(setup: Setup<'_>, will: Option<LastWill>, poller: Poller) -> AsyncClient {
    let mut opts = MqttOptions::new(setup.client_id, setup.broker_addr(), setup.target.port);
    opts.set_transport(setup.transport.clone())
        .set_manual_acks(true)
        .set_clean_start(false)
        .set_session_expiry_interval(Some(u32::MAX))
        .set_keep_alive(setup.endpoint.keep_alive.max(Duration::from_secs(5)))
        .set_receive_maximum(Some(1000))
        .set_pending_throttle(Duration::ZERO)
        .set_request_channel_capacity(channel_capacity(setup.max_inflight))
        .set_outgoing_inflight_upper_limit(setup.max_inflight.saturating_add(1))
        .set_connection_timeout(5);
    if let (Some(u), Some(p)) = (&setup.endpoint.username, &setup.endpoint.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    if let Some(will) = will {
        opts.set_last_will(will);
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

fn translate(event: Event) -> Option<Ev> {
    Some(match event {
        Event::Incoming(Packet::ConnAck(ack)) => Ev::ConnAck {
            session_present: ack.session_present,
        },
        Event::Incoming(Packet::Publish(p)) => Ev::Publish(Box::new(p)),
        Event::Outgoing(Outgoing::PubRec(pkid)) => Ev::OutgoingPubRec(pkid),
        Event::Incoming(Packet::PubRel(rel)) => Ev::IncomingPubRel(rel.pkid),
        Event::Outgoing(Outgoing::Publish(pkid)) => Ev::OutgoingPublish(pkid),
        Event::Outgoing(Outgoing::Subscribe(pkid)) => Ev::OutgoingSubscribe(pkid),
        Event::Incoming(Packet::SubAck(ack)) => Ev::SubAck {
            pkid: ack.pkid,
            refused: ack
                .return_codes
                .iter()
                .find(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                .map(|c| format!("{c:?}")),
        },
        Event::Incoming(Packet::PubAck(ack)) => Ev::Acked {
            pkid: ack.pkid,
            accepted: matches!(
                ack.reason,
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers
            ),
        },
        Event::Incoming(Packet::PubRec(rec)) => Ev::Acked {
            pkid: rec.pkid,
            accepted: matches!(
                rec.reason,
                PubRecReason::Success | PubRecReason::NoMatchingSubscribers
            ),
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
        .partition(|r| matches!(r, Request::Publish(p) if p.qos != QoS::AtMostOnce));
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
        let mut fake = Publish::new("", QoS::ExactlyOnce, Vec::new(), None);
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
