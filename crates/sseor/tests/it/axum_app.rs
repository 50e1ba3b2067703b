//! An existing axum 0.8 application that embeds sseor and serves itself with `axum::serve`:
//! its own routes, its own way of knowing the user, its own shutdown signal.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde_json::Value;
use sseor::{Event, Manager};
use sseor_testkit::{guard, http};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The application's authentication: here, the user its session header names.
fn session_user(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-session-user")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The application's stream route: the user comes from its own authentication, never from
/// the query string.
async fn events(State(sse): State<Manager>, request: Request) -> Response {
    match session_user(request.headers()) {
        Some(user) => sse.handle_sse(&request, &user).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn app(sse: &Manager) -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/health", get(|| async { "ok" }))
        .with_state(sse.clone())
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn open_stream(addr: SocketAddr, user: &str) -> reqwest::Response {
    guard(
        http()
            .get(format!("http://{addr}/events"))
            .header("x-session-user", user)
            .send(),
    )
    .await
    .unwrap()
}

/// The application as the documentation shows it: `axum::serve` with graceful shutdown on
/// the application's own signal, wrapped by the manager, then `close()`.
fn run_app(sse: Manager, listener: TcpListener, signal: oneshot::Receiver<()>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let app_signal = async {
            let _ = signal.await;
        };
        axum::serve(listener, app(&sse))
            .with_graceful_shutdown(sse.shutdown_signal(app_signal))
            .await
            .unwrap();
        sse.close().await;
    })
}

/// A manager whose streams get `shutdown_timeout` to end, served by [`run_app`] until
/// `signal`, with a stream of `user` open on it.
async fn app_with_an_open_stream(
    shutdown_timeout: Duration,
    user: &str,
    signal: oneshot::Receiver<()>,
) -> (Manager, JoinHandle<()>, reqwest::Response) {
    let sse = Manager::builder()
        .handle_signals(false)
        .shutdown_timeout(shutdown_timeout)
        .build()
        .await
        .unwrap();
    let (listener, addr) = listener().await;
    let app = run_app(sse.clone(), listener, signal);
    let response = open_stream(addr, user).await;
    assert_eq!(response.status(), 200);
    (sse, app, response)
}

/// A manager that allows one stream per client address, and a listener for its app.
async fn one_stream_per_address() -> (Manager, TcpListener, SocketAddr) {
    let sse = Manager::builder()
        .handle_signals(false)
        .max_connections_per_ip(1)
        .build()
        .await
        .unwrap();
    let (listener, addr) = listener().await;
    (sse, listener, addr)
}

#[tokio::test]
async fn an_app_serving_itself_shuts_down_within_the_timeout_while_a_client_is_connected() {
    let timeout = Duration::from_secs(2);
    let (stop, signal) = oneshot::channel();
    let (sse, app, response) = app_with_an_open_stream(timeout, "alice", signal).await;
    let mut body = response.bytes_stream();
    let published = sse.publish("alice", Event::new("hello")).await.unwrap();
    assert_eq!(published.delivered_locally, Some(1));
    let mut received = Vec::new();
    guard(async {
        while !String::from_utf8_lossy(&received).contains("event: hello") {
            received.extend_from_slice(&body.next().await.unwrap().unwrap());
        }
    })
    .await;
    assert!(!app.is_finished(), "the app serves until its signal");

    let signalled = Instant::now();
    stop.send(()).unwrap();
    // The stream ends cleanly: every chunk arrives and the body finishes without an error.
    guard(async {
        while let Some(chunk) = body.next().await {
            chunk.expect("the stream should end cleanly, not with an error");
        }
    })
    .await;
    guard(app).await.unwrap();
    let took = signalled.elapsed();
    assert!(
        took < timeout,
        "serve and close() took {took:?} after the signal; the shutdown timeout is {timeout:?}"
    );
    assert!(sse.is_closed());
    assert_eq!(sse.total_connections(), 0);
}

#[tokio::test]
async fn close_called_first_also_ends_an_app_serving_itself() {
    let (_never, signal) = oneshot::channel();
    let (sse, app, response) = app_with_an_open_stream(Duration::from_secs(2), "bob", signal).await;

    let started = Instant::now();
    guard(sse.close()).await;
    guard(app).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    guard(response.bytes()).await.expect("a clean end");
}

#[tokio::test]
async fn a_limit_per_address_refuses_streams_whose_address_is_unknown() {
    let (sse, listener, addr) = one_stream_per_address().await;
    // Served without `into_make_service_with_connect_info`: no address reaches sseor.
    tokio::spawn(axum::serve(listener, app(&sse)).into_future());

    let refused = open_stream(addr, "carol").await;
    assert_eq!(refused.status(), 500);
    let body: Value = refused.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("max_connections_per_ip")
            && error.contains("into_make_service_with_connect_info"),
        "the error names the setting and the fix: {error}"
    );
    assert_eq!(sse.total_connections(), 0, "nothing was opened");
}

#[tokio::test]
async fn a_limit_per_address_holds_when_the_app_records_addresses() {
    let (sse, listener, addr) = one_stream_per_address().await;
    let service = app(&sse).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(axum::serve(listener, service).into_future());

    let first = open_stream(addr, "dave").await;
    assert_eq!(first.status(), 200);
    let second = open_stream(addr, "erin").await;
    assert_eq!(second.status(), 429, "the same address, over its limit");
    drop(first);
}
