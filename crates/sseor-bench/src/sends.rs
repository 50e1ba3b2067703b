//! `sends`: the machine alone, without any server. A frame written to each of N loopback
//! sockets by bare `write`s, from one or more threads, and read by one thread with
//! `epoll`: the time one broadcast takes when nothing but the kernel's TCP does any work.
//!
//! Any server that writes each delivery with a send of its own takes at least this long
//! to deliver one event to N streams, so a broadcast latency no server can beat on this
//! machine shows here: with `taskset -c 1 sseor-bench --server-cpus 0 sends`, the writing
//! threads run on CPU 0 and the reading one on CPU 1, as a pinned latency scenario runs a
//! server and the load generator.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Barrier;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serde_json::json;
use tokio::net::TcpListener;

use crate::client::connect_from;
use crate::process;
use crate::stats::{round, unix_nanos};

/// What `sends` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct SendsArgs {
    /// Loopback connections, each written once per round.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Threads writing, each to its share of the connections (on `--server-cpus` when
    /// given).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// Rounds, 200 ms apart (a broadcast at 5 events/s).
    #[arg(long, default_value_t = 25)]
    rounds: usize,
    /// Bytes per write (an SSE event of the latency scenarios is about 60).
    #[arg(long, default_value_t = 64)]
    frame_bytes: usize,
    /// A label copied into the JSON line.
    #[arg(long)]
    label: Option<String>,
    /// Internal: be the reading process of a run whose writers listen on this port (the
    /// two ends of 10,000 connections do not fit in one process's open files).
    #[arg(long, hide = true)]
    reader_of: Option<u16>,
}

/// Runs the rounds and prints their JSON line: the time from the first write of a round
/// to the last byte read, its median and its range over the rounds.
pub(crate) async fn sends(args: &SendsArgs) -> Result<(), String> {
    if let Some(port) = args.reader_of {
        return reader(args, port).await;
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut reader = Reader::start(args, port)?;
    let written = accept(&listener, args.connections).await?;
    reader.ready()?;
    let threads = args.threads as usize;
    let frame = vec![b'x'; args.frame_bytes.max(1)];
    let shares = split(written, threads);
    let start = Barrier::new(threads + 1);
    let rounds = std::thread::scope(|scope| -> Result<Vec<f64>, String> {
        for share in &shares {
            let (start, frame) = (&start, &frame);
            scope.spawn(move || write_rounds(share, frame, args.rounds, start));
        }
        let mut times = Vec::with_capacity(args.rounds);
        for _ in 0..args.rounds {
            std::thread::sleep(Duration::from_millis(200));
            let began = unix_nanos();
            start.wait();
            let finished = reader.round_read()?;
            times.push(finished.saturating_sub(began) as f64 / 1e6);
        }
        Ok(times)
    })?;
    println!("{}", line(args, rounds));
    Ok(())
}

/// The JSON line of a run, of its rounds' times in ms.
fn line(args: &SendsArgs, mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    json!({
        "scenario": "sends",
        "server": "kernel",
        "label": args.label,
        "connections": args.connections,
        "threads": args.threads,
        "frame_bytes": args.frame_bytes,
        "rounds": ms.len(),
        "round_ms": {"p50": round(median), "min": round(ms[0]), "max": round(ms[ms.len() - 1])},
        "micros_per_write": round(median * 1e3 / args.connections as f64),
    })
}

/// The reading process: started by the writing one, stopped when dropped.
struct Reader {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Reader {
    /// Starts this program as the reader of `port`, on the CPUs the bench runs on.
    fn start(args: &SendsArgs, port: u16) -> Result<Self, String> {
        let program = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(program)
            .args(["sends", "--reader-of", &port.to_string()])
            .args(["--connections", &args.connections.to_string()])
            .args(["--rounds", &args.rounds.to_string()])
            .args(["--frame-bytes", &args.frame_bytes.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the reader: {e}"))?;
        let stdout = child.stdout.take().ok_or("the reader has no stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    fn next_line(&mut self) -> Result<String, String> {
        match self.lines.next() {
            Some(Ok(line)) => Ok(line),
            _ => Err("the reader stopped (its error is above)".into()),
        }
    }

    /// Waits until every connection is open at the reader's end.
    fn ready(&mut self) -> Result<(), String> {
        self.next_line().map(drop)
    }

    /// The Unix time (ns) the reader had read a whole round.
    fn round_read(&mut self) -> Result<u64, String> {
        let line = self.next_line()?;
        line.parse()
            .map_err(|_| format!("the reader said `{line}`, not a time"))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn accept(listener: &TcpListener, n: usize) -> Result<Vec<TcpStream>, String> {
    let mut accepted = Vec::with_capacity(n);
    while accepted.len() < n {
        let (socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
        socket.set_nodelay(true).map_err(|e| e.to_string())?;
        accepted.push(socket.into_std().map_err(|e| e.to_string())?);
    }
    Ok(accepted)
}

/// The reading process: opens the connections to `port` (spread over 16 loopback source
/// addresses, as the load generator's streams are), says `ready`, then prints the Unix
/// time (ns) each round was read whole.
async fn reader(args: &SendsArgs, port: u16) -> Result<(), String> {
    let mut sockets = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let socket = connect_from(1 + (i % 16) as u8, port).await?;
        sockets.push(socket.into_std().map_err(|e| e.to_string())?);
    }
    println!("ready");
    let per_round = (args.connections * args.frame_bytes.max(1)) as u64;
    read_rounds(&sockets, per_round, args.rounds, || {
        println!("{}", unix_nanos())
    })
}

/// The connections dealt out to `threads` writers.
fn split(sockets: Vec<TcpStream>, threads: usize) -> Vec<Vec<TcpStream>> {
    let mut shares: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, socket) in sockets.into_iter().enumerate() {
        shares[i % threads].push(socket);
    }
    shares
}

/// One writer: on each round's start, `frame` to each of its sockets.
fn write_rounds(sockets: &[TcpStream], frame: &[u8], rounds: usize, start: &Barrier) {
    // On the servers' CPUs when given; a failure leaves the thread where it is.
    let _ = process::pin_this_thread();
    for _ in 0..rounds {
        start.wait();
        for mut socket in sockets {
            // Nonblocking (from tokio); a frame that does not fit is written on (rare at
            // 64 bytes, and then the round is slower, never shorter).
            let mut left = frame;
            while !left.is_empty() {
                match socket.write(left) {
                    Ok(n) => left = &left[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                    Err(_) => return,
                }
            }
        }
    }
}

/// Every socket in one `epoll`, read until each round's bytes are in; `round_read` after
/// each round.
fn read_rounds(
    sockets: &[TcpStream],
    per_round: u64,
    rounds: usize,
    mut round_read: impl FnMut(),
) -> Result<(), String> {
    let epoll = Epoll::new(EpollCreateFlags::empty()).map_err(|e| e.to_string())?;
    for (i, socket) in sockets.iter().enumerate() {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, i as u64);
        epoll
            .add(socket.as_fd(), event)
            .map_err(|e| e.to_string())?;
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buffer = [0u8; 16 * 1024];
    let mut read_total = 0u64;
    for round in 1..=rounds as u64 {
        while read_total < per_round * round {
            let ready = epoll
                .wait(&mut events, EpollTimeout::NONE)
                .map_err(|e| e.to_string())?;
            for event in &events[..ready] {
                let mut socket = &sockets[event.data() as usize];
                match socket.read(&mut buffer) {
                    Ok(0) => return Err("a connection closed".into()),
                    Ok(n) => read_total += n as u64,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        round_read();
    }
    Ok(())
}
