// Canopy dashboard: a tiny MQTT 5.0 client over WebSocket, written for this page only.
// It speaks CONNECT (user name, password), SUBSCRIBE / UNSUBSCRIBE, PUBLISH (QoS 0 and 1 out,
// any QoS in), PINGREQ and DISCONNECT — what the dashboard needs and nothing more. Every
// packet the broker sends is parsed with bounds checks; a malformed one closes the socket.
'use strict';

class MqttError extends Error {}

const enc = new TextEncoder();
const dec = new TextDecoder();

// Property identifiers and their value types (MQTT 5.0 section 2.2.2.2).
const PROP_TYPES = {
  0x01: 'byte', 0x02: 'u32', 0x03: 'str', 0x08: 'str', 0x09: 'bin', 0x0b: 'varint',
  0x11: 'u32', 0x12: 'str', 0x13: 'u16', 0x15: 'str', 0x16: 'bin', 0x17: 'byte',
  0x18: 'u32', 0x19: 'byte', 0x1a: 'str', 0x1c: 'str', 0x1f: 'str', 0x21: 'u16',
  0x22: 'u16', 0x23: 'u16', 0x24: 'byte', 0x25: 'byte', 0x26: 'pair', 0x27: 'u32',
  0x28: 'byte', 0x29: 'byte', 0x2a: 'byte',
};

