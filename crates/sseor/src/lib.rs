//! Server-Sent Events fan-out for services.
//!
//! Browsers and services hold long-lived SSE streams; any instance can push an event to one
//! user, to a topic, or to everyone. Events flow one way:
//!
//! ```text
//! publish -> Broker -> Fanout (this instance's registry) -> encoded once -> every socket
//! ```
//!
//! * [`Manager`] is the entry point: [`Manager::route`], [`Manager::listen_and_serve`],
//!   [`Manager::handle_sse`], [`Manager::publish`], [`Manager::publish_to_all`],
//!   [`Manager::connection_count`], [`Manager::total_connections`], [`Manager::close`].
//! * [`Event`] is what is published: `{"id", "type", "data", "retry"}`.
//! * [`broker`] holds the seam between instances; the embedded [`MemoryBroker`] is the
//!   default.
//! * [`encode`] writes the `text/event-stream` wire format.
//! * [`api`] is the standard JSON-over-HTTP API the `sseor` server exposes.
//! * [`auth`] decides who may open which stream and who may publish: the
//!   [`Authorizer`](auth::Authorizer) trait, [`JwtAuthorizer`](auth::JwtAuthorizer), stream
//!   tickets and grants that expire.
//! * [`Publisher`] publishes through Redis from services that serve no streams.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | yes | the Redis broker (`redis://`, `redis+unix://` URLs) and [`Publisher`] |
//! | `tls` | yes | HTTPS in the server loop with rustls ([`TlsConfig`], [`Builder::tls`]): HTTP/2 and HTTP/1.1 chosen by ALPN |
//!
//! ```no_run
//! use axum::extract::Request;
//! use axum::response::IntoResponse;
//! use sseor::{Event, Manager};
//!
//! # #[tokio::main] async fn main() -> sseor::Result<()> {
//! let sse = Manager::new("memory://").await?;
//! sse.route("/events", |request: Request, manager: Manager| async move {
//!     manager.handle_sse(&request, "user123").into_response()
//! })?;
//! let publisher = sse.clone();
//! tokio::spawn(async move {
//!     publisher.publish("user123", Event::new("hello")).await
//! });
//! sse.listen_and_serve(":9090").await
//! # }
//! ```

pub mod api;
pub mod auth;
pub mod broker;
pub mod browser;
mod connection;
pub mod encode;
mod error;
mod event;
mod manager;
mod metrics;
mod position;
#[cfg(feature = "redis")]
mod publisher;
mod queue;
mod registry;
mod serve;
mod stream;
mod target;
#[cfg(feature = "tls")]
mod tls;
mod writer;

pub use broker::{Broker, History, MemoryBroker, Published, Retention};
pub use error::{Error, Result};
pub use event::{Event, MAX_FIELD_LEN, MAX_RETRY_MS};
pub use manager::{Builder, Manager, RESET_EVENT, Subscription};
pub use position::{InvalidPosition, Position};
#[cfg(feature = "redis")]
pub use publisher::Publisher;
pub use queue::SlowConsumer;
pub use registry::{Barrier, CloseReason, ConnectionLimit, Fanout, Interest};
pub use target::{MAX_NAME_LEN, Target};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;
