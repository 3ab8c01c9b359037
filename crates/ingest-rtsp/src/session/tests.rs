use std::time::{Duration, Instant};

use super::*;

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\na=control:streamid=1\r\n";

fn session() -> (Session, Instant) {
    let now = Instant::now();
    (
        Session::new(SessionConfig::default(), "s1".into(), now),
        now,
    )
}

fn request(method: &str, url: &str, cseq: u32, extra: &str, body: &str) -> Vec<u8> {
    let len = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}{len}\r\n{body}").into_bytes()
}

/// The responses in the output, as (status, full text).
fn responses(s: &mut Session) -> Vec<(u16, String)> {
    let out = s.take_output();
    let text = String::from_utf8_lossy(&out).to_string();
    text.split("RTSP/1.0 ")
        .filter(|r| !r.is_empty())
        .map(|r| {
            (
                r.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0),
                r.to_string(),
            )
        })
        .collect()
}

#[test]
fn a_publisher_announces_sets_up_records_and_sends_interleaved_rtp() {
    let (mut s, now) = session();
    s.handle_input(&request("OPTIONS", "rtsp://h/live/cam", 1, "", ""), now)
        .expect("ok");
    let r = responses(&mut s);
    assert_eq!(r[0].0, 200);
    assert!(r[0].1.contains("ANNOUNCE") && r[0].1.contains("CSeq: 1"));

    // ANNOUNCE and a pipelined SETUP: the SETUP waits for the answer.
    let mut input = request(
        "ANNOUNCE",
        "rtsp://h/live/cam?token=t",
        2,
        "Content-Type: application/sdp\r\nAuthorization: Basic dTpw\r\n",
        SDP,
    );
    input.extend(request(
        "SETUP",
        "rtsp://h/live/cam/streamid=0",
        3,
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n",
        "",
    ));
    s.handle_input(&input, now).expect("ok");
    let Some(SessionEvent::Announce {
        request: announced,
        tracks,
    }) = s.poll_event()
    else {
        panic!("announce expected");
    };
    assert_eq!(announced.target.key.as_str(), "live/cam");
    assert_eq!(announced.target.query.as_deref(), Some("token=t"));
    assert_eq!(
        announced.credentials,
        Credentials::UserPass {
            user: "u".into(),
            pass: "p".into()
        }
    );
    assert_eq!(tracks.len(), 2);
    assert!(
        responses(&mut s).is_empty(),
        "nothing answered before the kernel"
    );
    s.accept_announce().expect("ok");
    let r = responses(&mut s);
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), vec![200, 200]);
    assert!(r[1].1.contains("interleaved=0-1"), "{}", r[1].1);
    assert!(r[1].1.contains("Session: s1;timeout=60"));

    let setup = request(
        "SETUP",
        "rtsp://h/live/cam/streamid=1",
        4,
        "Transport: RTP/AVP/TCP;unicast;interleaved=2-3;mode=record\r\nSession: s1\r\n",
        "",
    );
    s.handle_input(&setup, now).expect("ok");
    s.handle_input(
        &request("RECORD", "rtsp://h/live/cam", 5, "Session: s1\r\n", ""),
        now,
    )
    .expect("ok");
    assert_eq!(
        responses(&mut s).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![200, 200]
    );
    assert!(matches!(s.poll_event(), Some(SessionEvent::Record)));
    assert_eq!(
        s.setups(),
        &[
            Some(Transport::Tcp { rtp: 0, rtcp: 1 }),
            Some(Transport::Tcp { rtp: 2, rtcp: 3 })
        ]
    );

    // Interleaved frames, split at every byte.
    let mut media = vec![b'$', 2, 0, 3, 7, 8, 9];
    media.extend([b'$', 1, 0, 1, 5]);
    media.extend(request(
        "GET_PARAMETER",
        "rtsp://h/live/cam",
        6,
        "Session: s1\r\n",
        "",
    ));
    for b in &media {
        s.handle_input(std::slice::from_ref(b), now).expect("ok");
    }
    match s.poll_event() {
        Some(SessionEvent::Rtp { track: 1, packet }) => assert_eq!(&packet[..], &[7, 8, 9]),
        other => panic!("rtp expected, got {other:?}"),
    }
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Rtcp { track: 0, .. })
    ));
    assert_eq!(responses(&mut s)[0].0, 200);

    s.handle_input(
        &request("TEARDOWN", "rtsp://h/live/cam", 7, "Session: s1\r\n", ""),
        now,
    )
    .expect("ok");
    assert!(matches!(s.poll_event(), Some(SessionEvent::Teardown)));
    assert!(s.is_closed());
}

