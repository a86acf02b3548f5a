// Canopy dashboard: logs in over MQTT 5.0 (mqtt.js) and draws what the broker pushes.
// Every figure comes from a subscription (see docs/dashboard.md for the topic of each panel);
// the client list is the one thing asked for, a page at a time, from $dashboard/clients.
// Everything a peer controls is shown with textContent, never parsed as HTML.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  const HISTORY = 90;

  let client = null;
  let session = 0; // bumps on every login, so late answers of an old session are ignored
  const sys = {};
  const counters = { in: null, out: null };
  const rates = { in: null, out: null };
  const history = [];
  const bridges = new Map();
  const nodes = new Map();
  const presence = new Map();
  const resources = new Map();
  let cursors = [null]; // cursor of each page visited; the last is the current page's
  let pageSeq = 0;
  let pageRows = new Map(); // client id -> row of the current page
  let refreshTimer = null;
  const presenceEmpty = $('presence-empty').innerHTML; // the page's own text, restored on login
  const replyTopic = '$dashboard/clients/reply/' + Math.random().toString(36).slice(2, 10);

  function text(el, value) {
    el.textContent = value === undefined || value === null ? '–' : String(value);
  }

  function cell(tr, value, cls) {
    const td = document.createElement('td');
    text(td, value);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function pill(tr, state) {
    const td = document.createElement('td');
    const span = document.createElement('span');
    span.className = 'state ' + String(state || '').replace(/[^a-z-]/g, '');
    text(span, state);
    td.appendChild(span);
    tr.appendChild(td);
  }

  function when(ms) {
    if (typeof ms !== 'number') return '–';
    return new Date(ms).toLocaleString();
  }

  function duration(seconds) {
    const s = Number(seconds);
    if (!isFinite(s)) return '–';
    if (s < 120) return s + ' s';
    if (s < 7200) return Math.floor(s / 60) + ' min';
    if (s < 172800) return Math.floor(s / 3600) + ' h';
    return Math.floor(s / 86400) + ' days';
  }

  function fmtRate(r) {
    if (r === null) return '–';
    return r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString();
  }

  function json(payload) {
    try {
      return JSON.parse(new TextDecoder().decode(payload));
    } catch (e) {
      return null;
    }
  }

  // ---- $SYS/broker ----

  function onSys(name, value, live) {
    sys[name] = value;
    switch (name) {
      case 'version': text($('broker-version'), value); text($('tree-self'), value); break;
      case 'uptime': text($('uptime'), duration(parseInt(value, 10))); break;
      case 'clients/connected':
      case 'clients/total':
        text($(name === 'clients/total' ? 'clients-total' : 'clients-connected'), value);
        if (live) scheduleRefresh();
        break;
      case 'subscriptions/active': text($('subs-active'), value); break;
      case 'subscriptions/inactive': text($('subs-inactive'), value); break;
      case 'retained messages/count': text($('retained'), value); break;
      case 'messages/dropped': text($('dropped'), value); break;
      case 'load/publish/received/1min':
        $('load-line').textContent = 'load ' + value + ' msg/min in (1 min avg)';
        break;
      case 'publish/messages/received': counter('in', value, live); break;
      case 'publish/messages/sent': counter('out', value, live); break;
      default: break;
    }
  }

  // A rate needs two live publications of a counter: a retained copy is of unknown age.
  function counter(which, value, live) {
    const v = Number(value);
    const now = performance.now();
    if (!live || !isFinite(v)) return;
    const prev = counters[which];
    counters[which] = { v, t: now };
    if (!prev || now <= prev.t) return;
    rates[which] = Math.max(0, (v - prev.v) * 1000 / (now - prev.t));
    text($(which === 'in' ? 'rate-in' : 'rate-out'), fmtRate(rates[which]));
    if (which === 'in') {
      history.push({ in: rates.in, out: rates.out || 0 });
      if (history.length > HISTORY) history.shift();
      drawChart();
    }
  }

  function drawChart() {
    const canvas = $('rate-chart');
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * ratio;
    canvas.height = h * ratio;
    const g = canvas.getContext('2d');
    g.scale(ratio, ratio);
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...history.map((p) => Math.max(p.in, p.out)));
    const left = 44, top = 8, bottom = h - 18, right = w - 8;
    g.strokeStyle = '#e3e9e4';
    g.fillStyle = '#6b7a70';
    g.font = '11px system-ui, sans-serif';
    for (let k = 0; k <= 4; k++) {
      const y = bottom - (bottom - top) * k / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.fillText(fmtRate(max * k / 4), 4, y + 4);
    }
    g.fillText('last ' + history.length + ' samples', left, h - 4);
    const x = (i) => left + (right - left) * (i / Math.max(1, history.length - 1));
    const y = (v) => bottom - (bottom - top) * (v / max);
    for (const [key, color] of [['out', '#3a6fd8'], ['in', '#2e8b57']]) {
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      history.forEach((p, i) => {
        if (i === 0) g.moveTo(x(i), y(p[key]));
        else g.lineTo(x(i), y(p[key]));
      });
      g.stroke();
    }
  }

  // ---- bridges, cluster, presence, resources ----

  function onBridge(rest, payload) {
    const slash = rest.indexOf('/');
    if (slash < 0) return;
    const name = rest.slice(0, slash), key = rest.slice(slash + 1);
    const b = bridges.get(name) || {};
    if (key === 'state') b.state = json(payload);
    else b[key] = new TextDecoder().decode(payload);
    bridges.set(name, b);
    later(renderBridges);
  }

  function renderBridges() {
    const ul = $('bridges');
    ul.replaceChildren();
    for (const [name, b] of [...bridges].sort()) {
      const li = document.createElement('li');
      const n = document.createElement('b');
      text(n, name);
      const s = document.createElement('span');
      const state = (b.state && b.state.state) || 'unknown';
      s.className = 'state ' + state.replace(/[^a-z-]/g, '');
      text(s, state);
      const info = document.createElement('span');
      info.className = 'muted';
      const remote = b.state && b.state.remote ? ' → ' + b.state.remote : '';
      info.textContent = remote + ' · forwarded ' + (b.forwarded || 0) + ' · queued ' +
        (b.queued || 0) + ' · dropped ' + (b.dropped || 0);
      li.append(n, ' ', s, ' ', info);
      ul.appendChild(li);
    }
    $('bridges-empty').hidden = bridges.size > 0;
  }

  // Tables show at most MAX_ROWS rows (sorted by key), redrawn at most every 200 ms however
  // many documents arrive: a retained replay of thousands must not freeze the page.
  const MAX_ROWS = 50;
  const pending = new Map();
  function later(fn) {
    if (!pending.has(fn)) pending.set(fn, setTimeout(() => { pending.delete(fn); fn(); }, 200));
  }

  function renderTable(map, tbody, empty, row) {
    const body = $(tbody);
    body.replaceChildren();
    const keys = [...map.keys()].sort();
    for (const key of keys.slice(0, MAX_ROWS)) {
      const tr = document.createElement('tr');
      row(tr, key, map.get(key) || {});
      body.appendChild(tr);
    }
    if (keys.length > MAX_ROWS) {
      const tr = document.createElement('tr');
      const td = cell(tr, 'first ' + MAX_ROWS + ' of ' + keys.length + ' shown', 'muted');
      td.colSpan = 5;
      body.appendChild(tr);
    }
    $(empty).hidden = map.size > 0;
  }

  function keep(map, key, payload) {
    if (payload.length === 0) map.delete(key);
    else map.set(key, json(payload));
  }

  function renderNodes() {
    renderTable(nodes, 'nodes', 'nodes-empty', (tr, id, d) => {
      cell(tr, id);
      pill(tr, d.state);
      cell(tr, d.advertise);
      cell(tr, d.connections);
      cell(tr, d.capacity);
    });
  }

  function renderPresence() {
    renderTable(presence, 'presence', 'presence-empty', (tr, user, d) => {
      cell(tr, user);
      pill(tr, d.availability);
      cell(tr, d.activity);
      cell(tr, d.devices ? Object.keys(d.devices).length : 0);
    });
  }

  function renderResources() {
    renderTable(resources, 'resources', 'resources-empty', (tr, name, d) => {
      cell(tr, name);
      const td = document.createElement('td');
      const bar = document.createElement('span');
      bar.className = 'bar';
      const fill = document.createElement('i');
      const share = d.max ? Math.min(1, (d.in_use || 0) / d.max) : 0;
      fill.style.width = Math.round(share * 100) + '%';
      bar.appendChild(fill);
      td.append(bar, (d.in_use || 0) + ' / ' + (d.max || 0));
      tr.appendChild(td);
      cell(tr, d.queued);
    });
  }

  // ---- the client list, a page at a time ----

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(requestPage, 250);
  }

  function requestPage() {
    if (!client) return;
    pageSeq += 1;
    const request = { limit: PAGE, after: cursors[cursors.length - 1] };
    const search = $('search').value.trim();
    if (search) request.search = search;
    client.publish('$dashboard/clients', JSON.stringify(request), {
      qos: 1, responseTopic: replyTopic, correlation: session + ':' + pageSeq,
    }).then((code) => {
      if (code === 0x87) {
        $('clients-note').textContent = 'This login may not list clients: it needs the ' +
          'right to publish to $dashboard/clients (see docs/dashboard.md).';
      }
    }, () => {});
  }

  function onPage(payload, props) {
    const correlation = props[0x09] ? new TextDecoder().decode(props[0x09]) : '';
    if (correlation !== session + ':' + pageSeq) return;
    const page = json(payload);
    if (page && page.error && page.retry_ms) {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(requestPage, Math.min(5000, page.retry_ms + 20));
      return;
    }
    if (!page || !Array.isArray(page.clients)) return;
    text($('clients-count'), page.total + (page.total === 1 ? ' status document' : ' status documents'));
    $('page-no').textContent = 'page ' + cursors.length;
    $('prev').disabled = cursors.length <= 1;
    $('next').disabled = !page.next;
    $('next').dataset.cursor = page.next || '';
    $('clients-note').textContent = page.total === 0 ? 'No client has a status document yet.' : '';
    const old = pageRows;
    pageRows = new Map();
    const body = $('clients');
    body.replaceChildren();
    for (const c of page.clients) {
      const tr = document.createElement('tr');
      tr.dataset.id = c.id;
      pageRows.set(c.id, tr);
      fillClient(tr, c.id, c.status || {});
      body.appendChild(tr);
    }
    // Live updates for the rows on screen only: one subscription per visible client.
    for (const id of pageRows.keys()) {
      if (!old.has(id) && !/[+#]/.test(id)) client.subscribe('$status/' + id).catch(() => {});
    }
    for (const id of old.keys()) {
      if (!pageRows.has(id) && !/[+#]/.test(id)) client.unsubscribe('$status/' + id).catch(() => {});
    }
  }

  function fillClient(tr, id, s) {
    tr.replaceChildren();
    cell(tr, id, 'client-id');
    pill(tr, s.state);
    cell(tr, when(s.since));
    cell(tr, s.node);
    cell(tr, s.reason);
  }

  // ---- wiring ----

  function onMessage(topic, payload, props, retained) {
    if (topic === replyTopic) return onPage(payload, props);
    const parts = topic.split('/');
    if (topic.startsWith('$SYS/broker/')) {
      onSys(topic.slice(12), new TextDecoder().decode(payload), !retained);
    } else if (topic.startsWith('$SYS/metabroker/')) {
      onBridge(topic.slice(16), payload);
    } else if (parts[0] === '$cluster' && parts[1] === 'nodes' && parts.length === 3) {
      keep(nodes, parts[2], payload); later(renderNodes);
    } else if (parts[0] === '$presence' && parts.length === 2) {
      keep(presence, parts[1], payload); later(renderPresence);
    } else if (parts[0] === '$resource' && parts.length === 2) {
      keep(resources, parts[1], payload); later(renderResources);
    } else if (parts[0] === '$status') {
      const id = topic.slice(8);
      const tr = pageRows.get(id);
      if (tr && payload.length) fillClient(tr, id, json(payload) || {});
    }
    return undefined;
  }

  async function subscribeAll() {
    const refused = [];
    for (const filter of ['$SYS/broker/#', '$SYS/metabroker/#', '$cluster/nodes/+',
      '$resource/+', '$presence/+']) {
      const code = await client.subscribe(filter);
      if (code >= 0x80) refused.push(filter);
    }
    if (refused.includes('$presence/+')) {
      $('presence-empty').textContent = 'Every user\'s presence ($presence/+) is readable by ' +
        'admins and bridges only; this login is neither.';
    }
    for (const f of refused.filter((f) => f !== '$presence/+')) {
      $('clients-note').textContent = 'Refused by the broker: ' + f;
    }
  }

  // Forgets what the previous session showed: the new one's subscriptions replay it.
  function reset() {
    for (const m of [bridges, nodes, presence, resources]) m.clear();
    counters.in = counters.out = rates.in = rates.out = null;
    history.length = 0;
    cursors = [null];
    pageRows = new Map();
    for (const id of ['rate-in', 'rate-out']) text($(id), null);
    renderBridges(); renderNodes(); renderPresence(); renderResources();
    $('clients').replaceChildren();
    $('clients-note').textContent = '';
    $('presence-empty').innerHTML = presenceEmpty;
    drawChart();
  }

  function showLogin(error) {
    $('login-view').hidden = false;
    $('dash-view').hidden = true;
    $('logout').hidden = true;
    $('conn-state').className = 'pill off';
    $('conn-state').textContent = 'signed out';
    $('login-error').textContent = error || '';
    $('login-button').disabled = false;
  }

  async function login(ev) {
    ev.preventDefault();
    $('login-error').textContent = '';
    $('login-button').disabled = true;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const c = new window.CanopyMqtt.MqttClient(scheme + '://' + location.host + '/mqtt');
    c.onMessage = onMessage;
    c.onClose = (why) => {
      if (client === c) {
        client = null;
        showLogin('Connection lost: ' + why);
      }
    };
    try {
      await c.connect({
        username: $('user').value,
        password: $('password').value,
        clientId: $('client-id').value.trim(),
      });
    } catch (e) {
      showLogin('Sign-in refused: ' + e.message);
      return;
    }
    client = c;
    session += 1;
    $('password').value = '';
    $('login-view').hidden = true;
    $('dash-view').hidden = false;
    $('logout').hidden = false;
    $('conn-state').className = 'pill on';
    $('conn-state').textContent = 'live' + ($('user').value ? ' as ' + $('user').value : '');
    reset();
    await subscribeAll();
    requestPage();
  }

  $('login').addEventListener('submit', login);
  $('logout').addEventListener('click', () => {
    const c = client;
    client = null;
    if (c) c.close();
    showLogin('');
  });
  $('next').addEventListener('click', () => {
    const cursor = $('next').dataset.cursor;
    if (cursor) { cursors.push(cursor); requestPage(); }
  });
  $('prev').addEventListener('click', () => {
    if (cursors.length > 1) { cursors.pop(); requestPage(); }
  });
  let searchTimer = null;
  $('search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { cursors = [null]; requestPage(); }, 300);
  });
  window.addEventListener('resize', drawChart);
}());
