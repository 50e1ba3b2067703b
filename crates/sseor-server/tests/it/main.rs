//! The server's integration tests, in one binary to link once. Each module is one file of
//! tests as it was on its own; their tests share this process and run side by side (each
//! `sseor` they start is a child process of its own). `cursor` and `stream` are what they
//! share: reading the cursors streams send as their ids, and a client that waits for a
//! stream to start.
//!
//! Two files stay binaries of their own: `limits.rs`, whose runs push hundreds of MiB
//! through clients that never read and bound the server's memory, for minutes on a busy
//! machine, which would slow the timed tests here (header timeouts, shutdowns); and
//! `browser.rs`, which runs the Node.js suite in Chromium and shares nothing with these.

mod auth;
mod auth_callout;
mod backend_input;
mod bad_input;
mod connections;
mod cursor;
mod disconnect;
mod input;
mod lifecycle_webhooks;
mod metrics;
mod openapi;
mod presence;
mod redis;
mod redis_outage;
mod server;
mod stream;
mod transport;
mod webhook;

/// The `sseor` binary that cargo built for these tests.
const SSEOR: &str = env!("CARGO_BIN_EXE_sseor");
