//! Two engines in one process share nothing: not their streams, not the
//! derived outputs made of their frames, not the state derived formats keep
//! per publish generation.

mod common;

use std::sync::Mutex;

use bytes::Bytes;
use common::*;
use tidewater_core::{EventRef, OutputFormat};

/// A derived format's per-generation state: how many frames it encoded.
#[derive(Debug, Default)]
struct Encoded(Mutex<u64>);

#[tokio::test]
async fn two_engines_side_by_side_keep_their_outputs_and_state_apart() {
    let (a, b) = (engine(), engine());
    let mut pub_a = publisher(&a, "live/same").await;
    let mut pub_b = publisher(&b, "live/same").await;
    let mut sub_a = viewer(&a, "live/same").await;
    let mut sub_b = viewer(&b, "live/same").await;
    // Every format a stream asks for works: there is no cap to run into.
    let formats: Vec<OutputFormat> = (0..32)
        .map(|i| OutputFormat::new("tagged").with_param(i))
        .collect();
    for i in 0..10 {
        pub_a.publish(vframe(i, 5)).expect("publish a");
        pub_b.publish(vframe(100 + i, 5)).expect("publish b");
    }
    for (sub, tag, first) in [(&mut sub_a, b'a', 0), (&mut sub_b, b'b', 100)] {
        let state = sub.generation_state::<Encoded>();
        let mut seen = vec![];
        while let Some(event) = sub.try_recv_ref() {
            let EventRef::Frame(frame) = event.expect("event") else {
                continue;
            };
            let index = index_of(frame.frame());
            seen.push(index);
            for format in &formats {
                let out = frame.derived(*format, |f, _| {
                    *state.0.lock().expect("state") += 1;
                    let mut bytes = vec![tag, format.param() as u8];
                    bytes.extend_from_slice(&f.payload);
                    Bytes::from(bytes)
                });
                assert_eq!(
                    out[0], tag,
                    "engine {} got another engine's output",
                    tag as char
                );
                assert_eq!(out[1], format.param() as u8);
                assert_eq!(index_of_slice(&out[2..]), index);
            }
        }
        assert_eq!(seen, (first..first + 10).collect::<Vec<_>>());
        // Each engine's generation state counted only its own encodes.
        assert_eq!(*state.0.lock().expect("state"), 10 * formats.len() as u64);
    }
}

#[tokio::test]
async fn generation_state_is_shared_within_a_generation_and_new_after_a_republish() {
    let engine = engine();
    let first = publisher(&engine, "live/g").await;
    let one = viewer(&engine, "live/g").await;
    let two = viewer(&engine, "live/g").await;
    *one.generation_state::<Encoded>().0.lock().expect("state") = 7;
    assert_eq!(
        *two.generation_state::<Encoded>().0.lock().expect("state"),
        7
    );
    first.finish().await;
    let _second = publisher(&engine, "live/g").await;
    let three = viewer(&engine, "live/g").await;
    assert_eq!(
        *three.generation_state::<Encoded>().0.lock().expect("state"),
        0
    );
}

fn index_of_slice(b: &[u8]) -> u64 {
    let mut i = [0u8; 8];
    i.copy_from_slice(&b[..8]);
    u64::from_be_bytes(i)
}
