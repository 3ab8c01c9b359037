//! Frames to RTMP chunks and FLV tags, built once per frame per stream.
//!
//! Each frame's RTMP chunk bytes (for [`SHARED_STREAM_ID`](crate::session::SHARED_STREAM_ID)
//! and the configured chunk size) and its FLV tag bytes are kept in the
//! kernel's per-stream derived-output cache ([`FrameRef::derived`]): the first
//! viewer that needs them builds them, every other viewer of the stream
//! writes the same `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};
use tidewater_core::{Catalog, Frame, FrameRef, OutputFormat, TrackInfo};

use crate::chunk::{self, CSID_AUDIO, CSID_VIDEO};
use crate::flv::{self, TYPE_VIDEO};

/// The derived format of RTMP chunks; its parameter is the chunk size.
const RTMP_CHUNKS: OutputFormat = OutputFormat::new("rtmp-chunks");
/// The derived format of FLV tags; its parameter is the timestamp shift.
const FLV_TAGS: OutputFormat = OutputFormat::new("flv-tags");

/// The derived format holding chunks built for `chunk_size` with timestamps
/// shifted by `shift` (the parameter is the chunk size alone when there is
/// no shift).
fn rtmp_format(chunk_size: u32, shift: u32) -> OutputFormat {
    RTMP_CHUNKS.with_param(u64::from(chunk_size) | u64::from(shift) << 32)
}

/// The frame as RTMP chunks for `stream_id`, or empty if RTMP cannot carry it.
pub fn frame_chunks(frame: &Frame, catalog: &Catalog, chunk_size: u32, stream_id: u32) -> Bytes {
    frame_chunks_shifted(frame, catalog, chunk_size, stream_id, 0)
}

/// [`frame_chunks`] with `shift` milliseconds added (wrapping) to the
/// frame's RTMP timestamp: what a push sends after rebasing a republish.
pub fn frame_chunks_shifted(
    frame: &Frame,
    catalog: &Catalog,
    chunk_size: u32,
    stream_id: u32,
    shift: u32,
) -> Bytes {
    if !flv::is_carried(frame, catalog) {
        return Bytes::new();
    }
    let (ts, cto) = flv::frame_time(frame, catalog);
    let Some(prefix) = flv::frame_prefix(frame, cto) else {
        return Bytes::new();
    };
    let csid = if prefix.type_id == TYPE_VIDEO {
        CSID_VIDEO
    } else {
        CSID_AUDIO
    };
    let mut out = BytesMut::new();
    if !chunk::write_message(
        &mut out,
        chunk::MessageHeader {
            csid,
            type_id: prefix.type_id,
            stream_id,
            timestamp: ts.wrapping_add(shift),
        },
        prefix.as_slice(),
        &frame.payload,
        chunk_size as usize,
    ) {
        return Bytes::new();
    }
    out.freeze()
}

/// The frame as one FLV tag, or empty if FLV cannot carry it.
pub fn frame_tag(frame: &Frame, catalog: &Catalog) -> Bytes {
    frame_tag_shifted(frame, catalog, 0)
}

/// [`frame_tag`] with `shift` milliseconds added (wrapping) to the frame's
/// timestamp: what a reader gets after a republish.
pub fn frame_tag_shifted(frame: &Frame, catalog: &Catalog, shift: u32) -> Bytes {
    if !flv::is_carried(frame, catalog) {
        return Bytes::new();
    }
    let (ts, cto) = flv::frame_time(frame, catalog);
    let Some(prefix) = flv::frame_prefix(frame, cto) else {
        return Bytes::new();
    };
    let mut out = BytesMut::new();
    if !flv::write_tag(
        &mut out,
        prefix.type_id,
        ts.wrapping_add(shift),
        prefix.as_slice(),
        &frame.payload,
    ) {
        return Bytes::new();
    }
    out.freeze()
}

