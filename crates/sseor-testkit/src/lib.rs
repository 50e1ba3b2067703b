//! What the tests of the `sseor` library and of the `sseor` server share: real processes
//! on real sockets, and the clients that talk to them.
//!
//! - [`redis`]: `redis-server` processes (and a Sentinel, and a relay that stalls
//!   subscriptions) on free ports, which tests kill, freeze and restart.
//! - [`certs`] and [`keys`]: certificates (self-signed, or issued by a CA made for the
//!   test) and key pairs, made in-process as PEM files.
//! - [`server`]: the `sseor` binary as a child process, found where it listens;
//!   [`library`]: the `sseor` library serving on a real socket in the test's process.
//! - [`sse`]: clients that read an event stream as a browser does; [`raw`]: a client on a
//!   raw socket that reads only when told to.
//! - [`login`]: a small application with a login of its own, for the auth callout.
//! - [`hang`] and [`net`]: the hang guard, free ports, a plain HTTP client.
//! - [`webhook`]: a receiver of lifecycle webhooks that records what it is sent and checks
//!   each signature.

pub mod certs;
pub mod hang;
pub mod keys;
pub mod library;
pub mod login;
pub mod net;
pub mod raw;
pub mod redis;
pub mod server;
pub mod sse;
pub mod webhook;

pub use hang::guard;
pub use net::{free_port, http};
