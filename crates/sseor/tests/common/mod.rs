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
        let manager = builder.handle_signals(false).build().await.unwrap();
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

    /// Connects as a browser that reconnects does, with `Last-Event-ID`.
    pub async fn resume(url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = http().get(url);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = guard(request.send()).await.unwrap();
        assert_eq!(response.status(), 200, "subscribing to {url}");
        let response_headers = response.headers().clone();
        Self {
            response_headers,
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    /// The next event that carries data; panics if the stream ends or nothing comes.
    pub async fn next_event(&mut self) -> SseEvent {
        self.try_next_event()
            .await
            .expect("the stream ended while an event was expected")
    }

    /// The next event that carries data, or `None` when the stream ends.
    pub async fn try_next_event(&mut self) -> Option<SseEvent> {
        guard(async {
            loop {
                match self.events.next().await? {
                    Ok(event) if event.data.is_empty() && event.event == "message" => continue,
                    Ok(event) => return Some(event),
                    Err(_) => return None,
                }
            }
        })
        .await
    }

    /// Waits for the end of the stream, skipping any events.
    pub async fn wait_for_end(&mut self) {
        guard(async { while self.try_next_event().await.is_some() {} }).await;
    }
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
