// tidewater publish page: the camera (and microphone) of this browser sent
// to the server over WHIP, with the browser's own RTCPeerConnection; the
// sent bitrate, frames and resolution read from its statistics.
'use strict';
(() => {
  const config = JSON.parse(document.getElementById('publish-config').textContent);
  const $ = (id) => document.getElementById(id);
  const key = config.app + '/' + config.stream;
  document.title = 'publish ' + key + ' · tidewater';
  $('title').textContent = 'publish ' + key;
  $('watch-link').href = config.watch;

  let session = null; // {pc, media, resource, poll}

  function setState(state) {
    $('state').textContent = state;
    $('state').dataset.state = state;
  }
  function showError(message) {
    $('error').textContent = message || '';
    $('error').hidden = !message;
  }

  const gathered = (pc) => new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') done(); });
    setTimeout(done, 2000);
  });

  // The server's WHIP ingest takes H.264 (and Opus): offer only that, with
  // its retransmission format.
  function preferH264(pc) {
    const video = pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === 'video');
    if (!video || !video.setCodecPreferences || !window.RTCRtpSender || !RTCRtpSender.getCapabilities) return;
    const codecs = RTCRtpSender.getCapabilities('video').codecs
      .filter((c) => c.mimeType === 'video/H264' || c.mimeType === 'video/rtx');
    if (codecs.some((c) => c.mimeType === 'video/H264')) video.setCodecPreferences(codecs);
  }

  async function start() {
    if (session) return;
    showError(null);
    if (!config.whip) {
      showError('WebRTC is not enabled on this server ([webrtc] enabled = false)');
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError('this page has no access to a camera: open it on localhost or over HTTPS');
      return;
    }
    $('start').disabled = true;
    setState('starting camera');
    const [width, height] = $('size').value.split('x').map(Number);
    let media, pc;
    try {
      media = await navigator.mediaDevices.getUserMedia({video: {width, height}, audio: $('audio').checked});
      $('preview').srcObject = media;
      pc = new RTCPeerConnection({iceServers: []});
      for (const track of media.getTracks()) pc.addTransceiver(track, {direction: 'sendonly'});
      preferH264(pc);
      setState('connecting');
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const response = await fetch(config.whip, {
        method: 'POST',
        headers: {'Content-Type': 'application/sdp'},
        body: pc.localDescription.sdp,
        credentials: 'same-origin',
      });
      const body = await response.text();
      if (response.status !== 201) throw new Error(`WHIP: ${response.status} ${body.trim()}`.trim());
      session = {pc, media, resource: response.headers.get('Location'), poll: null, previous: null};
      await pc.setRemoteDescription({type: 'answer', sdp: body});
    } catch (e) {
      if (pc) pc.close();
      if (media) for (const t of media.getTracks()) t.stop();
      $('preview').srcObject = null;
      session = null;
      $('start').disabled = false;
      setState('error');
      showError(e.name === 'NotAllowedError' ? 'the browser refused the camera: ' + e.message : e.message);
      return;
    }
    $('stop').disabled = false;
    const current = session;
    pc.addEventListener('connectionstatechange', () => {
      if (session !== current) return;
      if (pc.connectionState === 'connected') setState('publishing');
      else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        showError('the connection ' + pc.connectionState + ' (the server may have ended the session)');
        stop(false);
        setState('error');
      }
    });
    session.poll = setInterval(() => measure(current), 1000);
  }

  async function measure(s) {
    const reports = [];
    (await s.pc.getStats()).forEach((r) => reports.push(r));
    if (session !== s) return;
    const codecs = new Map(reports.filter((r) => r.type === 'codec').map((r) => [r.id, r.mimeType]));
    const outbound = reports.filter((r) => r.type === 'outbound-rtp');
    const out = outbound.find((r) => r.kind === 'video');
    const used = outbound.map((r) => codecs.get(r.codecId)).filter(Boolean);
    if (!out) return;
    if (s.previous) {
      const seconds = (out.timestamp - s.previous.timestamp) / 1000;
      const bits = (out.bytesSent - s.previous.bytesSent) * 8;
      if (seconds > 0) $('bitrate').textContent = (bits / seconds / 1000).toFixed(0) + ' kb/s (video)';
    }
    s.previous = out;
    $('frames').textContent = String(out.framesEncoded || 0);
    $('frames').dataset.count = String(out.framesEncoded || 0);
    $('resolution').textContent = out.frameWidth ? `${out.frameWidth}×${out.frameHeight}` : '–';
    $('codecs').textContent = used.length ? used.join(', ') : '–';
  }

  function stop(byUser) {
    const s = session;
    if (!s) return;
    session = null;
    clearInterval(s.poll);
    for (const t of s.media.getTracks()) t.stop();
    $('preview').srcObject = null;
    // Ends the publish on the server at once (WHIP: DELETE the resource),
    // then the connection (closing it first could end the session before
    // the DELETE finds it). One the server ended is gone already.
    const live = s.pc.connectionState !== 'failed' && s.pc.connectionState !== 'closed';
    if (s.resource && live) {
      fetch(new URL(s.resource, location.href), {method: 'DELETE', credentials: 'same-origin', keepalive: true})
        .catch(() => {}).finally(() => s.pc.close());
    } else s.pc.close();
    $('start').disabled = false;
    $('stop').disabled = true;
    if (byUser) setState('stopped');
  }

  $('publish-form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
  $('stop').addEventListener('click', () => stop(true));
  window.addEventListener('pagehide', () => stop(false));
  window.tidewaterPublish = {start, stop: () => stop(true)};
})();
