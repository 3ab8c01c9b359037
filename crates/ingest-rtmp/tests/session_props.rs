//! Stable twin of the `rtmp_session` fuzz target: the same entry point
//! (`tidewater_ingest_rtmp::fuzzing::session`) on random byte streams and on
//! mutated valid ones. It must never panic, and must end in an error or a
//! valid (bounded) state; unmutated valid streams must be accepted.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use tidewater_ingest_rtmp::fuzzing::session;

/// C0, an all-zero C1 (a plain, digest-free handshake) and a C2.
fn handshake() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(&[0u8; 1536 * 2]);
    v
}

struct Writer(ChunkSerializer, Vec<u8>);

impl Writer {
    fn new() -> Self {
        Writer(ChunkSerializer::new(), handshake())
    }

    /// Without the handshake (for the entry point's own, high-bit one).
    fn bare() -> Self {
        Writer(ChunkSerializer::new(), Vec::new())
    }

    fn msg(&mut self, stream_id: u32, ts: u32, m: RtmpMessage) -> &mut Self {
        let p = MessagePayload::from_rtmp_message(m, RtmpTimestamp::new(ts), stream_id)
            .expect("payload");
        let bytes = self.0.serialize(&p, false, false).expect("serialize").bytes;
        self.1.extend(bytes);
        self
    }

    fn cmd(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        obj: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> &mut Self {
        self.msg(
            stream_id,
            0,
            RtmpMessage::Amf0Command {
                command_name: name.into(),
                transaction_id: txn,
                command_object: obj,
                additional_arguments: args,
            },
        )
    }

    fn connect(&mut self) -> &mut Self {
        let mut o = HashMap::new();
        o.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        self.cmd(0, "connect", 1.0, Amf0Value::Object(o), vec![])
            .cmd(0, "createStream", 2.0, Amf0Value::Null, vec![])
    }
}

fn valid_publish() -> Vec<u8> {
    let mut w = Writer::new();
    w.msg(0, 0, RtmpMessage::SetChunkSize { size: 4096 });
    w.0.set_max_chunk_size(4096, RtmpTimestamp::new(0))
        .expect("size");
    w.connect();
    w.cmd(
        1,
        "publish",
        3.0,
        Amf0Value::Null,
        vec![
            Amf0Value::Utf8String("cam?token=t".into()),
            Amf0Value::Utf8String("live".into()),
        ],
    );
    let mut meta = HashMap::new();
    meta.insert("width".to_string(), Amf0Value::Number(320.0));
    meta.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
    meta.insert("audiocodecid".to_string(), Amf0Value::Number(10.0));
    w.msg(
        1,
        0,
        RtmpMessage::Amf0Data {
            values: vec![
                Amf0Value::Utf8String("@setDataFrame".into()),
                Amf0Value::Utf8String("onMetaData".into()),
                Amf0Value::Object(meta),
            ],
        },
    );
    let avcc: &[u8] = &[
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x0d, 0xff, 0xe1, 0, 25, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9,
        0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20,
        0xf1, 0x42, 0x99, 0x60, 1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb,
    ];
    w.msg(
        1,
        0,
        RtmpMessage::VideoData {
            data: Bytes::from_static(avcc),
        },
    );
    w.msg(
        1,
        0,
        RtmpMessage::AudioData {
            data: Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        },
    );
    for i in 0..6u32 {
        let mut frame = vec![if i == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 40, 0, 0, 0, 200];
        frame.extend(std::iter::repeat_n(i as u8, 200));
        w.msg(
            1,
            i * 40,
            RtmpMessage::VideoData {
                data: Bytes::from(frame),
            },
        );
        w.msg(
            1,
            i * 40 + 3,
            RtmpMessage::AudioData {
                data: Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x04]),
            },
        );
    }
    w.cmd(
        0,
        "FCUnpublish",
        4.0,
        Amf0Value::Null,
        vec![Amf0Value::Utf8String("cam".into())],
    );
    w.cmd(
        0,
        "deleteStream",
        5.0,
        Amf0Value::Null,
        vec![Amf0Value::Number(1.0)],
    );
    w.1.clone()
}

fn valid_play() -> Vec<u8> {
    let mut w = Writer::new();
    w.connect();
    w.cmd(
        1,
        "play",
        3.0,
        Amf0Value::Null,
        vec![Amf0Value::Utf8String("ab".into()), Amf0Value::Number(-2.0)],
    );
    w.cmd(0, "frobnicate", 6.0, Amf0Value::Null, vec![]);
    w.cmd(
        0,
        "deleteStream",
        5.0,
        Amf0Value::Null,
        vec![Amf0Value::Number(1.0)],
    );
    w.1.clone()
}

#[test]
fn valid_streams_are_accepted_at_every_read_size() {
    for stream in [valid_publish(), valid_play()] {
        for first in [0u8, 1, 7, 100, 127] {
            let mut data = vec![first];
            data.extend_from_slice(&stream);
            assert!(
                session(&data).is_ok(),
                "read size byte {first}: {:?}",
                session(&data)
            );
        }
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

fn mutate(mut data: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    // Leave the handshake mostly alone so that mutations reach the chunk and AMF layers.
    let skip = 1 + 1 + 1536 * 2;
    for m in muts {
        let span = data.len().saturating_sub(skip).max(1);
        match *m {
            Mutation::Flip(i, b) => {
                let i = skip + i % span;
                if let Some(x) = data.get_mut(i) {
                    *x ^= b.max(1);
                }
            }
            Mutation::Insert(i, b) => {
                let i = (skip + i % span).min(data.len());
                data.insert(i, b);
            }
            Mutation::Delete(i) => {
                let i = skip + i % span;
                if i < data.len() {
                    data.remove(i);
                }
            }
            Mutation::Truncate(i) => {
                let i = skip + i % span;
                data.truncate(i);
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = session(&data);
    }

    #[test]
    fn random_bytes_after_a_handshake_never_panic(first in any::<u8>(), tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        // High bit: the entry point does the handshake itself.
        let mut data = vec![first | 0x80];
        data.extend(tail);
        let _ = session(&data);
    }

    #[test]
    fn random_chunks_of_command_and_media_messages_never_panic(
        first in any::<u8>(),
        messages in proptest::collection::vec(
            (0u8..4, prop_oneof![Just(1u8), Just(4), Just(5), Just(8), Just(9), Just(18), Just(20), Just(22), any::<u8>()],
             proptest::collection::vec(any::<u8>(), 0..300)),
            1..20),
    ) {
        // Well-framed chunks (type 0 headers) with random bodies, after a
        // publish was set up: reaches AMF0, control and FLV parsing.
        let mut setup = Writer::bare();
        setup.connect();
        setup.cmd(1, "publish", 3.0, Amf0Value::Null, vec![Amf0Value::Utf8String("cam".into())]);
        let mut data = vec![first | 0x80];
        data.extend(setup.1);
        for (csid, type_id, body) in messages {
            data.push(3 + csid);
            data.extend_from_slice(&[0, 0, 0]);
            data.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            data.push(type_id);
            data.extend_from_slice(&1u32.to_le_bytes());
            for (i, piece) in body.chunks(128).enumerate() {
                if i > 0 {
                    data.push(0xc0 | (3 + csid));
                }
                data.extend_from_slice(piece);
            }
        }
        let _ = session(&data);
    }

    #[test]
    fn mutated_valid_streams_never_panic(
        first in any::<u8>(),
        play in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let valid = if play { valid_play() } else { valid_publish() };
        let mut data = vec![first & 0x7f];
        data.extend(mutate(valid, &muts));
        let _ = session(&data);
    }
}
