//! A real server on a real socket, and SSE clients that talk to it over HTTP.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use sseor::{Builder, Manager};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub mod redis;

/// How long any wait may last before the test is declared hung: a guard, not a measure.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

pub struct Server {
    pub manager: Manager,
    pub addr: SocketAddr,
    pub serving: JoinHandle<sseor::Result<()>>,
}

impl Server {
    pub async fn start() -> Self {
        Self::with(Manager::builder()).await
    }

    pub async fn with(builder: Builder) -> Self {
        Self::with_manager(builder.handle_signals(false).build().await.unwrap()).await
    }

    pub async fn with_manager(manager: Manager) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = sseor::api::router(&manager).merge(manager.router());
        let serving = tokio::spawn({
            let manager = manager.clone();
            async move { manager.serve(listener, app).await }
        });
        Self {
            manager,
            addr,
            serving,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Opens `/api/v1/sse` for `user_id` and `topics`.
    pub async fn subscribe(&self, user_id: &str, topics: &[&str]) -> Client {
        let mut url = self.url(&format!("/api/v1/sse?user_id={user_id}"));
        for topic in topics {
            url.push_str(&format!("&topic={topic}"));
        }
        Client::connect(&url).await
    }

    /// Polls until the manager counts `expected` connections.
    pub async fn wait_for_total(&self, expected: usize) {
        guard(async {
            while self.manager.total_connections() != expected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

type Events =
    Pin<Box<dyn Stream<Item = Result<SseEvent, EventStreamError<reqwest::Error>>> + Send>>;

/// One SSE client, reading the stream as a browser would.
pub struct Client {
    pub response_headers: reqwest::header::HeaderMap,
    events: Events,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        Self::resume(url, None).await
    }

    /// Connects as a browser that reconnects does, with `Last-Event-ID`. Like `sseor.js`,
    /// it tries again when refused because the broker is unavailable (a Redis outage that
    /// the instance has not recovered from yet); any other refusal fails the test.
    pub async fn resume(url: &str, last_event_id: Option<&str>) -> Self {
        let response = guard(async {
            loop {
                let mut request = http().get(url);
                if let Some(last) = last_event_id {
                    request = request.header("last-event-id", last);
                }
                let response = request.send().await.unwrap();
                if response.status() != 503 || response.headers().get("retry-after").is_none() {
                    return response;
                }
                let refused = response.text().await.unwrap();
                assert!(refused.contains("broker unavailable"), "{refused}");
                // Sooner than `Retry-After` says: the test only needs to get through.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        Self::from_response(response)
    }

    /// Connects with `Last-Event-ID` once: a refusal of any kind, a 503 included, fails
    /// the test.
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = http().get(url);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = guard(request.send()).await.unwrap();
        Self::from_response(response)
    }

    /// Reads the event stream of a response already received, which must be a 200.
    pub fn from_response(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "subscribing to {}", response.url());
        let response_headers = response.headers().clone();
        Self {
            response_headers,
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    /// The next event that carries data; panics if the stream ends, fails or nothing
    /// comes.
    pub async fn next_event(&mut self) -> SseEvent {
        self.try_next_event()
            .await
            .expect("the stream ended while an event was expected")
    }

    /// The next event that carries data, or `None` when the server ended the stream
    /// cleanly; panics if the stream fails (cut off, reset) or nothing comes.
    pub async fn try_next_event(&mut self) -> Option<SseEvent> {
        match self.next_or_ending().await {
            Next::Event(event) => Some(event),
            Next::End => None,
            Next::CutOff(error) => panic!("the stream failed instead of ending cleanly: {error}"),
        }
    }

    /// The next event that carries data, or how the stream ended; panics if nothing comes.
    pub async fn next_or_ending(&mut self) -> Next {
        guard(async {
            loop {
                match self.events.next().await {
                    Some(Ok(event)) if event.data.is_empty() && event.event == "message" => {}
                    Some(Ok(event)) => return Next::Event(event),
                    Some(Err(error)) => return Next::CutOff(error.to_string()),
                    None => return Next::End,
                }
            }
        })
        .await
    }

    /// Waits for the server to end the stream cleanly (an HTTP/1.1 chunked stream with its
    /// terminator), skipping any events; panics if the stream fails instead.
    pub async fn wait_for_end(&mut self) {
        guard(async { while self.try_next_event().await.is_some() {} }).await;
    }

    /// Waits for the stream to be cut off (closed or reset without its terminator),
    /// skipping any events; panics if it ends cleanly instead. The error, for messages.
    pub async fn wait_for_cut_off(&mut self) -> String {
        guard(async {
            loop {
                match self.next_or_ending().await {
                    Next::Event(_) => {}
                    Next::End => panic!("the stream ended cleanly where a cut-off was expected"),
                    Next::CutOff(error) => return error,
                }
            }
        })
        .await
    }
}

/// What came next on a stream.
#[derive(Debug)]
pub enum Next {
    /// An event that carries data.
    Event(SseEvent),
    /// The server ended the stream cleanly.
    End,
    /// The stream failed: the connection closed or was reset before the stream's end.
    CutOff(String),
}

/// Awaits `future`, panicking if it hangs.
pub async fn guard<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("the test hung")
}

pub async fn publish(server: &Server, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = guard(
        http()
            .post(server.url("/api/v1/publish"))
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Publishers and clients come and go at random for a while. Each publisher sends 500
/// events to random targets through one of `managers`; each client connects to a random
/// server among `servers`, reads a random number of events, leaves, and comes back with
/// its last id. At the end, every client must have received, for each of its targets,
/// exactly the events published after its first one, in order, none twice, and no reset.
pub async fn random_comings_and_goings(managers: Vec<Manager>, servers: Vec<String>) {
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let targets = ["user:a", "user:b", "topic:x", "all"];
    let done = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..3u64)
        .map(|p| {
            let managers = managers.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(p);
                let mut sent = Vec::new();
                for k in 0..500u64 {
                    let manager = &managers[rng.random_range(0..managers.len())];
                    let target = targets[rng.random_range(0..targets.len())];
                    let event = sseor::Event::new(target)
                        .with_data(serde_json::json!({ "n": p * 1000 + k }));
                    let published = match target {
                        "user:a" => manager.publish("a", event).await,
                        "user:b" => manager.publish("b", event).await,
                        "topic:x" => manager.publish_to_topic("x", event).await,
                        _ => manager.publish_to_all(event).await,
                    }
                    .unwrap();
                    let seq = published.id.parse::<sseor::Position>().unwrap().seq();
                    sent.push((seq, target.to_owned(), p * 1000 + k));
                    if k % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                sent
            })
        })
        .collect();

    let clients: Vec<_> = [
        ("a", &["x"][..]),
        ("b", &[][..]),
        ("a", &[][..]),
        ("b", &["x"][..]),
    ]
    .into_iter()
    .enumerate()
    .map(|(c, (user, topics))| {
        let query = format!(
            "/api/v1/sse?user_id={user}{}",
            topics
                .iter()
                .map(|t| format!("&topic={t}"))
                .collect::<String>()
        );
        let mut follows = vec![format!("user:{user}"), "all".to_owned()];
        follows.extend(topics.iter().map(|t| format!("topic:{t}")));
        let (servers, done) = (servers.clone(), done.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + c as u64);
            let mut received: Vec<(u64, String, u64)> = Vec::new();
            let mut last: Option<String> = None;
            loop {
                let server = &servers[rng.random_range(0..servers.len())];
                let mut client = Client::resume(&format!("{server}{query}"), last.as_deref()).await;
                for _ in 0..rng.random_range(1..60) {
                    let event = loop {
                        let finished = done.load(Ordering::SeqCst);
                        match tokio::time::timeout(
                            Duration::from_millis(500),
                            client.next_or_ending(),
                        )
                        .await
                        {
                            Ok(Next::Event(event)) => break Some(event),
                            Ok(Next::End) => break None,
                            Ok(Next::CutOff(error)) => {
                                panic!("a stream failed instead of ending cleanly: {error}")
                            }
                            Err(_) if finished => return (follows, received),
                            Err(_) => {}
                        }
                    };
                    // A stream the server ended: come back, as a browser does.
                    let Some(event) = event else { break };
                    assert_ne!(
                        event.event,
                        sseor::RESET_EVENT,
                        "nothing was lost: {}",
                        event.data
                    );
                    let seq = event.id.parse::<sseor::Position>().unwrap().seq();
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                    received.push((seq, event.event.clone(), data["n"].as_u64().unwrap()));
                    last = Some(event.id);
                }
            }
        })
    })
    .collect();

    let mut published = Vec::new();
    for publisher in publishers {
        published.extend(publisher.await.unwrap());
    }
    published.sort();
    done.store(true, Ordering::SeqCst);
    for client in clients {
        let (follows, received) = client.await.unwrap();
        let first = received.first().expect("the client received something").0;
        let expected: Vec<(u64, String, u64)> = published
            .iter()
            .filter(|(seq, target, _)| *seq >= first && follows.contains(target))
            .cloned()
            .collect();
        if received != expected {
            let at = received
                .iter()
                .zip(&expected)
                .take_while(|(r, e)| r == e)
                .count();
            eprintln!(
                "{follows:?} diverges at {at}: received {:?} expected {:?}",
                &received[at.saturating_sub(2)..(at + 3).min(received.len())],
                &expected[at.saturating_sub(2)..(at + 3).min(expected.len())]
            );
        }
        assert_eq!(received.len(), expected.len(), "{follows:?}");
        assert_eq!(received, expected, "{follows:?}");
    }
}

/// On a server that keeps events 300 ms: a position 400 ms old gets a reset.
pub async fn an_old_position_gets_a_reset(server: &Server) {
    let event = sseor::Event::new("n").with_data(serde_json::json!({ "n": 1 }));
    let old = server.manager.publish("val", event).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let url = server.url("/api/v1/sse?user_id=val");
    let mut client = Client::resume(&url, Some(&old.id)).await;
    let reset = client.next_event().await;
    assert_eq!(reset.event, sseor::RESET_EVENT);
    assert!(reset.data.contains("older"), "{}", reset.data);
}

/// How often the managers of [`redis_builder`] probe Redis.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// A manager on the Redis at `url` that notices faults within a second: it probes every
/// [`PROBE_INTERVAL`] and gives up on a command after 500 ms.
pub fn redis_builder(url: &str) -> Builder {
    Manager::builder()
        .broker_url(url)
        .redis_probe_interval(PROBE_INTERVAL)
        .redis_timeout(Duration::from_millis(500))
}

/// A server on `redis`, once its manager is ready.
pub async fn instance(redis: &redis::RedisServer) -> Server {
    let server = Server::with(redis_builder(&redis.url())).await;
    wait_ready(&server.manager).await;
    server
}

/// Polls until `manager` is ready.
pub async fn wait_ready(manager: &Manager) {
    guard(async {
        while manager.readiness().is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Polls until `manager` is not ready; the reason it gives.
pub async fn wait_unready(manager: &Manager) -> String {
    guard(async {
        loop {
            if let Err(reason) = manager.readiness() {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// An event of type `n` whose data is `{"n": n}`.
pub fn numbered(n: u64) -> sseor::Event {
    sseor::Event::new("n").with_data(serde_json::json!({ "n": n }))
}

/// The `n` of an event made by [`numbered`]; panics on any other event.
pub fn n_of(event: &SseEvent) -> u64 {
    serde_json::from_str::<serde_json::Value>(&event.data).unwrap()["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a numbered event: {event:?}"))
}

/// Receives events 0..count on `user` through `server`, and returns the last id.
pub async fn receive_some(
    server: &Server,
    redis: &redis::RedisServer,
    user: &str,
    count: u64,
) -> String {
    let mut client = server.subscribe(user, &[]).await;
    redis::wait_for_subscribers(redis, &format!("sseor:user:{user}"), "1").await;
    let mut last = String::new();
    for n in 0..count {
        server.manager.publish(user, numbered(n)).await.unwrap();
        let event = client.next_event().await;
        assert_eq!(n_of(&event), n);
        last = event.id;
    }
    last
}
