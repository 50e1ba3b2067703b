//! Writes one event stream to its socket: the response head, then each frame as it
//! comes, until the stream ends or the client leaves.
//!
//! A future written out by hand rather than an `async fn`: it is what every idle stream
//! keeps in memory, and this one holds only the socket, the stream and the bytes in
//! flight, and writes each frame from the shared buffer it was encoded into.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::FutureExt;

use super::body::EventBody;
use super::socket::StreamSocket;

/// The longest chunk-size line: 16 hexadecimal digits and CRLF.
const SIZE_LINE: usize = 18;

/// Writes `head` and then `stream` to `socket`, in HTTP/1.1 chunks when `chunked` (else
/// as is, for an HTTP/1.0 client that reads until the connection closes). Completes when
/// the stream has ended and the connection is closed, or when the client left.
pub(crate) struct StreamWriter<I> {
    socket: I,
    stream: EventBody,
    out: Outgoing,
    chunked: bool,
    /// The stream has ended: once `out` is written, the connection closes.
    ended: bool,
}

impl<I: StreamSocket> StreamWriter<I> {
    pub(crate) fn new(socket: I, head: Vec<u8>, mut stream: EventBody, chunked: bool) -> Self {
        let mut out = Outgoing {
            head: Bytes::from(head),
            ..Outgoing::default()
        };
        // The stream's first bytes (its `retry:`), when ready, leave with the head.
        let first = std::future::poll_fn(|cx| stream.poll_next(cx)).now_or_never();
        let ended = matches!(first, Some(None));
        match first {
            Some(Some(frame)) => out.frame(frame, chunked),
            Some(None) => out.end(chunked),
            None => {}
        }
        Self {
            socket,
            stream,
            out,
            chunked,
            ended,
        }
    }
}

impl<I: StreamSocket> Future for StreamWriter<I> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if this.out.has_remaining() {
                match this.out.poll_write_to(&mut this.socket, cx) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(written)) => this.out.advance(written),
                    // The client is not reading: wait for room, or for it to leave.
                    Poll::Pending => return this.socket.poll_client_left(cx),
                }
                continue;
            }
            // What TLS holds encrypted and unsent leaves before the next frame is awaited.
            match Pin::new(&mut this.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return this.socket.poll_client_left(cx),
            }
            if this.ended {
                return Pin::new(&mut this.socket).poll_shutdown(cx).map(|_| ());
            }
            if this.socket.poll_client_left(cx).is_ready() {
                return Poll::Ready(());
            }
            match std::task::ready!(this.stream.poll_next(cx)) {
                Some(frame) => this.out.frame(frame, this.chunked),
                None => {
                    this.out.end(this.chunked);
                    this.ended = true;
                }
            }
        }
    }
}

/// Bytes in flight up to this many are copied into one buffer and written with one
/// `send`: for a socket, the kernel takes one buffer in less time than the several
/// pieces of `writev` (a chunk-size line, the frame, a line end).
const GATHER: usize = 1024;

/// The bytes in flight: the response head (first write only), a chunk-size line, the
/// frame itself (shared with every other recipient, never copied), and a line end.
#[derive(Default)]
struct Outgoing {
    head: Bytes,
    size: [u8; SIZE_LINE],
    /// The part of `size` still to write.
    size_at: u8,
    size_end: u8,
    frame: Bytes,
    tail: &'static [u8],
}

impl Outgoing {
    fn frame(&mut self, frame: Bytes, chunked: bool) {
        if chunked {
            self.size_end = hex_line(frame.len(), &mut self.size);
            self.size_at = 0;
            self.tail = b"\r\n";
        }
        self.frame = frame;
    }

    /// The chunked terminator; nothing for an unframed stream.
    fn end(&mut self, chunked: bool) {
        if chunked {
            self.tail = b"0\r\n\r\n";
        }
    }

    fn size_line(&self) -> &[u8] {
        &self.size[usize::from(self.size_at)..usize::from(self.size_end)]
    }

    /// What is left to write, in order.
    fn parts(&self) -> [&[u8]; 4] {
        [&self.head[..], self.size_line(), &self.frame[..], self.tail]
    }

    /// Writes what is left to `socket`: one buffer when it is small, else its parts.
    fn poll_write_to<I: StreamSocket>(
        &self,
        socket: &mut I,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        let remaining = self.remaining();
        if remaining <= GATHER {
            let mut gathered = [0u8; GATHER];
            let mut at = 0;
            for part in self.parts() {
                gathered[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            return Pin::new(socket).poll_write(cx, &gathered[..remaining]);
        }
        let mut slices = [IoSlice::new(&[]); 4];
        let count = self.chunks_vectored(&mut slices);
        Pin::new(socket).poll_write_vectored(cx, &slices[..count])
    }
}

impl Buf for Outgoing {
    fn remaining(&self) -> usize {
        self.parts().iter().map(|part| part.len()).sum()
    }

    fn chunk(&self) -> &[u8] {
        self.parts()
            .into_iter()
            .find(|part| !part.is_empty())
            .unwrap_or(&[])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for part in self.parts().into_iter().filter(|part| !part.is_empty()) {
            let Some(slot) = dst.get_mut(count) else {
                break;
            };
            *slot = IoSlice::new(part);
            count += 1;
        }
        count
    }

    fn advance(&mut self, mut cnt: usize) {
        let from_head = cnt.min(self.head.len());
        self.head.advance(from_head);
        cnt -= from_head;
        let from_size = cnt.min(self.size_line().len());
        // At most SIZE_LINE, so it fits.
        self.size_at += from_size as u8;
        cnt -= from_size;
        let from_frame = cnt.min(self.frame.len());
        self.frame.advance(from_frame);
        cnt -= from_frame;
        self.tail = &self.tail[cnt.min(self.tail.len())..];
    }
}

/// Writes `len` in hexadecimal followed by CRLF into `out`; returns the length written.
fn hex_line(len: usize, out: &mut [u8; SIZE_LINE]) -> u8 {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *slot = b"0123456789abcdef"[nibble];
    }
    out[digits..digits + 2].copy_from_slice(b"\r\n");
    // At most 18.
    (digits + 2) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lines() {
        let mut out = [0u8; SIZE_LINE];
        for len in [0usize, 1, 15, 16, 255, 4096, 16_385, usize::MAX] {
            let n = usize::from(hex_line(len, &mut out));
            assert_eq!(&out[..n], format!("{len:x}\r\n").as_bytes());
        }
    }

    #[test]
    fn outgoing_bytes_advance_across_parts() {
        let mut out = Outgoing {
            head: Bytes::from_static(b"HEAD\r\n\r\n"),
            ..Outgoing::default()
        };
        out.frame(Bytes::from_static(b"data: x\n\n"), true);
        let whole = b"HEAD\r\n\r\n9\r\ndata: x\n\n\r\n";
        assert_eq!(out.remaining(), whole.len());
        // Written a few bytes at a time, in any split, the bytes are the same.
        let mut written = Vec::new();
        while out.has_remaining() {
            let take = out.chunk().len().min(3);
            written.extend_from_slice(&out.chunk()[..take]);
            out.advance(take);
        }
        assert_eq!(written, whole);
        out.end(true);
        assert_eq!(out.chunk(), b"0\r\n\r\n");
    }
}
