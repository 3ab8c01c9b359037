//! WebRTC for the tidewater kernel: ingest over WHIP (RFC 9725) and
//! playback over WHEP (draft-ietf-wish-whep-02, the latest revision found
//! when written), on
//! [str0m](https://docs.rs/str0m) 0.25, with the media of every peer on one
//! UDP port.
//!
//! A browser, OBS or GStreamer `POST`s an SDP offer to
//! `/whip/{app}/{stream}`; the answer (`201 Created`, `application/sdp`)
//! names the session in `Location` (`/whip/{app}/{stream}/{session}`) and
//! `ETag`, and its media arrives on the media port
//! ([`WhipConfig::udp_listen`], 8189 by default). The publish is an ordinary
//! kernel publish: every reader protocol of the server reads it.
//!
//! ```
//! use std::time::Duration;
//! use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol};
//! use tidewater_whip::{Whip, WhipConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().default_app(AppSpec::default()).build()?;
//! let whip = Whip::new(WhipConfig {
//!     udp_listen: "127.0.0.1:0".parse()?,
//!     ..WhipConfig::default()
//! })?;
//! // Mount this next to the other HTTP routes (axum::serve it, or merge it).
//! let _router: axum::Router = whip.router(engine.context());
//! // The media worker: runs until the token is cancelled.
//! let shutdown = CancellationToken::new();
//! let worker = {
//!     let (whip, ctx, shutdown) = (whip.clone(), engine.context(), shutdown.clone());
//!     tokio::spawn(async move { whip.serve(ctx, shutdown).await })
//! };
//! let media = whip.listening().await;
//! assert_eq!(media[0].ip().to_string(), "127.0.0.1");
//! shutdown.cancel();
//! worker.await??;
//! # let _ = Duration::ZERO;
//! # Ok(())
//! # }
//! ```
//!
//! # Signalling (RFC 9725)
//!
//! | request | answer |
//! |---|---|
//! | `POST /whip/{app}/{stream}`, `Content-Type: application/sdp` | `201` with the SDP answer, `Location`, `ETag`; `415` for another content type, `400` for SDP that does not parse or cannot be answered, `406` when the offer has neither a video codec the server takes nor Opus, or video in none of H.264, VP8, VP9, AV1, H.265 (named in the answer; see "Video codecs" for which one is answered), `413` over [`WhipConfig::max_offer_bytes`], `409` when the stream is already published, `401`/`403`/`429`/`503` from the authorizer, `503` over [`WhipConfig::max_sessions`] |
//! | `DELETE {Location}` | `200`, the publish ends; `404` for an unknown session |
//! | `PATCH {Location}`, `Content-Type: application/trickle-ice-sdpfrag` | `204`: the fragment's candidates (RFC 8840) go to the session ([`trickle`]); `412` when `If-Match` is not the session's `ETag`; `422` for an ICE restart (`If-Match: *`), which is not supported; `400` for a fragment that does not parse, `415` for another content type, `404` for an unknown session |
//! | `POST /whep/{app}/{stream}`, `Content-Type: application/sdp` (a receive-only offer) | `201` with a send-only answer (every one of H.264, VP8, VP9, AV1, H.265 and Opus the viewer accepts; its video line sends the stream's codec), `Location` (`/whep/{app}/{stream}/{session}`), `ETag`; the reader refusals of every HTTP output (`401`/`403`/`404` not live); `422` for H.264 or H.265 with B-frames and for an offer with video but not in the stream's video codec (both named in the answer: WHEP does not transcode video); `DELETE`, `PATCH`, `OPTIONS` as for WHIP |
//! | `OPTIONS` on both | `204` with CORS (any origin; `Authorization`, `Content-Type`, `If-Match` may be sent; `Location`, `ETag`, `Link` may be read), `Accept-Post: application/sdp` on the endpoint, `Accept-Patch: application/trickle-ice-sdpfrag` on the session |
//!
//! Every `201` carries one `Link: <url>; rel="ice-server"` header per
//! configured STUN/TURN server ([`WhipConfig::ice_servers`]; TURN ones with
//! `username`, `credential` and `credential-type="password"`), as RFC 9725
//! §4.6 describes; none when none is configured.
//!
//! Authorization goes through the kernel's auth seam: the publish request
//! carries the peer, the query (`?token=…`) and the credentials of the
//! `Authorization` header (`Bearer` as WHIP clients send it, or `Basic`);
//! a refusal is answered as every HTTP route answers one
//! ([`tidewater_http::refusal_response`]). The session URL is the
//! capability to end the session: its id is 128 random bits.
//!
//! The server is ICE-lite: its answer carries every host candidate, and the
//! client's candidates are learnt from its connectivity checks (peer
//! reflexive). A client that trickles (posts its offer before gathering and
//! `PATCH`es its candidates) works too: the candidates are added to the
//! session. mDNS candidates (`….local`) are skipped (they cannot be
//! resolved here; the connectivity checks reveal the address anyway).
//!
//! # Media
//!
//! One UDP port serves every peer: one socket per local address on that
//! port (`0.0.0.0` stands for 127.0.0.1 and the default route's address;
//! [`WhipConfig::additional_hosts`] adds local addresses), each announced as
//! a host candidate. One worker task owns every session's `str0m::Rtc`
//! (sans-IO: bytes and time in, datagrams, events and timeouts out) and
//! demultiplexes datagrams by remote address, then by ICE username (see
//! [`media`]). Datagrams no session accepts are counted and dropped
//! ([`junk`]: per cause in the listener counters of `webrtc`, logged with
//! their sender at a bounded rate).
//!
//! ICE-TCP (RFC 6544, [`tcp`]): with [`Transport::Tcp`] in
//! [`WhipConfig::transports`] (the default has both), the same addresses
//! listen on TCP with the media port's number and each answer carries
//! them as passive TCP host candidates after the UDP ones. A client that
//! cannot reach UDP connects and sends its checks, DTLS and SRTP framed
//! as RFC 4571 says (two-byte length); each frame reaches the worker as a
//! datagram marked TCP and is demultiplexed the same way (the first
//! binding request's ICE username, then the remote address), and str0m's
//! TCP transmits go back on that connection. str0m 0.25 (its `is` ICE
//! agent) takes TCP candidates and TCP input as they are: it matches a
//! request to the local candidate of its destination address and
//! protocol, learns the client's address as a peer-reflexive TCP
//! candidate, and leaves the framing to the caller. UDP wins where both
//! work: str0m gives a TCP host candidate type preference 90 against
//! UDP's 126, and clients rank pairs by those priorities.
//!
//! # Video codecs
//!
//! A WHIP answer carries one video codec: H.264 whenever the offer has it,
//! else the first of VP8, VP9, AV1, H.265 the offer names (a browser page
//! chooses with `setCodecPreferences`). One codec only, so a publisher
//! cannot switch mid-stream (the kernel's tracks keep their codec).
//!
//! | codec | RTP payload format | decoder configuration | fMP4 (LL-HLS, DASH, record) | RTMP, HTTP-FLV | TS (SRT, HTTP-TS, TS-HLS) | WHEP |
//! |---|---|---|---|---|---|---|
//! | H.264 | RFC 6184, packetization-mode 1 | `avcC` from in-band SPS/PPS | `avc1` | yes | yes | yes |
//! | VP8 | RFC 7741 | `vpcC` from the keyframe header | `vp08` | refused (`NetStream.Play.Failed`, `415`) | refused (SRT rejected, `415`) | yes |
//! | VP9 | RFC 9628, base spatial layer | `vpcC` from the uncompressed header | `vp09` | enhanced RTMP only | refused | yes (profile 0) |
//! | AV1 | AOM RTP payload format v1.0 | `av1C` from the sequence header OBU | `av01` | enhanced RTMP only | refused | yes |
//! | H.265 | RFC 7798 (no DONL) | `hvcC` from in-band VPS/SPS/PPS | `hvc1` | enhanced RTMP only | yes | to a viewer offering it (untried: no browser here offers it) |
//!
//! "Enhanced RTMP only": the RTMP egress sends these as enhanced-RTMP
//! (FourCC) tags, which legacy clients such as ffmpeg 5.1 do not decode.
//! The order after H.264: H.264 is the one codec every output carries and
//! every browser encodes (in hardware on most devices). VP8 next: every
//! WebRTC browser must implement it (RFC 7742), its software encoder is the
//! cheapest of the rest, and the fMP4 outputs carry it. VP9 then: fewer bits
//! for the picture at more encoder CPU, and enhanced RTMP carries it. AV1
//! after it: the best compression but a software encoder that costs a
//! browser the most CPU (a busy publisher drops frames or resolution). H.265
//! last: browsers offer it only with a hardware encoder, so an offer naming
//! it is rarely the only option, and where it is, it is taken.
//! The Chromium end-to-end test (`tests/tests/whip_codecs.rs`) publishes
//! VP8, VP9 and AV1 and decodes each over LL-HLS; GStreamer's webrtcbin
//! publishes x265 and ffmpeg decodes it over LL-HLS and HTTP-TS.
//!
//! str0m runs in RTP mode: the crate depacketizes with
//! `tidewater_media::rtp` (the same depacketizers the RTSP server uses), so
//! every protocol shares one set of bounded, fuzzed parsers. H.264
//! (packetization-mode 1; the answer picks a profile the publisher offered)
//! becomes the kernel's canonical length-prefixed access units with an
//! avcC configuration from the in-band SPS/PPS; Opus one frame per packet
//! (see [`ingest`] for timestamps). After a lost packet the depacketizer
//! drops until the next IDR picture and the publisher gets a PLI (at most
//! one per [`WhipConfig::pli_interval`]); a video track that has not
//! delivered a keyframe half a second after its first packet gets one too.
//! Browsers send a keyframe only when asked, and every non-WebRTC output
//! needs them regularly (late readers start at one, HLS and DASH cut
//! segments on them), so a publish is also asked for one
//! [`WhipConfig::keyframe_interval`] (2 s, the HLS segment target) after
//! its last keyframe ([`keyframes`]); every request, whatever its reason,
//! counts against the one `pli_interval` limit. The request is a PLI, or a
//! FIR when the publisher's video negotiated only `ccm fir`.
//! Packets are put back in sequence order first ([`reorder`]: held only
//! behind a gap, at most 32 per track). str0m itself sends NACKs and
//! receiver reports.
//!
//! # WHEP playback
//!
//! A viewer's session shares the worker and the UDP port with the
//! publishers. Its subscription is read once ICE and DTLS complete, so it
//! starts at the cached GOP's keyframe. Each frame's RTP payloads are made
//! once per stream as a kernel derived output ([`whep::RTP_FORMAT`]):
//! H.264 packetized in 1 100-byte payloads, with the catalog's SPS and PPS
//! before a keyframe that lacks them in band (RTMP, SRT and RTSP
//! publishers); H.265 likewise (RFC 7798: single NAL unit packets and
//! FUs, VPS/SPS/PPS from the catalog's `hvcC` before a keyframe that lacks
//! them); the WHIP-only codecs in 1 100-byte payloads of their formats:
//! VP8 (RFC 7741), VP9 (RFC 9628, a one-byte descriptor: no picture id,
//! which Chromium's receiver takes by sequence number) and AV1 (the AOM
//! format: the temporal unit's OBUs packed as length-prefixed elements,
//! fragmented across packets, so that only a temporal unit's first packet
//! starts an OBU: Chromium, without a dependency descriptor, takes every
//! such packet as a frame's start, and one OBU per packet gave it frames
//! without their sequence header that it never decoded); Opus one payload
//! per frame. The answer to a viewer has every one of H.264, VP8, VP9
//! (profile 0 is sent on: browsers and the WHIP ingest make 8-bit 4:2:0),
//! AV1 and H.265 that str0m 0.25 negotiates and the offer has; its video
//! line then sends the stream's codec with that codec's payload type. An
//! offer with video but not in the stream's codec is refused `422` by
//! name before a session is made ([`negotiate::uncarried_video`]): WHEP
//! does not transcode video. str0m needs to packetize nothing here (RTP
//! mode: it writes headers and SRTP around our payloads); it negotiates
//! all five (`fmtp`: VP9 `profile-id` 0 and 2, AV1 `profile`/`level-idx`/
//! `tier` defaults, H.265 `profile-id`/`tier-flag`/`level-id`). Per viewer str0m writes the RTP
//! header (SSRC, sequence number, timestamp rescaled to 90 kHz / 48 kHz) and
//! SRTP-protects it, and answers NACKs from its send buffer. A viewer whose
//! worker queue is full blocks its feeder, lags in the kernel and is
//! skipped to the next keyframe there.
//!
//! H.264 with B-frames (x264's default) is refused: `422` naming the cause
//! and the fix (`-bf 0`) when the cached GOP shows them at the `POST` (the
//! events looked at are played first), and a viewer whose stream shows
//! them later is ended with the same log line.
//!
//! A viewer's keyframe request (PLI) is forwarded to the WHIP publisher of
//! its stream, at most once per [`WhipConfig::pli_interval`].
//!
//! When the publish ends, a viewer follows the stream
//! ([`tidewater_core::IngestContext::follow`]) and waits up to the
//! stream's follow grace for the next publish; its RTP timestamps then
//! continue from the last ones it was sent (a per-viewer offset), and
//! playback resumes at the new publish's first keyframe in the same
//! WHEP session.
//!
//! Audio of AAC streams (RTMP, SRT, RTSP publishers): WebRTC carries Opus,
//! so with the `transcode` feature (on in the server) a viewer attaches to
//! the stream's AAC → Opus conversion (`tidewater-transcode`: one per
//! stream however many viewers, started by the first viewer that needs it
//! and stopped after the last, its packets a derived output shared by
//! all); without it such a stream plays without sound and the log says
//! `AAC audio is not carried` once per viewer.
//!
//! ## NACK and RTX: str0m's history per viewer, not one per stream
//!
//! A viewer's NACKs are answered by str0m from its send stream's buffer
//! (every payload is written `nackable`), as RTX (RFC 4588) on the RTX
//! SSRC and payload type the answer pairs with the video
//! (`a=ssrc-group:FID`, `rtx/90000`), or as the original packet when the
//! viewer negotiated no RTX. That history is per viewer (str0m keeps one
//! per send stream), but its payloads are not copied per viewer: str0m
//! takes a payload as `Arc<[u8]>`, and the worker copies each payload of
//! the stream's derived output into one `Arc` that every viewer's send
//! stream shares (`whep::SharedPayloads`).
//!
//! Issue 13 asks for NACKs answered from one packet history per stream.
//! str0m 0.25.0 (the version in `Cargo.lock`, RTP mode, direct API) does
//! not allow it without a fork; what was checked in its sources:
//!
//! - the history is `StreamTx`'s private `rtx_cache: RtxCache`
//!   (`pub(crate)`, an evicting ring of `RtpPacket`s, by default 2 000
//!   packets or 3 s, whichever is less). Received NACKs are turned into
//!   `StreamTx`'s private `resends` queue and answered in its
//!   `poll_packet_resend`, from that cache only; nothing asks the
//!   application for a packet it lacks.
//! - the public knobs only size or bypass it: `StreamTx::set_rtx_cache(
//!   max_packets, max_age, rtx_ratio_cap)` and `RtpWrite::nackable(false)`
//!   (a packet not nackable is not cached, and then a NACK for it goes
//!   unanswered).
//! - an RTX packet cannot be written from outside: `StreamTx::write_rtp`
//!   stamps the stream's main SSRC; the RTX SSRC, its own sequence
//!   numbers and the original sequence number in front of the payload are
//!   made only inside `poll_packet_resend`.
//! - NACKs reach the application only as `Event::RawPacket(RtcpRx(..))`,
//!   behind `RtcConfig::enable_raw_packets`, which str0m documents as
//!   debug output that clones every packet (not for production).
//!
//! What the per-viewer history costs, measured with the `viewer_cost`
//! example (str0m only, N in-memory viewers of one 2 Mbit/s stream, 7
//! payloads a frame at 30 fps, payloads shared): resident memory grown
//! over 6 s of media, `cargo run -p tidewater-whip --example viewer_cost --
//! 200 6` against the same with `unnackable` (no history kept), on a
//! machine at load 6: **487 KB per viewer with the history, 108 KB
//! without**, so the history is about **380 KB per viewer** (76 MB at 200
//! viewers; at 500, `-- 500 5`: 485 KB against 109 KB, 188 MB in all;
//! `BENCHMARKS.md`, "WHEP: the RTX history"). Each entry is a `str0m::rtp::RtpPacket` of
//! 408 bytes (the header with every extension value, times, the `Arc` of
//! the payload), about 630 of them for 3 s of this stream, in a ring that
//! grows by doubling; the payload bytes themselves are the stream's,
//! shared (about 750 KB per stream for 3 s at 2 Mbit/s). A per-stream
//! history would keep only that shared part. Shrinking str0m's (fewer
//! packets or a shorter age through `set_rtx_cache`) trades late NACKs
//! for memory and was not done; the CPU side of the history is within the
//! per-viewer cost measured below.
//!
//! Each session's link is read from its peer's feedback every second
//! ([`qos`], [`Whip::qos`]): for a viewer, TWCC feedback's loss and round
//! trip of what was sent, its REMB when it sends one, the receiver
//! reports' loss and round trip, its NACK, PLI and FIR counts; each entry
//! names its session's id in the API's sessions list, where the server
//! shows them (each WHIP/WHEP session's `webrtc` object of
//! `GET /api/v1/sessions`) and sums them per stream for `/metrics`
//! ([`Whip::qos_by_stream`]: sessions, NACK, PLI and FIR counts, RTX
//! packets sent, the worst loss and round trip). The bytes sent to a
//! viewer (every datagram) are reported to its subscription, so they count
//! in the kernel's per-protocol bytes out (`whep`) and the session's
//! `bytes_sent`.
//!
//! Not yet: keyframe requests of viewers of non-WebRTC publishers
//! (answering them from the GOP cache).
//!
//! # Library decision: str0m 0.25 rather than webrtc-rs 0.21 (`rtc`)
//!
//! Measured on this 2-core machine, each in its own scratch project and
//! target directory, dev profile, while five other builds shared the
//! machine (load 4–6, so absolute times are pessimistic; the ratio is what
//! counts):
//!
//! | | str0m 0.25 (default aws-lc-rs crypto) | webrtc-rs `rtc` 0.21.1 (the sans-IO core of `webrtc` 0.21) |
//! |---|---|---|
//! | crates in the normal dependency graph (`cargo tree -e normal`, unique) | 101 | 198 (the async `webrtc` 0.21 layer adds tokio and more) |
//! | clean build (`cargo build`, dev, `-j2`) | 146 s (load 5.9 at its end) | 200 s (load 7.8 at its end) |
//! | one UDP socket for many peers | built for it: `Rtc::accepts(&Input)` tells which instance a datagram belongs to (ICE username for STUN, nominated pair otherwise); the caller owns the socket | possible with the sans-IO `rtc` crate (the caller owns I/O), but the demultiplexing is the caller's work; not tried here |
//! | RTP in and out without its depacketizers (so ours are used) | `RtcConfig::set_rtp_mode` | not checked |
//! | production use | SFUs (Lookback) | through the async `webrtc` crate; the sans-IO `rtc` core is recent |
//!
//! CPU per WebRTC viewer, str0m only (`cargo run --release -p
//! tidewater-whip --example viewer_cost -- 100 10`, built in 307 s in
//! release): 100 server-side `Rtc`s (ICE-lite, RTP mode, connected in
//! memory) sent 10 s of one 2 Mbit/s H.264 stream, packetized once and
//! shared, on virtual time: 0.39–0.41 s on one thread, i.e. **0.04 % of a
//! core per viewer (about 2 500 viewers per core)** for str0m's part
//! (RTP headers, pacing, SRTP; 211 k datagrams, 207 Mbit/s). It leaves out
//! the kernel's work per datagram (210 a second per viewer), which costs
//! more than str0m does: the worker sends a peer's frame as one UDP GSO
//! `sendmsg` and the other datagrams of a wake-up with one `sendmmsg`
//! (`send.rs`), where perf still puts about a third of the server's CPU. The same figure for webrtc-rs was **not** measured (an equivalent
//! in-memory harness for `rtc` and its release build did not fit this
//! phase). The full WHEP path through the server (socket I/O included) is
//! `cargo xtask bench whep` (`benches/whep.rs`): 0.15–0.24 % of a core
//! per viewer of a 2 Mbit/s stream; 500 viewers all keeping up at 77 % of
//! one core on a quieter run; publish → viewer latency p99 8 ms at 50
//! viewers, 16–146 ms at 200, 549 ms at 500 (figures in `BENCHMARKS.md`,
//! "WebRTC").
//! The decision rests on the dependency count, the build time and the fit
//! to one socket, all in str0m's favour, and str0m's per-viewer cost leaves
//! the 500-viewers-per-core target to the I/O path. The crypto backend is
//! str0m's default (aws-lc-rs via `aws-lc-sys`, C sources built by `cc`;
//! no cmake needed on x86-64 Linux): its RustCrypto and OpenSSL backends did
//! not resolve for 0.25 when checked.
//!
//! # Tests (what real clients got)
//!
//! - `tests/chromium.rs`: headless Chromium publishes its fake camera and
//!   microphone from a page over WHIP to an in-process router and engine;
//!   a kernel subscriber gets a catalog with 640×480 H.264 (avcC from the
//!   in-band SPS/PPS) and Opus, a keyframe first, increasing timestamps,
//!   exact AVCC framing, ~50 Opus frames a second; `DELETE` on the
//!   `Location` ends the session.
//! - `tests/chromium_whep.rs`: the same page then plays the stream back
//!   over WHEP in a second peer connection: Chromium decodes 640×480 video
//!   (60 frames and more, `framesDecoded`, `getVideoPlaybackQuality`) and
//!   receives Opus packets.
//! - `tests/whep_encoder.rs`: x264 output (no B-frames) published in
//!   process as RTMP hands streams to the kernel (parameter sets only in
//!   the catalog, millisecond timestamps) plays in Chromium over WHEP at
//!   640×360 (it fails when the catalog's SPS/PPS are not sent).
//! - `tests/client.rs`: a str0m WHEP viewer receives the RTP of a str0m
//!   WHIP publisher (cached GOP, then live) and its PLI reaches the
//!   publisher (the test fails without the forwarding); a str0m client
//!   publishes synthetic H.264 over loopback UDP and loses a packet: the client receives a PLI, the kernel
//!   gets every frame before the loss, none until the new IDR, every one
//!   after; one frame's packets sent in reverse arrive whole with no
//!   keyframe request; garbage datagrams from a stranger are counted and
//!   disturb nothing; a client that vanishes without `DELETE` has its
//!   session ended and the stream released.
//! - `tests/webrtc.rs` of the workspace's end-to-end tests, through the
//!   `tidewater` binary: Chromium publishes over WHIP from a page of
//!   another origin (the offer first, its candidates in a trickle `PATCH`;
//!   `Location`, `ETag`, `Link`, `412` and `422` checked) and ffmpeg
//!   decodes 640×480 over RTMP and LL-HLS (Opus too over LL-HLS); ffmpeg
//!   publishes x264 (High, no B-frames) + AAC over RTMP and Chromium
//!   plays it over WHEP with the AAC transcoded to Opus (audio packets and
//!   samples received, a level above 0), through a republish 1 s after the publisher
//!   stopped, in one WHEP session; a B-frame stream is refused `422`.
//! - `tests/whep_codecs.rs` of the end-to-end tests: Chromium publishes
//!   VP9, then AV1, over WHIP and a second Chromium page plays each over
//!   WHEP with its default offer (60 frames and more decoded and shown,
//!   640×480, `getStats` naming `video/VP9` / `video/AV1`); a viewer whose
//!   offer keeps only H.264 is refused `422` naming the codec; GStreamer
//!   publishes H.265, which headless Chromium does not offer to receive:
//!   `422` naming H.265 (with a viewer that offers it the test checks the
//!   playback instead).
//! - `tests/rtx.rs`: a str0m viewer over loopback UDP drops every 7th
//!   video datagram for 50 frames; its NACKs bring each one back as RTX
//!   and it ends with every packet.
//! - `tests/webrtc_clients.rs` of the end-to-end tests: aiortc plays an
//!   ffmpeg RTMP publish over WHEP and decodes 320×240 H.264 at 25 fps and
//!   48 kHz Opus; 1 000 junk datagrams and 20 stray RTP ones on the media
//!   port are counted exactly and logged with their sender at most 20
//!   times.
//! - `tests/gst_whip.rs` of the end-to-end tests: GStreamer webrtcbin
//!   publishes (see below); webrtcbin with its own RSA certificate is
//!   refused at DTLS.
//! - `tests/webrtc_tcp.rs` of the end-to-end tests: with
//!   `transports = ["tcp"]` Chromium publishes over WHIP and plays the
//!   stream back over WHEP through ICE-TCP alone (both peer connections'
//!   selected pair TCP, to the passive candidate's port, in `getStats`;
//!   60 frames and more decoded and shown at 640×480; ffmpeg decodes the
//!   publish over RTMP); with both transports Chromium's pair is UDP, and
//!   garbage, a bogus length and an empty frame on the TCP port are each
//!   closed with a line naming the peer and counted, while the UDP publish
//!   goes on; a TCP port already taken fails the start naming
//!   `[webrtc] transports`.
//! - `tests/signal_props.rs`: the stable twin of the `whip_signal` fuzz
//!   target ([`fuzzing::signalling`]: offers and trickle fragments).
//! - `tests/offer_props.rs`: any POST body (random bytes, real offers with
//!   lines dropped, repeated, cut or replaced) gets `201` or a `4xx`, never
//!   a panic, and a refused one leaves nothing published.
//! - `tests/signal.rs`: WHEP `404` when not live, a send-only answer,
//!   `422` for a stream with B-frames; WHIP answers, `Location`/`ETag`, CORS, `409`, `405`,
//!   `404`, `415`/`400`/`406`/`413` with nothing left published, Bearer
//!   tokens to the authorizer and `401`, the session limit, a peer that
//!   never connects is ended.
//!
//! GStreamer 1.22's webrtcbin publishes (`tests/gst_whip.rs` of the
//! end-to-end tests: x264enc + Opus, decoded over RTMP and LL-HLS, its
//! keyframes made on this crate's PLIs) with three things done by its
//! application, none of them a fault of this crate's answer (`a=setup`
//! passive, SHA-256 fingerprint, str0m's certificate are what browsers
//! take):
//!
//! - an ECDSA certificate: webrtcbin's own is RSA, which str0m 0.25's
//!   DTLS (dimpl: ECDSA only, as browsers make) refuses ("no client
//!   certificate received": dimpl 0.9 has no RSA signatures). Taking RSA
//!   would need str0m's `openssl` backend (OpenSSL's own DTLS) instead of
//!   the default `aws-lc-rs` (dimpl): not tried. The certificate must be
//!   set on `dtlssrtpdec` while that element is NULL: `dtlsdec` connects
//!   its peer-certificate handler on NULL → READY only, a PEM set later
//!   makes a connection without it, OpenSSL's verify callback then gets
//!   "reject" for the server's self-signed certificate and GStreamer
//!   sends alert 48 (unknown_ca).
//!   That was the alert 48 seen before; the certificate dimpl makes
//!   (P-256, SHA-256, valid from now for a year) is not the cause.
//! - the certificate's fingerprint written into the offer: webrtcbin 1.22
//!   hashes the whole PEM it was given, the private key included
//!   (`_generate_fingerprint_from_certificate`), and str0m then ends the
//!   session ("remote fingerprint no match").
//! - libnice keepalives as binding requests (`keepalive-conncheck`): str0m's
//!   ICE-lite agent (the `is` crate) counts a pair alive for 15 s after the
//!   peer's last binding request, a constant; GStreamer turns on RFC 7675
//!   consent checks only with a libnice newer than Debian 12's 0.1.21, and
//!   binding indications alone end the session after 15 s.
//!
//! Debian 12's `simple-whip-client` 0.0~git20230131-1 (`whip-client`)
//! aborts before its first request, whatever its options and environment:
//! the binary links libsoup 2.4 (2.74.3), and `gst_parse_launch` of its
//! pipeline loads `libgstwebrtc.so` (gst-plugins-bad 1.22.0), which links
//! libnice 0.1.21 → gupnp-igd 1.2.0 → gupnp 1.6.3 → libsoup 3.2.3, whose
//! load-time constructor sees libsoup 2 symbols and calls `g_error`
//! ("libsoup2 symbols detected. Using libsoup2 and libsoup3 in the same
//! process is not supported": SIGTRAP in `dlopen`, seen with gdb). Fixing
//! it needs the client rebuilt against libsoup 3, a packaging matter.
//! `whipsink` (gst-plugins-rs) is not packaged in Debian 12.
//!
//! # Feature flags
//!
//! - `transcode`: AAC streams play with Opus audio over WHEP (see "WHEP
//!   playback"); needs libavcodec and clang to build.
//!
//! The umbrella crate `tidewater` re-exports this crate as
//! `tidewater::whip` behind its `whip` feature.
//!
//! # What is left
//!
//! See the WHEP section for its gaps; an H.265 WHEP viewer (none tried:
//! headless Chromium on Linux offers no H.265 to receive); VP9 profiles
//! other than 0 over WHEP (sent labelled as profile 0); NACKs answered from
//! a per-stream history (see "NACK and RTX" above: not possible with
//! str0m 0.25 without a fork); VP9 spatial
//! layers (SVC: only the base layer is kept); H.265 from browsers
//! (hardware encoders only) untested; RTCP sender
//! reports for A/V sync (tracks are aligned by first-packet arrival);
//! ICE restarts; ICE-TCP active or simultaneous-open candidates (the
//! server only listens) and TCP over TLS; 1:1 NAT
//! addresses as candidates (the announced addresses must be local);
//! a flood of valid-looking STUN from strangers costs a scan of every
//! session (`Rtc::accepts`) per datagram.