/// The frame's RTMP chunks with its timestamp shifted by `shift`, from the
/// stream's derived-output cache when the player uses the shared stream id
/// (one entry per chunk size and shift: the players of a generation share
/// one shift, see [`GenerationShift`](super::GenerationShift)).
pub(crate) fn shared_chunks(
    frame: &FrameRef<'_>,
    chunk_size: u32,
    stream_id: u32,
    shift: u32,
) -> Bytes {
    if stream_id == crate::session::SHARED_STREAM_ID {
        frame.derived(rtmp_format(chunk_size, shift), |f, c| {
            frame_chunks_shifted(f, c, chunk_size, stream_id, shift)
        })
    } else {
        frame_chunks_shifted(frame, frame.catalog(), chunk_size, stream_id, shift)
    }
}

/// The derived format of the RTMP chunks of an Opus frame's AAC (see
/// [`AacFromOpus`](super::AacFromOpus)); its parameter as [`rtmp_format`]'s.
const RTMP_AAC_CHUNKS: OutputFormat = OutputFormat::new("rtmp-chunks-aac");
/// The derived format of the FLV tags of an Opus frame's AAC; its
/// parameter is the timestamp shift.
const FLV_AAC_TAGS: OutputFormat = OutputFormat::new("flv-tags-aac");

/// The RTMP chunks of `aac`, the AAC frames an Opus frame became, shifted
/// by `shift`: kept in the stream's derived-output cache (on the Opus
/// frame) when the player uses the shared stream id, so the players of a
/// stream share them as they share the conversion.
pub(crate) fn shared_aac_chunks(
    frame: &FrameRef<'_>,
    aac: &[Frame],
    chunk_size: u32,
    stream_id: u32,
    shift: u32,
) -> Bytes {
    let build = |catalog: &Catalog| -> Bytes {
        aac.iter()
            .flat_map(|a| frame_chunks_shifted(a, catalog, chunk_size, stream_id, shift))
            .collect()
    };
    if stream_id == crate::session::SHARED_STREAM_ID {
        let param = u64::from(chunk_size) | u64::from(shift) << 32;
        frame.derived(RTMP_AAC_CHUNKS.with_param(param), |_, c| build(c))
    } else {
        build(frame.catalog())
    }
}

/// The FLV tags of `aac`, the AAC frames an Opus frame became, shifted by
/// `shift`, from the stream's derived-output cache.
pub(crate) fn shared_aac_tags(frame: &FrameRef<'_>, aac: &[Frame], shift: u32) -> Bytes {
    frame.derived(FLV_AAC_TAGS.with_param(u64::from(shift)), |_, c| {
        aac.iter()
            .flat_map(|a| frame_tag_shifted(a, c, shift))
            .collect()
    })
}

/// The frame's FLV tag with its timestamp shifted by `shift`, from the
/// stream's derived-output cache.
pub(crate) fn shared_tag(frame: &FrameRef<'_>, shift: u32) -> Bytes {
    frame.derived(FLV_TAGS.with_param(u64::from(shift)), |f, c| {
        frame_tag_shifted(f, c, shift)
    })
}

/// What a player needs before the frames of a catalog: `onMetaData` and the
/// sequence headers, as RTMP chunks at `timestamp`.
pub fn catalog_chunks(catalog: &Catalog, chunk_size: u32, stream_id: u32, timestamp: u32) -> Bytes {
    catalog_chunks_with(catalog, None, chunk_size, stream_id, timestamp)
}

/// [`catalog_chunks`] with the audio track announced as `audio` instead
/// (the AAC a transcoded Opus track goes out as).
pub fn catalog_chunks_with(
    catalog: &Catalog,
    audio: Option<&TrackInfo>,
    chunk_size: u32,
    stream_id: u32,
    timestamp: u32,
) -> Bytes {
    let mut out = BytesMut::new();
    data_message(
        &mut out,
        stream_id,
        &flv::metadata_body_with(catalog, audio),
        chunk_size,
    );
    out.extend_from_slice(&sequence_headers(
        catalog, audio, chunk_size, stream_id, timestamp,
    ));
    out.freeze()
}

/// The `@setDataFrame onMetaData` data message a publisher sends before its
/// media, as chunks on the crate's data chunk stream.
pub fn set_data_frame(catalog: &Catalog, chunk_size: u32, stream_id: u32) -> Bytes {
    set_data_frame_with(catalog, None, chunk_size, stream_id)
}

