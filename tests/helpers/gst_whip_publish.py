#!/usr/bin/env python3
"""A WHIP publisher built on GStreamer's webrtcbin: videotestsrc encoded by
x264enc (constrained baseline, no B-frames) and audiotestsrc encoded by
opusenc, offered with every host candidate gathered (no trickle), POSTed
to a WHIP URL; it publishes for a number of seconds, then DELETEs its
session. x264enc makes a keyframe at the start and then only when the
server asks (key-int-max=1000: 40 s). It prints one line per event on standard output:

  status 201            the POST's answer
  ice <state>           ICE connection state changes
  dtls <state>          the DTLS connection state of the bundle transport
  pli N                 keyframe requests the server sent (RTCP PLI/FIR
                        read from the decrypted RTCP: proves SRTCP keys)
  done {json}           a summary at the end

Usage: gst_whip_publish.py URL SECONDS [--rsa | --late-cert] [--h265]

The DTLS certificate: webrtcbin 1.22 makes an RSA one, which the server's
DTLS (ECDSA only, as browsers use) refuses, so this helper gives webrtcbin
an ECDSA P-256 certificate. It must be given while the DTLS elements are
still in the NULL state: `dtlsdec` connects its peer-certificate handler
only on NULL to READY, and a certificate set later makes a fresh
connection without that handler, whose OpenSSL verify callback then
answers "reject" and the handshake ends with alert 48 (unknown_ca).
And webrtcbin computes the offer's fingerprint over every base64 line of
that PEM, the private key's included, so the helper writes the
certificate's own SHA-256 fingerprint into the offer.

`--rsa` keeps webrtcbin's own certificate (the server refuses it: "no
client certificate received"); `--late-cert` sets the ECDSA one 50 ms
after the DTLS elements are made (GStreamer then ends with alert 48):
both show the failures, for diagnosis.

libnice gathers on 127.0.0.1 only, without UPnP, and the server
announces only loopback candidates, so every packet stays on the
machine; its keepalives are binding requests (see configure_ice).
"""

import ctypes
import datetime
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


