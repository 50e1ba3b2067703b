//! `sseor::serve`: an application's own router served by sseor's server loop over real
//! sockets: its routes and its event streams on one listener, streams handed off to the
//! loop, and the shutdown a user expects (signal, the manager ends the streams, serve
//! returns), bounded by the shutdown timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sseor::{Disconnect, Event, Manager};
use sseor_testkit::raw::{Ending, Options, RawStream, read_to_end, read_until};
use sseor_testkit::{guard, http};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

#[derive(serde::Deserialize)]
struct StreamParams {
    user: String,
}

/// The application's stream route: its own handler, which calls `handle_sse`.
async fn events(
    State(sse): State<Manager>,
    Query(params): Query<StreamParams>,
    request: Request,
) -> Response {
    sse.handle_sse(&request, &params.user).into_response()
}

/// A request that never gets its answer; `started` is told when it arrives.
async fn slow(Extension(started): Extension<Arc<Notify>>) {
    started.notify_one();
    std::future::pending::<()>().await;
}

/// An application with its own routes, one of which never answers (a slow request):
/// `slow_started` is told of each such request.
fn app(sse: &Manager, slow_started: Arc<Notify>) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello from the app" }))
        .route("/events", get(events))
        .route("/slow", get(slow))
        .layer(Extension(slow_started))
        .with_state(sse.clone())
}

fn manager_builder() -> sseor::Builder {
    Manager::builder()
        .handle_signals(false)
        .drain_period(Duration::ZERO)
}

/// The application served by `sseor::serve` until `signal` (wrapped by the manager, as
/// documented), with `shutdown_timeout`.
struct Served {
    sse: Manager,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    slow_started: Arc<Notify>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(shutdown_timeout: Duration) -> Self {
        let sse = manager_builder().build().await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, signal) = oneshot::channel::<()>();
        let signal = async {
            let _ = signal.await;
        };
        let slow_started = Arc::new(Notify::new());
        let serving = tokio::spawn(
            sseor::serve(listener, app(&sse, slow_started.clone()))
                .with_graceful_shutdown(sse.shutdown_signal(signal))
                .shutdown_timeout(shutdown_timeout)
                .into_future(),
        );
        Self {
            sse,
            addr,
            stop: Some(stop),
            slow_started,
            serving,
        }
    }

    async fn stream(&self, user: &str) -> RawStream {
        self.stream_with(user, Options::default()).await
    }

    async fn stream_with(&self, user: &str, options: Options) -> RawStream {
        let path = format!("/events?user={user}");
        guard(RawStream::open(self.addr, &path, &[], options))
            .await
            .unwrap_or_else(|refusal| panic!("{path} refused: {refusal:?}"))
    }

    /// Sends the application's shutdown signal.
    fn signal(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }

    /// Waits for `sseor::serve` to return, then closes the manager.
    async fn finished(self) {
        guard(self.serving).await.unwrap().unwrap();
        guard(self.sse.close()).await;
    }
}

/// Reads `stream` until an event of type `kind` arrives.
async fn until_event(stream: &mut RawStream, kind: &str) {
    guard(async {
        loop {
            let frame = stream.next_frame().await.expect("the stream ended");
            if frame.event == kind {
                return;
            }
        }
    })
    .await;
}

/// Sends a `GET path` on a new connection.
async fn request(addr: SocketAddr, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
}

