//! The client side, the same for every server: HTTP/1.1 event streams on raw TCP (or over
//! TLS, or HTTP/2 streams: see `tls_client`) from several loopback source addresses,
//! opened a few at a time, read with an incremental SSE parser.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::sse::{Decoder, Event, json_number};
use crate::stats::{Histogram, Received, unix_nanos};
use crate::tls_client::{H2Body, handshake, open_h2, read_tls};

pub(crate) use crate::tls_client::Connector;

/// How streams are opened.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct OpenOptions {
    /// Streams being opened at once.
    #[arg(long, default_value_t = 100)]
    pub(crate) concurrency: usize,
    /// Seconds one attempt to open a stream may take.
    #[arg(long, default_value_t = 60)]
    pub(crate) open_timeout: u64,
    /// Attempts per stream before it counts as not opened.
    #[arg(long, default_value_t = 3)]
    pub(crate) attempts: usize,
    /// Loopback source addresses the streams are spread over (127.0.0.1 to 127.0.0.N), so
    /// that many connections do not exhaust the ephemeral ports of one address.
    #[arg(long, default_value_t = 16)]
    pub(crate) sources: u8,
}

/// An open event stream: its connection and what followed the response head.
pub(crate) struct Stream {
    connection: Connection,
    decoder: Decoder,
    early: Vec<u8>,
}

/// The connection a stream is read from.
enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    H2(Box<H2Body>),
}

impl Stream {
    /// The socket, and the body bytes read with the response head; an error for a stream
    /// over TLS.
    pub(crate) fn into_parts(self) -> Result<(TcpStream, Vec<u8>), String> {
        match self.connection {
            Connection::Plain(socket) => Ok((socket, self.early)),
            Connection::Tls(_) | Connection::H2(_) => Err("not a plain TCP stream".into()),
        }
    }

