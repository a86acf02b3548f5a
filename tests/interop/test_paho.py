"""Core behaviour shared by MQTT 3.1, 3.1.1 and 5.0, checked with paho-mqtt.

Owns: retained messages, wills (abnormal vs clean disconnect), persistent
sessions with queued QoS 1/2 messages, QoS 1/2 delivery counts, wildcard and
`$`-topic matching, client take-over, `$SYS` topics.
Must never: depend on another test's state (each test uses its own `topic`
prefix and client ids) or wait without a bound.
"""

import time

import pytest

from conftest import QUIET, WAIT

BOTH = ["3.1.1", "5.0"]
ALL = ["3.1", "3.1.1", "5.0"]


def payloads(messages):
    return [m.payload for m in messages]


# ---------------------------------------------------------------- retained


@pytest.mark.parametrize("version", ALL)
def test_retained_message_is_delivered_on_subscribe(make_client, topic, version):
    # [MQTT-3.3.1-5] store; [MQTT-3.3.1-6] deliver to new subscriptions; [MQTT-3.3.1-8] retain flag 1.
    pub = make_client(version).connect()
    pub.publish(f"{topic}/r", b"kept", qos=1, retain=True)
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/#", qos=1)
    m = sub.expect_one()
    assert (m.topic, m.payload, m.retain, m.qos) == (f"{topic}/r", b"kept", True, 1)
    sub.expect_none()


@pytest.mark.parametrize("version", BOTH)
def test_newer_retained_message_replaces_older(make_client, topic, version):
    pub = make_client(version).connect()
    pub.publish(f"{topic}/r", b"one", qos=1, retain=True)
    pub.publish(f"{topic}/r", b"two", qos=1, retain=True)
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/r", qos=1)
    assert sub.expect_one().payload == b"two"
    sub.expect_none()


@pytest.mark.parametrize("version", ALL)
def test_empty_retained_payload_clears_the_retained_message(make_client, topic, version):
    # [MQTT-3.3.1-10] zero-byte retained publish removes it; [MQTT-3.3.1-11] and is not stored.
    pub = make_client(version).connect()
    pub.publish(f"{topic}/r", b"kept", qos=1, retain=True)
    pub.publish(f"{topic}/r", b"", qos=1, retain=True)
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/#", qos=1)
    sub.expect_none()


@pytest.mark.parametrize("version", ["3.1.1"])
def test_live_delivery_of_retained_publish_clears_retain_flag(make_client, topic, version):
    # [MQTT-3.3.1-9]: 3.1.1 sends RETAIN 0 to established subscriptions. (5.0 is the
    # retain-as-published option, tested in test_v5.py.)
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/r", qos=1)
    pub = make_client(version).connect()
    pub.publish(f"{topic}/r", b"live", qos=1, retain=True)
    m = sub.expect_one()
    assert (m.payload, m.retain) == (b"live", False)


@pytest.mark.parametrize("version", BOTH)
def test_retained_message_is_delivered_at_the_lower_qos(make_client, topic, version):
    pub = make_client(version).connect()
    pub.publish(f"{topic}/r", b"q2", qos=2, retain=True)
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/r", qos=1)
    m = sub.expect_one()
    assert (m.payload, m.qos, m.retain) == (b"q2", 1, True)


# ---------------------------------------------------------------- wills


@pytest.mark.parametrize("version", ALL)
def test_will_is_published_when_the_connection_drops(make_client, topic, version):
    # [MQTT-3.1.2-8]: network connection closed without DISCONNECT -> will published.
    watcher = make_client(version).connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    dying = make_client(version).connect(will={"topic": f"{topic}/will", "payload": b"gone", "qos": 1})
    dying.kill()
    m = watcher.expect_one()
    assert (m.topic, m.payload) == (f"{topic}/will", b"gone")


@pytest.mark.parametrize("version", ALL)
def test_will_is_not_published_after_a_clean_disconnect(make_client, topic, version):
    # [MQTT-3.1.2-10] / [MQTT-3.14.4-3]: DISCONNECT discards the will.
    watcher = make_client(version).connect()
    watcher.subscribe(f"{topic}/will", qos=1)
    leaving = make_client(version).connect(will={"topic": f"{topic}/will", "payload": b"gone", "qos": 1})
    leaving.disconnect()
    watcher.expect_none()


