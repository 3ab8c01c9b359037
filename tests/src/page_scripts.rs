//! Scripts the WebRTC test pages share, so that each page says only what
//! it tests: a publisher of the fake camera and microphone restricted to
//! one video codec, and a WHEP viewer playing into a `<video>` element.
//! Open a page with [`open_webrtc_page`] and call them from its script
//! (with `log` and `gathered` from [`ChromiumPage`]):
//!
//! - `await cameraPublisher(mime)`: the fake camera (640 × 480) and
//!   microphone, each on a send-only transceiver of a new
//!   `RTCPeerConnection` without ICE servers, the video's codecs
//!   restricted to `mime` (e.g. `'video/H264'`) and its retransmission
//!   format; gives `{pc, video}` (`video`: the video transceiver).
//! - `whepViewer(audio, muted)`: a new `RTCPeerConnection` without ICE
//!   servers, receive-only video (and audio when `audio`), whose tracks
//!   play in a new autoplaying, inline `<video>` (muted when `muted`);
//!   gives `{viewer, player}`.

use crate::page::ChromiumPage;

/// The `<script>` that defines `cameraPublisher` and `whepViewer`.
pub const WEBRTC_PAGE_HELPERS: &str = r#"<script>
const cameraPublisher = async (mime) => {
  const media = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: true});
  const pc = new RTCPeerConnection({iceServers: []});
  for (const track of media.getTracks()) pc.addTransceiver(track, {direction: 'sendonly'});
  const video = pc.getTransceivers().find(t => t.sender.track && t.sender.track.kind === 'video');
  const codecs = RTCRtpSender.getCapabilities('video').codecs;
  video.setCodecPreferences(codecs.filter(c => c.mimeType === mime || c.mimeType === 'video/rtx'));
  return {pc, video};
};
const whepViewer = (audio, muted) => {
  const viewer = new RTCPeerConnection({iceServers: []});
  viewer.addTransceiver('video', {direction: 'recvonly'});
  if (audio) viewer.addTransceiver('audio', {direction: 'recvonly'});
  const player = document.createElement('video');
  player.muted = muted; player.autoplay = true; player.playsInline = true;
  document.body.appendChild(player);
  const received = new MediaStream();
  viewer.ontrack = (e) => { received.addTrack(e.track); player.srcObject = received; };
  return {viewer, player};
};
</script>
"#;

/// [`ChromiumPage::open`] of `body` after [`WEBRTC_PAGE_HELPERS`].
pub fn open_webrtc_page(body: &str) -> ChromiumPage {
    ChromiumPage::open(&format!("{WEBRTC_PAGE_HELPERS}{body}"))
}
