//! Criterion benches of the codec: decode and encode per packet type, 3.1.1 and 5.0.
//!
//! Owns the measurement of CONNECT, PUBLISH (with and without 5.0 properties), SUBSCRIBE
//! and PUBACK through `canopy_proto::{decode, encode}`. It never asserts anything about
//! the timings; sample sizes are small so the whole file runs in well under a minute.
#![allow(clippy::unwrap_used)] // test and bench set-up: a failure should panic loudly

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use canopy_proto::{
    Connect, ConnectProperties, DecodeLimits, Packet, Protocol, PubAck, Publish, PublishProperties,
    QoS, Subscribe, SubscribeProperties, SubscriptionOptions, TopicFilter, TopicName, decode,
    encode,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const LIMITS: DecodeLimits = DecodeLimits {
    max_packet_size: 1 << 20,
};

fn connect(protocol: Protocol) -> Packet {
    let properties = if protocol.is_v5() {
        ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(256),
            ..ConnectProperties::default()
        }
    } else {
        ConnectProperties::default()
    };
    Packet::Connect(Box::new(Connect {
        protocol: Some(protocol),
        clean_start: true,
        keep_alive: 60,
        client_id: "bench-client-0001".to_owned(),
        username: Some("user".to_owned()),
        password: Some(Bytes::from_static(b"secret")),
        properties,
        ..Connect::default()
    }))
}

fn publish(properties: PublishProperties) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: Some(TopicName::new("site/42/dev/17/temp").unwrap()),
        pkid: Some(7),
        properties,
        payload: Bytes::from(vec![0x5a; 64]),
    })
}

fn rich_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        response_topic: Some(TopicName::new("reply/site/42").unwrap()),
        correlation_data: Some(Bytes::from_static(b"corr-0001")),
        user_properties: vec![("unit".to_owned(), "celsius".to_owned())],
        content_type: Some("application/json".to_owned()),
        ..PublishProperties::default()
    }
}

fn subscribe() -> Packet {
    let filters = ["site/+/dev/+/temp", "site/42/#", "alerts/critical"]
        .iter()
        .map(|f| {
            let options = SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            };
            (TopicFilter::new(f).unwrap(), options)
        })
        .collect();
    Packet::Subscribe(Subscribe {
        pkid: 3,
        filters,
        properties: SubscribeProperties::default(),
    })
}

fn cases(protocol: Protocol) -> Vec<(&'static str, Packet)> {
    let mut v = vec![
        ("connect", connect(protocol)),
        ("publish", publish(PublishProperties::default())),
        ("subscribe", subscribe()),
        ("puback", Packet::PubAck(PubAck::new(7))),
    ];
    if protocol.is_v5() {
        v.push(("publish_props", publish(rich_properties())));
    }
    v
}

fn codec(c: &mut Criterion) {
    for (protocol, name) in [(Protocol::V311, "v311"), (Protocol::V5, "v5")] {
        let mut g = c.benchmark_group(format!("codec_{name}"));
        for (packet_name, packet) in cases(protocol) {
            let mut wire = BytesMut::new();
            encode(&packet, protocol, &mut wire).unwrap();
            let wire = wire.freeze();
            let mut out = BytesMut::with_capacity(1024);
            g.bench_function(format!("encode_{packet_name}"), |b| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(&packet), protocol, &mut out).unwrap();
                    black_box(out.len())
                })
            });
            g.bench_function(format!("decode_{packet_name}"), |b| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| black_box(decode(&mut buf, protocol, &LIMITS).unwrap()),
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(800))
}

criterion_group! {
    name = benches;
    config = config();
    targets = codec
}
criterion_main!(benches);
