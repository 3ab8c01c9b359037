// tidewater player page: LL-HLS and TS-HLS with hls.js, DASH with dash.js,
// WebRTC over WHEP with the browser's own RTCPeerConnection, switchable, with
// the live latency, dropped frames and resolution measured here; the stream's
// URLs for every protocol and an embed snippet.
'use strict';
(() => {
  const config = JSON.parse(document.getElementById('watch-config').textContent);
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const key = config.app + '/' + config.stream;
  const path = encodeURIComponent(config.app) + '/' + encodeURIComponent(config.stream);
  const PLAYERS = {
    llhls: {label: 'LL-HLS', library: 'hlsjs', url: `/llhls/${path}/index.m3u8`, lowLatency: true},
    webrtc: {label: 'WebRTC (WHEP)', library: null, url: `/whep/${path}`},
    dash: {label: 'DASH', library: 'dashjs', url: `/dash/${path}/manifest.mpd`},
    hls: {label: 'TS-HLS', library: 'hlsjs', url: `/hls/${path}/index.m3u8`, lowLatency: false},
    // A range of the recordings (HLS VOD); its url is set when chosen.
    recording: {label: 'Recording', library: 'hlsjs', url: null, lowLatency: false, vod: true},
  };
  const embed = new URLSearchParams(location.search).has('embed');
  if (embed) document.body.classList.add('embed');
  document.title = key + ' · tidewater';
  $('title').textContent = key;

  const loaded = {};
  function library(name) {
    if (!name) return Promise.resolve();
    if (!loaded[name]) {
      loaded[name] = new Promise((resolve, reject) => {
        const src = config[name];
        if (!src) {
          reject(new Error((name === 'hlsjs' ? 'hls.js' : 'dash.js') +
            ' is not embedded in this build (run `npm ci` in tests/web and rebuild, or set [web] player_scripts_url)'));
          return;
        }
        const script = document.createElement('script');
        script.src = src;
        script.onload = () => resolve();
        script.onerror = () => reject(new Error('cannot load ' + src));
        document.head.append(script);
      });
    }
    return loaded[name];
  }

  let current = null; // {name, destroy(), latency()}
  let failure = null;
  let lastTime = -1;

  function showError(message) {
    failure = message;
    $('error').textContent = message;
    $('error').hidden = !message;
  }

  function seekableLatency() {
    const s = video.seekable;
    return s.length ? s.end(s.length - 1) - video.currentTime : null;
  }

  async function startHls(p) {
    if (!window.Hls || !Hls.isSupported()) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) {
        video.src = p.url;
        return {library: 'native HLS', destroy() { video.removeAttribute('src'); video.load(); }, latency: seekableLatency};
      }
      throw new Error('this browser has neither Media Source Extensions nor native HLS');
    }
    const hls = new Hls({lowLatencyMode: p.lowLatency, liveDurationInfinity: true});
    let retry = null;
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (!d.fatal) return;
      showError(`hls.js: ${d.type} ${d.details}; retrying`);
      if (d.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        clearTimeout(retry);
        retry = setTimeout(() => { hls.loadSource(p.url); hls.startLoad(); }, 3000);
      }
    });
    hls.on(Hls.Events.FRAG_BUFFERED, () => { if (failure) showError(null); });
    hls.loadSource(p.url);
    hls.attachMedia(video);
    return {
      library: 'hls.js ' + (config.hlsjs_version || Hls.version || ''),
      destroy() { clearTimeout(retry); hls.destroy(); },
      latency: () => p.vod ? null
        : (Number.isFinite(hls.latency) && hls.latency > 0) ? hls.latency : seekableLatency(),
    };
  }

  async function startDash(p) {
    const player = dashjs.MediaPlayer().create();
    player.updateSettings({streaming: {liveCatchup: {enabled: true}}});
    player.on(dashjs.MediaPlayer.events.ERROR, (e) => {
      const err = e.error || e;
      showError('dash.js: ' + (err.message || err.code || JSON.stringify(err)));
    });
    player.on(dashjs.MediaPlayer.events.STREAM_INITIALIZED, () => showError(null));
    player.initialize(video, p.url, true);
    return {
      library: 'dash.js ' + (config.dashjs_version || ''),
      destroy() { player.reset(); },
      latency: () => {
        const l = player.getCurrentLiveLatency();
        return (Number.isFinite(l) && l > 0) ? l : null;
      },
    };
  }

  // ICE candidates gathered (the WHEP server takes no trickled ones), or
  // what there is after 2 s.
  const gathered = (pc) => new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') done(); });
    setTimeout(done, 2000);
  });

  // WHEP: a receive-only offer POSTed to /whep/…, the answer applied. The
  // latency shown is how far behind the server's live edge the picture is:
  // half the round trip (ICE candidate pair) plus the time a frame spent in
  // the jitter buffer and the decoder (inbound-rtp deltas over the last
  // half second). The glass-to-glass delay also has the publisher's own.
  async function startWebrtc(p) {
    if (!window.RTCPeerConnection) throw new Error('this browser has no WebRTC');
    const pc = new RTCPeerConnection({iceServers: []});
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    const media = new MediaStream();
    pc.addEventListener('track', (e) => {
      media.addTrack(e.track);
      if (video.srcObject !== media) video.srcObject = media;
    });
    let resource = null;
    let closed = false;
    let stats = {latency: null, framesDecoded: 0, framesDropped: 0, framesReceived: 0};
    let previous = null;
    const poll = setInterval(async () => {
      if (closed) return;
      let inbound = null, rtt = null;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' &&
            Number.isFinite(s.currentRoundTripTime)) rtt = s.currentRoundTripTime;
      });
      if (!inbound) return;
      const delta = (k) => (inbound[k] || 0) - ((previous && previous[k]) || 0);
      const emitted = delta('jitterBufferEmittedCount');
      const decoded = delta('framesDecoded');
      const buffer = emitted > 0 ? delta('jitterBufferDelay') / emitted : null;
      const decode = decoded > 0 ? delta('totalDecodeTime') / decoded : 0;
      previous = inbound;
      stats = {
        latency: buffer === null ? stats.latency : buffer + decode + (rtt || 0) / 2,
        framesDecoded: inbound.framesDecoded || 0,
        framesDropped: inbound.framesDropped || 0,
        framesReceived: inbound.framesReceived || 0,
      };
    }, 500);
    const destroy = () => {
      closed = true;
      clearInterval(poll);
      video.srcObject = null;
      // Ends the viewer on the server at once rather than at its timeout;
      // the connection closes after (closing it first could end the
      // session before the DELETE finds it). One the server ended is gone.
      const live = pc.connectionState !== 'failed' && pc.connectionState !== 'closed';
      if (!resource || !live) { pc.close(); return; }
      fetch(new URL(resource, location.href), {method: 'DELETE', credentials: 'same-origin'})
        .catch(() => {}).finally(() => pc.close());
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const response = await fetch(p.url, {
        method: 'POST',
        headers: {'Content-Type': 'application/sdp'},
        body: pc.localDescription.sdp,
        credentials: 'same-origin',
      });
      const body = await response.text();
      if (response.status !== 201) throw new Error(`WHEP: ${response.status} ${body.trim()}`.trim());
      resource = response.headers.get('Location');
      await pc.setRemoteDescription({type: 'answer', sdp: body});
    } catch (e) {
      destroy();
      throw e;
    }
    pc.addEventListener('connectionstatechange', () => {
      if (closed) return;
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        showError('WebRTC: the connection ' + pc.connectionState + '; retrying');
        retryLater('webrtc');
      } else if (pc.connectionState === 'connected' && failure) showError(null);
    });
    video.play().catch(() => { /* autoplay refused: the controls remain */ });
    return {
      library: 'WebRTC (WHEP), this browser',
      destroy,
      latency: () => stats.latency,
      quality: () => ({dropped: stats.framesDropped, total: stats.framesReceived}),
      stats: () => stats,
    };
  }

  // WebRTC has no player library to retry for it: the page asks again.
  let replay = null;
  function retryLater(name) {
    clearTimeout(replay);
    replay = setTimeout(() => { if (selected === name) play(name); }, 3000);
  }

  let selected = null;
  async function play(name) {
    const p = PLAYERS[name];
    if (!p || !p.url) return;
    if (current) { current.destroy(); current = null; }
    clearTimeout(replay);
    selected = name;
    showError(null);
    lastTime = -1;
    setState('loading');
    for (const input of document.querySelectorAll('#players input')) input.checked = input.value === name;
    if (!embed) history.replaceState(null, '', location.pathname + location.search + '#' + name);
    try {
      await library(p.library);
      const start = {hlsjs: startHls, dashjs: startDash}[p.library] || startWebrtc;
      const started = await start(p);
      if (selected !== name) { started.destroy(); return; } // switched meanwhile
      current = Object.assign(started, {name});
      $('library').textContent = started.library;
      if (p.library === 'hlsjs') video.play().catch(() => { /* autoplay refused: the controls remain */ });
    } catch (e) {
      if (selected !== name) return;
      showError(e.message);
      setState('error');
      if (name === 'webrtc') retryLater(name);
    }
  }

  function setState(state) {
    $('state').textContent = state;
    $('state').dataset.state = state;
  }

  function tick() {
    if (!current) return;
    const t = video.currentTime;
    if (failure && video.readyState < 3) setState('error');
    else if (video.paused) setState(video.readyState >= 2 ? 'paused' : 'loading');
    else if (video.readyState >= 3 && t > lastTime && lastTime >= 0) setState('playing');
    else setState('buffering');
    lastTime = t;
    const latency = current.latency();
    $('latency').textContent = latency === null || latency === undefined
      ? (PLAYERS[current.name].vod ? '– (recording)' : '–') : latency.toFixed(2) + ' s';
    $('latency').dataset.seconds = latency === null || latency === undefined ? '' : latency.toFixed(3);
    let q = null;
    if (current.quality) q = current.quality();
    else if (video.getVideoPlaybackQuality) {
      const p = video.getVideoPlaybackQuality();
      q = {dropped: p.droppedVideoFrames, total: p.totalVideoFrames};
    }
    $('dropped').textContent = q ? `${q.dropped} of ${q.total}` : '–';
    $('resolution').textContent = video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : '–';
  }

  function copy(text) {
    // The button keeps its name (its label starts with it); the live
    // region, shown for a moment, says it worked.
    const done = () => {
      $('announce').textContent = 'Copied to the clipboard';
      setTimeout(() => { $('announce').textContent = ''; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallback());
    } else fallback();
    function fallback() {
      const area = document.createElement('textarea');
      area.value = text;
      document.body.append(area);
      area.select();
      try { document.execCommand('copy'); done(); } catch (_) { /* the text stays selectable */ }
      area.remove();
    }
  }

  // Player choice.
  const names = config.players.filter((n) => PLAYERS[n]);
  for (const name of names) {
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'player';
    input.value = name;
    input.id = 'player-' + name;
    input.addEventListener('change', () => { if (input.checked) play(name); });
    // The radio inside its label: the two never wrap apart.
    const label = document.createElement('label');
    label.append(input, ' ' + PLAYERS[name].label);
    $('players').append(label);
  }

  // URLs.
  const tbody = $('urls').tBodies[0];
  for (const row of config.urls) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = row.protocol;
    const what = document.createElement('td');
    what.textContent = row.what;
    const url = document.createElement('td');
    const action = document.createElement('td');
    if (row.url) {
      const code = document.createElement('code');
      code.textContent = row.url;
      url.append(code);
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = 'Copy';
      button.setAttribute('aria-label', `Copy the ${row.protocol} ${row.what} URL`);
      button.addEventListener('click', () => copy(row.url));
      action.append(button);
    } else {
      url.textContent = row.note === 'not yet available' ? 'not yet available' : 'not served (' + row.note + ')';
      url.className = 'unavailable';
    }
    tr.append(th, what, url, action);
    tbody.append(tr);
  }
  $('embed').value = config.embed;
  $('copy-embed').addEventListener('click', () => copy(config.embed));

  // Recordings: the spans on a timeline and in a list, any range played.
  function playRange(start, duration) {
    const query = new URLSearchParams({start});
    if (duration) query.set('duration', duration);
    PLAYERS.recording.url = `/playback/${path}/index.m3u8?${query}`;
    return play('recording');
  }

  async function loadRecordings() {
    let spans;
    try {
      const response = await fetch(`/playback/${path}/list`, {credentials: 'same-origin', cache: 'no-store'});
      if (response.status === 404) spans = [];
      else if (!response.ok) throw new Error(response.status + ' ' + response.statusText);
      else spans = await response.json();
    } catch (e) {
      $('recordings-status').textContent = 'cannot list the recordings: ' + e.message;
      return;
    }
    const list = $('spans');
    const timeline = $('timeline');
    list.replaceChildren();
    timeline.replaceChildren();
    $('recordings-status').textContent = spans.length ? '' : 'nothing recorded yet';
    if (!spans.length) return;
    const times = spans.map((s) => [Date.parse(s.start), Date.parse(s.start) + s.duration * 1000]);
    const first = Math.min(...times.map((t) => t[0]));
    const last = Math.max(...times.map((t) => t[1]));
    const scale = 1000 / Math.max(1, last - first);
    spans.forEach((span, i) => {
      const [a, b] = times[i];
      const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      rect.setAttribute('x', ((a - first) * scale).toFixed(1));
      rect.setAttribute('width', Math.max(2, (b - a) * scale).toFixed(1));
      rect.setAttribute('y', '2');
      rect.setAttribute('height', '16');
      timeline.append(rect);
      const item = document.createElement('li');
      const label = document.createElement('span');
      label.textContent = `${new Date(a).toLocaleString()}, ${span.duration.toFixed(1)} s `;
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = 'Play';
      button.setAttribute('aria-label', `Play the recording from ${new Date(a).toLocaleString()}`);
      button.addEventListener('click', () => {
        $('range-start').value = span.start;
        $('range-duration').value = span.duration.toFixed(1);
        playRange(span.start, span.duration.toFixed(1));
      });
      item.append(label, button);
      list.append(item);
    });
    if (!$('range-start').value) $('range-start').value = spans[spans.length - 1].start;
  }

  if (config.record) {
    $('recordings').hidden = false;
    $('range').addEventListener('submit', (e) => {
      e.preventDefault();
      playRange($('range-start').value.trim(), $('range-duration').value.trim());
    });
    loadRecordings();
    setInterval(loadRecordings, 10000);
  }

  // For tests and the curious: the WebRTC receiver's counters.
  const webrtc = () => (current && current.stats ? current.stats() : null);
  window.tidewaterPlayer = {play, playRange, webrtc, current: () => current && current.name};
  if (config.publish) {
    $('publish-link').href = config.publish;
    $('publish-link').hidden = false;
  }
  setInterval(tick, 500);
  const wanted = location.hash.slice(1) || new URLSearchParams(location.search).get('player');
  if (names.length) play(names.includes(wanted) ? wanted : names[0]);
  else showError('no HTTP output that a browser plays is enabled ([hls], [dash])');
})();
