"""A minimal byte-level MQTT client for checks paho cannot express.

Owns: encoding the few packets the raw tests send (CONNECT, PUBLISH, PUBREL,
DISCONNECT) for protocol levels 4 (3.1.1) and 5 (5.0), and reading whole
packets back with a timeout.
Must never: block without a timeout, or hide what the broker sent (every
read returns the packet type, flags and body as received).
"""

import socket
import struct
import time

from conftest import HOST, PORT, WAIT

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, DISCONNECT = 9, 14


def varint(n):
    """Encode a Variable Byte Integer."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    """Encode a length-prefixed UTF-8 string."""
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def packet(type_, flags, body):
    """Frame a packet: fixed header then body."""
    return bytes([(type_ << 4) | flags]) + varint(len(body)) + body


def connect(client_id, level, clean=True, session_expiry=None, keepalive=30,
            receive_maximum=None, maximum_packet_size=None):
    """CONNECT for protocol level 4 or 5 (properties only for 5)."""
    flags = 0x02 if clean else 0x00
    body = utf8("MQTT") + bytes([level, flags]) + struct.pack(">H", keepalive)
    if level == 5:
        p = b""
        if session_expiry is not None:
            p += b"\x11" + struct.pack(">I", session_expiry)
        if receive_maximum is not None:
            p += b"\x21" + struct.pack(">H", receive_maximum)
        if maximum_packet_size is not None:
            p += b"\x27" + struct.pack(">I", maximum_packet_size)
        body += varint(len(p)) + p
    return packet(1, 0, body + utf8(client_id))


def publish(topic, payload, level, qos=0, packet_id=None, dup=False, retain=False):
    """PUBLISH with no properties."""
    flags = (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = utf8(topic)
    if qos:
        body += struct.pack(">H", packet_id)
    if level == 5:
        body += b"\x00"
    return packet(PUBLISH, flags, body + payload)


def subscribe(packet_id, topic_filter, level, qos=1):
    """SUBSCRIBE for one filter with no properties."""
    body = struct.pack(">H", packet_id) + (b"\x00" if level == 5 else b"")
    return packet(8, 0x02, body + utf8(topic_filter) + bytes([qos]))


def puback(packet_id):
    """PUBACK (reason Success omitted, valid for both levels)."""
    return packet(PUBACK, 0, struct.pack(">H", packet_id))


def parse_publish(flags, body, level):
    """Return (topic, packet_id or None, payload) of a received PUBLISH body."""
    n = struct.unpack(">H", body[:2])[0]
    topic, rest = body[2:2 + n].decode(), body[2 + n:]
    packet_id = None
    if (flags >> 1) & 3:
        packet_id, rest = struct.unpack(">H", rest[:2])[0], rest[2:]
    if level == 5:
        length, shift, i = 0, 0, 0
        while True:
            length |= (rest[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not rest[i - 1] & 0x80:
                break
        rest = rest[i + length:]
    return topic, packet_id, rest


def pubrel(packet_id):
    """PUBREL (reason Success omitted, valid for both levels)."""
    return packet(PUBREL, 0x02, struct.pack(">H", packet_id))


def disconnect():
    """DISCONNECT with no reason code (Normal disconnection in 5.0)."""
    return packet(DISCONNECT, 0, b"")


class RawClient:
    """One TCP connection speaking raw MQTT packets."""

    def __init__(self, timeout=None):
        self.sock = socket.create_connection((HOST, PORT), timeout=WAIT)
        self.timeout = WAIT if timeout is None else timeout
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for a packet from the broker")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout as e:
                raise AssertionError("timed out waiting for a packet from the broker") from e
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self.buf += chunk

    def read(self):
        """Return (type, flags, body) of the next packet."""
        deadline = time.monotonic() + self.timeout
        self._fill(2, deadline)
        length, mult, i = 0, 1, 1
        while True:
            self._fill(i + 1, deadline)
            byte = self.buf[i]
            length += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        self._fill(i + length, deadline)
        first = self.buf[0]
        body = self.buf[i:i + length]
        self.buf = self.buf[i + length:]
        return first >> 4, first & 0x0F, body

    def expect(self, type_):
        """Read the next packet and assert its type; return its body."""
        got, flags, body = self.read()
        assert got == type_, f"expected packet type {type_}, got {got} (flags {flags}, body {body!r})"
        return body

    def connect(self, client_id, level, clean=True, session_expiry=None, **props):
        """Send CONNECT, assert a successful CONNACK; return session present."""
        self.send(connect(client_id, level, clean, session_expiry, **props))
        body = self.expect(CONNACK)
        assert body[1] == 0, f"CONNACK return/reason code {body[1]:#x}"
        return bool(body[0] & 1)

    def expect_silence(self, duration):
        """Assert that no packet arrives within `duration` seconds."""
        saved = self.timeout
        self.timeout = duration
        try:
            got = self.read()
        except AssertionError:
            return
        finally:
            self.timeout = saved
        raise AssertionError(f"expected no packet, got {got!r}")

    def close(self):
        self.sock.close()