#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod fuzzing;
pub mod ingest;
pub mod junk;
pub mod keyframes;
pub mod media;
pub mod negotiate;
pub mod qos;
pub mod reorder;
mod send;
mod signal;
pub mod tcp;
pub mod trickle;
pub mod whep;
mod whep_audio;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use str0m::Candidate;
use str0m::net::TcpType;
use tidewater_core::{CancellationToken, InboundProtocol, IngestContext};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tracing::info;

pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_KEYFRAME_INTERVAL,
    DEFAULT_MAX_OFFER_BYTES, DEFAULT_MAX_SESSIONS, DEFAULT_PLI_INTERVAL, DEFAULT_TRANSPORTS,
    DEFAULT_UDP_LISTEN, IceServer, Transport, WhipConfig,
};
pub use error::Error;
pub use media::MediaStats;
pub use send::SendStats;

/// The protocol's name in the kernel and the log.
pub const PROTOCOL: &str = "whip";

/// Commands queued from the HTTP side to the media worker.
const COMMAND_QUEUE: usize = 256;
/// Frames queued from the viewers' feeders to the media worker.
const MEDIA_QUEUE: usize = 1024;

#[derive(Clone)]
pub(crate) struct Bound {
    pub(crate) commands: mpsc::Sender<media::Command>,
    /// The host candidates every answer carries (UDP, then ICE-TCP).
    pub(crate) candidates: Vec<Candidate>,
    /// Their addresses (UDP and TCP share the port number).
    pub(crate) addrs: Vec<SocketAddr>,
}