/// [`set_data_frame`] with the audio track announced as `audio` instead
/// (the AAC a pushed Opus track goes out as).
pub fn set_data_frame_with(
    catalog: &Catalog,
    audio: Option<&TrackInfo>,
    chunk_size: u32,
    stream_id: u32,
) -> Bytes {
    let meta = flv::metadata_body_with(catalog, audio);
    let mut body = BytesMut::with_capacity(16 + meta.len());
    body.put_u8(0x02);
    body.put_u16(13);
    body.put_slice(b"@setDataFrame");
    body.put_slice(&meta);
    let mut out = BytesMut::new();
    data_message(&mut out, stream_id, &body, chunk_size);
    out.freeze()
}

/// A data message (`onMetaData`, `@setDataFrame`) at time 0 on the crate's
/// data chunk stream.
fn data_message(out: &mut BytesMut, stream_id: u32, body: &[u8], chunk_size: u32) -> bool {
    chunk::write_message(
        out,
        chunk::MessageHeader {
            csid: chunk::CSID_DATA,
            type_id: flv::TYPE_DATA,
            stream_id,
            timestamp: 0,
        },
        &[],
        body,
        chunk_size as usize,
    )
}

/// The sequence headers of a catalog's carried tracks, as RTMP chunks at `timestamp`.
pub fn sequence_header_chunks(
    catalog: &Catalog,
    chunk_size: u32,
    stream_id: u32,
    timestamp: u32,
) -> Bytes {
    sequence_headers(catalog, None, chunk_size, stream_id, timestamp)
}

/// [`sequence_header_chunks`], with the audio track replaced by `audio` if given.
pub(crate) fn sequence_headers(
    catalog: &Catalog,
    replaced: Option<&TrackInfo>,
    chunk_size: u32,
    stream_id: u32,
    timestamp: u32,
) -> Bytes {
    let mut out = BytesMut::new();
    let (video, audio) = flv::carried_tracks(catalog);
    let audio = replaced.or(audio);
    for (track, csid) in [(video, CSID_VIDEO), (audio, CSID_AUDIO)] {
        if let Some((type_id, body)) = track.and_then(flv::config_body) {
            chunk::write_message(
                &mut out,
                chunk::MessageHeader {
                    csid,
                    type_id,
                    stream_id,
                    timestamp,
                },
                &[],
                &body,
                chunk_size as usize,
            );
        }
    }
    out.freeze()
}

/// The same as FLV tags: script data, then sequence headers.
///
/// The script tag (`onMetaData`) is stamped 0 whatever `timestamp` is, as
/// RTMP's data message is: ffmpeg's FLV demuxer applies `onMetaData` only at
/// time 0 and makes a later one a subtitle stream.
pub fn catalog_tags(catalog: &Catalog, timestamp: u32) -> Bytes {
    catalog_tags_with(catalog, None, timestamp)
}

/// [`catalog_tags`] with the audio track announced as `audio` instead
/// (the AAC a transcoded Opus track goes out as).
pub fn catalog_tags_with(catalog: &Catalog, audio: Option<&TrackInfo>, timestamp: u32) -> Bytes {
    let mut out = BytesMut::new();
    flv::write_tag(
        &mut out,
        flv::TYPE_DATA,
        0,
        &[],
        &flv::metadata_body_with(catalog, audio),
    );
    let (video, carried) = flv::carried_tracks(catalog);
    let audio = audio.or(carried);
    for track in [video, audio].into_iter().flatten() {
        if let Some((type_id, body)) = flv::config_body(track) {
            flv::write_tag(&mut out, type_id, timestamp, &[], &body);
        }
    }
    out.freeze()
}