@pytest.mark.parametrize("version", BOTH)
def test_retained_will_is_kept_as_retained_message(make_client, topic, version):
    # [MQTT-3.1.2-17]: will retain 1 -> published as a retained message.
    dying = make_client(version).connect(
        will={"topic": f"{topic}/status", "payload": b"offline", "qos": 1, "retain": True})
    dying.kill()
    deadline = time.monotonic() + WAIT
    while True:
        late = make_client(version).connect()
        late.subscribe(f"{topic}/status", qos=1)
        got = late.collect(0.5)
        late.disconnect()
        if got or time.monotonic() > deadline:
            break
    assert [(m.payload, m.retain) for m in got] == [(b"offline", True)]
    make_client(version).connect().publish(f"{topic}/status", b"", qos=1, retain=True)


# ---------------------------------------------------------------- sessions


def persistent(make_client, version, client_id=None):
    """Connect with a session that outlives the connection (3.1.1 clean_session=False,
    5.0 clean_start=False + session expiry 60 s)."""
    c = make_client(version, client_id=client_id, clean=False)
    if version == "5.0":
        return c.connect(clean_start=False, session_expiry=60)
    return c.connect()


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize("qos", [1, 2])
def test_queued_messages_reach_a_returning_persistent_session(make_client, topic, version, qos):
    # [MQTT-3.1.2-5] (3.1.1) / [MQTT-3.1.2-4..6] (5.0): the session keeps subscriptions and
    # stores QoS 1/2 messages while the client is away; session present is 1 on return.
    first = persistent(make_client, version)
    first.subscribe(f"{topic}/q", qos=qos)
    first.disconnect()
    pub = make_client(version).connect()
    sent = [f"m{i}".encode() for i in range(10)]
    for p in sent:
        pub.publish(f"{topic}/q", p, qos=qos)
    back = persistent(make_client, version, client_id=first.client_id)
    assert back.session_present is True
    got = back.expect(len(sent))
    assert payloads(got) == sent, "queued messages must arrive once each, in order"
    assert all(m.qos == qos for m in got)
    back.expect_none()
    back.disconnect()
    make_client(version, client_id=first.client_id).connect()  # clean session: tidy the broker


@pytest.mark.parametrize("version", BOTH)
def test_clean_session_discards_the_previous_session(make_client, topic, version):
    # [MQTT-3.1.2-6] (3.1.1) / [MQTT-3.1.2-4] (5.0): clean session/start discards state.
    first = persistent(make_client, version)
    first.subscribe(f"{topic}/q", qos=1)
    first.disconnect()
    fresh = make_client(version, client_id=first.client_id, clean=True).connect(clean_start=True)
    assert fresh.session_present is False
    make_client(version).connect().publish(f"{topic}/q", b"x", qos=1)
    fresh.expect_none()


def test_v5_session_with_zero_expiry_ends_at_disconnect(make_client, topic):
    # 5.0 [MQTT-3.1.2-23] default Session Expiry Interval 0: session ends with the connection.
    first = make_client("5.0").connect(clean_start=False)
    first.subscribe(f"{topic}/q", qos=1)
    first.disconnect()
    make_client("5.0").connect().publish(f"{topic}/q", b"x", qos=1)
    back = make_client("5.0", client_id=first.client_id).connect(clean_start=False)
    assert back.session_present is False
    back.expect_none()


def test_v5_session_expires_after_its_interval(make_client, topic):
    first = make_client("5.0").connect(clean_start=False, session_expiry=1)
    first.subscribe(f"{topic}/q", qos=1)
    first.disconnect()
    time.sleep(2.5)
    make_client("5.0").connect().publish(f"{topic}/q", b"x", qos=1)
    back = make_client("5.0", client_id=first.client_id).connect(clean_start=False)
    assert back.session_present is False
    back.expect_none()


# ---------------------------------------------------------------- QoS


@pytest.mark.parametrize("version", ALL)
def test_qos2_delivers_each_message_exactly_once(make_client, topic, version):
    # [MQTT-4.3.3]: exactly N distinct messages, no duplicates, in order ([MQTT-4.6.0-5]).
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/x", qos=2)
    pub = make_client(version).connect()
    n = 50
    infos = [pub.publish(f"{topic}/x", f"{i}".encode(), qos=2, wait=False) for i in range(n)]
    for info in infos:
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published()
    got = sub.expect(n)
    assert payloads(got) == [f"{i}".encode() for i in range(n)]
    assert all(m.qos == 2 and not m.dup for m in got)
    sub.expect_none()


@pytest.mark.parametrize("version", BOTH)
def test_qos1_delivers_every_message_in_order(make_client, topic, version):
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/x", qos=1)
    pub = make_client(version).connect()
    n = 50
    infos = [pub.publish(f"{topic}/x", f"{i}".encode(), qos=1, wait=False) for i in range(n)]
    for info in infos:
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published()
    got = sub.expect(n)
    assert payloads(got) == [f"{i}".encode() for i in range(n)]