#[test]
fn a_reader_describes_sets_up_and_plays() {
    let (mut s, now) = session();
    s.handle_input(
        &request(
            "DESCRIBE",
            "rtsp://h/live/cam",
            1,
            "Accept: application/sdp\r\n",
            "",
        ),
        now,
    )
    .expect("ok");
    assert!(matches!(s.poll_event(), Some(SessionEvent::Describe(_))));
    s.accept_describe("v=0\r\n", 2).expect("ok");
    let r = responses(&mut s);
    assert_eq!(r[0].0, 200);
    assert!(
        r[0].1.contains("Content-Base: rtsp://h/live/cam/"),
        "{}",
        r[0].1
    );
    assert!(r[0].1.ends_with("v=0\r\n"));
    s.handle_input(
        &request(
            "SETUP",
            "rtsp://h/live/cam/trackID=1",
            2,
            "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
            "",
        ),
        now,
    )
    .expect("ok");
    // Another session id is refused; a track beyond the description is unknown.
    s.handle_input(
        &request(
            "SETUP",
            "rtsp://h/live/cam/trackID=0",
            3,
            "Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nSession: other\r\n",
            "",
        ),
        now,
    )
    .expect("ok");
    s.handle_input(
        &request(
            "SETUP",
            "rtsp://h/live/cam/trackID=5",
            4,
            "Transport: RTP/AVP/TCP;unicast\r\nSession: s1\r\n",
            "",
        ),
        now,
    )
    .expect("ok");
    // UDP is off by default.
    s.handle_input(
        &request(
            "SETUP",
            "rtsp://h/live/cam/trackID=0",
            5,
            "Transport: RTP/AVP;unicast;client_port=5000-5001\r\nSession: s1\r\n",
            "",
        ),
        now,
    )
    .expect("ok");
    s.handle_input(
        &request("PLAY", "rtsp://h/live/cam", 6, "Session: s1\r\n", ""),
        now,
    )
    .expect("ok");
    let codes: Vec<u16> = responses(&mut s).iter().map(|r| r.0).collect();
    assert_eq!(
        codes,
        vec![200, 454, 404, 461],
        "PLAY waits for its RTP-Info"
    );
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Play { resume: false })
    ));
    assert_eq!(
        s.setups(),
        &[None, Some(Transport::Tcp { rtp: 0, rtcp: 1 })]
    );
    s.accept_play(&[RtpInfo {
        track: 1,
        seq: 4242,
        rtptime: Some(90_000),
    }])
    .expect("ok");
    let r = responses(&mut s);
    assert_eq!(r[0].0, 200);
    assert!(r[0].1.contains("CSeq: 6\r\n"), "{}", r[0].1);
    assert!(r[0].1.contains("Range: npt=0.000-\r\n"), "{}", r[0].1);
    assert!(
        r[0].1
            .contains("RTP-Info: url=rtsp://h/live/cam/trackID=1;seq=4242;rtptime=90000\r\n"),
        "{}",
        r[0].1
    );
}

/// A playing session up to its first `PLAY` answered.
fn playing() -> (Session, Instant) {
    let (mut s, now) = session();
    s.handle_input(
        &request("DESCRIBE", "rtsp://h/live/cam?token=t", 1, "", ""),
        now,
    )
    .expect("ok");
    s.accept_describe("v=0\r\n", 2).expect("ok");
    for (i, track) in [0, 1].iter().enumerate() {
        s.handle_input(
            &request(
                "SETUP",
                &format!("rtsp://h/live/cam/trackID={track}"),
                2 + i as u32,
                &format!(
                    "Transport: RTP/AVP/TCP;unicast;interleaved={}-{}\r\nSession: s1\r\n",
                    track * 2,
                    track * 2 + 1
                ),
                "",
            ),
            now,
        )
        .expect("ok");
    }
    s.handle_input(
        &request("PLAY", "rtsp://h/live/cam", 4, "Session: s1\r\n", ""),
        now,
    )
    .expect("ok");
    s.accept_play(&[]).expect("ok");
    let codes: Vec<u16> = responses(&mut s).iter().map(|r| r.0).collect();
    assert_eq!(codes, vec![200, 200, 200, 200]);
    while s.poll_event().is_some() {}
    (s, now)
}

