//! The connections the server loop reads first heads from and writes event streams to:
//! plain TCP, and TLS over TCP. Each says how to wait for its first bytes without a buffer,
//! what an event stream is written to (a [`StreamSocket`]) and how to tell that its client
//! left; [`Replay`] gives hyper the bytes already read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(feature = "tls")]
use tokio_rustls::server::TlsStream;

#[cfg(feature = "tls")]
use super::sealed::{RecordAligned, SealedStream, TlsSocket};

/// A connection whose first request head the server loop reads, and to which it may write
/// an event stream itself.
pub(crate) trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// What an event stream is written to once its head is read.
    type Stream: StreamSocket;

    /// Ready once there may be bytes to read (or the connection failed), before any read
    /// buffer is made: a connection that sends nothing holds none.
    fn poll_first_bytes(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The connection as an event stream's, with only what writing the stream needs;
    /// `None` when it was lost on the way.
    fn into_stream(self) -> Option<Self::Stream>;
}

/// What an event stream is written to: the connection, with a way to tell that its client
/// left.
pub(crate) trait StreamSocket: AsyncWrite + Unpin + Send + 'static {
    /// Reads and drops whatever the client sent; ready once it has closed its side (or the
    /// connection failed).
    fn poll_client_left(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

impl Connection for TcpStream {
    type Stream = Self;

    fn poll_first_bytes(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }

    fn into_stream(self) -> Option<Self> {
        Some(self)
    }
}

impl StreamSocket for TcpStream {
    fn poll_client_left(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 64];
        loop {
            if std::task::ready!(self.poll_read_ready(cx)).is_err() {
                return Poll::Ready(());
            }
            match self.try_read(&mut scratch) {
                Ok(0) => return Poll::Ready(()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    }
}

#[cfg(feature = "tls")]
impl Connection for TlsStream<RecordAligned> {
    type Stream = TlsSocket;

    fn poll_first_bytes(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The request may already be decrypted and held by rustls, read with the end of
        // the handshake: the socket's readiness would not tell.
        Poll::Ready(Ok(()))
    }

    /// Over TLS 1.3 the stream's records are sealed here and rustls' session is dropped
    /// (see [`SealedStream`]); over TLS 1.2 rustls goes on.
    fn into_stream(self) -> Option<TlsSocket> {
        SealedStream::take_over(self)
    }
}

/// Ready at the client's `close_notify`, at the end of the socket, or on an error; reads
/// and drops what else the client sends.
#[cfg(feature = "tls")]
fn poll_read_until_end<I: AsyncRead + Unpin>(io: &mut I, cx: &mut Context<'_>) -> Poll<()> {
    let mut scratch = [0u8; 64];
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *io).poll_read(cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
            Poll::Ready(_) => return Poll::Ready(()),
        }
    }
}

/// An event stream over TLS: sealed here (TLS 1.3), or by rustls (TLS 1.2).
#[cfg(feature = "tls")]
impl StreamSocket for TlsSocket {
    fn poll_client_left(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        poll_read_until_end(self, cx)
    }
}

/// A connection whose first bytes were already read: reads give them first, then what
/// the connection has.
pub(crate) struct Replay<I> {
    received: Bytes,
    io: I,
}

impl<I> Replay<I> {
    pub(crate) fn new(received: Bytes, io: I) -> Self {
        Self { received, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.received.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let take = self.received.len().min(buf.remaining());
        buf.put_slice(&self.received[..take]);
        self.received.advance(take);
        if self.received.is_empty() {
            // Frees the buffer the head was read into, which an empty slice would keep.
            self.received = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
