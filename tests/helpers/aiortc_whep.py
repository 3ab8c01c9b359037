#!/usr/bin/env python3
"""A WHEP viewer built on aiortc: POSTs a receive-only offer (video and
audio) to a WHEP URL, decodes what arrives with aiortc's own decoders for
a number of seconds, then prints one JSON line of what it decoded:

  {"status": 201, "video_frames": N, "width": W, "height": H,
   "video_pts": [...], "audio_frames": N, "sample_rate": R,
   "audio_samples": N, "video_codec": "video/H264", "audio_codec": "audio/opus"}

Usage: aiortc_whep.py URL SECONDS

Only loopback addresses are gathered (aioice leaves 127.0.0.1 out by
default), so every packet stays on the machine.
"""

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

# Gather on loopback only: the tests never leave 127.0.0.1.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def post_offer(url, sdp):
    request = urllib.request.Request(
        url,
        data=sdp.encode(),
        method="POST",
        headers={"Content-Type": "application/sdp"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def main(url, seconds):
    result = {
        "status": 0,
        "video_frames": 0,
        "width": 0,
        "height": 0,
        "video_pts": [],
        "audio_frames": 0,
        "sample_rate": 0,
        "audio_samples": 0,
        "video_codec": "",
        "audio_codec": "",
    }
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    readers = []

    async def read_video(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            result["video_frames"] += 1
            result["width"], result["height"] = frame.width, frame.height
            result["video_pts"].append(frame.pts)

    async def read_audio(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            result["audio_frames"] += 1
            result["sample_rate"] = frame.sample_rate
            result["audio_samples"] += frame.samples

    @pc.on("track")
    def on_track(track):
        reader = read_video if track.kind == "video" else read_audio
        readers.append(asyncio.ensure_future(reader(track)))

    # aiortc gathers every candidate before the offer is set: no trickle.
    await pc.setLocalDescription(await pc.createOffer())
    status, answer = await asyncio.get_running_loop().run_in_executor(
        None, post_offer, url, pc.localDescription.sdp
    )
    result["status"] = status
    if status != 201:
        result["error"] = answer
        print(json.dumps(result), flush=True)
        await pc.close()
        return
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    for t in pc.getTransceivers():
        codecs = getattr(t, "_codecs", [])
        if codecs:
            result[f"{t.kind}_codec"] = codecs[0].mimeType
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await pc.close()
    for r in readers:
        r.cancel()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