@pytest.mark.parametrize("version", BOTH)
def test_delivery_qos_is_the_minimum_of_publish_and_subscription(make_client, topic, version):
    # [MQTT-3.8.4-6] (3.1.1) / 5.0 section 3.8.4: delivered at min(publish QoS, granted QoS).
    sub0 = make_client(version).connect()
    assert sub0.subscribe(f"{topic}/x", qos=0) == [0]
    sub1 = make_client(version).connect()
    assert sub1.subscribe(f"{topic}/x", qos=1) == [1]
    pub = make_client(version).connect()
    pub.publish(f"{topic}/x", b"q2", qos=2)
    assert sub0.expect_one().qos == 0
    assert sub1.expect_one().qos == 1
    pub.publish(f"{topic}/x", b"q0", qos=0)
    assert sub1.expect_one().qos == 0


# ---------------------------------------------------------------- topics


@pytest.mark.parametrize("version", BOTH)
def test_wildcards_match_as_specified(make_client, topic, version):
    # [MQTT-4.7.1-2] '#' matches the parent level too; '+' matches exactly one level.
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/a/#", qos=1)
    sub.subscribe(f"{topic}/+/b", qos=1)
    pub = make_client(version).connect()
    for t in ["a", "a/x/y", "z/b", "z/c", "a/b"]:
        pub.publish(f"{topic}/{t}", t.encode(), qos=1)
    got = sub.collect(QUIET * 1.5)
    received = sorted(m.payload for m in got)
    # a/b matches both filters: 3.1.1 and 5.0 allow one or two copies for overlapping
    # subscriptions ([MQTT-3.3.5-1]); mosquitto sends one per matching subscription.
    assert {b"a", b"a/x/y", b"z/b", b"a/b"} == set(received)
    assert b"z/c" not in received


@pytest.mark.parametrize("version", BOTH)
def test_first_level_wildcards_do_not_match_dollar_topics(make_client, version):
    # [MQTT-4.7.2-1]: '#' and '+/...' must not match topics starting with '$'.
    sub = make_client(version).connect()
    sub.subscribe("#", qos=0)
    sub.subscribe("+/broker/version", qos=0)
    sub.subscribe("+/broker/uptime", qos=0)
    got = sub.collect(1.5)
    assert not [m.topic for m in got if m.topic.startswith("$")]


@pytest.mark.parametrize("version", BOTH)
def test_sys_broker_uptime_or_version_is_published(make_client, version):
    # Canopy's SPEC uses mosquitto's $SYS names. mosquitto publishes version retained and
    # uptime every sys_interval (10 s by default); either one within 12 s passes.
    sub = make_client(version).connect()
    sub.subscribe("$SYS/broker/version", qos=0)
    sub.subscribe("$SYS/broker/uptime", qos=0)
    m = sub.expect_one(timeout=12)
    assert m.topic in ("$SYS/broker/version", "$SYS/broker/uptime")
    assert m.payload


@pytest.mark.parametrize("version", BOTH)
def test_unsubscribe_stops_delivery(make_client, topic, version):
    sub = make_client(version).connect()
    sub.subscribe(f"{topic}/x", qos=1)
    pub = make_client(version).connect()
    pub.publish(f"{topic}/x", b"1", qos=1)
    assert sub.expect_one().payload == b"1"
    sub.unsubscribe(f"{topic}/x")
    pub.publish(f"{topic}/x", b"2", qos=1)
    sub.expect_none()


@pytest.mark.parametrize("version", BOTH)
def test_second_connection_with_same_client_id_takes_over(make_client, topic, version):
    # [MQTT-3.1.4-2] (3.1.1) / [MQTT-3.1.4-3] (5.0): the existing connection is closed
    # (5.0: after DISCONNECT 0x8E Session taken over).
    first = make_client(version).connect()
    second = make_client(version, client_id=first.client_id).connect()
    assert first.disconnected.wait(WAIT), "first connection must be closed"
    if version == "5.0" and first.disconnect_reason.value != 0x80:
        # 5.0 section 4.13 lets the server close with or without DISCONNECT 0x8E;
        # mosquitto 2.0.11 just closes (paho then reports 0x80).
        assert first.disconnect_reason.value == 0x8E
    second.subscribe(f"{topic}/x", qos=1)
    make_client(version).connect().publish(f"{topic}/x", b"ok", qos=1)
    assert second.expect_one().payload == b"ok"