#[test]
fn pause_then_play_resumes_with_rtp_info() {
    let (mut s, now) = playing();
    // Input after a PLAY is held until the PLAY is answered.
    s.handle_input(
        &[
            request("PAUSE", "rtsp://h/live/cam", 5, "Session: s1\r\n", ""),
            request("PAUSE", "rtsp://h/live/cam", 6, "Session: s1\r\n", ""),
            request("PLAY", "rtsp://h/live/cam", 7, "Session: s1\r\n", ""),
            request(
                "GET_PARAMETER",
                "rtsp://h/live/cam",
                8,
                "Session: s1\r\n",
                "",
            ),
        ]
        .concat(),
        now,
    )
    .expect("ok");
    assert!(matches!(s.poll_event(), Some(SessionEvent::Pause)));
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Play { resume: true })
    ));
    assert!(s.poll_event().is_none(), "a second PAUSE changes nothing");
    let codes: Vec<u16> = responses(&mut s).iter().map(|r| r.0).collect();
    assert_eq!(codes, vec![200, 200], "the PLAY and what follows wait");
    s.accept_play(&[
        RtpInfo {
            track: 0,
            seq: 10,
            rtptime: Some(1),
        },
        RtpInfo {
            track: 1,
            seq: 20,
            rtptime: None,
        },
    ])
    .expect("ok");
    let r = responses(&mut s);
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), vec![200, 200]);
    assert!(
        r[0].1.contains(
            "RTP-Info: url=rtsp://h/live/cam/trackID=0;seq=10;rtptime=1,url=rtsp://h/live/cam/trackID=1;seq=20\r\n"
        ),
        "{}",
        r[0].1
    );
    assert!(r[1].1.contains("CSeq: 8\r\n"), "the keep-alive: {}", r[1].1);
    // A PLAY while playing is answered at once; PAUSE before PLAY is refused.
    s.handle_input(
        &request("PLAY", "rtsp://h/live/cam", 9, "Session: s1\r\n", ""),
        now,
    )
    .expect("ok");
    assert_eq!(responses(&mut s)[0].0, 200);
    assert!(s.poll_event().is_none());
    let (mut fresh, now) = session();
    fresh
        .handle_input(&request("PAUSE", "rtsp://h/live/cam", 1, "", ""), now)
        .expect("ok");
    assert_eq!(responses(&mut fresh)[0].0, 455);
}

#[test]
fn keep_alives_hold_a_paused_reader_until_they_stop() {
    let (mut s, now) = playing();
    s.handle_input(
        &request("PAUSE", "rtsp://h/live/cam", 5, "Session: s1\r\n", ""),
        now,
    )
    .expect("ok");
    for i in 1..=3u64 {
        let at = now + Duration::from_secs(50 * i);
        assert!(s.handle_timeout(at).is_ok());
        s.handle_input(
            &request(
                "GET_PARAMETER",
                "rtsp://h/live/cam",
                5 + i as u32,
                "Session: s1\r\n",
                "",
            ),
            at,
        )
        .expect("ok");
    }
    assert!(s.handle_timeout(now + Duration::from_secs(209)).is_ok());
    assert!(s.handle_timeout(now + Duration::from_secs(210)).is_err());
}

