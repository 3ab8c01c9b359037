//! Stable twin of the `record_repair` fuzz target: the same entry point
//! (`tidewater_record::fuzzing::repair`) on random bytes and on a real
//! fragmented MP4 (written by ffmpeg, `-movflags
//! frag_keyframe+empty_moov+default_base_moof+skip_trailer`)
//! cut short or damaged, as a crash mid-write leaves it. It must never
//! panic; a repaired file ends at its last complete fragment and scans the
//! same again.

use proptest::prelude::*;
use tidewater_record::fuzzing::{SEGMENT, repair};
use tidewater_record::index;

const FRAGMENTED: &[u8] = include_bytes!("data/ffmpeg-fragmented.mp4");

/// The fragments the real file holds, by scanning it whole.
#[test]
fn the_real_file_is_indexed_whole() {
    let dir = std::env::temp_dir().join(format!("tidewater-repair-twin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(SEGMENT);
    std::fs::write(&path, FRAGMENTED).expect("write");
    let scanned = index::scan(&path, 0).expect("scan");
    std::fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(scanned.trailing, 0);
    assert_eq!(scanned.segment.bytes(), FRAGMENTED.len() as u64);
    assert!(
        scanned.segment.fragments.len() >= 4,
        "{:?}",
        scanned.segment
    );
    assert_eq!(scanned.segment.codecs, ["h264", "aac"]);
    repair(&[&[0u8][..], FRAGMENTED].concat());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        repair(&data);
    }

    #[test]
    fn a_real_file_cut_short(cut in 0..FRAGMENTED.len(), index_len in 0u8..0x80) {
        repair(&[&[0u8][..], &FRAGMENTED[..cut]].concat());
        // With a few bytes of the file as a (broken) index in front.
        repair(&[&[0x80 | index_len][..], &FRAGMENTED[..cut]].concat());
    }

    #[test]
    fn a_real_file_damaged(
        edits in proptest::collection::vec((0..FRAGMENTED.len(), any::<u8>()), 1..8),
        cut in 0..FRAGMENTED.len(),
    ) {
        let mut data = FRAGMENTED.to_vec();
        for (at, byte) in edits {
            data[at] = byte;
        }
        data.truncate(cut.max(1));
        data.insert(0, 0);
        repair(&data);
    }
}

/// Box sizes near `u64::MAX` (64-bit `largesize`) in the header boxes and
/// in a fragment: refused as incomplete, never an overflow.
#[test]
fn huge_box_sizes() {
    let huge = |kind: &[u8; 4], size: u64| {
        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(&size.to_be_bytes());
        b
    };
    for size in [u64::MAX, u64::MAX - 4, u64::MAX - 15, 1 << 63] {
        repair(&[&[0u8][..], &huge(b"ftyp", size), &[0; 32]].concat());
        let ftyp_len =
            u32::from_be_bytes([FRAGMENTED[0], FRAGMENTED[1], FRAGMENTED[2], FRAGMENTED[3]]);
        let ftyp = &FRAGMENTED[..ftyp_len as usize];
        repair(&[&[0u8][..], ftyp, &huge(b"moov", size), &[0; 32]].concat());
        let mut cut = FRAGMENTED.to_vec();
        let at = cut.windows(4).position(|w| w == b"moof").expect("a moof") - 4;
        cut.truncate(at);
        repair(&[&[0u8][..], &cut, &huge(b"moof", size), &[0; 32]].concat());
    }
}
