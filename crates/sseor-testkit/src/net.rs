//! Local ports and a plain HTTP client.

use std::net::TcpListener;

/// A port of 127.0.0.1 that was free a moment ago, for a process that must be told its
/// port before it starts (another process may take it meanwhile, which tests accept).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot bind 127.0.0.1:0")
        .port()
}

/// An HTTP client that opens a new connection for every request, so that no test depends
/// on a connection kept from an earlier request.
///
/// One per thread, and so per test runtime: building a client loads the system's root
/// certificates (some 30 ms), which a test opening thousands of streams would pay for each.
pub fn http() -> reqwest::Client {
    thread_local! {
        static CLIENT: reqwest::Client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("cannot build an HTTP client");
    }
    CLIENT.with(reqwest::Client::clone)
}
