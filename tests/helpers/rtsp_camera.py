#!/usr/bin/python3
"""A stand-in IP camera for the tests: GStreamer's RTSP server (gst-rtsp-server)
serving a live test pattern (x264 or x265) and a tone (AAC, or Opus with
--audio opus: opusenc and rtpopuspay, RFC 7587) on loopback, with optional
Basic authentication.

Usage: rtsp_camera.py --port 0 [--path /stream1] [--user U --password P [--digest]]
                      [--codec h264|h265] [--udp-only] [--ts-port PORT] [--backlog N]
                      [--bframes N] [--audio aac|opus]
Prints "ready rtsp://127.0.0.1:PORT/PATH" once it serves, then runs until killed.

With --ts-port it serves no test pattern but relays an MPEG-TS stream (H.264 +
AAC) that arrives on UDP 127.0.0.1:PORT (e.g. `ffmpeg -re -i CLIP -c copy -f
mpegts udp://127.0.0.1:PORT?pkt_size=1316`), re-payloaded once in the shared
pipeline: the gst-rtsp-server side of `cargo xtask bench rtsp`.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bframes=0 "
    "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}

AUDIO = {
    "aac": "avenc_aac ! rtpmp4gpay name=pay1 pt=97",
    "opus": "opusenc ! rtpopuspay name=pay1 pt=97",
}

TS_QUEUE = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=10000000000"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", default="0")
    parser.add_argument("--path", default="/stream1")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--codec", default="h264", choices=sorted(VIDEO))
    parser.add_argument("--digest", action="store_true", help="Digest instead of Basic")
    parser.add_argument("--udp-only", action="store_true", help="refuse TCP interleaving")
    parser.add_argument("--ts-port", type=int, help="relay MPEG-TS from this UDP port")
    parser.add_argument("--backlog", type=int, default=0, help="listen backlog (0: default)")
    parser.add_argument("--bframes", type=int, default=0, help="H.264 B-frames (Main profile)")
    parser.add_argument("--audio", default="aac", choices=sorted(AUDIO))
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(args.port)

    if args.backlog > 0:
        # The default backlog (5) refuses connects that arrive in bursts.
        server.set_backlog(args.backlog)

    video = VIDEO[args.codec]
    if args.codec == "h264" and args.bframes > 0:
        # Like cameras that reorder pictures: RTP carries presentation times
        # out of decode order, and the puller derives decode times.
        video = (
            "x264enc speed-preset=ultrafast key-int-max=25 "
            f"bframes={args.bframes} b-adapt=false "
            "! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1"
        )

    factory = GstRtspServer.RTSPMediaFactory()
    if args.ts_port:
        factory.set_launch(
            f"( udpsrc address=127.0.0.1 port={args.ts_port} buffer-size=4194304 "
            "caps=video/mpegts,systemstream=true,packetsize=188 "
            "! tsdemux name=d "
            # The caps pick the demuxer's pads: a bare `d. ! queue` links
            # whichever pad comes first, often the audio. The queues hold up
            # to 10 s: while the media prerolls, the audio stream is blocked
            # as soon as it has data, and a 1 s queue would then block the
            # demuxer before the video's first keyframe (up to a GOP later).
            f"d. ! video/x-h264 ! {TS_QUEUE} ! h264parse "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 "
            f"d. ! audio/mpeg ! {TS_QUEUE} ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
        )
    else:
        factory.set_launch(
            "( videotestsrc is-live=true pattern=ball "
            "! video/x-raw,width=320,height=240,framerate=25/1 "
            f"! {video} "
            "audiotestsrc is-live=true wave=sine freq=440 "
            f"! audio/x-raw,rate=48000,channels=2 ! audioconvert ! {AUDIO[args.audio]} )"
        )
    # One pipeline shared by every client, as a camera has one encoder.
    factory.set_shared(True)
    if args.ts_port:
        # A relay keeps its pipeline when the last client leaves, so a
        # reader that comes later does not wait for it to start again.
        factory.set_stop_on_disconnect(False)
    if args.udp_only:
        # Like cameras that only stream RTP over UDP: a TCP SETUP gets 461.
        factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        if args.digest:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password or "", token)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print("cannot attach the RTSP server", file=sys.stderr)
        return 1
    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}{args.path}", flush=True)

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
