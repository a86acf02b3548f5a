//! A connection served over a byte stream that is not TCP: the connection task is
//! generic over its transport (TLS and WebSocket listeners rely on this).

mod support;

use std::time::Duration;

use canopy_broker::Config;
use canopy_proto::{Packet, QoS};
use support::Client;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_in_memory_pipe_carries_a_whole_mqtt_session() {
    let broker = canopy_broker::start(Config::ephemeral()).await.unwrap();
    let peer = "127.0.0.1:9".parse().unwrap();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    broker.attach(theirs, peer);
    let mut c = Client::over(ours, "piped", true, 0).await.unwrap();
    c.subscribe("pipe/#", QoS::AtLeastOnce).await.unwrap();

    // A TCP client publishes; the piped subscriber receives it.
    let mut tcp = Client::connect(broker.mqtt_addr(), "tcp", true, 0)
        .await
        .unwrap();
    tcp.publish("pipe/a", b"hello", QoS::AtLeastOnce, 1)
        .await
        .unwrap();
    let got = c.recv_timeout(WAIT).await.unwrap();
    match got {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic.unwrap().as_str(), "pipe/a");
            assert_eq!(&p.payload[..], b"hello");
        }
        other => panic!("expected the PUBLISH, got {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn bytes_trickled_one_at_a_time_still_make_packets() {
    // The transport learns readiness by peeking one byte; a CONNECT arriving byte by
    // byte must be reassembled exactly.
    let broker = canopy_broker::start(Config::ephemeral()).await.unwrap();
    let (mut ours, theirs) = tokio::io::duplex(1024);
    broker.attach(theirs, "127.0.0.1:9".parse().unwrap());
    // CONNECT 3.1.1, client id "t", keep alive 0.
    let connect = [
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b't',
    ];
    for b in connect {
        ours.write_all(&[b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut ack = [0u8; 4];
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_exact(&mut ours, &mut ack),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK accepted [MQTT-3.2.2-1]");
    broker.shutdown().await;
}