#[tokio::test]
async fn serve_answers_the_apps_own_routes_and_its_event_streams_on_one_listener() {
    let served = Served::start(Duration::from_secs(10)).await;
    let hello = guard(http().get(format!("http://{}/hello", served.addr)).send())
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(guard(hello.text()).await.unwrap(), "hello from the app");
    let missing = guard(http().get(format!("http://{}/nowhere", served.addr)).send())
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let mut stream = served.stream("alice").await;
    let published = served
        .sse
        .publish("alice", Event::new("greeting").with_data(json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(published.delivered_locally, Some(1));
    until_event(&mut stream, "greeting").await;
}

/// A stream handed off to the server loop is written straight to the socket, and its
/// connection closes once it ends; under hyper (below, `axum::serve`) the connection
/// outlives the stream and answers the next request.
#[tokio::test]
async fn a_stream_served_by_serve_is_handed_off_so_its_connection_closes_when_it_ends() {
    let served = Served::start(Duration::from_secs(10)).await;
    let mut socket = request(served.addr, "/events?user=bob").await;
    read_until(&mut socket, b"retry: ").await;
    let ended = served
        .sse
        .disconnect(Disconnect::user("bob").unwrap())
        .await
        .unwrap();
    assert_eq!(ended.disconnected, 1);
    read_until(&mut socket, b"\r\n0\r\n\r\n").await;
    let next = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // The write may succeed or fail, depending on how far the close has come.
    let _ = socket.write_all(next).await;
    assert_eq!(
        read_to_end(&mut socket).await,
        b"",
        "the connection answered after its stream ended: the stream was not handed off"
    );
}

/// The control of the test above: `axum::serve` keeps the connection of an ended stream
/// for the next request, so that closing it is what the hand-off shows.
#[tokio::test]
async fn under_axum_serve_the_connection_of_an_ended_stream_answers_the_next_request() {
    let sse = manager_builder().build().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(&sse, Arc::new(Notify::new()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut socket = request(addr, "/events?user=carol").await;
    read_until(&mut socket, b"retry: ").await;
    let ended = sse
        .disconnect(Disconnect::user("carol").unwrap())
        .await
        .unwrap();
    assert_eq!(ended.disconnected, 1);
    read_until(&mut socket, b"\r\n0\r\n\r\n").await;
    let next = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
    socket.write_all(next).await.unwrap();
    read_until(&mut socket, b"hello from the app").await;
}

#[tokio::test]
async fn on_the_signal_the_manager_ends_open_streams_cleanly_and_serve_returns() {
    let mut served = Served::start(Duration::from_secs(10)).await;
    let mut streams = [served.stream("dan").await, served.stream("erin").await];
    served
        .sse
        .publish("dan", Event::new("before"))
        .await
        .unwrap();
    until_event(&mut streams[0], "before").await;

    served.signal();
    for stream in &mut streams {
        guard(stream.read_to_end()).await;
        assert_eq!(stream.ending(), Some(Ending::Clean));
    }
    served.finished().await;
}

#[tokio::test]
async fn close_called_first_ends_the_streams_and_serve_returns() {
    let served = Served::start(Duration::from_secs(10)).await;
    let mut stream = served.stream("fay").await;
    let closing = tokio::spawn({
        let sse = served.sse.clone();
        async move { sse.close().await }
    });
    guard(stream.read_to_end()).await;
    assert_eq!(stream.ending(), Some(Ending::Clean));
    guard(closing).await.unwrap();
    served.finished().await;
}

#[tokio::test]
async fn the_shutdown_timeout_closes_a_request_that_never_ends_and_serve_returns() {
    let mut served = Served::start(Duration::from_millis(200)).await;
    let mut slow = request(served.addr, "/slow").await;
    guard(served.slow_started.notified()).await;

    served.signal();
    // Closed without an answer: its handler never answered.
    assert_eq!(read_to_end(&mut slow).await, b"");
    served.finished().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_alone() {
    let served = Served::start(Duration::from_secs(10)).await;
    let stalled_client = Options {
        recv_buffer: Some(4096),
        from: None,
    };
    let mut stalled = served.stream_with("stalled", stalled_client).await;
    let mut reader = served.stream("reader").await;
    let padding = "x".repeat(4096);
    guard(async {
        let mut n = 0;
        while served.sse.connection_count("stalled") == 1 {
            let event = Event::new("tick").with_data(json!({"n": n, "pad": padding}));
            served.sse.publish("stalled", event).await.unwrap();
            n += 1;
        }
    })
    .await;

    served
        .sse
        .publish("reader", Event::new("still-here"))
        .await
        .unwrap();
    until_event(&mut reader, "still-here").await;
    assert_eq!(served.sse.connection_count("reader"), 1);
    guard(stalled.read_to_end()).await;
    assert_eq!(stalled.ending(), Some(Ending::Cut));
}