pub(crate) struct Shared {
    pub(crate) config: Arc<WhipConfig>,
    pub(crate) bound: watch::Sender<Option<Bound>>,
    pub(crate) sessions: Arc<AtomicUsize>,
    pub(crate) stats: Arc<MediaStats>,
}

/// The WHIP service: its HTTP routes ([`Whip::router`]) and its media
/// worker ([`InboundProtocol::serve`]). Cheap to clone.
#[derive(Clone)]
pub struct Whip {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Whip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whip")
            .field("config", &self.shared.config)
            .field("sessions", &self.sessions())
            .finish_non_exhaustive()
    }
}

impl Whip {
    /// A service with `config` (checked with [`WhipConfig::validate`]).
    pub fn new(config: WhipConfig) -> Result<Whip, Error> {
        config.validate().map_err(Error::Config)?;
        let (bound, _) = watch::channel(None);
        Ok(Whip {
            shared: Arc::new(Shared {
                config: Arc::new(config),
                bound,
                sessions: Arc::default(),
                stats: Arc::default(),
            }),
        })
    }

    /// The routes (`POST /whip/{app}/{stream}`, and `DELETE`, `PATCH`,
    /// `OPTIONS`), relative to where the router is mounted (the `Location`
    /// it answers assumes the root). Until the worker listens a `POST` is
    /// answered `503`.
    pub fn router(&self, ctx: IngestContext) -> axum::Router {
        signal::router(ctx, Arc::clone(&self.shared))
    }

