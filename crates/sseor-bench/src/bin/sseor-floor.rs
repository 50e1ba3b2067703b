//! `sseor-floor`: the least a server of event streams can do, for the bench's `floor`
//! target. One thread; `GET /sub/CHANNEL` answers a stream head and keeps the socket;
//! `POST /pub/CHANNEL` writes `event: bench` with the body as its data to every socket of
//! the channel, at once, from the request's own task, then answers `200`. No queue, no
//! heartbeat, no id, no history, no limit, and a socket that would block misses the event
//! (counted on stderr at exit).
//!
//! What the latency scenarios measure against it is the machine's and the load
//! generator's share of a figure: no server can deliver sooner than this one on the same
//! machine.
//!
//! It listens on 127.0.0.1 (`--port`, 0 for any free port) and prints
//! `listening on 127.0.0.1:PORT` on stdout once it does. SIGTERM or Ctrl-C ends it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
struct Args {
    /// The port to listen on; 0 for any free port.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// The sockets of each channel, and the events they missed.
#[derive(Default)]
struct Channels {
    sockets: RefCell<HashMap<String, Vec<Rc<TcpStream>>>>,
    missed: Cell<u64>,
}

impl Channels {
    /// Writes `frame` to every socket of `channel` that takes it whole now.
    fn publish(&self, channel: &str, frame: &[u8]) {
        let sockets = self.sockets.borrow();
        for socket in sockets.get(channel).into_iter().flatten() {
            if socket.try_write(frame).ok() != Some(frame.len()) {
                self.missed.set(self.missed.get() + 1);
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(args.port))
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    let channels = Rc::new(Channels::default());
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                tokio::task::spawn_local(connection(socket, channels.clone()));
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("sseor-floor: {} deliveries missed", channels.missed.get());
    Ok(())
}

/// Serves the requests of one connection until it closes or becomes a stream.
async fn connection(mut socket: TcpStream, channels: Rc<Channels>) {
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let Some((head_end, method, path, length)) = read_head(&mut socket, &mut buffer).await
        else {
            return;
        };
        if method == "GET" {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        cache-control: no-cache\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let channel = path.strip_prefix("/sub/").unwrap_or(&path).to_owned();
            let mut sockets = channels.sockets.borrow_mut();
            sockets.entry(channel).or_default().push(Rc::new(socket));
            return;
        }
        while buffer.len() < head_end + length {
            let mut more = [0u8; 4096];
            match socket.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&more[..read]),
            }
        }
        let body = &buffer[head_end..head_end + length];
        let mut frame = Vec::with_capacity(body.len() + 24);
        frame.extend_from_slice(b"event: bench\ndata: ");
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\n\n");
        channels.publish(path.strip_prefix("/pub/").unwrap_or(&path), &frame);
        buffer.drain(..head_end + length);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if socket.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads until `buffer` holds a whole request head: where it ends, its method, its path
/// and its `content-length`. `None` once the connection closes.
async fn read_head(
    socket: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Option<(usize, String, String, usize)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut request = lines.next()?.split(' ');
            let (method, path) = (request.next()?.to_owned(), request.next()?.to_owned());
            let length = lines
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .unwrap_or(0);
            return Some((end + 4, method, path, length));
        }
        let mut more = [0u8; 4096];
        match socket.read(&mut more).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&more[..read]),
        }
    }
}
