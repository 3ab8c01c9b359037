//! A TCP reader's pending interleaved output, written with vectored writes.
//!
//! Every reader of a stream sends the same RTP payloads; only the 4-byte
//! interleave head (`$`, channel, length) and the 12-byte RTP header
//! differ. Copying each payload into a per-reader buffer was, with many
//! readers, a user-space `memmove` per packet per reader and a buffer
//! that grew and was freed at each flush; here the per-reader bytes go
//! into one small buffer and each payload stays where the stream's
//! packetization put it (a reference-counted slice), and a flush hands
//! the kernel both in one `writev` per [`MAX_IOV`] pieces.
// Frames payloads whose sizes come from publishers: no indexing, unwrap,
// expect or panic outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::io::IoSlice;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The most pieces handed to one `writev` (Linux takes 1024).
const MAX_IOV: usize = 1024;

/// One piece of the output, in order.
#[derive(Debug)]
enum Piece {
    /// This many bytes of the reader's own buffer, from where the previous
    /// own piece ended.
    Own(usize),
    /// A slice of a shared packetization.
    Shared(Bytes),
}

/// Interleaved frames waiting to be written (see the module docs).
#[derive(Debug, Default)]
pub struct Interleaved {
    own: BytesMut,
    pieces: Vec<Piece>,
    len: usize,
}

impl Interleaved {
    /// Appends bytes of this reader's own (a head, a header, a report).
    pub fn put_own(&mut self, bytes: &[u8]) {
        self.own.extend_from_slice(bytes);
        self.len += bytes.len();
        match self.pieces.last_mut() {
            Some(Piece::Own(n)) => *n += bytes.len(),
            _ => self.pieces.push(Piece::Own(bytes.len())),
        }
    }

    /// Appends a slice of a shared buffer, without copying it.
    pub fn put_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.pieces.push(Piece::Shared(bytes));
    }

    /// Bytes pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops what is pending.
    pub fn clear(&mut self) {
        self.own.clear();
        self.pieces.clear();
        self.len = 0;
    }

    /// Everything pending as one buffer (tests, and readers of it).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len);
        let mut at = 0;
        for piece in &self.pieces {
            match piece {
                Piece::Own(n) => {
                    out.extend_from_slice(self.own.get(at..at + n).unwrap_or_default());
                    at += n;
                }
                Piece::Shared(b) => out.extend_from_slice(b),
            }
        }
        out.freeze()
    }

    /// Writes everything pending to `wr` in vectored writes, each allowed
    /// `limit` to make progress, and empties it; the bytes written.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        limit: Duration,
    ) -> std::io::Result<usize> {
        let total = self.len;
        let mut at = 0;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.pieces.len().min(MAX_IOV));
        let mut pieces = self.pieces.iter().peekable();
        while pieces.peek().is_some() {
            slices.clear();
            while slices.len() < MAX_IOV {
                let Some(piece) = pieces.next() else { break };
                let slice = match piece {
                    Piece::Own(n) => {
                        let s = self.own.get(at..at + n).unwrap_or_default();
                        at += n;
                        s
                    }
                    Piece::Shared(b) => &b[..],
                };
                slices.push(IoSlice::new(slice));
            }
            write_all_vectored(wr, &mut slices, limit).await?;
        }
        self.clear();
        Ok(total)
    }
}

/// Writes every slice, resuming after partial writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut slices: &mut [IoSlice<'_>],
    limit: Duration,
) -> std::io::Result<()> {
    while !slices.is_empty() {
        let n = match tokio::time::timeout(limit, wr.write_vectored(slices)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "write timed out",
                ));
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most a few bytes per call, as a full socket
    /// does, and records what it got.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(buf.get(..n).unwrap_or_default());
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            // Up to 11 bytes across slices: partial slices on both ends.
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(11 - n);
                self.0.extend_from_slice(b.get(..take).unwrap_or_default());
                n += take;
                if n == 11 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Own and shared pieces come out in order, whole, through partial
    /// writes and across more pieces than one `writev` takes.
    #[tokio::test]
    async fn pieces_are_written_in_order_through_partial_writes() {
        let shared = Bytes::from((0..=255u8).cycle().take(5000).collect::<Vec<u8>>());
        let mut out = Interleaved::default();
        let mut want = Vec::new();
        for i in 0..1500usize {
            let head = [b'$', (i % 4) as u8, (i >> 8) as u8, i as u8];
            out.put_own(&head);
            want.extend_from_slice(&head);
            if i % 3 == 0 {
                // Two own pieces in a row merge.
                out.put_own(&[9, 9]);
                want.extend_from_slice(&[9, 9]);
            }
            let part = shared.slice(i % 100..i % 100 + i % 13);
            want.extend_from_slice(&part);
            out.put_shared(part);
        }
        assert_eq!(out.len(), want.len());
        assert_eq!(&out.to_bytes()[..], &want[..]);
        let mut w = Trickle(Vec::new());
        let n = out
            .write_to(&mut w, Duration::from_secs(1))
            .await
            .expect("written");
        assert_eq!(n, want.len());
        assert_eq!(w.0, want);
        assert!(out.is_empty() && out.to_bytes().is_empty());
    }
}
