//! Server-Sent Events fan-out for services.
//!
//! Browsers and services hold long-lived SSE streams; any instance can push an event to one
//! user, to a topic, or to everyone. Events flow one way:
//!
//! ```text
//! publish -> Broker -> Fanout (this instance's streams) -> encoded once -> every socket
//! ```
//!
//! # In an axum application
//!
//! The [`Manager`] is the application's state; an ordinary handler, with the extractors the
//! application already uses, decides who the user is (its session, its token) and calls
//! [`Manager::handle_sse`]; any handler publishes with [`Manager::publish`]. The routes
//! are the application's own, so `merge` and `nest` work as for any other route and
//! cannot conflict with anything sseor adds.
//!
//! ```no_run
//! use axum::Router;
//! use axum::extract::{Request, State};
//! use axum::http::StatusCode;
//! use axum::response::{IntoResponse, Response};
//! use axum::routing::{get, post};
//! use sseor::{Event, Manager};
//!
//! /// The user comes from the application's authentication (a session, a token),
//! /// never from a query parameter the client chooses.
//! fn signed_in_user(request: &Request) -> Option<String> {
//!     # let _ = request; Some("user123".into())
//! }
//!
//! async fn events(State(sse): State<Manager>, request: Request) -> Response {
//!     match signed_in_user(&request) {
//!         Some(user) => sse.handle_sse(&request, &user).into_response(),
//!         None => StatusCode::UNAUTHORIZED.into_response(),
//!     }
//! }
//!
//! async fn deposit(State(sse): State<Manager>) -> Response {
//!     let event = Event::new("transaction.updated").with_data(serde_json::json!({"amount": 500}));
//!     sse.publish("user123", event).await.map(axum::Json).into_response()
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sse = Manager::new("").await?; // `redis://...` to span instances
//! let app = Router::new()
//!     .route("/events", get(events))
//!     .route("/deposits", post(deposit))
//!     .with_state(sse.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let signal = async { tokio::signal::ctrl_c().await.ok(); };
//! sseor::serve(listener, app) // where an application had `axum::serve(listener, app)`
//!     .with_graceful_shutdown(sse.shutdown_signal(signal))
//!     .await?;
//! sse.close().await;
//! # Ok(()) }
//! ```
//!
//! [`serve`] is shaped like `axum::serve` and serves any router, on sseor's own server
//! loop: an event stream a handler opens is written straight to its socket, at about 2.2 KiB
//! per idle stream against about 21 KiB under `axum::serve`, every request gets its
//! client's address ([`Builder::max_connections_per_ip`] needs it), and connections still
//! open at the shutdown timeout are closed. Give its graceful shutdown your signal wrapped
//! by [`Manager::shutdown_signal`]: the manager ends the open streams, then the server
//! stops; call [`Manager::close`] once it returns.
//!
//! Under the application's own `axum::serve` instead:
//! * give `with_graceful_shutdown` your signal wrapped by [`Manager::shutdown_signal`],
//!   not the bare signal: axum's graceful shutdown waits for every open response, and
//!   event streams end only when the manager ends them; call [`Manager::close`] after
//!   `axum::serve` returns, and bound the wait (a client that stops reading can hold an
//!   axum connection open);
//! * with a limit per address, serve
//!   `app.into_make_service_with_connect_info::<std::net::SocketAddr>()`: without the
//!   address, streams are refused ([`Error::Misconfigured`]) rather than left unlimited;
//! * each idle stream costs about 21 KiB (10,000 idle streams, release build), against
//!   about 2.2 KiB under [`serve`] or [`Manager::serve`].
//!
//! [`api::router`] adds the standard JSON API (`/api/v1/sse`, `/api/v1/publish`, counts,
//! health, `/metrics`, the browser client) to merge or nest under a prefix; it has no
//! fallback of its own, so it merges into an application that has one.
//!
//! # The Go-style façade
//!
//! The calls of the Go package sseor started from, for code that follows it:
//! [`Manager::route`] registers a handler that gets the request and the manager,
//! [`Manager::listen_and_serve`] serves them on sseor's own server loop until
//! [`Manager::close`] or a signal, and [`Manager::connection_count`],
//! [`Manager::total_connections`] and [`Manager::publish_to_all`] keep their names.
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
//!
//! [`Manager::serve`] takes a listener of your own and any router ([`Manager::router`]
//! holds the registered routes, merged with yours if you like). The server loop records
//! each client's address for [`Builder::max_connections_per_ip`] and closes connections
//! still open at the [shutdown timeout](Builder::shutdown_timeout), even those of clients
//! that stopped reading.
//!
//! # The parts
//!
//! * [`Event`] is what is published: `{"id", "type", "data", "retry"}`.
//! * [`broker`] is the seam between instances: the embedded [`MemoryBroker`] (the default),
//!   the Redis broker, or one of your own ([`Builder::broker`]).
//! * [`Fanout`] is how a broker hands events to this instance's streams; each event is
//!   [`encode`]d once and every recipient shares the bytes.
//! * [`api`] is the standard JSON-over-HTTP API the `sseor` server exposes; every
//!   [`Error`] answers HTTP with its status, a JSON body and, where a client may retry,
//!   `Retry-After`.
//! * [`auth`] decides who may open which stream and who may publish: the
//!   [`Authorizer`](auth::Authorizer) trait, `JwtAuthorizer` (feature `jwt`),
//!   `HttpAuthorizer` (feature `auth-callout`: the application's own login), stream
//!   tickets and grants that expire.
//! * [`Publisher`] publishes through Redis from services that serve no streams.
//! * [`webhook`] tells the application who comes and goes ([`Lifecycle`] changes) in
//!   signed HTTP batches, at least once.
//! * [`presence`] says who is connected across every instance
//!   ([`Manager::presence_of_topic`], [`Manager::topics`]); [`Lifecycle`] changes (a user
//!   online or offline, a topic occupied or vacated) reach the hooks of
//!   [`Builder::on_lifecycle`], once across the instances.
//!
//! # Words used throughout
//!
//! * **stream**: one SSE response (`text/event-stream`) to one client; what the connection
//!   limits, the queues and the `sseor_connections` metric count (the names with
//!   "connection" come from the Go original, whose streams each had a connection).
//! * **connection**: a TCP (or TLS) connection. Over HTTP/1.1 it carries one stream at a
//!   time; over HTTP/2 it may carry many.
//! * **target**: who an event is for, a [`Target`]: one user, one topic, or everyone.
//! * **position**: where an event stands in its target's own sequence, `EPOCH-SEQ`
//!   ([`Position`]): every user, topic and the broadcasts number their events apart.
//! * **cursor**: a stream's position in each of its targets, the `id:` of every event it
//!   sends ([`Cursor`]); a client resumes from the last one it saw (`Last-Event-ID`).
//! * **subscription**: which targets one stream receives, a [`Subscription`]: its user,
//!   its topics and the broadcasts. (The broker's subscriptions to Redis channels follow
//!   from the streams' subscriptions.)
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | yes | the Redis broker (`redis://`, `rediss://`, `redis+unix://`, `redis+sentinel://`, `redis+cluster://`, `rediss+cluster://` URLs) and [`Publisher`] |
//! | `tls` | yes | HTTPS in the server loop with rustls ([`TlsConfig`], [`Builder::tls`]): HTTP/2 and HTTP/1.1 chosen by ALPN |
//! | `jwt` | yes | `auth::JwtAuthorizer`: JSON Web Tokens signed with HS256, RS256 or ES256 |
//! | `prometheus` | yes | [`Manager::render_metrics`] and `GET /metrics` in the Prometheus text format |
//! | `webhook` | yes | [`webhook::Webhook`]: [`Lifecycle`] changes POSTed to the application in signed batches ([`Builder::webhook`]) |
//! | `auth-callout` | yes | `auth::HttpAuthorizer`: streams authorized by an HTTP(S) endpoint of the application, from the request's session cookie |
//!
//! With `default-features = false`, sseor fans out on the embedded broker or a broker of
//! your own, with an [`Authorizer`](auth::Authorizer) of your own.
//!
//! # History
//!
//! Clients that reconnect with `Last-Event-ID` get what they missed from the history: per
//! target, [`Builder::history`] events for at most its age, and on the embedded broker at
//! most [`Builder::history_max_bytes`] in all (64 MiB), oldest events evicted first. A
//! position the history no longer covers gets one [`RESET_EVENT`].

