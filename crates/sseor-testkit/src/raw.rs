//! Event streams read off raw sockets: clients that read only when a test says so (a
//! stalled reader is one that never does), and a parser of the `text/event-stream` bytes
//! they receive.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::hang::guard;

/// One event (or the opening `retry:`) as a client parses it; comments are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The `id:` field.
    pub id: String,
    /// The `event:` field.
    pub event: String,
    /// The `data:` field (one line: the server sends JSON on one line).
    pub data: String,
    /// The `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

impl Frame {
    /// The number `n` of data `{"n":N,...}`, as the tests publish it.
    pub fn n(&self) -> Option<u64> {
        let rest = self.data.strip_prefix("{\"n\":")?;
        let end = rest.find([',', '}'])?;
        rest[..end].parse().ok()
    }
}

/// Splits `text/event-stream` bytes into frames.
#[derive(Default)]
pub struct Parser {
    pending: Vec<u8>,
}

impl Parser {
    /// Takes `bytes` and appends every frame they complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut impl Extend<Frame>) {
        // Only the new bytes (and the one before them) can hold a new frame end.
        let mut search = self.pending.len().saturating_sub(1);
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(at) = find_blank_line(&self.pending[search..]) {
            let end = search + at;
            out.extend(parse_frame(&self.pending[start..end]));
            start = end + 2;
            search = start;
        }
        self.pending.drain(..start);
    }
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|&b| b == b'\n') {
        let at = from + at;
        match bytes.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

fn parse_frame(block: &[u8]) -> Option<Frame> {
    let text = std::str::from_utf8(block).expect("the stream is UTF-8");
    let mut frame = Frame::default();
    let mut fields = 0;
    for line in text
        .split('\n')
        .filter(|line| !line.is_empty() && !line.starts_with(':'))
    {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        fields += 1;
        match field {
            "id" => frame.id = value.to_owned(),
            "event" => frame.event = value.to_owned(),
            "data" => frame.data = value.to_owned(),
            "retry" => frame.retry = value.parse().ok(),
            _ => {}
        }
    }
    (fields > 0).then_some(frame)
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// With the chunked terminator: the server ended it cleanly.
    Clean,
    /// The connection closed (or was reset) without the terminator: it was cut off.
    Cut,
}

/// What a refused stream was answered.
#[derive(Debug)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: String,
}

/// An HTTP/1.1 event stream on a raw socket.
pub struct RawStream {
    socket: TcpStream,
    raw: Vec<u8>,
    dechunk: Dechunk,
    parser: Parser,
    frames: VecDeque<Frame>,
    ending: Option<Ending>,
}

enum Dechunk {
    Size,
    Data(usize),
    DataEnd,
    Done,
}

/// Options of a raw client.
#[derive(Default, Clone, Copy)]
pub struct Options {
    /// The socket's receive buffer, small for a client that stalls quickly.
    pub recv_buffer: Option<u32>,
    /// The local address to connect from (any 127.0.0.0/8 address works on Linux).
    pub from: Option<IpAddr>,
}

impl RawStream {
    /// Sends `GET path` with `headers` and reads the response head: the stream, or why it
    /// was refused.
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        options: Options,
    ) -> Result<Self, Refusal> {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = options.recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        if let Some(from) = options.from {
            socket.bind(SocketAddr::new(from, 0)).unwrap();
        }
        let mut socket = socket.connect(addr).await.unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut stream = Self {
            socket,
            raw: Vec::new(),
            dechunk: Dechunk::Size,
            parser: Parser::default(),
            frames: VecDeque::new(),
            ending: None,
        };
        stream.read_head().await.map(|()| stream)
    }

    async fn read_head(&mut self) -> Result<(), Refusal> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = head.parse(&self.raw).unwrap() {
                let status = head.code.unwrap();
                let header = |name: &str| {
                    head.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                if status == 200 {
                    assert_eq!(header("transfer-encoding").as_deref(), Some("chunked"));
                    self.raw.drain(..len);
                    return Ok(());
                }
                let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
                let retry_after = header("retry-after").map(|v| v.parse().unwrap());
                while self.raw.len() < len + length {
                    assert!(self.read_more().await, "closed inside a response body");
                }
                let body = String::from_utf8_lossy(&self.raw[len..len + length]).into_owned();
                return Err(Refusal {
                    status,
                    retry_after,
                    body,
                });
            }
            assert!(self.read_more().await, "closed before a response head");
        }
    }

    /// Reads what the socket has; false at its end (closed or reset).
    async fn read_more(&mut self) -> bool {
        self.raw.reserve(64 * 1024);
        matches!(self.socket.read_buf(&mut self.raw).await, Ok(1..))
    }

    /// The next event or `retry:`; `None` once the stream has ended (see [`ending`]).
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            if self.ending.is_some() {
                return None;
            }
            self.decode();
            if !self.frames.is_empty() || self.ending.is_some() {
                continue;
            }
            if !self.read_more().await {
                self.ending = Some(Ending::Cut);
            }
        }
    }

    /// How the stream ended, once it has.
    pub fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// Reads until the stream ends; the frames it still carried.
    pub async fn read_to_end(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next_frame().await {
            frames.push(frame);
        }
        frames
    }

    /// Moves the complete chunks of `raw` into the parser.
    fn decode(&mut self) {
        let mut at = 0;
        loop {
            match self.dechunk {
                Dechunk::Size => {
                    let Some(end) = self.raw[at..].windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let line = std::str::from_utf8(&self.raw[at..at + end]).unwrap();
                    let size = usize::from_str_radix(line, 16).unwrap();
                    at += end + 2;
                    self.dechunk = if size == 0 {
                        Dechunk::Done
                    } else {
                        Dechunk::Data(size)
                    };
                }
                Dechunk::Data(left) => {
                    let take = left.min(self.raw.len() - at);
                    if take == 0 {
                        break;
                    }
                    self.parser.push(&self.raw[at..at + take], &mut self.frames);
                    at += take;
                    self.dechunk = if take == left {
                        Dechunk::DataEnd
                    } else {
                        Dechunk::Data(left - take)
                    };
                }
                Dechunk::DataEnd => {
                    if self.raw.len() - at < 2 {
                        break;
                    }
                    assert_eq!(&self.raw[at..at + 2], b"\r\n", "bad chunk framing");
                    at += 2;
                    self.dechunk = Dechunk::Size;
                }
                Dechunk::Done => {
                    self.ending = Some(Ending::Clean);
                    break;
                }
            }
        }
        self.raw.drain(..at);
    }
}

/// Reads from `socket` until `needle` has arrived; returns everything read. Panics when
/// the connection closes first.
pub async fn read_until<S: AsyncRead + Unpin + ?Sized>(socket: &mut S, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    guard(async {
        while !seen.windows(needle.len()).any(|w| w == needle) {
            let mut buf = [0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    seen
}

/// Reads from `socket` until the server closes the connection; returns what came.
pub async fn read_to_end<S: AsyncRead + Unpin + ?Sized>(socket: &mut S) -> Vec<u8> {
    let mut rest = Vec::new();
    guard(socket.read_to_end(&mut rest)).await.unwrap();
    rest
}
