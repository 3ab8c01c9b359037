//! NAL unit framing: Annex-B start codes and length prefixes.
// Reads network or file input: no indexing, unwrap, expect or panic
// outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use bytes::{BufMut, Bytes, BytesMut};

/// The NAL units of an Annex-B byte stream (start codes `00 00 01` or
/// `00 00 00 01`), without their start codes. Bytes before the first start
/// code are skipped; trailing zero bytes of a NAL unit (`trailing_zero_8bits`)
/// are dropped; empty units are skipped.
pub fn annexb_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start(data, 0).map(|(_, end)| end);
    std::iter::from_fn(move || {
        loop {
            let start = pos?;
            let (nal_end, next) = match find_start(data, start) {
                Some((s, e)) => (s, Some(e)),
                None => (data.len(), None),
            };
            pos = next;
            let mut nal = data.get(start..nal_end)?;
            while let [head @ .., 0] = nal {
                nal = head;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    })
}

/// The next `00 00 01` at or after `from`: (its first byte, the byte after it).
fn find_start(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let tail = data.get(from..)?;
    tail.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| (from + i, from + i + 3))
}

/// The NAL units of a payload whose units are each prefixed by a big-endian
/// length of `length_size` bytes (1, 2 or 4); `None` if a length overruns.
pub fn length_prefixed_nals(payload: &[u8], length_size: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let head = rest.get(..length_size)?;
        let len = head.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        let nal = rest.get(length_size..length_size.checked_add(len)?)?;
        out.push(nal);
        rest = rest.get(length_size + len..)?;
    }
    Some(out)
}

/// NAL units joined in the canonical form: each prefixed by its 4-byte length.
pub fn to_length_prefixed<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for nal in nals {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// Writes NAL units as an Annex-B stream (4-byte start codes) to `out`.
pub fn write_annexb<'a>(nals: impl IntoIterator<Item = &'a [u8]>, out: &mut BytesMut) {
    for nal in nals {
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal);
    }
}

/// Re-prefixes NAL units from `length_size`-byte lengths to 4-byte lengths.
pub fn to_four_byte_lengths(payload: &[u8], length_size: usize) -> Option<Bytes> {
    let nals = length_prefixed_nals(payload, length_size)?;
    Some(to_length_prefixed(nals))
}

/// Rewrites a record's length-size field to 4 bytes (the canonical form).
/// `index` is the byte holding `lengthSizeMinusOne` in its low two bits
/// (4 in `avcC`, [`HVCC_LENGTH_SIZE_INDEX`](super::HVCC_LENGTH_SIZE_INDEX) in `hvcC`).
pub fn with_four_byte_lengths(record: &Bytes, index: usize) -> Bytes {
    let mut v = record.to_vec();
    if let Some(b) = v.get_mut(index) {
        *b |= 3;
    }
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_splits() {
        let s = [
            0xff, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 0, 0, 3, 1,
        ];
        let nals: Vec<&[u8]> = annexb_nals(&s).collect();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 0, 0, 3, 1]]
        );
        assert_eq!(annexb_nals(&[1, 2, 3]).count(), 0);
        assert_eq!(annexb_nals(&[0, 0, 1, 0, 0, 1]).count(), 0);
    }

    #[test]
    fn length_prefixed_round_trip() {
        let nals = [&[0x67u8, 1][..], &[0x65, 2, 3]];
        let p = to_length_prefixed(nals);
        assert_eq!(length_prefixed_nals(&p, 4), Some(nals.to_vec()));
        let mut ab = BytesMut::new();
        write_annexb(nals, &mut ab);
        assert_eq!(annexb_nals(&ab).collect::<Vec<_>>(), nals.to_vec());
        assert_eq!(length_prefixed_nals(&[0, 0, 0, 9, 1], 4), None);
    }

    #[test]
    fn two_byte_lengths_become_four() {
        let p = [0, 2, 0xaa, 0xbb, 0, 1, 0xcc];
        assert_eq!(
            to_four_byte_lengths(&p, 2).as_deref(),
            Some(&[0, 0, 0, 2, 0xaa, 0xbb, 0, 0, 0, 1, 0xcc][..])
        );
        assert_eq!(to_four_byte_lengths(&[0, 5, 1], 2), None);
    }
}
