"""Packet-level QoS 2 checks with a raw socket client (rawmqtt.py).

Owns: exactly-once onward delivery when a QoS 2 PUBLISH is re-sent with DUP
before PUBREL, on the same connection and across a reconnect to a persistent
session.
Must never: rely on paho's own retry logic (these tests choose every byte).
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
