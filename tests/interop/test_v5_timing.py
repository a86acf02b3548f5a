"""MQTT 5.0 behaviour driven by intervals: will delay and message expiry.

Owns: Will Delay Interval (delayed will, will suppressed by a reconnect,
will sent at session end), Message Expiry Interval (expired queued and
retained messages dropped, remaining interval decremented on delivery).
Must never: sleep longer than a few seconds per test; every interval here is
1-3 s and every wait is bounded.
"""

import time

from paho.mqtt.packettypes import PacketTypes

from conftest import WAIT, prop, props


def will(topic, delay, payload=b"gone"):
    return {
        "topic": topic,
        "payload": payload,
        "qos": 1,
        "properties": props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay),
    }


# ---------------------------------------------------------------- will delay


def test_will_is_delayed_by_the_will_delay_interval(make_client, topic):
    # [MQTT-3.1.3-9]: the will is published when the Will Delay Interval has passed.
    watcher = make_client().connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    dying = make_client().connect(clean_start=True, session_expiry=60, will=will(f"{topic}/will", 2))
    dying.kill()
    killed = time.monotonic()
    watcher.expect_none(1.0)
    m = watcher.expect_one(timeout=WAIT)
    assert m.payload == b"gone"
    assert time.monotonic() - killed >= 1.5, "will arrived before its 2 s delay"
    make_client(client_id=dying.client_id).connect(clean_start=True)  # end the session


def test_will_is_not_sent_when_the_client_reconnects_within_the_delay(make_client, topic):
    # [MQTT-3.1.3-9]: a new connection to the session before the delay passes cancels the will.
    watcher = make_client().connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    dying = make_client().connect(clean_start=True, session_expiry=60, will=will(f"{topic}/will", 2))
    dying.kill()
    back = make_client(client_id=dying.client_id).connect(clean_start=False, session_expiry=60)
    assert back.session_present is True
    watcher.expect_none(3.5)
    back.disconnect()
    watcher.expect_none(0.5)


def test_will_is_sent_when_the_session_ends_before_the_delay(make_client, topic):
    # 5.0 section 3.1.3.2.2: the will is published when the delay passes *or the session
    # ends*, whichever is first. Session expiry 1 s < will delay 30 s.
    watcher = make_client().connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    dying = make_client().connect(clean_start=True, session_expiry=1, will=will(f"{topic}/will", 30))
    dying.kill()
    m = watcher.expect_one(timeout=WAIT)
    assert m.payload == b"gone"


def test_will_carries_its_properties(make_client, topic):
    # [MQTT-3.1.3-10]: will properties (user properties, content type) go with the will.
    watcher = make_client().connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    will_props = props(PacketTypes.WILLMESSAGE, ContentType="text/plain",
                       UserProperty=[("k", "v1"), ("k", "v2")])
    dying = make_client().connect(
        will={"topic": f"{topic}/will", "payload": b"gone", "qos": 1, "properties": will_props})
    dying.kill()
    m = watcher.expect_one()
    assert prop(m, "ContentType") == "text/plain"
    assert prop(m, "UserProperty") == [("k", "v1"), ("k", "v2")]


# ---------------------------------------------------------------- message expiry


def test_expired_queued_message_is_not_delivered_and_remaining_expiry_is_decremented(make_client, topic):
    # [MQTT-3.3.2-5]: an expired message is not delivered to a subscriber;
    # [MQTT-3.3.2-6]: the forwarded interval is the received one minus the time waited.
    sub = make_client().connect(clean_start=True, session_expiry=60)
    sub.subscribe(f"{topic}/#", qos=1)
    sub.disconnect()
    pub = make_client().connect()
    pub.publish(f"{topic}/short", b"short", qos=1,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(f"{topic}/long", b"long", qos=1,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    time.sleep(2.2)
    back = make_client(client_id=sub.client_id).connect(clean_start=False, session_expiry=60)
    assert back.session_present is True
    m = back.expect_one()
    assert (m.topic, m.payload) == (f"{topic}/long", b"long")
    remaining = prop(m, "MessageExpiryInterval")
    assert remaining is not None, "a message published with an expiry must carry it"
    assert 1 <= remaining <= 58, f"remaining expiry {remaining} not decremented by the 2 s wait"
    back.expect_none()
    back.disconnect()
    make_client(client_id=sub.client_id).connect(clean_start=True)  # end the session


def test_expired_retained_message_is_not_delivered(make_client, topic):
    # [MQTT-3.3.2-5] applies to retained messages too (5.0 section 3.3.2.3.3).
    pub = make_client().connect()
    pub.publish(f"{topic}/r", b"brief", qos=1, retain=True,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    time.sleep(2.2)
    sub = make_client().connect()
    sub.subscribe(f"{topic}/r", qos=1)
    sub.expect_none()


def test_message_without_expiry_carries_no_expiry_property(make_client, topic):
    sub = make_client().connect()
    sub.subscribe(f"{topic}/x", qos=1)
    make_client().connect().publish(f"{topic}/x", b"plain", qos=1)
    m = sub.expect_one()
    assert prop(m, "MessageExpiryInterval") is None