/// The FLV file header for a catalog.
pub fn file_header(catalog: &Catalog) -> Bytes {
    let (video, audio) = flv::carried_tracks(catalog);
    Bytes::copy_from_slice(&flv::file_header(audio.is_some(), video.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;
    use tidewater_core::{
        AppSpec, Codec, Engine, Event, Request, StreamKey, TimestampWrap, TrackId, TrackInfo,
    };

    fn tracks() -> Vec<TrackInfo> {
        vec![
            TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
                .with_timescale(1000)
                .with_wrap(TimestampWrap::RTMP)
                .with_config(Bytes::from_static(&[1, 0x64, 0, 0x0d, 0xff, 0xe0, 0])),
            TrackInfo::audio(TrackId(2), Codec::Aac, 44100, 2)
                .with_timescale(1000)
                .with_wrap(TimestampWrap::RTMP)
                .with_config(Bytes::from_static(&[0x12, 0x10])),
        ]
    }

    #[tokio::test]
    async fn chunks_are_built_once_and_parse_back_with_rml_rtmp() {
        let engine = Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/a").expect("key");
        let mut publisher = engine
            .open_publish(Request::new(key.clone(), "test"))
            .await
            .expect("publish");
        publisher.set_catalog(tracks()).expect("catalog");
        let payload = Bytes::from(vec![0xab; 10_000]);
        publisher
            .publish(Frame::video(
                TrackId(1),
                Codec::H264,
                0x0100_0000,
                0x0100_0050,
                true,
                payload.clone(),
            ))
            .expect("frame");
        let mut viewers = Vec::new();
        for _ in 0..2 {
            viewers.push(
                engine
                    .subscribe(Request::new(key.clone(), "test"))
                    .await
                    .expect("sub"),
            );
        }
        let mut built = Vec::new();
        for v in &mut viewers {
            let Ok(Event::Catalog(c)) = v.recv().await else {
                panic!("catalog first")
            };
            let Ok(Event::Frame(f)) = v.recv().await else {
                panic!("frame")
            };
            let chunks = shared_chunks(&f.as_ref(), crate::config::DEFAULT_CHUNK_SIZE, 1, 0);
            built.push((c, chunks));
        }
        // The same bytes, not two builds.
        assert_eq!(built[0].1.as_ptr(), built[1].1.as_ptr());
        let mut de = ChunkDeserializer::new();
        de.set_max_chunk_size(crate::config::DEFAULT_CHUNK_SIZE as usize)
            .expect("size");
        let head = catalog_chunks(
            &built[0].0,
            crate::config::DEFAULT_CHUNK_SIZE,
            1,
            0x0100_0000,
        );
        let mut input = &head[..];
        let mut types = Vec::new();
        while let Some(m) = de.get_next_message(input).expect("catalog chunks") {
            input = &[];
            types.push((m.type_id, m.timestamp.value, m.message_stream_id));
        }
        assert_eq!(
            types,
            vec![(18, 0, 1), (9, 0x0100_0000, 1), (8, 0x0100_0000, 1)]
        );
        let m = de
            .get_next_message(&built[0].1)
            .expect("frame chunks")
            .expect("message");
        assert_eq!(
            (m.type_id, m.timestamp.value, m.message_stream_id),
            (9, 0x0100_0000, 1)
        );
        assert_eq!(&m.data[..5], &[0x17, 1, 0, 0, 0x50]);
        assert_eq!(&m.data[5..], &payload[..]);
    }

    #[tokio::test]
    async fn ninety_khz_frames_are_rescaled_to_milliseconds() {
        let engine = Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/b").expect("key");
        let mut publisher = engine
            .open_publish(Request::new(key.clone(), "test"))
            .await
            .expect("publish");
        let track =
            TrackInfo::video(TrackId(1), Codec::H264, 0, 0).with_config(Bytes::from_static(&[1]));
        assert_eq!(track.timescale, 90_000);
        publisher.set_catalog(vec![track]).expect("catalog");
        publisher
            .publish(Frame::video(
                TrackId(1),
                Codec::H264,
                90_000,
                93_600,
                true,
                Bytes::from_static(&[0, 0, 0, 1, 5]),
            ))
            .expect("frame");
        let mut v = engine
            .subscribe(Request::new(key, "test"))
            .await
            .expect("sub");
        let Ok(Event::Catalog(_)) = v.recv().await else {
            panic!("catalog")
        };
        let Ok(Event::Frame(f)) = v.recv().await else {
            panic!("frame")
        };
        assert_eq!(flv::frame_time(&f, f.catalog()), (1000, 40));
        let tag = frame_tag(&f, f.catalog());
        // Tag header: type 9, 10 bytes of body, timestamp 1000 (0x0003e8).
        assert_eq!(&tag[..8], &[9, 0, 0, 10, 0, 0x03, 0xe8, 0]);
        assert_eq!(&tag[11..16], &[0x17, 1, 0, 0, 40]);
    }
}
