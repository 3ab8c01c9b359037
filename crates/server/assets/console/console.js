// tidewater console: polls the API and keeps the streams, pushes, pulls and
// sessions tables, and a small chart per stream, up to date. No framework, no build
// step.
'use strict';
(() => {
  const POLL_MS = 1000;
  const HISTORY_MS = 120000;
  const $ = (id) => document.getElementById(id);
  const streamsBody = $('streams').tBodies[0];
  const sessionsBody = $('sessions').tBodies[0];
  const pushesBody = $('pushes').tBodies[0];
  const pullsBody = $('pulls').tBodies[0];
  const filter = $('app-filter');
  const history = new Map(); // stream key -> [{t, bitrate, readers, keyframes, sent}]
  const streamRows = new Map();
  const sessionRows = new Map();
  let last = {streams: [], sessions: [], pulls: []};

  const el = (tag, props = {}, ...children) => {
    const e = document.createElement(tag);
    Object.assign(e, props);
    for (const c of children) e.append(c);
    return e;
  };
  const svg = (tag, attrs = {}) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  const bits = (bps) => bps >= 1e6 ? (bps / 1e6).toFixed(2) + ' Mb/s'
    : bps >= 1e3 ? (bps / 1e3).toFixed(0) + ' kb/s' : Math.round(bps) + ' b/s';
  const bytes = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + ' GB' : n >= 1e6 ? (n / 1e6).toFixed(1) + ' MB'
    : n >= 1e3 ? (n / 1e3).toFixed(0) + ' kB' : n + ' B';
  const duration = (ms) => {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + r + 's';
  };
  const appOf = (key) => key.split('/')[0];
  const setText = (cell, text) => { if (cell.textContent !== text) cell.textContent = text; };

  const CODECS = {H264: 'H.264', H265: 'H.265', Av1: 'AV1', Vp8: 'VP8', Vp9: 'VP9', Aac: 'AAC', Opus: 'Opus'};
  function track(t) {
    const parts = [CODECS[t.codec] || t.codec];
    if (t.codec_string) parts.push(t.codec_string);
    if (t.video) {
      parts.push(t.video.width + '×' + t.video.height);
      if (t.video.frame_rate && t.video.frame_rate[1]) {
        parts.push((t.video.frame_rate[0] / t.video.frame_rate[1]).toFixed(2).replace(/\.?0+$/, '') + ' fps');
      }
    }
    if (t.audio) parts.push((t.audio.sample_rate / 1000) + ' kHz', t.audio.channels + ' ch');
    return parts.join(' ');
  }

  // Readers are the reader sessions of the stream (players, by protocol);
  // the packagers that follow it (HLS, LL-HLS, DASH) are named apart.
  const readersOf = (key) => last.sessions.filter((x) => x.kind === 'reader' && x.path === key);
  function readersByProtocol(s) {
    const counts = {};
    for (const r of readersOf(s.key)) counts[r.protocol] = (counts[r.protocol] || 0) + 1;
    const names = Object.keys(counts).sort();
    const packagers = s.subscribers.filter((sub) => !sub.peer)
      .map((sub) => sub.protocol.replace(/-packager$/, '')).sort();
    return (names.length ? names.map((p) => p + ' ' + counts[p]).join(', ') : 'none') +
      (packagers.length ? ' (packaged: ' + packagers.join(', ') + ')' : '');
  }

  function pushes(s) {
    if (!s.pushes || !s.pushes.length) return '–';
    return s.pushes.map((p) => {
      const error = p.last_errors.length ? ' (' + p.last_errors[p.last_errors.length - 1].message + ')' : '';
      return `${p.url}: ${p.state}` + (p.state === 'active' ? '' : error);
    }).join('; ');
  }

  // `recording` is null when no [record] path matches the stream.
  function recording(r) {
    if (!r) return '–';
    if (r.on) return 'on, ' + bytes(r.bytes) + (r.keyframe_drops ? `, ${r.keyframe_drops} drops to a keyframe` : '');
    return 'off' + (r.last_error ? ': ' + r.last_error : '');
  }

  function remember(s, now) {
    let h = history.get(s.key);
    if (!h) { h = []; history.set(s.key, h); }
    const sent = readersOf(s.key).reduce((sum, r) => sum + r.bytes_out, 0);
    h.push({t: now, bitrate: s.qos.bitrate_bps, readers: readersOf(s.key).length, keyframes: s.qos.keyframes, sent});
    while (h.length && now - h[0].t > HISTORY_MS) h.shift();
    return h;
  }

  function outRate(h) {
    if (h.length < 2) return null;
    const a = h[h.length - 2], b = h[h.length - 1];
    const dt = (b.t - a.t) / 1000;
    return dt > 0 && b.sent >= a.sent ? (b.sent - a.sent) * 8 / dt : null;
  }

  function gop(h, fps) {
    // Keyframes counted over the last 30 s of samples.
    const recent = h.filter((x) => h[h.length - 1].t - x.t <= 30000);
    const a = recent[0], b = recent[recent.length - 1];
    if (!a || b.keyframes - a.keyframes < 2) return 'measuring…';
    const seconds = (b.t - a.t) / 1000 / (b.keyframes - a.keyframes);
    const frames = fps > 0 ? ' (~' + Math.round(seconds * fps) + ' frames)' : '';
    return '~' + seconds.toFixed(1) + ' s' + frames;
  }

  function chart(h) {
    const W = 120, H = 36;
    const box = svg('svg', {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', class: 'chart'});
    const now = h.length ? h[h.length - 1].t : 0;
    // The window grows with the history, from 10 s up to two minutes.
    const span = Math.min(HISTORY_MS, Math.max(10000, h.length ? now - h[0].t : 0));
    const maxRate = Math.max(1, ...h.map((x) => x.bitrate));
    const maxReaders = Math.max(1, ...h.map((x) => x.readers));
    const line = (value, max) => h.map((x) => {
      const px = W - (now - x.t) / span * W;
      const py = H - 2 - value(x) / max * (H - 4);
      return px.toFixed(1) + ',' + py.toFixed(1);
    }).join(' ');
    box.append(svg('polyline', {points: line((x) => x.bitrate, maxRate), class: 'rate'}));
    box.append(svg('polyline', {points: line((x) => x.readers, maxReaders), class: 'readers'}));
    const cur = h[h.length - 1] || {bitrate: 0, readers: 0};
    const title = svg('title');
    title.textContent = `bitrate ${bits(cur.bitrate)} (peak ${bits(maxRate)}), readers ${cur.readers} (peak ${maxReaders})`;
    box.prepend(title);
    box.setAttribute('aria-label', title.textContent);
    return box;
  }

  // Each cell carries its column's name, shown before it on narrow screens.
  function label(row, table) {
    const names = [...table.tHead.rows[0].cells].map((c) => c.textContent.trim());
    [...row.cells].forEach((cell, i) => { cell.dataset.label = names[i] || ''; });
  }

  function streamRow(s) {
    let row = streamRows.get(s.key);
    if (!row) {
      row = el('tr');
      row.dataset.key = s.key;
      const link = el('a', {href: '/watch/' + s.key.split('/').map(encodeURIComponent).join('/'), textContent: s.key});
      row.append(el('th', {scope: 'row'}, link));
      for (const name of ['source', 'tracks', 'in', 'out', 'readers', 'uptime', 'gop', 'skips', 'pushes', 'recording', 'chart']) {
        row.append(el('td', {className: name}));
      }
      label(row, $('streams'));
      streamRows.set(s.key, row);
    }
    return row;
  }

  function renderStreams() {
    const app = filter.value;
    const seen = new Set();
    const apps = new Set();
    for (const s of last.streams) {
      apps.add(appOf(s.key));
      seen.add(s.key);
      const h = history.get(s.key) || [];
      if (app && appOf(s.key) !== app) { streamRows.get(s.key)?.remove(); continue; }
      const row = streamRow(s);
      const cell = (name) => row.querySelector('td.' + name);
      setText(cell('source'), s.protocol + (s.peer ? ' from ' + s.peer : '') +
        (s.generation > 1 ? ' (publish #' + s.generation + ')' : ''));
      setText(cell('tracks'), s.catalog ? s.catalog.tracks.map(track).join('; ') : 'waiting for tracks');
      setText(cell('in'), bits(s.qos.bitrate_bps) + (s.qos.fps ? ', ' + s.qos.fps.toFixed(1) + ' fps' : ''));
      const out = outRate(h);
      setText(cell('out'), out === null ? '–' : bits(out));
      setText(cell('readers'), readersByProtocol(s));
      setText(cell('uptime'), duration(Date.now() - s.started_unix_ms));
      const video = s.catalog && s.catalog.tracks.some((t) => t.video);
      setText(cell('gop'), video ? gop(h, s.qos.fps) : '–');
      setText(cell('skips'), `${s.qos.lag_events} / ${s.qos.evictions}`);
      cell('skips').title = `${s.qos.lag_events} skips to a keyframe (${s.qos.skipped_frames} frames skipped), ${s.qos.evictions} readers evicted`;
      setText(cell('pushes'), pushes(s));
      setText(cell('recording'), recording(s.recording));
      cell('chart').replaceChildren(chart(h));
      streamsBody.append(row); // keeps the API's order (sorted by key)
    }
    for (const [key, row] of streamRows) {
      if (!seen.has(key)) { row.remove(); streamRows.delete(key); }
    }
    const options = new Set([...filter.options].map((o) => o.value));
    for (const a of [...apps].sort()) {
      if (!options.has(a)) filter.append(el('option', {value: a, textContent: a}));
    }
    const shown = streamsBody.rows.length;
    setText($('stream-count'), `(${shown})`);
    $('no-streams').hidden = last.streams.length > 0;
  }

  function renderSessions() {
    const app = filter.value;
    const seen = new Set();
    for (const s of last.sessions) {
      seen.add(s.id);
      if (app && appOf(s.path) !== app) { sessionRows.get(s.id)?.remove(); continue; }
      let row = sessionRows.get(s.id);
      if (!row) {
        row = el('tr');
        row.dataset.id = s.id;
        row.append(el('th', {scope: 'row', textContent: String(s.id)}));
        for (const name of ['kind', 'protocol', 'path', 'peer', 'user', 'since', 'bytes', 'lag']) {
          row.append(el('td', {className: name}));
        }
        const kick = el('button', {type: 'button', textContent: 'Kick', className: 'kick'});
        kick.setAttribute('aria-label', `Kick session ${s.id} (${s.kind} ${s.protocol} ${s.path})`);
        kick.addEventListener('click', () => window.tidewater.kick(s.id));
        row.append(el('td', {}, kick));
        label(row, $('sessions'));
        sessionRows.set(s.id, row);
      }
      const cell = (name) => row.querySelector('td.' + name);
      setText(cell('kind'), s.kind);
      setText(cell('protocol'), s.protocol);
      setText(cell('path'), s.path);
      setText(cell('peer'), s.peer || '–');
      setText(cell('user'), s.user || 'anonymous');
      setText(cell('since'), duration(Date.now() - s.started_unix_ms));
      setText(cell('bytes'), s.kind === 'publisher' ? bytes(s.bytes_in) + ' in' : bytes(s.bytes_out) + ' out');
      setText(cell('lag'), s.kind === 'reader' ? (s.lag_us / 1000).toFixed(0) + ' ms' : '–');
      sessionsBody.append(row);
    }
    for (const [id, row] of sessionRows) {
      if (!seen.has(id)) { row.remove(); sessionRows.delete(id); }
    }
    setText($('session-count'), `(${sessionsBody.rows.length})`);
  }

  // One row per push of a live stream, rebuilt each poll (a handful).
  function renderPushes() {
    const app = filter.value;
    const rows = [];
    const when = (ms) => new Date(ms).toLocaleTimeString();
    for (const s of last.streams) {
      if (app && appOf(s.key) !== app) continue;
      for (const p of s.pushes || []) {
        const row = el('tr');
        row.dataset.key = s.key;
        row.dataset.url = p.url;
        row.className = 'push-' + p.state;
        row.append(el('th', {scope: 'row', textContent: s.key}));
        row.append(el('td', {className: 'url'}, el('code', {textContent: p.url})));
        row.append(el('td', {className: 'state', textContent: p.state}));
        row.append(el('td', {className: 'attempts', textContent:
          p.attempts + (p.failures_in_row ? ` (${p.failures_in_row} failed in a row)` : '')}));
        row.append(el('td', {className: 'when', textContent: p.connected_since_unix_ms
          ? 'since ' + when(p.connected_since_unix_ms) + ' (' + duration(Date.now() - p.connected_since_unix_ms) + ')'
          : p.next_attempt_unix_ms ? 'next at ' + when(p.next_attempt_unix_ms) : '–'}));
        const errors = el('td', {className: 'errors'});
        if (p.last_errors.length) {
          const list = el('ul');
          for (const e of [...p.last_errors].reverse()) list.append(el('li', {textContent: when(e.at_unix_ms) + ': ' + e.message}));
          errors.append(list);
        } else errors.textContent = 'none';
        row.append(errors);
        label(row, $('pushes'));
        rows.push(row);
      }
    }
    pushesBody.replaceChildren(...rows);
    setText($('push-count'), `(${rows.length})`);
    $('no-pushes').hidden = rows.length > 0;
    $('pushes').hidden = rows.length === 0;
  }

  // One row per [[pull]], rebuilt each poll (a handful).
  function renderPulls() {
    const app = filter.value;
    const when = (ms) => new Date(ms).toLocaleTimeString();
    const rows = [];
    for (const p of last.pulls) {
      if (app && appOf(p.path) !== app) continue;
      const row = el('tr');
      row.dataset.key = p.path;
      row.className = 'pull-' + p.state;
      const link = el('a', {href: '/watch/' + p.path.split('/').map(encodeURIComponent).join('/'), textContent: p.path});
      row.append(el('th', {scope: 'row'}, link));
      row.append(el('td', {className: 'url'}, el('code', {textContent: p.url})));
      row.append(el('td', {className: 'transport', textContent: p.transport +
        (p.connected_transport && p.connected_transport !== p.transport ? ' (' + p.connected_transport + ')' : '') +
        (p.on_demand ? ', on demand' : '')}));
      row.append(el('td', {className: 'state', textContent: p.state}));
      row.append(el('td', {className: 'since', textContent: when(p.since_unix_ms) + ' (' + duration(Date.now() - p.since_unix_ms) + ')'}));
      row.append(el('td', {className: 'attempts', textContent: `${p.attempts} failed in a row, ${p.connections} connections`}));
      row.append(el('td', {className: 'errors', textContent: p.last_error
        ? (p.last_error_unix_ms ? when(p.last_error_unix_ms) + ': ' : '') + p.last_error : 'none'}));
      label(row, $('pulls'));
      rows.push(row);
    }
    pullsBody.replaceChildren(...rows);
    setText($('pull-count'), `(${rows.length})`);
    $('no-pulls').hidden = rows.length > 0;
    $('pulls').hidden = rows.length === 0;
  }

  async function api(path, options = {}) {
    const response = await fetch('/api/v1' + path, Object.assign({credentials: 'same-origin', cache: 'no-store'}, options));
    if (!response.ok) {
      let message = response.status + ' ' + response.statusText;
      try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
      throw new Error(`${path}: ${message}`);
    }
    return response.status === 204 ? null : response.json();
  }

  async function refresh() {
    try {
      const [streams, sessions, pulls] = await Promise.all([api('/streams'), api('/sessions'), api('/pulls')]);
      last = {streams: streams.streams, sessions: sessions.sessions, pulls: pulls.pulls};
      const now = Date.now();
      for (const s of last.streams) remember(s, now);
      const live = new Set(last.streams.map((s) => s.key));
      for (const key of history.keys()) if (!live.has(key)) history.delete(key);
      renderStreams();
      renderPushes();
      renderPulls();
      renderSessions();
      setText($('status'), 'live · updated ' + new Date().toLocaleTimeString());
      $('status').className = '';
    } catch (e) {
      setText($('status'), 'cannot read the API: ' + e.message);
      $('status').className = 'error';
    }
  }

  async function kick(id) {
    try {
      await api('/sessions/' + encodeURIComponent(id), {method: 'DELETE'});
      setText($('status'), `session ${id} ended`);
    } catch (e) {
      setText($('status'), `could not end session ${id}: ${e.message}`);
      $('status').className = 'error';
    }
    await refresh();
  }

  filter.addEventListener('change', () => { renderStreams(); renderPushes(); renderPulls(); renderSessions(); });
  $('publish-start').addEventListener('submit', (e) => {
    e.preventDefault();
    const part = (id) => encodeURIComponent($(id).value.trim());
    location.href = '/publish/' + part('publish-app') + '/' + part('publish-stream');
  });
  window.tidewater = {kick, refresh};
  refresh();
  setInterval(refresh, POLL_MS);
})();