#[test]
fn udp_setups_announce_the_server_ports() {
    let now = Instant::now();
    let mut s = Session::new(
        SessionConfig {
            udp: true,
            ..SessionConfig::default()
        },
        "x".into(),
        now,
    );
    s.handle_input(&request("DESCRIBE", "rtsp://h/live/cam", 1, "", ""), now)
        .expect("ok");
    s.accept_describe("v=0\r\n", 1).expect("ok");
    s.handle_input(
        &request(
            "SETUP",
            "rtsp://h/live/cam/trackID=0",
            2,
            "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n",
            "",
        ),
        now,
    )
    .expect("ok");
    let r = responses(&mut s);
    assert!(
        r[1].1
            .contains("client_port=5000-5001;server_port=8000-8001"),
        "{}",
        r[1].1
    );
    assert_eq!(
        s.setups(),
        &[Some(Transport::Udp {
            rtp: 5000,
            rtcp: 5001
        })]
    );
}

#[test]
fn refusals_wrong_order_and_garbage() {
    let (mut s, now) = session();
    s.handle_input(&request("RECORD", "rtsp://h/live/cam", 1, "", ""), now)
        .expect("ok");
    s.handle_input(&request("REDIRECT", "rtsp://h/live/cam", 2, "", ""), now)
        .expect("ok");
    s.handle_input(
        &request("ANNOUNCE", "rtsp://h/live/cam", 3, "", "not sdp"),
        now,
    )
    .expect("ok");
    s.handle_input(&request("DESCRIBE", "rtsp://h/live/cam", 4, "", ""), now)
        .expect("ok");
    s.refuse(401, "tidewater", Some("abc123")).expect("ok");
    let r = responses(&mut s);
    assert_eq!(
        r.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![455, 501, 400, 401]
    );
    let head = &r[3].1;
    let sha256 = head
        .find(
            "WWW-Authenticate: Digest realm=\"tidewater\", nonce=\"abc123\", \
             algorithm=SHA-256, qop=\"auth\"",
        )
        .expect("a Digest SHA-256 challenge");
    let digest = head
        .find("WWW-Authenticate: Digest realm=\"tidewater\", nonce=\"abc123\", algorithm=MD5")
        .expect("a Digest challenge");
    let basic = head
        .find("WWW-Authenticate: Basic realm=\"tidewater\"")
        .expect("a Basic challenge");
    assert!(
        sha256 < digest && digest < basic,
        "SHA-256, MD5, Basic: {head}"
    );
    assert!(s.handle_input(b"\x00\x01garbage\r\n\r\n", now).is_err());
    assert!(s.is_closed());
}

