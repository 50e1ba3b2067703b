//! TLS 1.3 connections once their handshake is done: rustls negotiates the keys, then
//! hands them over ([`ServerConnection::dangerous_extract_secrets`]), and records are
//! sealed and opened here with rustls' own ciphers. An idle connection then keeps the
//! socket and two AEAD keys (about 1 KiB), where rustls keeps its session and a read
//! buffer it never shrinks below 4 KiB; the bytes of a record being sent or received are
//! held only while they are.
//!
//! What rustls did after the handshake and is done here: sealing application data,
//! opening it, and the `close_notify` alert both ways. What ends the connection instead:
//! a key update from the client (browsers do not send one), any other alert or handshake
//! message, a record that does not open, and the cipher's confidentiality limit (for
//! AES-GCM, 16.7 million records sent), past which the client reconnects on new keys.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage,
};
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, ContentType, ProtocolVersion, ServerConnection,
    SupportedCipherSuite,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

/// The most plaintext one record carries.
const MAX_PLAINTEXT: usize = 16 * 1024;

/// The longest record a TLS 1.3 peer may send: the plaintext, its content type, and up to
/// 255 bytes of padding and tag.
const MAX_RECORD: usize = HEADER + MAX_PLAINTEXT + 256;

/// A record's header: content type, legacy version, length.
const HEADER: usize = 5;

/// The alert level `warning`, which `close_notify` is sent with.
const WARNING: u8 = 1;

/// A TLS 1.3 connection whose records are sealed and opened here.
pub(crate) struct SealedStream {
    socket: TcpStream,
    seal: Box<dyn MessageEncrypter>,
    open: Box<dyn MessageDecrypter>,
    /// The sequence numbers of the next record sent and the next received.
    sent: u64,
    received: u64,
    /// Records sealed with one key must stay below this number.
    limit: u64,
    /// Sealed bytes the socket has not taken yet, from `unsent_at` on.
    unsent: Vec<u8>,
    unsent_at: usize,
    /// Bytes received that do not make a whole record yet, or are not opened yet.
    incoming: Vec<u8>,
    /// Opened plaintext not yet read, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// The client sent `close_notify`: reads give the end of the stream.
    peer_closed: bool,
    /// `close_notify` is sealed (it is the last record sent).
    closing: bool,
}

/// A TLS connection after [`SealedStream::take_over`]: its records sealed here, or still
/// rustls' (TLS 1.2, or rustls still holds bytes for it); boxed, as rustls' connection is
/// some 1.2 KiB that a sealed stream should not reserve.
pub(crate) type TlsSocket = Either<SealedStream, Box<TlsStream<RecordAligned>>>;

impl SealedStream {
    /// Takes over `stream` from rustls when it negotiated TLS 1.3, completed its
    /// handshake, has nothing left to send, and read whole records only (what it holds
    /// is then plaintext, which the stream gives first); leaves it with rustls otherwise.
    /// `None` when rustls would not hand its keys over: the connection is closed.
    pub(crate) fn take_over(mut stream: TlsStream<RecordAligned>) -> Option<TlsSocket> {
        let (socket, connection) = stream.get_mut();
        let Some(SupportedCipherSuite::Tls13(suite)) = connection.negotiated_cipher_suite() else {
            return Some(Either::Right(Box::new(stream)));
        };
        if !socket.at_record_boundary() || connection.is_handshaking() || connection.wants_write() {
            return Some(Either::Right(Box::new(stream)));
        }
        let Some(plain) = take_plaintext(connection) else {
            return Some(Either::Right(Box::new(stream)));
        };
        let (socket, connection) = stream.into_inner();
        let socket = socket.socket;
        let secrets = match connection.dangerous_extract_secrets() {
            Ok(secrets) => secrets,
            Err(error) => {
                // Only a configuration without secret extraction gets here, which
                // `TlsConfig` never builds.
                tracing::debug!(%error, "TLS keys not handed over; the connection is closed");
                return None;
            }
        };
        let (sent, tx) = secrets.tx;
        let (received, rx) = secrets.rx;
        let (Some((tx_key, tx_iv)), Some((rx_key, rx_iv))) = (key_and_iv(tx), key_and_iv(rx))
        else {
            return None;
        };
        Some(Either::Left(Self {
            socket,
            seal: suite.aead_alg.encrypter(tx_key, tx_iv),
            open: suite.aead_alg.decrypter(rx_key, rx_iv),
            sent,
            received,
            limit: suite.common.confidentiality_limit,
            unsent: Vec::new(),
            unsent_at: 0,
            incoming: Vec::new(),
            plain,
            plain_at: 0,
            peer_closed: false,
            closing: false,
        }))
    }