    /// Reads until `done` returns true for an event, `done` seeing each event in turn; an
    /// error when the stream ends first.
    pub(crate) async fn read_until(
        &mut self,
        mut done: impl FnMut(Event<'_>) -> bool,
    ) -> Result<(), String> {
        let mut finished = false;
        self.take_early(&mut |event| finished = finished || done(event));
        while !finished {
            if !self
                .read_more(&mut |event| finished = finished || done(event))
                .await
            {
                return Err("the stream ended".into());
            }
        }
        Ok(())
    }

    /// Decodes the body bytes that came with the response head.
    fn take_early(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        let early = std::mem::take(&mut self.early);
        self.decoder.feed(&early, on_event);
    }

    /// Waits for more bytes and decodes them; false when the stream ended or broke. Safe to
    /// cancel: bytes read are always decoded before it waits again.
    async fn read_more(&mut self, on_event: &mut impl FnMut(Event<'_>)) -> bool {
        let decoder = &mut self.decoder;
        let mut on_bytes = |bytes: &[u8]| decoder.feed(bytes, on_event);
        match &mut self.connection {
            Connection::Plain(socket) => read_plain(socket, &mut on_bytes).await,
            Connection::Tls(tls) => read_tls(tls, &mut on_bytes).await,
            Connection::H2(body) => body.read(&mut on_bytes).await,
        }
        .is_some()
    }
}

/// Reads what the socket has; `None` at its end or on an error.
async fn read_plain(socket: &TcpStream, on_bytes: &mut impl FnMut(&[u8])) -> Option<()> {
    loop {
        socket.readable().await.ok()?;
        // The buffer lives only while the socket is read, never across an await: an idle
        // stream costs the client no buffer.
        let mut buf = [0u8; 16 * 1024];
        match socket.try_read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                on_bytes(&buf[..n]);
                return Some(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
}

/// Opens `GET path` on 127.0.0.1:`port` from 127.0.0.`source`, with more `headers` (each
/// ending with CRLF), and reads the response head; an answer other than 200 is an error.
pub(crate) async fn open(
    port: u16,
    path: &str,
    source: u8,
    headers: &str,
) -> Result<Stream, String> {
    open_over(&Connector::Plain, port, path, source, headers).await
}

/// A TCP connection to 127.0.0.1:`port` from 127.0.0.`source` (at least 1).
pub(crate) async fn connect_from(source: u8, port: u16) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::from((
            Ipv4Addr::new(127, 0, 0, source.max(1)),
            0,
        )))
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// [`open`], over the connection `connector` makes.
pub(crate) async fn open_over(
    connector: &Connector,
    port: u16,
    path: &str,
    source: u8,
    headers: &str,
) -> Result<Stream, String> {
    let socket = connect_from(source, port).await?;
    // As browsers do: the request written after a TLS handshake must not wait, by Nagle's
    // algorithm, for the server's (delayed) acknowledgement of the handshake's last bytes.
    socket
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (connection, chunked, early) = match connector {
        Connector::Plain => {
            let mut socket = socket;
            let (chunked, early) = request(&mut socket, port, path, headers).await?;
            (Connection::Plain(socket), chunked, early)
        }
        Connector::Tls(tls) => {
            let mut tls = handshake(tls, socket).await?;
            let (chunked, early) = request(&mut tls, port, path, headers).await?;
            (Connection::Tls(Box::new(tls)), chunked, early)
        }
        Connector::H2(tls) => {
            let body = open_h2(tls, socket, port, path, headers).await?;
            (Connection::H2(Box::new(body)), false, Vec::new())
        }
    };
    Ok(Stream {
        connection,
        decoder: Decoder::new(chunked),
        early,
    })
}

/// Sends the HTTP/1.1 request and reads the response head: whether the body is chunked,
/// and the body bytes read with the head.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    port: u16,
    path: &str,
    headers: &str,
) -> Result<(bool, Vec<u8>), String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{headers}\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("request: {e}"))?;
    // Over TLS, what the socket did not take at once waits in rustls until flushed.
    socket.flush().await.map_err(|e| format!("request: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if head.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        let mut buf = [0u8; 2048];
        match socket.read(&mut buf).await {
            Ok(0) => return Err("closed before the response head".into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("response: {e}")),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    if !text.starts_with("http/1.1 200") && !text.starts_with("http/1.0 200") {
        let status = text.lines().next().unwrap_or_default().to_owned();
        return Err(format!("answered {status}"));
    }
    let chunked = text
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    Ok((chunked, head[end + 4..].to_vec()))
}

/// Opens one stream on `port` until it is answered 200, for up to 15 s: the server is up.
pub(crate) async fn wait_until_serving(port: u16, path: &str, headers: &str) -> Result<(), String> {
    wait_until_serving_over(&Connector::Plain, port, path, headers).await
}

/// [`wait_until_serving`], over the connections `connector` makes.
pub(crate) async fn wait_until_serving_over(
    connector: &Connector,
    port: u16,
    path: &str,
    headers: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let open = open_over(connector, port, path, 1, headers);
        let error = match tokio::time::timeout(Duration::from_secs(2), open).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "no answer within 2 s".into(),
        };
        if Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The streams that opened, by index, and what it took.
pub(crate) struct Opened {
    pub(crate) streams: Vec<(usize, Stream)>,
    /// Attempts that failed (retried or not).
    pub(crate) failed_attempts: usize,
    pub(crate) not_opened: usize,
    pub(crate) seconds: f64,
    pub(crate) first_error: Option<String>,
}

impl Opened {
    /// Every stream, by index, or an error when one did not open.
    pub(crate) fn all(self) -> Result<Vec<(usize, Stream)>, String> {
        if self.not_opened == 0 {
            return Ok(self.streams);
        }
        Err(format!(
            "{} of {} streams not opened: {}",
            self.not_opened,
            self.not_opened + self.streams.len(),
            self.first_error.unwrap_or_default()
        ))
    }
}

/// Opens the stream of each `(index, port, path)`, `options.concurrency` at a time.
pub(crate) async fn open_all(streams: Vec<(usize, u16, String)>, options: &OpenOptions) -> Opened {
    open_all_over(&Connector::Plain, streams, options).await
}

/// [`open_all`], over the connections `connector` makes.
pub(crate) async fn open_all_over(
    connector: &Connector,
    streams: Vec<(usize, u16, String)>,
    options: &OpenOptions,
) -> Opened {
    let streams = streams
        .into_iter()
        .map(|(index, port, path)| (index, port, path, String::new()))
        .collect();
    open_all_with_headers_over(connector, streams, options).await
}

/// Opens the stream of each `(index, port, path, headers)` (headers each ending with CRLF),
/// `options.concurrency` at a time.
pub(crate) async fn open_all_with_headers(
    streams: Vec<(usize, u16, String, String)>,
    options: &OpenOptions,
) -> Opened {
    open_all_with_headers_over(&Connector::Plain, streams, options).await
}

/// [`open_all_with_headers`], over the connections `connector` makes.
async fn open_all_with_headers_over(
    connector: &Connector,
    streams: Vec<(usize, u16, String, String)>,
    options: &OpenOptions,
) -> Opened {
    let sources = options.sources.max(1);
    let next_source = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let timeout = Duration::from_secs(options.open_timeout.max(1));
    let attempts = options.attempts.max(1);
    let results: Vec<_> = futures_util::stream::iter(streams)
        .map(|(index, port, path, headers)| {
            let next_source = next_source.clone();
            async move {
                let mut errors = Vec::new();
                for attempt in 0..attempts {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                    }
                    let source =
                        (next_source.fetch_add(1, Ordering::Relaxed) % sources as usize) as u8 + 1;
                    let open = open_over(connector, port, &path, source, &headers);
                    match tokio::time::timeout(timeout, open).await {
                        Ok(Ok(stream)) => return (index, Some(stream), errors),
                        Ok(Err(e)) => errors.push(e),
                        Err(_) => errors.push(format!("no answer within {timeout:?}")),
                    }
                }
                (index, None, errors)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut opened = Opened {
        streams: Vec::with_capacity(results.len()),
        failed_attempts: 0,
        not_opened: 0,
        seconds,
        first_error: None,
    };
    for (index, stream, errors) in results {
        opened.failed_attempts += errors.len();
        if opened.first_error.is_none() {
            opened.first_error = errors.into_iter().next();
        }
        match stream {
            Some(stream) => opened.streams.push((index, stream)),
            None => opened.not_opened += 1,
        }
    }
    opened.streams.sort_unstable_by_key(|(index, _)| *index);
    opened
}

/// What every stream of this process received, counted as it arrives.
#[derive(Default)]
pub(crate) struct Tally {
    /// `bench` events received, duplicates included.
    pub(crate) received: AtomicU64,
    /// Publish-to-receipt latencies.
    pub(crate) latency: Histogram,
    /// Unix time (ns) of the last receipt.
    pub(crate) last_receipt: AtomicU64,
    /// Streams the server ended or broke.
    pub(crate) ended: AtomicUsize,
}

impl Tally {
    /// Waits until `expected` events were received, or until none arrived for `quiet`;
    /// true when all arrived.
    pub(crate) async fn wait_for(&self, expected: u64, quiet: Duration) -> bool {
        let mut last = self.received.load(Ordering::Relaxed);
        let mut since = Instant::now();
        loop {
            let now = self.received.load(Ordering::Relaxed);
            if now >= expected {
                return true;
            }
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Readers of open streams, one task each, until stopped.
pub(crate) struct Readers {
    pub(crate) tally: Arc<Tally>,
    stop: CancellationToken,
    tasks: Vec<(usize, JoinHandle<Vec<u32>>)>,
}

impl Readers {
    pub(crate) fn start(streams: Vec<(usize, Stream)>) -> Self {
        let tally = Arc::new(Tally::default());
        let stop = CancellationToken::new();
        let tasks = streams
            .into_iter()
            .map(|(index, stream)| {
                let task = tokio::spawn(read(stream, tally.clone(), stop.clone()));
                (index, task)
            })
            .collect();
        Self { tally, stop, tasks }
    }

    /// Stops every reader; the sequence numbers each stream received, by stream index.
    pub(crate) async fn stop(self) -> Vec<(usize, Vec<u32>)> {
        self.stop.cancel();
        let mut seen = Vec::with_capacity(self.tasks.len());
        for (index, task) in self.tasks {
            seen.push((index, task.await.unwrap_or_default()));
        }
        seen
    }

    /// Stops every reader and counts what they received in all.
    pub(crate) async fn stop_and_count(self) -> Received {
        self.stop()
            .await
            .into_iter()
            .map(|(_, mut seen)| Received::of(&mut seen))
            .fold(Received::default(), Received::add)
    }
}

/// What one reader received since it last added to the tally.
struct Reader {
    tally: Arc<Tally>,
    /// The sequence number (`n`) of every `bench` event, duplicates included.
    seen: Vec<u32>,
    /// Events not yet added to the tally.
    pending: u64,
    /// Unix time (ns) of the read the pending events came in.
    read_at: Option<u64>,
}

impl Reader {
    /// Records a `bench` event's sequence number (`n`) and latency (from its publish time
    /// `t`).
    fn on_event(&mut self, event: Event<'_>) {
        // Taken once per read, before any event of it is parsed: all of them arrived then.
        let now = *self.read_at.get_or_insert_with(unix_nanos);
        if event.kind != b"bench" {
            return;
        }
        if let (Some(n), Some(t)) = (json_number(event.data, b"n"), json_number(event.data, b"t")) {
            self.seen.push(n as u32);
            self.tally.latency.record(now.saturating_sub(t));
            self.pending += 1;
        }
    }

    /// Adds the events of the last read to the tally: once per read rather than per event,
    /// because every reader of a broadcast updates the same counters.
    fn flush(&mut self) {
        if let Some(now) = self.read_at.take()
            && self.pending > 0
        {
            self.tally
                .received
                .fetch_add(self.pending, Ordering::Relaxed);
            self.tally.last_receipt.fetch_max(now, Ordering::Relaxed);
        }
        self.pending = 0;
    }
}

/// Reads a stream until `stop` or its end; returns the sequence numbers it received.
async fn read(mut stream: Stream, tally: Arc<Tally>, stop: CancellationToken) -> Vec<u32> {
    let mut reader = Reader {
        tally,
        seen: Vec::new(),
        pending: 0,
        read_at: None,
    };
    stream.take_early(&mut |event| reader.on_event(event));
    reader.flush();
    loop {
        let more = {
            let mut on_event = |event: Event<'_>| reader.on_event(event);
            tokio::select! {
                biased;
                () = stop.cancelled() => None,
                more = stream.read_more(&mut on_event) => Some(more),
            }
        };
        reader.flush();
        match more {
            None => return reader.seen,
            Some(true) => {}
            Some(false) => break,
        }
    }
    reader.tally.ended.fetch_add(1, Ordering::Relaxed);
    reader.seen
}
