//! Stable twin of the `rtsp_session` fuzz target: the same entry point
//! (`tidewater_rtsp::fuzzing::session`) on random byte streams and on
//! mutated valid ones. It must never panic and must end in an error or a
//! bounded state; unmutated valid sessions must be accepted at every read
//! size, and a valid publish must make frames.

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use tidewater_media::rtp::aac::packetize_aac;
use tidewater_media::rtp::h264::packetize_h264;
use tidewater_media::rtp::write_header;
use tidewater_rtsp::fuzzing::session;

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LADdoFB+wEQAAAAwBAAAAMg8UKqA==,aM4PyA==\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1188\r\na=control:streamid=1\r\n";

fn request(method: &str, url: &str, cseq: u32, extra: &str, body: &str) -> Vec<u8> {
    let len = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}{len}\r\n{body}").into_bytes()
}

fn interleaved(out: &mut Vec<u8>, channel: u8, packet: &[u8]) {
    out.extend([b'$', channel]);
    out.extend((packet.len() as u16).to_be_bytes());
    out.extend_from_slice(packet);
}

fn valid_publish() -> Vec<u8> {
    let base = "rtsp://127.0.0.1:8554/live/cam1";
    let mut v = request("OPTIONS", base, 1, "", "");
    v.extend(request(
        "ANNOUNCE",
        base,
        2,
        "Content-Type: application/sdp\r\n",
        SDP,
    ));
    v.extend(request(
        "SETUP",
        &format!("{base}/streamid=0"),
        3,
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n",
        "",
    ));
    v.extend(request(
        "SETUP",
        &format!("{base}/streamid=1"),
        4,
        "Transport: RTP/AVP/TCP;unicast;interleaved=2-3;mode=record\r\nSession: fuzz\r\n",
        "",
    ));
    v.extend(request("RECORD", base, 5, "Session: fuzz\r\n", ""));
    let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
    sr.extend([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    sr.extend([0; 8]);
    interleaved(&mut v, 1, &sr);
    let (mut vseq, mut aseq) = (0u16, 0u16);
    for i in 0..6u32 {
        let slice: Vec<u8> = std::iter::once(if i % 3 == 0 { 0x65 } else { 0x41 })
            .chain((0..2000).map(|b| b as u8))
            .collect();
        let mut payloads = Vec::new();
        packetize_h264([&slice[..]], 600, &mut payloads);
        for p in payloads {
            let mut packet = BytesMut::new();
            write_header(&mut packet, p.marker, 96, vseq, i * 3000, 1);
            packet.put_slice(&p.data);
            vseq = vseq.wrapping_add(1);
            interleaved(&mut v, 0, &packet);
        }
        let au = packetize_aac(&[0x21; 100]).expect("fits");
        let mut packet = BytesMut::new();
        write_header(&mut packet, true, 97, aseq, i * 1024, 2);
        packet.put_slice(&au.data);
        aseq = aseq.wrapping_add(1);
        interleaved(&mut v, 2, &packet);
    }
    v.extend(request("GET_PARAMETER", base, 6, "Session: fuzz\r\n", ""));
    v.extend(request("TEARDOWN", base, 7, "Session: fuzz\r\n", ""));
    v
}

fn valid_play() -> Vec<u8> {
    let base = "rtsp://127.0.0.1:8554/live/abc?token=x";
    let mut v = request(
        "DESCRIBE",
        base,
        1,
        "Accept: application/sdp\r\nAuthorization: Basic dTpw\r\n",
        "",
    );
    v.extend(request(
        "SETUP",
        "rtsp://127.0.0.1:8554/live/abc/trackID=0",
        2,
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
        "",
    ));
    v.extend(request(
        "SETUP",
        "rtsp://127.0.0.1:8554/live/abc/trackID=1",
        3,
        "Transport: RTP/AVP;unicast;client_port=5000-5001\r\nSession: fuzz\r\n",
        "",
    ));
    v.extend(request("PLAY", base, 4, "Session: fuzz\r\n", ""));
    interleaved(&mut v, 1, &[0x80, 201, 0, 1, 0, 0, 0, 1]);
    v.extend(request("TEARDOWN", base, 5, "Session: fuzz\r\n", ""));
    v
}

#[test]
fn valid_sessions_are_accepted_at_every_read_size() {
    for first in [0u8, 1, 2, 7, 33, 63] {
        let mut data = vec![first];
        data.extend(valid_publish());
        let frames = session(&data).unwrap_or_else(|e| panic!("read size byte {first}: {e}"));
        // Six pictures and six audio frames (the first picture is an IDR).
        assert_eq!(frames, 12, "read size byte {first}");
        let mut data = vec![first];
        data.extend(valid_play());
        assert_eq!(session(&data).expect("valid play"), 0);
    }
}

#[test]
fn after_the_publish_prefix_media_alone_makes_frames() {
    // Skip the valid publish up to RECORD: only its interleaved media.
    let publish = valid_publish();
    let record =
        b"RECORD rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 5\r\nSession: fuzz\r\n\r\n";
    let at = publish
        .windows(record.len())
        .position(|w| w == record)
        .expect("record in the valid publish")
        + record.len();
    let media: Vec<u8> = publish[at..].to_vec();
    for first in [0x80u8, 0x81, 0xbf] {
        let mut data = vec![first];
        data.extend_from_slice(&media);
        assert_eq!(
            session(&data).expect("valid media"),
            12,
            "first byte {first:#x}"
        );
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = data.len().max(1);
        match *m {
            Mutation::Flip(i, b) => {
                if let Some(x) = data.get_mut(i % n) {
                    *x ^= b | 1;
                }
            }
            Mutation::Insert(i, b) => data.insert((i % n).min(data.len()), b),
            Mutation::Delete(i) => {
                if !data.is_empty() {
                    data.remove(i % n);
                }
            }
            Mutation::Truncate(i) => data.truncate(i % n),
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = session(&data);
    }

    #[test]
    fn mutated_sessions_never_panic(
        first in any::<u8>(),
        play in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        let mut data = vec![first];
        data.extend(if play { valid_play() } else { valid_publish() });
        let _ = session(&apply(data, &mutations));
    }
}
