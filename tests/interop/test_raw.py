"""Packet-level checks with a raw socket client (rawmqtt.py).

Owns: exactly-once onward delivery when a QoS 2 PUBLISH is re-sent with DUP
before PUBREL (same connection, and across a reconnect to a persistent
session); the client's Receive Maximum and Maximum Packet Size; empty client
identifiers (3.1.1 refusal with a persistent session, 5.0 assigned id).
Must never: rely on paho's own retry or acknowledgement logic where the test
is about them (these tests choose every byte).
"""

import struct
import uuid

import pytest

import rawmqtt
from rawmqtt import PUBCOMP, PUBREC, RawClient

LEVELS = {"3.1.1": 4, "5.0": 5}


def packet_id_of(body):
    return struct.unpack(">H", body[:2])[0]


@pytest.mark.parametrize("version", ["3.1.1", "5.0"])
def test_resent_qos2_publish_before_pubrel_is_delivered_once(make_client, topic, version):
    # 3.1.1 [MQTT-4.3.3-2] method B / 5.0 [MQTT-4.3.3-9]: a PUBLISH re-sent with the same
    # packet id before PUBREL gets another PUBREC and causes no duplicate onward delivery.
    level = LEVELS[version]
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/x", qos=2)
    raw = RawClient()
    raw.connect(f"raw-{uuid.uuid4().hex[:12]}", level)
    raw.send(rawmqtt.publish(f"{topic}/x", b"once", level, qos=2, packet_id=7))
    assert packet_id_of(raw.expect(PUBREC)) == 7
    raw.send(rawmqtt.publish(f"{topic}/x", b"once", level, qos=2, packet_id=7, dup=True))
    assert packet_id_of(raw.expect(PUBREC)) == 7
    raw.send(rawmqtt.pubrel(7))
    assert packet_id_of(raw.expect(PUBCOMP)) == 7
    raw.send(rawmqtt.disconnect())
    raw.close()
    assert sub.expect_one().payload == b"once"
    sub.expect_none()


@pytest.mark.parametrize("version", ["3.1.1", "5.0"])
def test_qos2_publish_resent_after_reconnect_is_delivered_once(make_client, topic, version):
    # [MQTT-4.4.0-1]: on reconnect with a persistent session the sender re-sends the
    # unacknowledged PUBLISH with DUP; the session remembers the packet id, so the
    # message still reaches subscribers exactly once.
    level = LEVELS[version]
    expiry = 60 if level == 5 else None
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/x", qos=2)
    client_id = f"raw-{uuid.uuid4().hex[:12]}"
    raw = RawClient()
    raw.connect(client_id, level, clean=False, session_expiry=expiry)
    raw.send(rawmqtt.publish(f"{topic}/x", b"once", level, qos=2, packet_id=9))
    assert packet_id_of(raw.expect(PUBREC)) == 9
    raw.close()  # the connection dies as if the PUBREC never reached the client
    raw = RawClient()
    assert raw.connect(client_id, level, clean=False, session_expiry=expiry) is True
    raw.send(rawmqtt.publish(f"{topic}/x", b"once", level, qos=2, packet_id=9, dup=True))
    assert packet_id_of(raw.expect(PUBREC)) == 9
    raw.send(rawmqtt.pubrel(9))
    assert packet_id_of(raw.expect(PUBCOMP)) == 9
    raw.send(rawmqtt.disconnect())
    raw.close()
    assert sub.expect_one().payload == b"once"
    sub.expect_none()
    tidy = RawClient()
    tidy.connect(client_id, level, clean=True)
    tidy.send(rawmqtt.disconnect())
    tidy.close()


def test_server_respects_the_client_receive_maximum(make_client, topic):
    # 5.0 [MQTT-3.3.4-7]: no more unacknowledged QoS 1/2 PUBLISH packets than the
    # client's Receive Maximum; the next one follows each PUBACK.
    raw = RawClient()
    raw.connect(f"raw-{uuid.uuid4().hex[:12]}", 5, receive_maximum=2)
    raw.send(rawmqtt.subscribe(1, f"{topic}/x", 5, qos=1))
    raw.expect(rawmqtt.SUBACK)
    pub = make_client("5.0").connect()
    for i in range(5):
        pub.publish(f"{topic}/x", f"{i}".encode(), qos=1)
    got = []
    for _ in range(2):
        flags, body = raw.read()[1:]
        got.append(rawmqtt.parse_publish(flags, body, 5))
    raw.expect_silence(1.0)
    while len(got) < 5:
        raw.send(rawmqtt.puback(got[len(got) - 2][1]))
        t, flags, body = raw.read()
        assert t == rawmqtt.PUBLISH
        got.append(rawmqtt.parse_publish(flags, body, 5))
    assert [p for _, _, p in got] == [f"{i}".encode() for i in range(5)]
    raw.close()


def test_server_drops_messages_larger_than_the_client_maximum_packet_size(make_client, topic):
    # 5.0 [MQTT-3.1.2-24]/[MQTT-3.1.2-25]: never send a packet over the client's Maximum
    # Packet Size; such a message is discarded for that client.
    raw = RawClient()
    raw.connect(f"raw-{uuid.uuid4().hex[:12]}", 5, maximum_packet_size=128)
    raw.send(rawmqtt.subscribe(1, f"{topic}/x", 5, qos=0))
    raw.expect(rawmqtt.SUBACK)
    pub = make_client("5.0").connect()
    pub.publish(f"{topic}/x", b"B" * 500, qos=1)
    pub.publish(f"{topic}/x", b"small", qos=1)
    flags, body = raw.read()[1:]
    assert rawmqtt.parse_publish(flags, body, 5)[2] == b"small"
    raw.close()


def test_311_empty_client_id_needs_a_clean_session():
    # 3.1.1 [MQTT-3.1.3-8]: zero-length ClientId with CleanSession 0 -> CONNACK 0x02, close;
    # [MQTT-3.1.3-6]: with CleanSession 1 it is accepted.
    raw = RawClient()
    raw.send(rawmqtt.connect("", 4, clean=False))
    assert raw.expect(rawmqtt.CONNACK) == b"\x00\x02"
    raw.close()
    raw = RawClient()
    raw.send(rawmqtt.connect("", 4, clean=True))
    assert raw.expect(rawmqtt.CONNACK) == b"\x00\x00"
    raw.close()


def test_v5_empty_client_id_gets_an_assigned_client_identifier(make_client):
    # 5.0 [MQTT-3.2.2-16]: the CONNACK carries the Assigned Client Identifier.
    c = make_client("5.0", client_id="").connect()
    assigned = getattr(c.connack_properties, "AssignedClientIdentifier", "")
    assert assigned, "CONNACK must carry an Assigned Client Identifier"