/// A client's SHA-256 answer (RFC 7616, `qop=auth`) to the challenge in
/// `head`, for `DESCRIBE url`.
fn sha256_authorization(head: &str, user: &str, password: &str, url: &str) -> String {
    use sha2::{Digest as _, Sha256};
    fn h(parts: &[&str]) -> String {
        Sha256::digest(parts.join(":").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
    let line = head
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate: Digest") && l.contains("algorithm=SHA-256"))
        .expect("a SHA-256 challenge");
    let param = |name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect(name)
            .to_string()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let ha1 = h(&[user, &realm, password]);
    let ha2 = h(&["DESCRIBE", url]);
    let response = h(&[&ha1, &nonce, "00000001", "0a4f113b", "auth", &ha2]);
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{url}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
         response=\"{response}\"\r\n"
    )
}

/// 401 with both Digest challenges, then a SHA-256 answer computed from the
/// challenge goes through the session's `Authorization` reading whole: the
/// credentials handed to the authorizer verify against the right password
/// and not against a wrong one.
#[test]
fn digest_sha256_round_trip_to_the_authorizer() {
    let url = "rtsp://127.0.0.1:8554/live/cam";
    let (mut s, now) = session();
    let ask = |s: &mut Session, cseq: u32, extra: &str| {
        s.handle_input(&request("DESCRIBE", url, cseq, extra, ""), now)
            .expect("ok");
        match s.poll_event() {
            Some(SessionEvent::Describe(r)) => r.credentials,
            other => panic!("describe expected, got {other:?}"),
        }
    };

    assert_eq!(ask(&mut s, 1, ""), Credentials::None);
    s.refuse(401, "cams", Some("n-1")).expect("ok");
    let r = responses(&mut s);
    assert_eq!(r[0].0, 401);
    let head = r[0].1.clone();
    assert!(head.contains("algorithm=MD5"), "{head}");

    let right = sha256_authorization(&head, "viewer", "Circle of Life", url);
    let Credentials::Digest(d) = ask(&mut s, 2, &right) else {
        panic!("digest credentials expected");
    };
    assert_eq!(d.algorithm.as_deref(), Some("SHA-256"));
    assert_eq!((d.realm.as_str(), d.nonce.as_str()), ("cams", "n-1"));
    assert!(crate::auth::sha256_response_matches(&d, "Circle of Life"));
    assert!(!crate::auth::sha256_response_matches(&d, "Circle Of Life"));

    // Let in, the request goes on to the stream, which this test has not.
    s.refuse(404, "cams", None).expect("ok");
    assert_eq!(responses(&mut s)[0].0, 404);

    let wrong = sha256_authorization(&head, "viewer", "Circle Of Life", url);
    let Credentials::Digest(d) = ask(&mut s, 3, &wrong) else {
        panic!("digest credentials expected");
    };
    assert!(!crate::auth::sha256_response_matches(&d, "Circle of Life"));
}

#[test]
fn input_is_bounded() {
    let (mut s, now) = session();
    let huge = format!(
        "DESCRIBE rtsp://h/live/cam RTSP/1.0\r\nX: {}",
        "a".repeat(70_000)
    );
    assert!(s.handle_input(huge.as_bytes(), now).is_err());
}

#[test]
fn the_session_times_out_without_input() {
    let (mut s, now) = session();
    assert_eq!(s.poll_timeout(), now + Duration::from_secs(60));
    s.handle_input(
        &request("OPTIONS", "*", 1, "", ""),
        now + Duration::from_secs(30),
    )
    .expect("ok");
    assert!(s.handle_timeout(now + Duration::from_secs(60)).is_ok());
    s.touch(now + Duration::from_secs(50));
    assert!(s.handle_timeout(now + Duration::from_secs(109)).is_ok());
    assert!(matches!(
        s.handle_timeout(now + Duration::from_secs(110)),
        Err(Error::Timeout { .. })
    ));
}

/// A request begun and left incomplete closes the session at its head
/// timeout (10 s by default) counted from its first byte, however the rest
/// trickles in; a complete request clears it, and the next one's time
/// starts from its own first byte.
#[test]
fn an_incomplete_request_is_cut_at_the_head_timeout() {
    let (mut s, now) = session();
    let at = |secs: u64| now + Duration::from_secs(secs);
    // A whole request, then half of the next in the same input.
    let mut input = request("OPTIONS", "*", 1, "", "");
    input.extend_from_slice(b"DESCRIBE rtsp://h/live/cam RTSP/1.0\r\nCSeq: 2\r\n");
    s.handle_input(&input, at(5)).expect("ok");
    assert_eq!(responses(&mut s).len(), 1);
    assert_eq!(
        s.poll_timeout(),
        at(15),
        "head timeout, not the session's 60 s"
    );
    // A byte every few seconds moves the session deadline, not the head's.
    s.handle_input(b"X", at(9)).expect("ok");
    s.handle_input(b"-", at(13)).expect("ok");
    assert_eq!(s.poll_timeout(), at(15));
    assert!(s.handle_timeout(at(14)).is_ok());
    match s.handle_timeout(at(15)) {
        Err(Error::HeadTimeout {
            after, received, ..
        }) => {
            assert_eq!(after, Duration::from_secs(10));
            assert_eq!(received, 48);
        }
        other => panic!("expected a head timeout, got {other:?}"),
    }
    assert!(s.is_closed());

    // Completed in time: no head deadline any more, the session's is back.
    let (mut s, now) = session();
    let at = |secs: u64| now + Duration::from_secs(secs);
    let whole = request("OPTIONS", "*", 1, "", "");
    let (head, rest) = whole.split_at(10);
    s.handle_input(head, at(1)).expect("ok");
    assert_eq!(s.poll_timeout(), at(11));
    s.handle_input(rest, at(10)).expect("ok");
    assert_eq!(responses(&mut s).len(), 1);
    assert_eq!(s.poll_timeout(), at(70));
    assert!(s.handle_timeout(at(11)).is_ok());
    // A partial interleaved frame is media, not a request: no head timeout.
    s.handle_input(&[b'$', 0, 0x10], at(20)).expect("ok");
    assert_eq!(s.poll_timeout(), at(80));
}
