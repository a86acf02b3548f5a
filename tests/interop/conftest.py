"""Shared fixtures and a bounded-wait paho-mqtt wrapper for the interop suite.

Owns: reading MQTT_HOST/MQTT_PORT, unique topic prefixes per test, and
`TestClient`, a thin wrapper over paho-mqtt 2.x (callback API version 2)
whose every wait has a timeout.
Must never: start or stop a broker (run.sh does that), wait without a bound,
or use a topic outside the test's own prefix (tests share one broker).
"""

import os
import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
if "MQTT_PORT" not in os.environ:
    raise RuntimeError("MQTT_PORT is not set: run the suite through tests/interop/run.sh")
PORT = int(os.environ["MQTT_PORT"])

# How long to wait for something that must happen.
WAIT = float(os.environ.get("MQTT_WAIT", "5"))
# How long to watch before concluding that something does not happen.
QUIET = float(os.environ.get("MQTT_QUIET", "1.0"))

# Which broker run.sh started ("canopy" or "mosquitto"); only used to mark the few
# places where mosquitto knowingly departs from the MQTT spec.
BROKER = os.environ.get("INTEROP_BROKER", "")


def mosquitto_deviation(reason):
    """Mark a test that checks the spec where mosquitto 2.0 behaves differently.

    Strict: if mosquitto ever passes it, the run fails and the mark must go.
    """
    return pytest.mark.xfail(BROKER == "mosquitto", reason=f"mosquitto deviation: {reason}",
                             strict=True)


PROTOCOLS = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311, "5.0": mqtt.MQTTv5}

# Retained topics set by tests; cleared once at the end of the session.
_RETAINED = set()