    /// Writes what is sealed and unsent; ready once the socket took all of it.
    fn poll_send_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.unsent_at < self.unsent.len() {
            let written =
                ready!(Pin::new(&mut self.socket).poll_write(cx, &self.unsent[self.unsent_at..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent_at += written;
        }
        // An idle connection keeps no buffer.
        self.unsent = Vec::new();
        self.unsent_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Seals `chunks` (at most [`MAX_PLAINTEXT`] bytes in all) as one record of type
    /// `typ`, to be sent after what is unsent.
    fn seal_record(&mut self, typ: ContentType, chunks: &[&[u8]]) -> io::Result<()> {
        if self.sent >= self.limit {
            return Err(io::Error::other(
                "the TLS key reached its confidentiality limit; the client reconnects",
            ));
        }
        let message = OutboundPlainMessage {
            typ,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::new(chunks),
        };
        let record = self
            .seal
            .encrypt(message, self.sent)
            .map_err(io::Error::other)?
            .encode();
        self.sent += 1;
        if self.unsent.is_empty() {
            self.unsent = record;
        } else {
            self.unsent.extend_from_slice(&record);
        }
        Ok(())
    }

    /// Opens the first whole record of `incoming`, if there is one: its application data
    /// goes to `plain`, a `close_notify` ends the stream, anything else is an error.
    /// `false` when no whole record is there yet.
    fn open_record(&mut self) -> io::Result<bool> {
        let Some(&[typ, major, minor, high, low]) = self.incoming.get(..HEADER) else {
            return Ok(false);
        };
        let length = usize::from(u16::from_be_bytes([high, low]));
        if HEADER + length > MAX_RECORD {
            return Err(invalid("a TLS record longer than the protocol allows"));
        }
        if self.incoming.len() < HEADER + length {
            return Ok(false);
        }
        let payload = &mut self.incoming[HEADER..HEADER + length];
        let record = InboundOpaqueMessage::new(
            ContentType::from(typ),
            ProtocolVersion::from(u16::from_be_bytes([major, minor])),
            payload,
        );
        let opened = self
            .open
            .decrypt(record, self.received)
            .map_err(|error| invalid(&format!("a TLS record did not open: {error}")))?;
        self.received += 1;
        match opened.typ {
            ContentType::ApplicationData => {
                self.plain.clear();
                self.plain.extend_from_slice(opened.payload);
                self.plain_at = 0;
            }
            ContentType::Alert
                if opened.payload == [WARNING, u8::from(AlertDescription::CloseNotify)] =>
            {
                self.peer_closed = true;
            }
            ContentType::Alert => return Err(invalid("the client sent a TLS alert")),
            other => {
                return Err(invalid(&format!(
                    "the client sent a TLS {other:?} message after the handshake"
                )));
            }
        }
        self.incoming.drain(..HEADER + length);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        Ok(true)
    }

    /// Reads what the socket has into `incoming`.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut scratch = [0u8; 4096];
        let mut buf = ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut self.socket).poll_read(cx, &mut buf))?;
        self.incoming.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }
}

