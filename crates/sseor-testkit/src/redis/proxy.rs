//! A relay in front of Redis that makes subscription connections go silent, or cuts every
//! connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A TCP relay in front of a Redis that can make its subscription connections go silent
/// while their sockets stay open: what a half-dead network path or a stuck proxy does to
/// a pub/sub connection, and what no error on the client side reveals.
///
/// A connection counts as a subscription connection once it has sent a `SUBSCRIBE`. While
/// the relay is stalled, whatever Redis sends on such a connection is read and dropped;
/// commands on the other connections pass as usual.
pub struct StallingProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    stalled: Arc<AtomicBool>,
    /// While set, no connection is relayed: those open were closed, new ones are closed
    /// at once.
    cut: Arc<AtomicBool>,
    /// Every connection relayed, to close them all when cut.
    relayed: Arc<Mutex<Vec<TcpStream>>>,
    subscriptions: Arc<Mutex<Vec<Relayed>>>,
    stop: Arc<AtomicBool>,
}

/// One subscription connection, and whether it has gone silent.
struct Relayed {
    silent: Arc<AtomicBool>,
}

impl StallingProxy {
    /// Relays 127.0.0.1:`port` (chosen here) to the Redis on `redis_port`.
    pub fn start(redis_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            stalled: Arc::new(AtomicBool::new(false)),
            cut: Arc::new(AtomicBool::new(false)),
            relayed: Arc::default(),
            subscriptions: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (stalled, subscriptions, stop) = (
            proxy.stalled.clone(),
            proxy.subscriptions.clone(),
            proxy.stop.clone(),
        );
        let (cut, relayed) = (proxy.cut.clone(), proxy.relayed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if let Ok(kept) = client.try_clone() {
                    relayed.lock().unwrap().push(kept);
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                relay(client, server, stalled.clone(), subscriptions.clone());
            }
        });
        proxy
    }

    /// A Redis URL that goes through the relay.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Every subscription connection, open now or opened later, goes silent.
    pub fn stall_subscriptions(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        for relayed in self.subscriptions.lock().unwrap().iter() {
            relayed.silent.store(true, Ordering::SeqCst);
        }
    }

    /// Subscription connections opened from now on work again; the silent ones stay
    /// silent until their client gives up on them. After [`cut`](Self::cut), connections
    /// are relayed again.
    pub fn heal(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Cuts the clients off Redis, as a network partition would: every connection relayed
    /// is closed, and new ones are closed at once, until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for connection in self.relayed.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Pumps bytes both ways between `client` and `server` on two threads, until either
/// side closes.
fn relay(
    client: TcpStream,
    server: TcpStream,
    stalled: Arc<AtomicBool>,
    subscriptions: Arc<Mutex<Vec<Relayed>>>,
) {
    let silent = Arc::new(AtomicBool::new(false));
    let (mut client_in, mut client_out) = (client.try_clone().unwrap(), client);
    let (mut server_in, mut server_out) = (server.try_clone().unwrap(), server);
    let upstream_silent = silent.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        let mut subscriber = false;
        while let Ok(read) = client_in.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let sent = &buffer[..read];
            // The command itself, `SUBSCRIBE` as a bulk string of its own: the word may
            // also appear inside other commands' arguments (scripts, functions).
            if !subscriber
                && String::from_utf8_lossy(sent)
                    .to_ascii_uppercase()
                    .contains("\r\nSUBSCRIBE\r\n")
            {
                subscriber = true;
                if stalled.load(Ordering::SeqCst) {
                    upstream_silent.store(true, Ordering::SeqCst);
                }
                subscriptions.lock().unwrap().push(Relayed {
                    silent: upstream_silent.clone(),
                });
            }
            if server_out.write_all(sent).is_err() {
                break;
            }
        }
        let _ = server_out.shutdown(Shutdown::Both);
        let _ = client_in.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read) = server_in.read(&mut buffer) {
            if read == 0 {
                break;
            }
            // A silent connection: Redis's words are read and dropped, the socket stays.
            if silent.load(Ordering::SeqCst) {
                continue;
            }
            if client_out.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
        let _ = server_in.shutdown(Shutdown::Both);
    });
}