def props(packet_type, **values):
    """Build a paho Properties object for `packet_type` from keyword values."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def prop(message, name, default=None):
    """Read MQTT 5 property `name` of a received message, or `default`."""
    p = getattr(message, "properties", None)
    if p is None:
        return default
    return getattr(p, name, default)


class TestClient:
    """One MQTT connection driven by paho's network thread.

    Received messages go to a queue; CONNACK, SUBACK and UNSUBACK are waited
    for with a timeout. A fresh object is made for each connection: to resume a
    session, make a new TestClient with the same client_id.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, version="5.0", client_id=None, clean=True):
        self.version = version
        self.v5 = version == "5.0"
        self.client_id = f"it-{uuid.uuid4().hex[:16]}" if client_id is None else client_id
        self.clean = clean
        kwargs = {} if self.v5 else {"clean_session": clean}
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=PROTOCOLS[version],
            **kwargs,
        )
        # paho reconnects by itself after an unexpected disconnect; a test
        # must see the disconnect, so make any reconnect far later than a test.
        self.paho.reconnect_delay_set(min_delay=120, max_delay=240)
        self.messages = queue.Queue()
        self._cond = threading.Condition()
        self._connack = None
        self._acks = {}
        self.disconnect_reason = None
        self.disconnected = threading.Event()
        self.connack_properties = None
        self.session_present = None
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_ack
        self.paho.on_unsubscribe = self._on_ack
        self.paho.on_disconnect = self._on_disconnect
        self._started = False

    # paho callbacks (network thread)
    def _on_connect(self, _c, _u, flags, reason_code, properties):
        with self._cond:
            self._connack = (flags, reason_code, properties)
            self._cond.notify_all()

    def _on_message(self, _c, _u, message):
        self.messages.put(message)

    def _on_ack(self, _c, _u, mid, reason_codes, _properties):
        with self._cond:
            self._acks[mid] = reason_codes
            self._cond.notify_all()

    def _on_disconnect(self, _c, _u, _flags, reason_code, _properties):
        self.disconnect_reason = reason_code
        self.disconnected.set()

    def _wait_for(self, predicate, what, timeout=None):
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.client_id}: timed out waiting for {what}")
                self._cond.wait(left)

    def connect(self, clean_start=True, session_expiry=None, will=None, keepalive=30,
                expect_success=True, properties=None):
        """Connect and wait for CONNACK.

        will: dict(topic=, payload=, qos=, retain=, properties=) or None.
        session_expiry: MQTT 5 Session Expiry Interval in seconds, or None.
        """
        if will is not None:
            self.paho.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                               will.get("retain", False), will.get("properties"))
        kwargs = {}
        if self.v5:
            connect_props = properties or Properties(PacketTypes.CONNECT)
            if session_expiry is not None:
                connect_props.SessionExpiryInterval = session_expiry
            kwargs = {"clean_start": clean_start, "properties": connect_props}
        self.paho.connect(HOST, PORT, keepalive, **kwargs)
        self.paho.loop_start()
        self._started = True
        self._wait_for(lambda: self._connack is not None, "CONNACK")
        flags, reason_code, connack_props = self._connack
        self.session_present = bool(flags.session_present)
        self.connack_properties = connack_props
        if expect_success:
            assert not reason_code.is_failure, f"CONNACK refused: {reason_code}"
        return self

    def subscribe(self, topic, qos=0, no_local=False, retain_as_published=False,
                  retain_handling=0, subscription_id=None):
        """Subscribe to one filter and return the SUBACK reason code values."""
        if self.v5:
            sub_props = None
            if subscription_id is not None:
                sub_props = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=subscription_id)
            options = SubscribeOptions(qos=qos, noLocal=no_local,
                                       retainAsPublished=retain_as_published,
                                       retainHandling=retain_handling)
            rc, mid = self.paho.subscribe(topic, options=options, properties=sub_props)
        else:
            rc, mid = self.paho.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        self._wait_for(lambda: mid in self._acks, f"SUBACK for {topic}")
        codes = [c.value if hasattr(c, "value") else c for c in self._acks[mid]]
        return codes

    def unsubscribe(self, topic):
        """Unsubscribe from one filter and wait for UNSUBACK."""
        rc, mid = self.paho.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        self._wait_for(lambda: mid in self._acks, f"UNSUBACK for {topic}")

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, wait=True):
        """Publish; with wait, block until the QoS flow completes (bounded)."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        if retain and payload:
            _RETAINED.add(topic)
        if wait:
            info.wait_for_publish(timeout=WAIT)
            assert info.is_published(), f"publish to {topic!r} not acknowledged in {WAIT}s"
        return info

    def expect(self, count=1, timeout=None):
        """Return exactly the next `count` messages; fail if they don't arrive in time."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        got = []
        while len(got) < count:
            left = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(left, 0.001)))
            except queue.Empty:
                summary = [(m.topic, m.payload) for m in got]
                raise AssertionError(
                    f"{self.client_id}: expected {count} message(s), got {len(got)}: {summary}")
        return got

    def expect_one(self, timeout=None):
        """Return the next message; fail if none arrives in time."""
        return self.expect(1, timeout)[0]

    def collect(self, duration=None):
        """Return every message that arrives within `duration` seconds."""
        deadline = time.monotonic() + (QUIET if duration is None else duration)
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                return got

    def expect_none(self, duration=None):
        """Fail if any message arrives within `duration` seconds."""
        got = self.collect(duration)
        assert not got, f"{self.client_id}: expected no message, got {[(m.topic, m.payload) for m in got]}"

    def disconnect(self, properties=None):
        """Send DISCONNECT (normal) and stop the network thread."""
        if self.v5:
            self.paho.disconnect(properties=properties)
        else:
            self.paho.disconnect()
        self.disconnected.wait(WAIT)
        self.paho.loop_stop()
        self._started = False

    def kill(self):
        """Close the TCP connection without DISCONNECT (an abnormal disconnect)."""
        self.paho.loop_stop()
        self._started = False
        sock = self.paho.socket()
        if sock is not None:
            sock.close()

    def close_quietly(self):
        """Teardown helper: end the connection however it stands, never raising."""
        try:
            if self._started:
                if self.paho.is_connected():
                    self.paho.disconnect()
                    self.disconnected.wait(1.0)
                self.paho.loop_stop()
        except Exception:  # noqa: BLE001 - teardown must not mask the test's failure
            pass
        self._started = False


@pytest.fixture
def make_client():
    """Factory: make_client(version, client_id=None, clean=True) -> TestClient, closed at teardown."""
    made = []

    def factory(version="5.0", client_id=None, clean=True):
        c = TestClient(version, client_id, clean)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close_quietly()


@pytest.fixture
def topic():
    """A topic prefix unique to this test, so tests never see each other's traffic."""
    return f"it/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def _clear_retained_at_end():
    yield
    if not _RETAINED:
        return
    c = TestClient("3.1.1")
    try:
        c.connect()
        for t in sorted(_RETAINED):
            c.publish(t, b"", qos=1, retain=True)
        c.disconnect()
    except Exception:  # noqa: BLE001 - best-effort tidy-up of a throwaway broker
        c.close_quietly()