def ecdsa_pem():
    """A self-signed ECDSA P-256 certificate and its key, PEM, certificate
    first (the order GStreamer's dtls certificate reads them in), and the
    certificate's SHA-256 fingerprint as SDP writes it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gst-whip")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode() + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    digest = cert.fingerprint(hashes.SHA256())
    return pem, "sha-256 " + ":".join(f"{b:02X}" for b in digest)


PIPELINE = (
    "webrtcbin name=w bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=25/1 "
    "! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast "
    "key-int-max=1000 bframes=0 bitrate=600 "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=102 ! w. "
    "audiotestsrc is-live=true wave=sine freq=440 "
    "! audio/x-raw,rate=48000,channels=2 ! audioconvert ! audioresample "
    "! opusenc bitrate=64000 ! rtpopuspay "
    "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w."
)


# `--h265`: x265enc (Main, a keyframe every 2 s) instead of x264enc, for
# the server's H.265 WHIP path.
PIPELINE_H265 = PIPELINE.replace(
    "x264enc tune=zerolatency speed-preset=ultrafast "
    "key-int-max=1000 bframes=0 bitrate=600 "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=102",
    "x265enc tune=zerolatency speed-preset=ultrafast "
    "key-int-max=50 bitrate=600 "
    "! video/x-h265,profile=main "
    "! rtph265pay config-interval=-1 "
    "! application/x-rtp,media=video,encoding-name=H265,payload=102",
)
assert PIPELINE_H265 != PIPELINE


def configure_ice(webrtc):
    """Makes webrtcbin's libnice agent gather on 127.0.0.1 only, never try
    UPnP, and keep the connection alive with STUN binding requests.

    libnice leaves loopback out of its own interface list. Its keepalives
    are binding indications by default, and the server's ICE-lite agent
    (str0m) drops a pair that has had no binding request for 15 s:
    `keepalive-conncheck` makes them requests (as browsers' consent
    checks are). GStreamer 1.22 exposes none of these, so they are set
    through the C API (the NiceAgent has no Python bindings on Debian 12)."""
    pointer_of = ctypes.pythonapi.PyCapsule_GetPointer
    pointer_of.restype = ctypes.c_void_p
    pointer_of.argtypes = [ctypes.py_object, ctypes.c_char_p]
    gobject = ctypes.CDLL("libgobject-2.0.so.0")
    nice = ctypes.CDLL("libnice.so.10")
    gobject.g_object_get.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_void_p,
    ]
    gobject.g_object_unref.argtypes = [ctypes.c_void_p]
    # Not through a Python wrapper: webrtcbin 1.22 never sinks its ICE
    # object's floating reference, so a wrapper would take it and free the
    # object when it goes.
    ice = ctypes.c_void_p()
    gobject.g_object_get(pointer_of(webrtc.__gpointer__, None), b"ice-agent", ctypes.byref(ice), None)
    agent = ctypes.c_void_p()
    gobject.g_object_get(ice, b"agent", ctypes.byref(agent), None)
    gobject.g_object_unref(ice)
    gobject.g_object_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
    gobject.g_object_set(agent, b"upnp", 0, None)
    gobject.g_object_set(agent, b"keepalive-conncheck", 1, None)
    nice.nice_address_new.restype = ctypes.c_void_p
    nice.nice_address_set_from_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    nice.nice_agent_add_local_address.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    nice.nice_address_free.argtypes = [ctypes.c_void_p]
    address = nice.nice_address_new()
    parsed = nice.nice_address_set_from_string(address, b"127.0.0.1")
    ok = parsed and nice.nice_agent_add_local_address(agent, address)
    nice.nice_address_free(address)
    gobject.g_object_unref(agent)
    if not ok:
        sys.exit("libnice refused 127.0.0.1 as a local address")


def say(*words):
    print(*words, flush=True)


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


class Publisher:
    def __init__(self, url, seconds, rsa):
        self.url = url
        self.seconds = seconds
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(PIPELINE_H265 if "--h265" in sys.argv else PIPELINE)
        self.webrtc = self.pipe.get_by_name("w")
        configure_ice(self.webrtc)
        self.pem, self.fingerprint = (None, None) if rsa else ecdsa_pem()
        self.location = None
        self.summary = {
            "status": 0,
            "ice": "",
            "dtls": "",
            "keyframe_requests": 0,
            "error": "",
            "local_fingerprint": "",
        }
        self.lock = threading.Lock()
        # Every transport's DTLS elements, whenever webrtcbin makes them.
        self.webrtc.connect("deep-element-added", self.on_element)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_message)

    def on_element(self, _bin, _sub, element):
        factory = element.get_factory()
        name = factory.get_name() if factory else ""
        if name == "dtlssrtpdec":
            # Still NULL here: see the module doc for why that matters.
            if self.pem is not None and "--late-cert" in sys.argv:
                GLib.timeout_add(50, lambda: element.set_property("pem", self.pem))
            elif self.pem is not None:
                element.set_property("pem", self.pem)
            element.connect("notify::connection-state", self.on_dtls_state)

    def on_dtls_state(self, element, _pspec):
        state = element.get_property("connection-state").value_nick
        with self.lock:
            self.summary["dtls"] = state
        say("dtls", state)

    def on_ice_state(self, webrtc, _pspec):
        state = webrtc.get_property("ice-connection-state").value_nick
        with self.lock:
            self.summary["ice"] = state
        say("ice", state)

    def on_negotiation_needed(self, webrtc):
        # webrtcbin makes its transceivers sendrecv; a WHIP publish only
        # sends.
        index = 0
        while (transceiver := webrtc.emit("get-transceiver", index)) is not None:
            transceiver.set_property(
                "direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY
            )
            index += 1
        promise = Gst.Promise.new_with_change_func(self.on_offer, webrtc)
        webrtc.emit("create-offer", None, promise)

    def on_offer(self, promise, webrtc):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        done = Gst.Promise.new()
        webrtc.emit("set-local-description", offer, done)
        done.interrupt()
        webrtc.connect("notify::ice-gathering-state", self.on_gathering)

    def on_gathering(self, webrtc, _pspec):
        if webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        sdp = webrtc.get_property("local-description").sdp.as_text()
        if self.fingerprint is not None:
            # webrtcbin 1.22 computes its fingerprint over every base64 line
            # of the PEM it was given, the private key's included: the
            # certificate's own goes in the offer instead.
            sdp = "".join(
                ("a=fingerprint:" + self.fingerprint if line.startswith("a=fingerprint:") else line)
                + "\r\n"
                for line in sdp.splitlines()
            )
        for line in sdp.splitlines():
            if line.startswith("a=fingerprint:"):
                self.summary["local_fingerprint"] = line[len("a=fingerprint:") :]
        threading.Thread(target=self.post, args=(sdp,), daemon=True).start()

    def post(self, sdp):
        status, headers, body = request(
            "POST", self.url, sdp.encode(), {"Content-Type": "application/sdp"}
        )
        with self.lock:
            self.summary["status"] = status
        say("status", status)
        if status != 201:
            self.summary["error"] = body.strip()
            GLib.idle_add(self.loop.quit)
            return
        location = headers.get("Location") or headers.get("location")
        if location:
            self.location = urllib.parse.urljoin(self.url, location)
        GLib.idle_add(self.answer, body)

    def answer(self, text):
        _, sdp = GstSdp.SDPMessage.new_from_text(text)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        promise = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", answer, promise)
        promise.interrupt()
        self.watch_rtcp()
        return False

    def watch_rtcp(self):
        # Keyframe requests arrive as RTCP PLI/FIR on the senders' RTP
        # sessions: "on-feedback-rtcp" is emitted only for RTCP that
        # decrypted, so counting them proves the SRTCP keys work.
        rtpbin = self.webrtc.get_by_name("rtpbin")
        if rtpbin is None:
            return
        for session_id in range(2):
            session = rtpbin.emit("get-internal-session", session_id)
            if session is not None:
                session.connect("on-feedback-rtcp", self.on_feedback)

    def on_feedback(self, _session, kind, fbtype, _sender, _media, _fci):
        # PSFB (206) with PLI (1) or FIR (4).
        if int(kind) == 206 and int(fbtype) in (1, 4):
            with self.lock:
                self.summary["keyframe_requests"] += 1
                n = self.summary["keyframe_requests"]
            say("pli", n)

    def on_message(self, _bus, message):
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            with self.lock:
                self.summary["error"] = f"{err.message} ({debug})"
            say("error", err.message, debug)
            self.loop.quit()

    def stop(self):
        self.loop.quit()
        return False

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int(self.seconds * 1000), self.stop)
        self.loop.run()
        if self.location:
            request("DELETE", self.location)
        self.pipe.set_state(Gst.State.NULL)
        say("done", json.dumps(self.summary))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    Gst.init(None)
    Publisher(args[0], float(args[1]), "--rsa" in sys.argv).run()


if __name__ == "__main__":
    main()
