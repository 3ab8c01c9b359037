//! Stable twins of the `amf0`, `flv_tag` and `rtmp_client` fuzz targets:
//! the same entry points (`tidewater_ingest_rtmp::fuzzing::{amf0,
//! flv_tags, push_client}`) on random bytes and on damaged valid input.
//! They must never panic; valid input must reach the deep states (a
//! publishing push client, frames out of the FLV mapping).

use std::collections::HashMap;

use proptest::prelude::*;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::time::RtmpTimestamp;
use tidewater_ingest_rtmp::fuzzing::{amf0, flv_tags, push_client};

const AVC_SEQUENCE_HEADER: &[u8] = &[
    0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x0d, 0xff, 0xe1, 0, 25, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9,
    0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1,
    0x42, 0x99, 0x60, 1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb,
];

/// One FLV file tag: header, body, back pointer.
fn tag(out: &mut Vec<u8>, kind: u8, ts: u32, body: &[u8]) {
    let len = body.len() as u32;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(len + 11).to_be_bytes());
}

/// An FLV file as `ffmpeg -f flv` lays it out: metadata, sequence headers,
/// then H.264 and AAC frames.
fn valid_flv() -> Vec<u8> {
    let mut v = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    let mut meta = HashMap::new();
    meta.insert("width".to_string(), Amf0Value::Number(320.0));
    meta.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
    meta.insert("audiocodecid".to_string(), Amf0Value::Number(10.0));
    let script = rml_amf0::serialize(&vec![
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(meta),
    ])
    .expect("amf0");
    tag(&mut v, 18, 0, &script);
    tag(&mut v, 9, 0, AVC_SEQUENCE_HEADER);
    tag(&mut v, 8, 0, &[0xaf, 0, 0x12, 0x10]);
    for i in 0..6u32 {
        let mut frame = vec![if i == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 40, 0, 0, 0, 200];
        frame.extend(std::iter::repeat_n(i as u8 | 1, 200));
        tag(&mut v, 9, i * 40, &frame);
        tag(&mut v, 8, i * 40 + 3, &[0xaf, 1, 0x21, 0x10, 0x04]);
    }
    v
}

/// A destination's replies to a push: S0/S1/S2 (by the entry point's
/// high-bit switch), then `_result` to `connect` and `createStream` and
/// `onStatus NetStream.Publish.Start`.
fn valid_replies() -> Vec<u8> {
    let mut out = vec![0x80];
    let mut ser = ChunkSerializer::new();
    let mut cmd = |stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>| {
        let m = RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: txn,
            command_object: Amf0Value::Null,
            additional_arguments: args,
        };
        let p = MessagePayload::from_rtmp_message(m, RtmpTimestamp::new(0), stream_id)
            .expect("payload");
        out.extend(ser.serialize(&p, false, false).expect("serialize").bytes);
    };
    let status = |code: &str| {
        let mut o = HashMap::new();
        o.insert("level".to_string(), Amf0Value::Utf8String("status".into()));
        o.insert("code".to_string(), Amf0Value::Utf8String(code.into()));
        Amf0Value::Object(o)
    };
    cmd(
        0,
        "_result",
        1.0,
        vec![status("NetConnection.Connect.Success")],
    );
    cmd(0, "_result", 4.0, vec![Amf0Value::Number(1.0)]);
    cmd(1, "onStatus", 0.0, vec![status("NetStream.Publish.Start")]);
    out
}

fn amf_value() -> impl Strategy<Value = Amf0Value> {
    let leaf = prop_oneof![
        any::<f64>().prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        ".{0,20}".prop_map(Amf0Value::Utf8String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Amf0Value::StrictArray),
            proptest::collection::hash_map("[a-z]{1,8}", inner, 0..6).prop_map(Amf0Value::Object),
        ]
    })
}

#[test]
fn a_valid_push_reaches_publishing() {
    assert!(push_client(&valid_replies()).expect("accepted"));
    // Every read size.
    for first in [0x81u8, 0x85, 0xc0, 0xff] {
        let mut data = valid_replies();
        data[0] = first;
        assert!(
            push_client(&data).expect("accepted"),
            "step byte {first:#x}"
        );
    }
}

#[test]
fn a_deep_nesting_is_refused_not_overflowed() {
    let mut data = [0x0a, 0, 0, 0, 1].repeat(100_000);
    data.push(5);
    amf0(&data);
    amf0(&[0x03].repeat(100_000));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn amf0_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        amf0(&data);
    }

    #[test]
    fn amf0_encoded_values_damaged(
        values in proptest::collection::vec(amf_value(), 0..4),
        at in any::<usize>(),
        byte in any::<u8>(),
        cut in any::<usize>(),
    ) {
        let mut data = rml_amf0::serialize(&values).expect("amf0");
        amf0(&data);
        if !data.is_empty() {
            let i = at % data.len();
            data[i] = byte;
            amf0(&data);
            data.truncate(cut % data.len());
            amf0(&data);
        }
    }

    #[test]
    fn flv_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        flv_tags(&data);
    }

    #[test]
    fn flv_valid_file_damaged(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let mut data = valid_flv();
        flv_tags(&data);
        for (at, byte) in edits {
            let i = at % data.len();
            data[i] = byte;
        }
        flv_tags(&data);
        data.truncate(cut % data.len());
        flv_tags(&data);
    }

    #[test]
    fn push_client_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = push_client(&data);
    }

    #[test]
    fn push_client_valid_replies_damaged(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut data = valid_replies();
        for (at, byte) in edits {
            let i = 1 + at % (data.len() - 1);
            data[i] = byte;
        }
        let _ = push_client(&data);
    }
}