/// The plaintext rustls received and holds unread (the start of an HTTP/2 connection,
/// sent with the end of the handshake); `None` when the client already closed, or rustls
/// failed.
fn take_plaintext(connection: &mut ServerConnection) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    loop {
        let state = connection.process_new_packets().ok()?;
        if state.peer_has_closed() {
            return None;
        }
        let unread = state.plaintext_bytes_to_read();
        if unread == 0 {
            return Some(plain);
        }
        let at = plain.len();
        plain.resize(at + unread, 0);
        connection.reader().read_exact(&mut plain[at..]).ok()?;
    }
}

fn key_and_iv(secrets: ConnectionTrafficSecrets) -> Option<(AeadKey, Iv)> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Some((key, iv)),
        _ => None,
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

impl AsyncRead for SealedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.plain_at < this.plain.len() {
                let take = (this.plain.len() - this.plain_at).min(buf.remaining());
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + take]);
                this.plain_at += take;
                if this.plain_at == this.plain.len() {
                    this.plain = Vec::new();
                    this.plain_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if this.open_record()? {
                continue;
            }
            if ready!(this.poll_receive(cx))? == 0 {
                // The end of the socket without `close_notify`: the client left all the same.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for SealedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_send_unsent(cx))?;
        let mut chunks: Vec<&[u8]> = Vec::with_capacity(bufs.len());
        let mut taken = 0;
        for buf in bufs {
            let take = buf.len().min(MAX_PLAINTEXT - taken);
            if take > 0 {
                chunks.push(&buf[..take]);
                taken += take;
            }
        }
        if taken == 0 {
            return Poll::Ready(Ok(0));
        }
        this.seal_record(ContentType::ApplicationData, &chunks)?;
        // The record is ours to send now: the bytes count as written even if the socket
        // takes it later.
        if let Poll::Ready(Err(error)) = this.poll_send_unsent(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_unsent(cx))?;
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.closing {
            ready!(this.poll_send_unsent(cx))?;
            let close_notify = [WARNING, u8::from(AlertDescription::CloseNotify)];
            this.seal_record(ContentType::Alert, &[&close_notify])?;
            this.closing = true;
        }
        ready!(this.poll_send_unsent(cx))?;
        Pin::new(&mut this.socket).poll_shutdown(cx)
    }
}

/// The socket under rustls: its reads never go past the end of a TLS record, so that
/// rustls holds whole records only, all of them opened, when the connection is taken over
/// (a record split between rustls and [`SealedStream`] would be lost). It costs a second
/// read per record, for the header, on the connections rustls keeps.
pub(crate) struct RecordAligned {
    socket: TcpStream,
    /// The header of the record being read, as far as it came.
    header: [u8; HEADER],
    header_read: usize,
    /// What is left of the record's body.
    body_left: usize,
}

impl RecordAligned {
    pub(crate) fn new(socket: TcpStream) -> Self {
        Self {
            socket,
            header: [0; HEADER],
            header_read: 0,
            body_left: 0,
        }
    }

    fn at_record_boundary(&self) -> bool {
        self.header_read == 0 && self.body_left == 0
    }