pub mod api;
pub mod auth;
mod batch;
pub mod broker;
mod cursor;
mod disconnect;
pub mod encode;
mod error;
mod event;
mod fanout;
mod lifecycle;
mod manager;
mod metrics;
mod position;
pub mod presence;
#[cfg(feature = "redis")]
mod publisher;
mod random;
mod serve;
mod server;
mod subscription;
mod target;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use api::browser;
pub use batch::{BatchResults, MAX_BATCH_EVENTS};
pub use broker::{Broker, BrokerContext, History, MemoryBroker, Published, Retention};
pub use cursor::{Cursor, InvalidCursor};
pub use disconnect::{DEFAULT_REASON, DISCONNECT_EVENT, Disconnect, Disconnected, MAX_REASON_LEN};
pub use error::{ConnectionLimit, Error, Result};
pub use event::{Event, MAX_FIELD_LEN, MAX_RETRY_MS, RESET_EVENT};
pub use fanout::{Barrier, CloseReason, Fanout, Interest, SlowConsumer};
pub use lifecycle::{DEFAULT_LIFECYCLE_GRACE, Lifecycle, LifecycleHook, LifecycleHooks, Occupancy};
pub use manager::{Builder, Manager};
pub use position::{InvalidPosition, Position};
pub use presence::{PresencePage, TopicPresence, UserPresence};
#[cfg(feature = "redis")]
pub use publisher::Publisher;
pub use serve::{DEFAULT_HEADER_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, Serve, serve};
#[cfg(feature = "tls")]
pub use server::tls::TlsConfig;
pub use subscription::Subscription;
pub use target::{MAX_NAME_LEN, Target};
