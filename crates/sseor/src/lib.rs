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
//! # Words used throughout
//!
//! * **stream**: one SSE response (`text/event-stream`) to one client; what the connection
//!   limits, the queues and the `sseor_connections` metric count.
//! * **connection**: a TCP (or TLS) connection. Over HTTP/1.1 it carries one stream at a
//!   time; over HTTP/2 it may carry many.
//! * **target**: who an event is for, a [`Target`]: one user, one topic, or everyone.
//! * **position**: the id every event reaches the client with, `EPOCH-MS-SEQ`
//!   ([`Position`]); a client resumes from the last one it saw (`Last-Event-ID`).
//! * **subscription**: which targets one stream receives, a [`Subscription`]: its user,
//!   its topics and the broadcasts. (The broker's subscriptions to Redis channels follow
//!   from the streams' subscriptions.)
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | yes | the Redis broker (`redis://`, `redis+unix://` URLs) and [`Publisher`] |
//! | `tls` | yes | HTTPS in the server loop with rustls ([`TlsConfig`], [`Builder::tls`]): HTTP/2 and HTTP/1.1 chosen by ALPN |
//!
//! # Serving the streams
//!
//! * [`Manager::listen_and_serve`] or [`Manager::serve`] (a listener of your own and
//!   [`Manager::router`], merged with your routes if you like): sseor's own server loop.
//!   It writes idle streams on a fast path (about 2-3 KiB of memory per idle stream; 3,000
//!   idle HTTP/1.1 streams, debug build), records each client's address for
//!   [`Builder::max_connections_per_ip`], and closes connections still open at the
//!   [shutdown timeout](Builder::shutdown_timeout), even those of clients that stopped
//!   reading.
//! * Your application's own `axum::serve`, calling [`Manager::handle_sse`] from its
//!   handlers: about 20-30 KiB per idle stream under the same measure, ten times as much.
//!   Then:
//!   - give `with_graceful_shutdown` your signal wrapped by [`Manager::shutdown_signal`],
//!     not the bare signal: axum's graceful shutdown waits for every open response, and
//!     event streams end only when the manager ends them; call [`Manager::close`] after
//!     `axum::serve` returns, and bound the wait (a client that stops reading can hold an
//!     axum connection open);
//!   - with a limit per address, serve
//!     `app.into_make_service_with_connect_info::<std::net::SocketAddr>()`: without the
//!     address, streams are refused ([`Error::Misconfigured`]) rather than left unlimited.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::Router;
//! use axum::extract::{Request, State};
//! use axum::response::IntoResponse;
//! use sseor::Manager;
//!
//! /// The user comes from the application's authentication (a session, a token),
//! /// never from a query parameter the client chooses.
//! fn signed_in_user(request: &Request) -> Option<String> {
//!     # let _ = request; Some("user123".into())
//! }
//!
//! async fn events(State(sse): State<Manager>, request: Request) -> axum::response::Response {
//!     match signed_in_user(&request) {
//!         Some(user) => sse.handle_sse(&request, &user).into_response(),
//!         None => axum::http::StatusCode::UNAUTHORIZED.into_response(),
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sse = Manager::new("").await?;
//! let app = Router::new()
//!     .route("/events", axum::routing::get(events))
//!     .with_state(sse.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let signal = async { tokio::signal::ctrl_c().await.ok(); };
//! let server = axum::serve(listener, app)
//!     .with_graceful_shutdown(sse.shutdown_signal(signal))
//!     .into_future();
//! // The shutdown timeout (10 s by default), from the signal.
//! let deadline = async {
//!     sse.closed().await;
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//! };
//! tokio::select! { served = server => served?, () = deadline => {} }
//! sse.close().await;
//! # Ok(()) }
//! ```
//!
//! # History
//!
//! Clients that reconnect with `Last-Event-ID` get what they missed from the history: per
//! target, [`Builder::history`] events for at most its age, and on the embedded broker at
//! most [`Builder::history_max_bytes`] in all (64 MiB), oldest events evicted first. A
//! position the history no longer covers gets one [`RESET_EVENT`].
//!
//! # Quick start
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
pub mod encode;
mod error;
mod event;
mod fanout;
mod manager;
mod metrics;
mod position;
#[cfg(feature = "redis")]
mod publisher;
mod random;
mod server;
mod subscription;
mod target;

pub use api::browser;
pub use broker::{Broker, BrokerContext, History, MemoryBroker, Published, Retention};
pub use error::{ConnectionLimit, Error, Result};
pub use event::{Event, MAX_FIELD_LEN, MAX_RETRY_MS, RESET_EVENT};
pub use fanout::{Barrier, CloseReason, Fanout, Interest, SlowConsumer};
pub use manager::{Builder, Manager};
pub use position::{InvalidPosition, Position};
#[cfg(feature = "redis")]
pub use publisher::Publisher;
#[cfg(feature = "tls")]
pub use server::tls::TlsConfig;
pub use subscription::Subscription;
pub use target::{MAX_NAME_LEN, Target};