    /// Waits until the worker listens and returns the media addresses
    /// (the host candidates).
    pub async fn listening(&self) -> Vec<SocketAddr> {
        let mut rx = self.shared.bound.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(b) => b.as_ref().map(|b| b.addrs.clone()).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Sessions open now (negotiated and not yet ended).
    pub fn sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// Counters of the media port.
    pub fn stats(&self) -> &MediaStats {
        &self.shared.stats
    }

    /// Each open session's link figures from its peer's feedback (TWCC,
    /// REMB, receiver reports), refreshed every [`qos::STATS_INTERVAL`].
    pub fn qos(&self) -> Vec<qos::LinkQos> {
        self.shared.stats.links.snapshot()
    }

    /// The same figures per stream (counters summed, loss and round trip
    /// at their worst): what `/metrics` shows.
    pub fn qos_by_stream(&self) -> Vec<qos::StreamLinks> {
        self.shared.stats.links.streams()
    }
}

/// The media port's sockets: UDP ones and ICE-TCP listeners, per address.
struct Listeners {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

async fn bind_all(config: &WhipConfig) -> Result<Listeners, Error> {
    let listen = config.udp_listen;
    let mut ips: Vec<IpAddr> = Vec::new();
    if listen.ip().is_unspecified() {
        // The candidates a 0.0.0.0 socket would stand for: str0m matches a
        // datagram's destination against its host candidates, so each
        // address gets a socket of its own.
        for c in config.candidates(listen) {
            ips.push(c.ip());
        }
    } else {
        ips.push(listen.ip());
        ips.extend(config.additional_hosts.iter().copied());
    }
    if ips.is_empty() {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // With port 0 the first socket picks the number and the others take
    // it: another program may hold that number on TCP, so a few are tried.
    let tries = if listen.port() == 0 { 8 } else { 1 };
    let mut attempt = 1;
    loop {
        match bind_once(config, &ips).await {
            Err(Error::Tcp { .. }) if attempt < tries => attempt += 1,
            other => return other,
        }
    }
}

async fn bind_once(config: &WhipConfig, ips: &[IpAddr]) -> Result<Listeners, Error> {
    let mut port = config.udp_listen.port();
    let mut udp = Vec::new();
    if config.offers(Transport::Udp) {
        for &ip in ips {
            let addr = SocketAddr::new(ip, port);
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| Error::Io { addr, source })?;
            if port == 0 {
                port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
            }
            udp.push(Arc::new(socket));
        }
    }
    let mut tcp = Vec::new();
    if config.offers(Transport::Tcp) {
        for &ip in ips {
            let mut listener = tcp::bind(&[SocketAddr::new(ip, port)]).await?;
            if port == 0 {
                port = listener
                    .first()
                    .and_then(|l| l.local_addr().ok())
                    .map_or(0, |a| a.port());
            }
            tcp.append(&mut listener);
        }
    }
    Ok(Listeners { udp, tcp })
}

/// The host candidates of the bound sockets: UDP ones, then passive TCP
/// ones (RFC 6544), whose lower type preference makes ICE prefer UDP.
fn host_candidates(listeners: &Listeners) -> Vec<Candidate> {
    let udp = listeners
        .udp
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .filter_map(|a| Candidate::host(a, "udp").ok());
    let tcp = listeners
        .tcp
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .filter_map(|a| {
            Candidate::builder()
                .tcp()
                .host(a)
                .tcptype(TcpType::Passive)
                .build()
                .ok()
        });
    udp.chain(tcp).collect()
}

#[async_trait]
impl InboundProtocol for Whip {
    fn name(&self) -> &'static str {
        PROTOCOL
    }