    /// Counts `read`, the bytes just read: the rest of a header, or of a body.
    fn count(&mut self, read: &[u8]) {
        if self.header_read < HEADER {
            self.header[self.header_read..self.header_read + read.len()].copy_from_slice(read);
            self.header_read += read.len();
            if self.header_read == HEADER {
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
        } else {
            self.body_left -= read.len();
        }
        if self.header_read == HEADER && self.body_left == 0 {
            self.header_read = 0;
        }
    }
}

impl AsyncRead for RecordAligned {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let left = if this.header_read < HEADER {
            HEADER - this.header_read
        } else {
            this.body_left
        };
        let limit = left.min(buf.remaining());
        loop {
            ready!(this.socket.poll_read_ready(cx))?;
            let into = buf.initialize_unfilled_to(limit);
            match this.socket.try_read(into) {
                Ok(read) => {
                    this.count(&into[..read]);
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for RecordAligned {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A TLS 1.3 connection over loopback: the client's side, and the server's as rustls
    /// hands it over once the client has sent `early` after its handshake.
    async fn connected(
        early: &[u8],
    ) -> (
        tokio_rustls::client::TlsStream<TcpStream>,
        Option<TlsSocket>,
    ) {
        let pki = sseor_testkit::certs::CertFiles::self_signed();
        let acceptor = crate::TlsConfig::from_pem_files(&pki.cert, &pki.key)
            .unwrap()
            .acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = async {
            let socket = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = pki
                .tls_client(&[b"h2"])
                .connect(name, socket)
                .await
                .unwrap();
            tls.write_all(early).await.unwrap();
            tls
        };
        let server = async {
            let (socket, _) = listener.accept().await.unwrap();
            acceptor.accept(RecordAligned::new(socket)).await.unwrap()
        };
        let (client, mut server) = tokio::join!(client, server);
        // What the client sent after the handshake, read by rustls as it would be with the
        // end of the handshake.
        let mut first = [0u8; 1];
        let read = server.read(&mut first).await.unwrap();
        assert_eq!(&first[..read], &early[..1]);
        (client, SealedStream::take_over(server))
    }

    #[tokio::test]
    async fn what_rustls_read_comes_first_then_records_both_ways() {
        let (mut client, taken) = connected(b"xHELLO").await;
        let Some(Either::Left(mut sealed)) = taken else {
            panic!("a TLS 1.3 connection at a record boundary is taken over");
        };
        let mut rest = [0u8; 5];
        sealed.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"HELLO");
        client.write_all(b"more").await.unwrap();
        client.flush().await.unwrap();
        let mut more = [0u8; 4];
        sealed.read_exact(&mut more).await.unwrap();
        assert_eq!(&more, b"more");
        sealed.write_all(&[7u8; 40_000]).await.unwrap();
        sealed.shutdown().await.unwrap();
        let mut received = Vec::new();
        // A clean end: `close_notify`, which rustls' client reports as the end.
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, vec![7u8; 40_000]);
    }

    #[tokio::test]
    async fn records_stop_at_the_confidentiality_limit() {
        let (mut client, taken) = connected(b"x").await;
        let Some(Either::Left(mut sealed)) = taken else {
            panic!("a TLS 1.3 connection at a record boundary is taken over");
        };
        sealed.limit = sealed.sent + 2;
        sealed.write_all(b"one").await.unwrap();
        sealed.write_all(b"two").await.unwrap();
        assert!(sealed.write_all(b"three").await.is_err());
        drop(sealed);
        let mut received = Vec::new();
        let end = client.read_to_end(&mut received).await;
        assert_eq!(received, b"onetwo");
        assert!(end.is_err(), "no clean end past the limit: {end:?}");
    }

    #[tokio::test]
    async fn reads_stop_at_each_record_end() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Two records (3 and 0 bytes of body) and the start of a third, in one write.
        client
            .write_all(&[23, 3, 3, 0, 3, 1, 2, 3, 23, 3, 3, 0, 0, 23, 3, 3, 0, 9, 7])
            .await
            .unwrap();
        let mut aligned = RecordAligned::new(server);
        let mut reads: Vec<Vec<u8>> = Vec::new();
        let mut buf = [0u8; 64];
        while reads.concat().len() < 19 {
            let read = aligned.read(&mut buf).await.unwrap();
            reads.push(buf[..read].to_vec());
            let whole = matches!(reads.concat().len(), 0 | 8 | 13);
            assert_eq!(aligned.at_record_boundary(), whole, "{reads:?}");
        }
        assert_eq!(
            reads.concat()[..],
            [23, 3, 3, 0, 3, 1, 2, 3, 23, 3, 3, 0, 0, 23, 3, 3, 0, 9, 7]
        );
        assert!(
            reads
                .iter()
                .all(|read| read.len() <= HEADER || read.len() == 3)
        );
        assert!(!aligned.at_record_boundary());
    }
}
