//! The `sseor` binary as an operator runs it: a real process on a real port.

use std::process::{Output, Stdio};
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_sseor");
const HANG_GUARD: Duration = Duration::from_secs(20);

async fn guard<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("the test hung")
}

/// A running server; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(["--port", "0", "--log-format", "json"])
            .args(args)
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = guard(async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the server exited before it listened");
                let log: Value = serde_json::from_str(&line).unwrap();
                if let Some(address) = log["fields"]["address"].as_str() {
                    return address.to_owned();
                }
            }
        })
        .await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            base: format!("http://{address}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn subscribe(&self, query: &str) -> Events {
        let response = http()
            .get(self.url(&format!("/api/v1/sse?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Events(Box::pin(response.bytes_stream().eventsource()))
    }

    async fn publish(&self, body: Value) -> (u16, Value) {
        self.post_raw(body.to_string()).await
    }

    async fn post_raw(&self, body: String) -> (u16, Value) {
        let response = http()
            .post(self.url("/api/v1/publish"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = http().get(self.url(path)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn wait_for_total(&self, expected: u64) {
        guard(async {
            while self.get_json("/api/v1/connections").await.1["total"] != expected {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

type EventStream = std::pin::Pin<
    Box<
        dyn Stream<Item = Result<SseEvent, eventsource_stream::EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

struct Events(EventStream);

impl Events {
    async fn next(&mut self) -> Option<SseEvent> {
        guard(async {
            loop {
                match self.0.next().await? {
                    Ok(event) if event.data.is_empty() => continue,
                    Ok(event) => return Some(event),
                    Err(_) => return None,
                }
            }
        })
        .await
    }
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BINARY);
    command.args(args).env_remove("REDIS_URL");
    for (key, value) in env {
        command.env(key, value);
    }
    guard(command.output()).await.unwrap()
}

#[tokio::test]
async fn help_lists_every_setting_with_its_default() {
    let output = run(&["--help"], &[]).await;
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "REDIS_URL",
        "SERVER_PORT",
        "[default: 9090]",
        "LOG_LEVEL",
        "[default: info]",
        "SERVER_HOST",
        "SSEOR_HEARTBEAT",
        "[default: 15s]",
        "SSEOR_MAX_BODY_BYTES",
        "SSEOR_SHUTDOWN_TIMEOUT",
    ] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
}

#[tokio::test]
async fn the_readme_walk_through() {
    let server = Server::start(&[]).await;
    let mut user123 = server.subscribe("user_id=user123").await;
    let mut other = server.subscribe("user_id=other&topic=prices").await;
    server.wait_for_total(2).await;

    let (status, answer) = server
        .publish(json!({"user_id": "user123", "event": {
            "type": "transaction.updated",
            "data": {"transaction_id": "txn_123", "status": "completed", "amount": 500.0}
        }}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["delivered_locally"], 1);
    let event = user123.next().await.unwrap();
    assert_eq!(event.event, "transaction.updated");
    assert_eq!(event.id, answer["id"].as_str().unwrap());
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap(),
        json!({"transaction_id": "txn_123", "status": "completed", "amount": 500.0})
    );

    let (status, _) = server
        .publish(json!({"topic": "prices", "event": {"type": "price", "data": {"eur": 1.1}}}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(other.next().await.unwrap().event, "price");

    let (_, answer) = server
        .publish(json!({"event": {"type": "announcement"}}))
        .await;
    assert_eq!(answer["delivered_locally"], 2);
    assert_eq!(user123.next().await.unwrap().event, "announcement");
    assert_eq!(other.next().await.unwrap().event, "announcement");
}

#[tokio::test]
async fn counts_and_health() {
    let server = Server::start(&["--heartbeat", "200ms"]).await;
    assert_eq!(
        server.get_json("/healthz").await,
        (200, json!({"status": "ok"}))
    );
    let tab1 = server.subscribe("user_id=user123").await;
    let tab2 = server.subscribe("user_id=user123").await;
    server.wait_for_total(2).await;
    assert_eq!(
        server.get_json("/api/v1/connections?user_id=user123").await,
        (200, json!({"user_id": "user123", "user": 2, "total": 2}))
    );
    drop((tab1, tab2));
    server.wait_for_total(0).await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let server = Server::start(&["--max-body-bytes", "1024"]).await;
    let mut client = server.subscribe("user_id=u").await;
    server.wait_for_total(1).await;

    let cases: Vec<(String, u16, &str)> = vec![
        ("not json".into(), 400, "invalid JSON body"),
        (json!({"user_id": "u"}).to_string(), 400, "event"),
        (
            json!({"user_id": "u", "event": {"type": 5}}).to_string(),
            400,
            "event.type",
        ),
        (
            json!({"userid": "u", "event": {"type": "t"}}).to_string(),
            400,
            "userid",
        ),
        (
            json!({"user_id": "u", "topic": "t", "event": {"type": "t"}}).to_string(),
            400,
            "not both",
        ),
        (
            json!({"user_id": "", "event": {"type": "t"}}).to_string(),
            400,
            "user_id",
        ),
        (
            json!({"user_id": "u", "event": {"type": ""}}).to_string(),
            422,
            "type",
        ),
        (
            json!({"user_id": "u", "event": {"type": "a\nevent: forged"}}).to_string(),
            422,
            "CR, LF or NUL",
        ),
        (
            json!({"user_id": "u", "event": {"type": "t", "id": "1\r\ndata: x"}}).to_string(),
            422,
            "id",
        ),
        (
            json!({"event": {"type": "t", "data": {"pad": "x".repeat(2000)}}}).to_string(),
            413,
            "larger than 1024 bytes",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = server.post_raw(body.clone()).await;
        assert_eq!(got, status, "{body} -> {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(needle), "{body} -> {message}");
    }

    let response = http().get(server.url("/api/v1/sse")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("user_id"));
    let response = http()
        .get(server.url("/api/v1/sse?user_id=a%0Ab"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(server.get_json("/no/such/route").await.0, 404);
    let wrong_method = http()
        .get(server.url("/api/v1/publish"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);

    // Nothing of the above reached the client: its first event is this one.
    let (_, answer) = server
        .publish(json!({"user_id": "u", "event": {"type": "good"}}))
        .await;
    let first = client.next().await.unwrap();
    assert_eq!(first.event, "good");
    assert_eq!(first.id, answer["id"].as_str().unwrap());
    assert_eq!(first.id, "1");
}

#[tokio::test]
async fn stream_headers_and_heartbeats() {
    let server = Server::start(&["--heartbeat", "100ms", "--retry", "1500ms"]).await;
    let response = http()
        .get(server.url("/api/v1/sse?user_id=u"))
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    guard(async {
        while seen.windows(3).filter(|w| w == b":\n\n").count() < 2 {
            seen.extend_from_slice(&body.next().await.unwrap().unwrap());
        }
    })
    .await;
    assert!(seen.starts_with(b"retry: 1500\n\n"));
}

async fn shuts_down_on(signal: &str) {
    let server = Server::start(&[]).await;
    let mut clients = Vec::new();
    for n in 0..200 {
        clients.push(server.subscribe(&format!("user_id=u{n}")).await);
    }
    server.wait_for_total(200).await;
    server.signal(signal);
    for client in &mut clients {
        assert!(client.next().await.is_none());
    }
    let mut server = server;
    let status = guard(server.child.wait()).await.unwrap();
    assert!(status.success(), "{signal}: {status}");
}

#[tokio::test]
async fn sigterm_ends_every_stream_and_exits_cleanly() {
    shuts_down_on("TERM").await;
}

#[tokio::test]
async fn ctrl_c_ends_every_stream_and_exits_cleanly() {
    shuts_down_on("INT").await;
}

#[tokio::test]
async fn bad_configuration_fails_clearly_without_leaking_secrets() {
    let output = run(&["--port", "0"], &[("LOG_LEVEL", "[[[")]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("LOG_LEVEL"));

    let output = run(
        &["--port", "0"],
        &[("REDIS_URL", "foo://user:s3cret@example:6379/0")],
    )
    .await;
    assert!(!output.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("foo"), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");

    let output = run(&["--heartbeat", "soon"], &[]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("soon"));
}

#[tokio::test]
async fn serves_the_demo_page() {
    let server = Server::start(&[]).await;
    let response = http().get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("<title>sseor"));
    assert!(page.contains("/api/v1/sse"));
}