    async fn serve(
        &self,
        ctx: IngestContext,
        shutdown: CancellationToken,
    ) -> tidewater_core::Result<()> {
        let shared = &self.shared;
        let listeners =
            bind_all(&shared.config)
                .await
                .map_err(|e| tidewater_core::Error::Protocol {
                    protocol: PROTOCOL,
                    source: Box::new(e),
                })?;
        let candidates = host_candidates(&listeners);
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for c in &candidates {
            if !addrs.contains(&c.addr()) {
                addrs.push(c.addr());
            }
        }
        info!(
            "whip: WebRTC media on {}",
            candidates
                .iter()
                .map(|c| format!("{} {}", c.proto().to_string().to_uppercase(), c.addr()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Listeners { udp: sockets, tcp } = listeners;
        let (datagram_tx, datagram_rx) = mpsc::channel(media::DATAGRAM_QUEUE);
        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let media_channel = mpsc::channel(MEDIA_QUEUE);
        let mut readers = tokio::task::JoinSet::new();
        for socket in &sockets {
            readers.spawn(media::read_socket(
                Arc::clone(socket),
                datagram_tx.clone(),
                Arc::clone(&shared.stats),
                shutdown.clone(),
            ));
        }
        let strangers = junk::Strangers::new(ctx.listener_stats(junk::LISTENER));
        let conns = Arc::new(tcp::Conns::default());
        let tcp_ctx = tcp::Ctx {
            datagrams: datagram_tx.clone(),
            conns: Arc::clone(&conns),
            stats: Arc::clone(&shared.stats),
            strangers: strangers.clone(),
            idle: shared.config.idle_timeout,
            slots: Arc::new(tokio::sync::Semaphore::new(tcp::max_connections(
                shared.config.max_sessions,
            ))),
            shutdown: shutdown.clone(),
        };
        for listener in tcp {
            readers.spawn(tcp::accept(listener, tcp_ctx.clone()));
        }
        drop(tcp_ctx);
        drop(datagram_tx);
        shared.bound.send_replace(Some(Bound {
            commands: command_tx,
            candidates,
            addrs,
        }));
        media::run(
            sockets
                .iter()
                .filter_map(|s| Some((s.local_addr().ok()?, Arc::clone(s))))
                .collect(),
            datagram_rx,
            command_rx,
            media_channel,
            strangers,
            conns,
            Arc::clone(&shared.config),
            Arc::clone(&shared.stats),
            shutdown.clone(),
        )
        .await;
        shared.bound.send_replace(None);
        readers.shutdown().await;
        Ok(())
    }
}