function varint(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function str(s) {
  const b = enc.encode(s);
  return [b.length >> 8, b.length & 0xff, ...b];
}

function bin(b) {
  return [b.length >> 8, b.length & 0xff, ...b];
}

function packet(first, body) {
  return new Uint8Array([first, ...varint(body.length), ...body]);
}

// Reads fields of one packet body; every read checks the bounds.
class Reader {
  constructor(bytes) { this.b = bytes; this.i = 0; }
  need(n) { if (this.i + n > this.b.length) throw new MqttError('truncated packet'); }
  byte() { this.need(1); return this.b[this.i++]; }
  u16() { this.need(2); const v = (this.b[this.i] << 8) | this.b[this.i + 1]; this.i += 2; return v; }
  u32() { return this.u16() * 65536 + this.u16(); }
  varint() {
    let v = 0, mul = 1;
    for (let k = 0; k < 4; k++) {
      const b = this.byte();
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
    throw new MqttError('bad variable byte integer');
  }
  bytes(n) { this.need(n); const v = this.b.subarray(this.i, this.i + n); this.i += n; return v; }
  bin() { return this.bytes(this.u16()); }
  str() { return dec.decode(this.bin()); }
  rest() { return this.b.subarray(this.i); }
  props() {
    const len = this.varint();
    const end = this.i + len;
    const props = {};
    while (this.i < end) {
      const id = this.varint();
      const kind = PROP_TYPES[id];
      if (!kind) throw new MqttError('unknown property 0x' + id.toString(16));
      props[id] = kind === 'pair' ? [this.str(), this.str()] : this[kind]();
    }
    if (this.i !== end) throw new MqttError('bad property length');
    return props;
  }
}

// Reason codes a dashboard user may meet, in words.
const REASONS = {
  0x80: 'unspecified error', 0x84: 'protocol version refused', 0x85: 'client id refused',
  0x86: 'bad user name or password', 0x87: 'not authorized', 0x88: 'server unavailable',
  0x89: 'server busy', 0x8a: 'banned', 0x8b: 'server shutting down', 0x8d: 'keep alive timeout',
  0x8e: 'session taken over', 0x97: 'quota exceeded', 0x9c: 'use another server',
  0x9f: 'connection rate exceeded',
};

function reasonText(code) {
  return REASONS[code] || ('reason 0x' + code.toString(16));
}

class MqttClient {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.buf = new Uint8Array(0);
    this.nextId = 1;
    this.waiting = new Map(); // packet id -> {resolve, reject}
    this.onMessage = () => {};
    this.onClose = () => {};
    this.ping = null;
  }

  // Opens the socket and logs in; resolves with the CONNACK properties.
  connect({ username, password, clientId = '', keepAlive = 30 }) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url, ['mqtt']);
      } catch (e) {
        reject(new MqttError(String(e)));
        return;
      }
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      this.connack = { resolve, reject };
      ws.onopen = () => {
        let flags = 0x02; // clean start
        const payload = [...str(clientId)];
        if (username) {
          flags |= 0x80;
          payload.push(...str(username));
          if (password) {
            flags |= 0x40;
            payload.push(...bin(enc.encode(password)));
          }
        }
        const body = [...str('MQTT'), 5, flags, keepAlive >> 8, keepAlive & 0xff, 0, ...payload];
        this.send(packet(0x10, body));
        this.ping = setInterval(() => this.send(new Uint8Array([0xc0, 0])), keepAlive * 500);
      };
      ws.onmessage = (ev) => this.receive(new Uint8Array(ev.data));
      ws.onerror = () => {};
      ws.onclose = () => this.closed('connection closed');
    });
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  close() {
    this.send(new Uint8Array([0xe0, 0]));
    if (this.ws) this.ws.close();
  }

  closed(why) {
    clearInterval(this.ping);
    this.ping = null;
    if (this.connack) {
      this.connack.reject(new MqttError(why));
      this.connack = null;
    }
    for (const w of this.waiting.values()) w.reject(new MqttError(why));
    this.waiting.clear();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close();
      this.onClose(why);
    }
  }

  id() {
    const id = this.nextId;
    this.nextId = this.nextId >= 65535 ? 1 : this.nextId + 1;
    return id;
  }

  request(first, body, id) {
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.send(packet(first, body));
    });
  }

  // Resolves with the SUBACK reason code (0 granted QoS 0, 0x87 not authorized, ...).
  subscribe(filter) {
    const id = this.id();
    return this.request(0x82, [id >> 8, id & 0xff, 0, ...str(filter), 0], id);
  }

  unsubscribe(filter) {
    const id = this.id();
    return this.request(0xa2, [id >> 8, id & 0xff, 0, ...str(filter)], id);
  }

  // QoS 1 resolves with the PUBACK reason code; QoS 0 resolves at once.
  publish(topic, payload, { qos = 0, responseTopic, correlation } = {}) {
    const props = [];
    if (responseTopic) props.push(0x08, ...str(responseTopic));
    if (correlation) props.push(0x09, ...bin(enc.encode(correlation)));
    const id = qos ? this.id() : 0;
    const body = [...str(topic), ...(qos ? [id >> 8, id & 0xff] : []), ...varint(props.length),
      ...props, ...enc.encode(payload)];
    if (!qos) {
      this.send(packet(0x30, body));
      return Promise.resolve(0);
    }
    return this.request(0x32, body, id);
  }

  receive(chunk) {
    const all = new Uint8Array(this.buf.length + chunk.length);
    all.set(this.buf);
    all.set(chunk, this.buf.length);
    let at = 0;
    try {
      for (;;) {
        const r = new Reader(all.subarray(at));
        if (r.b.length < 2) break;
        const first = r.byte();
        let len;
        try { len = r.varint(); } catch (e) { if (r.b.length < 5) break; throw e; }
        if (r.b.length - r.i < len) break;
        this.handle(first, new Reader(r.bytes(len)));
        at += r.i;
      }
    } catch (e) {
      this.closed('bad packet from the broker: ' + e.message);
      return;
    }
    this.buf = all.slice(at);
  }

  handle(first, r) {
    switch (first >> 4) {
      case 2: { // CONNACK
        r.byte();
        const code = r.byte();
        const props = r.b.length > 2 ? r.props() : {};
        const c = this.connack;
        this.connack = null;
        if (!c) return;
        if (code === 0) c.resolve(props);
        else c.reject(new MqttError(props[0x1f] || reasonText(code)));
        return;
      }
      case 3: { // PUBLISH
        const qos = (first >> 1) & 3;
        const topic = r.str();
        const id = qos ? r.u16() : 0;
        const props = r.props();
        const payload = r.rest();
        if (qos === 1) this.send(new Uint8Array([0x40, 2, id >> 8, id & 0xff]));
        if (qos === 2) this.send(new Uint8Array([0x50, 2, id >> 8, id & 0xff]));
        this.onMessage(topic, payload, props, (first & 1) === 1);
        return;
      }
      case 4: // PUBACK
      case 9: // SUBACK
      case 11: { // UNSUBACK
        const id = r.u16();
        let code = 0;
        if ((first >> 4) === 4) {
          code = r.b.length > 2 ? r.byte() : 0;
        } else {
          r.props();
          code = r.byte();
        }
        const w = this.waiting.get(id);
        this.waiting.delete(id);
        if (w) w.resolve(code);
        return;
      }
      case 6: { // PUBREL (for a QoS 2 delivery): complete it
        const id = r.u16();
        this.send(new Uint8Array([0x70, 2, id >> 8, id & 0xff]));
        return;
      }
      case 13: // PINGRESP
        return;
      case 14: { // DISCONNECT
        const code = r.b.length ? r.byte() : 0;
        this.closed('disconnected by the broker: ' + reasonText(code));
        return;
      }
      default:
        throw new MqttError('unexpected packet type ' + (first >> 4));
    }
  }
}

window.CanopyMqtt = { MqttClient, MqttError };
