//! Redis faults against the real `sseor` binary and real `redis-server` processes: a
//! publish while Redis is away, a resume while Redis is frozen or refuses reads,
//! heartbeats during an outage, and two key prefixes sharing one Redis.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Value, json};
use sseor_testkit::redis::{RedisServer, app_user, wait_for_subscribers};
use sseor_testkit::server::{Server, command};
use sseor_testkit::{guard, http};

use crate::SSEOR;
use crate::cursor::{position_in, user};

/// Faults are noticed within a second with these.
const FAST_FAULTS: [&str; 4] = ["--probe-interval", "100ms", "--redis-timeout", "300ms"];

/// The HS256 secret and the publish token of the servers that authenticate.
const SECRET: &str = "sseor-outage-secret-0123456789abcdef";
const PUBLISH_TOKEN: &str = "sseor-outage-publish-token-42";

/// `sseor` on `redis_url` with `envs` and `args` (after [`FAST_FAULTS`]), once ready.
async fn start_on(redis_url: &str, envs: &[(&str, &str)], args: &[&str]) -> Server {
    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .args(FAST_FAULTS)
        .args(args)
        .env("REDIS_URL", redis_url)
        .envs(envs.iter().copied());
    let server = Server::spawn(command).await;
    wait_for_readyz(&server, 200).await;
    server
}

/// Polls `/readyz` until it answers `status`; returns its JSON.
async fn wait_for_readyz(server: &Server, status: u16) -> Value {
    guard(async {
        loop {
            let (seen, body) = server.get_json("/readyz").await;
            if seen == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn numbered(user: &str, n: u64) -> Value {
    json!({"user_id": user, "event": {"type": "n", "data": {"n": n}}})
}

/// One frame of an event stream, as sent: a comment (heartbeat) or an event.
#[derive(Debug, Clone)]
struct Frame {
    at: Instant,
    comment: bool,
    id: String,
    event: String,
    data: String,
}

impl Frame {
    fn parse(text: &str) -> Self {
        let mut frame = Self {
            at: Instant::now(),
            comment: false,
            id: String::new(),
            event: String::new(),
            data: String::new(),
        };
        let mut only_comments = true;
        for line in text.lines().filter(|line| !line.is_empty()) {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            only_comments &= field.is_empty();
            match field {
                "id" => frame.id = value.to_owned(),
                "event" => frame.event = value.to_owned(),
                "data" => frame.data.push_str(value),
                _ => {}
            }
        }
        frame.comment = only_comments;
        frame
    }

    fn n(&self) -> Option<u64> {
        serde_json::from_str::<Value>(&self.data).ok()?["n"].as_u64()
    }

    fn reason(&self) -> String {
        serde_json::from_str::<Value>(&self.data).unwrap_or_default()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// What reading a stream gave next.
#[derive(Debug)]
enum Next {
    Frame(Frame),
    End,
    Failed(String),
}

/// An event stream read frame by frame, comments included, each stamped when it came.
struct RawStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

impl RawStream {
    async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = http().get(url);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = guard(request.send()).await.unwrap();
        assert_eq!(response.status(), 200, "subscribing to {url}");
        Self::of(response)
    }

    /// Reads the event stream of a response already received.
    fn of(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        Self {
            body: Box::pin(
                response
                    .bytes_stream()
                    .map(|bytes| bytes.map(|b| b.to_vec())),
            ),
            buffer: String::new(),
        }
    }

    /// The next frame (the opening `retry:` and `id:` too), the clean end, or a failure.
    async fn next(&mut self) -> Next {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                return Next::Frame(Frame::parse(&text));
            }
            match self.body.next().await {
                None => return Next::End,
                Some(Err(e)) => return Next::Failed(e.to_string()),
                Some(Ok(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
    }

    /// The next event, skipping comments and the opening `retry:` and `id:`.
    async fn next_event(&mut self) -> Frame {
        guard(async {
            loop {
                match self.next().await {
                    Next::Frame(frame) if frame.comment || frame.data.is_empty() => {}
                    Next::Frame(frame) => return frame,
                    other => panic!("an event was expected: {other:?}"),
                }
            }
        })
        .await
    }
}

/// A client that behaves as a browser's `EventSource`: when its stream ends cleanly, it
/// reconnects with the last id it saw (that of an event, or the `id:` alone with which a
/// stream opens). A stream that fails is a test failure.
struct Reconnecting {
    url: String,
    stream: RawStream,
    last: Option<String>,
    reconnections: usize,
}

impl Reconnecting {
    async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        Self {
            url: url.to_owned(),
            stream: RawStream::open(url, last_event_id).await,
            last: last_event_id.map(str::to_owned),
            reconnections: 0,
        }
    }

    /// The next event, across reconnections.
    async fn next_event(&mut self) -> Frame {
        guard(async {
            loop {
                match self.stream.next().await {
                    Next::Frame(frame) => {
                        if !frame.id.is_empty() {
                            self.last = Some(frame.id.clone());
                        }
                        if !frame.comment && !frame.data.is_empty() {
                            return frame;
                        }
                    }
                    Next::End => {
                        self.reconnections += 1;
                        self.stream = RawStream::open(&self.url, self.last.as_deref()).await;
                    }
                    Next::Failed(e) => panic!("the stream failed instead of ending: {e}"),
                }
            }
        })
        .await
    }
}

/// Publishes `{"n": n}` to `user` until it is acknowledged; the position answered.
async fn publish_until_acknowledged(server: &Server, user: &str, n: u64) -> String {
    guard(async {
        loop {
            let (status, answer) = server.publish(&numbered(user, n)).await;
            if status == 202 {
                return answer["id"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_publish_while_redis_is_away_is_503_with_a_json_error_and_works_again_once_it_is_back() {
    let password = "s3cret-redis-pass";
    let mut redis = RedisServer::start_with(&["--requirepass", password]);
    let url = format!("redis://:{password}@127.0.0.1:{}/0", redis.port);
    let server = start_on(&url, &[], &[]).await;
    let stream_url = server.sse_url("joe", &[]);
    let mut stream = Reconnecting::open(&stream_url, None).await;
    opened(&mut stream.stream).await;
    let (status, _) = server.publish(&numbered("joe", 0)).await;
    assert_eq!(status, 202);
    assert_eq!(stream.next_event().await.n(), Some(0));

    redis.kill();
    let (status, refused, retry_after) = guard(async {
        loop {
            let response = guard(
                http()
                    .post(server.url("/api/v1/publish"))
                    .json(&numbered("joe", 1))
                    .send(),
            )
            .await
            .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let body: Value = guard(response.json()).await.unwrap();
            if status != 202 {
                return (status, body, retry_after);
            }
        }
    })
    .await;
    assert_eq!(status, 503, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "a JSON error: {refused}");
    assert!(!error.contains(password), "the password leaked: {error}");
    let retry_after = retry_after.expect("a 503 says when to try again");
    let seconds: u64 = retry_after.to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&seconds), "Retry-After: {seconds}");
    wait_for_readyz(&server, 503).await;

    redis.restart();
    wait_for_readyz(&server, 200).await;
    // The stream stays open through the outage. Redis came back empty: the history the
    // stream stood in is gone, so its client is told to reload.
    let reset = stream.next_event().await;
    assert_eq!(reset.event, "sseor.reset", "{reset:?}");
    assert!(reset.reason().contains("history was lost"), "{reset:?}");
    let pid = server.pid();
    let after = publish_until_acknowledged(&server, "joe", 2).await;
    assert_eq!(server.pid(), pid, "the same process publishes again");
    // The event acknowledged after the restart is the next one on the same stream.
    let event = stream.next_event().await;
    assert_eq!(
        (event.n(), position_in(&event.id, &user("joe"))),
        (Some(2), after)
    );
    assert_eq!(stream.reconnections, 0, "the stream stayed open");
    assert!(
        !server.output().contains(password),
        "the password reached the logs"
    );
}

#[tokio::test]
async fn a_resume_while_redis_is_frozen_waits_then_replays_exactly_what_was_missed() {
    let redis = RedisServer::start();
    let server = start_on(&redis.url(), &[], &[]).await;
    let stream_url = server.sse_url("ida", &[]);
    let mut stream = RawStream::open(&stream_url, None).await;
    wait_for_subscribers(&redis, "sseor:{user:ida}", "1").await;
    opened(&mut stream).await;
    let mut last = String::new();
    for n in 0..3 {
        assert_eq!(server.publish(&numbered("ida", n)).await.0, 202);
        let event = stream.next_event().await;
        assert_eq!(event.n(), Some(n));
        last = event.id;
    }
    drop(stream);
    wait_for_subscribers(&redis, "sseor:{user:ida}", "0").await;
    for n in 3..7 {
        assert_eq!(server.publish(&numbered("ida", n)).await.0, 202);
    }

    redis.pause();
    let not_ready = wait_for_readyz(&server, 503).await;
    assert!(
        not_ready["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{not_ready}"
    );
    let mut resumed = Reconnecting::open(&stream_url, Some(&last)).await;
    // While Redis is frozen the history cannot be read: no event, and above all no
    // partial replay, may come out. Frozen for longer than a history read may take with
    // its retries, so that a read that did not wait would give up.
    let early = tokio::time::timeout(Duration::from_secs(3), resumed.next_event()).await;
    assert!(early.is_err(), "nothing before Redis is back: {early:?}");
    redis.resume();
    wait_for_readyz(&server, 200).await;
    let mut replayed = Vec::new();
    for _ in 3..7 {
        let event = resumed.next_event().await;
        assert_ne!(event.event, "sseor.reset", "{}", event.reason());
        replayed.push(event.n());
    }
    assert_eq!(replayed, (3..7).map(Some).collect::<Vec<_>>());
    let live = publish_until_acknowledged(&server, "ida", 7).await;
    let event = resumed.next_event().await;
    assert_eq!(
        (event.n(), position_in(&event.id, &user("ida"))),
        (Some(7), live),
        "then live, nothing twice"
    );
    assert_eq!(resumed.reconnections, 0, "the resumed stream stayed open");
}

#[tokio::test]
async fn a_resume_while_redis_refuses_reads_gets_one_reset_then_live() {
    let redis = RedisServer::start();
    let url = app_user(&redis);
    let server = start_on(&url, &[], &[]).await;
    let stream_url = server.sse_url("kim", &[]);
    let mut stream = RawStream::open(&stream_url, None).await;
    wait_for_subscribers(&redis, "sseor:{user:kim}", "1").await;
    opened(&mut stream).await;
    assert_eq!(server.publish(&numbered("kim", 0)).await.0, 202);
    let last = stream.next_event().await.id;
    drop(stream);
    for n in 1..3 {
        assert_eq!(server.publish(&numbered("kim", n)).await.0, 202);
    }

    // Redis answers, but the history cannot be read: the client must be told to reload.
    assert_eq!(redis.cli(&["ACL", "SETUSER", "app", "-@read"]), "OK");
    let mut resumed = RawStream::open(&stream_url, Some(&last)).await;
    let reset = resumed.next_event().await;
    assert_eq!(reset.event, "sseor.reset", "{reset:?}");
    assert!(reset.reason().contains("cannot be read"), "{reset:?}");
    assert!(!reset.data.contains("app-pass"), "{reset:?}");

    assert_eq!(redis.cli(&["ACL", "SETUSER", "app", "+@all"]), "OK");
    let live = publish_until_acknowledged(&server, "kim", 3).await;
    let event = resumed.next_event().await;
    assert_eq!(
        (event.n(), position_in(&event.id, &user("kim"))),
        (Some(3), live),
        "then live"
    );
    assert!(
        !server.output().contains("app-pass"),
        "a password was logged"
    );
}

/// The heartbeat the servers of the heartbeat tests send.
const HEARTBEAT: Duration = Duration::from_millis(400);

/// Reads `stream` for eight heartbeat intervals while Redis is down and asserts that it
/// carried nothing but heartbeats, at their pace: neither fewer nor more, none late, none
/// early.
async fn assert_heartbeat_pace(server: &Server, stream: &mut RawStream) {
    // What arrived before the window is not counted in it.
    while let Ok(next) = tokio::time::timeout(Duration::from_millis(20), stream.next()).await {
        assert!(
            matches!(&next, Next::Frame(frame) if frame.comment || frame.data.is_empty()),
            "only the opening and heartbeats while Redis is down: {next:?}"
        );
    }
    let window = HEARTBEAT * 8;
    let started = Instant::now();
    let mut beats = Vec::new();
    while started.elapsed() < window {
        let left = window.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) => break,
            Ok(Next::Frame(frame)) if frame.comment => beats.push(frame.at),
            Ok(Next::Frame(frame)) if frame.data.is_empty() => {} // the opening `retry:`, `id:`
            Ok(other) => panic!("only heartbeats while Redis is down: {other:?}"),
        }
    }
    assert_eq!(
        server.get_json("/readyz").await.0,
        503,
        "Redis was down all along"
    );
    let gaps: Vec<Duration> = beats.windows(2).map(|pair| pair[1] - pair[0]).collect();
    eprintln!("{} heartbeats in {window:?}, gaps {gaps:?}", beats.len());
    assert!(
        (6..=10).contains(&beats.len()),
        "about one heartbeat every {HEARTBEAT:?} for {window:?}: {}",
        beats.len()
    );
    for gap in gaps {
        assert!(
            gap >= HEARTBEAT / 2 && gap <= HEARTBEAT * 2,
            "a heartbeat every {HEARTBEAT:?}, not {gap:?}"
        );
    }
}

#[tokio::test]
async fn heartbeats_keep_their_pace_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let server = start_on(&redis.url(), &[], &["--heartbeat", "400ms"]).await;
    let mut stream = RawStream::open(&server.sse_url("lea", &[]), None).await;
    wait_for_subscribers(&redis, "sseor:{user:lea}", "1").await;

    redis.kill();
    wait_for_readyz(&server, 503).await;
    assert_heartbeat_pace(&server, &mut stream).await;
    redis.restart();
    wait_for_readyz(&server, 200).await;
}

#[tokio::test]
async fn a_stream_opened_while_redis_is_down_is_refused_with_503_and_retry_after_then_opens_once_it_is_back()
 {
    let mut redis = RedisServer::start();
    let server = start_on(&redis.url(), &[], &["--heartbeat", "400ms"]).await;
    redis.kill();
    wait_for_readyz(&server, 503).await;
    // A stream accepted now would stay silent, without even its heartbeats, until Redis is
    // back: it is refused instead, and the client told when to try again.
    let response = guard(http().get(server.sse_url("max", &[])).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "Retry-After: {retry_after}");
    let refused: Value = guard(response.json()).await.unwrap();
    assert!(
        refused["error"].as_str().unwrap().contains("Redis"),
        "{refused}"
    );
    redis.restart();
    wait_for_readyz(&server, 200).await;
    let mut stream = RawStream::open(&server.sse_url("max", &[]), None).await;
    opened(&mut stream).await;
    let id = publish_until_acknowledged(&server, "max", 1).await;
    assert_eq!(position_in(&stream.next_event().await.id, &user("max")), id);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token of `sub` that may join `topics`.
fn token(sub: &str, topics: &[&str]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": now() + 600, "topics": topics}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// `sseor` with authentication on, keeping its keys under `prefix` of `redis`.
async fn start_with_prefix(redis: &RedisServer, prefix: &str) -> Server {
    start_on(
        &redis.url(),
        &[
            ("SSEOR_REDIS_PREFIX", prefix),
            ("SSEOR_JWT_SECRET", SECRET),
            ("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN),
        ],
        &["--presence-ttl", "900ms"],
    )
    .await
}

/// Opens the stream of `sub` with `topics`, the token in the `Authorization` header.
async fn subscribe_with_token(server: &Server, sub: &str, topics: &[&str]) -> RawStream {
    let mut path = "/api/v1/sse?".to_owned();
    for topic in topics {
        path.push_str(&format!("topic={topic}&"));
    }
    let response = guard(
        http()
            .get(server.url(&path))
            .bearer_auth(token(sub, topics))
            .send(),
    )
    .await
    .unwrap();
    RawStream::of(response)
}

/// Publishes `body` with the publish token; the answer of a 202.
async fn publish_as_backend(server: &Server, body: Value) -> Value {
    let response = guard(
        http()
            .post(server.url("/api/v1/publish"))
            .bearer_auth(PUBLISH_TOKEN)
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    let status = response.status();
    let answer: Value = guard(response.json()).await.unwrap();
    assert_eq!(status, 202, "{answer}");
    answer
}

/// `/api/v1/connections?user_id=` with the publish token.
async fn counts(server: &Server, user_id: &str) -> Value {
    let response = guard(
        http()
            .get(server.url(&format!("/api/v1/connections?user_id={user_id}")))
            .bearer_auth(PUBLISH_TOKEN)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    guard(response.json()).await.unwrap()
}

/// Publishes to the user `alice`, the topic `news` and everyone from `server`; each
/// reaches one instance only. The event types are `TAG-user`, `TAG-topic`, `TAG-all`.
async fn publish_to_every_kind_of_target(server: &Server, tag: &str) {
    for body in [
        json!({"user_id": "alice", "event": {"type": format!("{tag}-user")}}),
        json!({"topic": "news", "event": {"type": format!("{tag}-topic")}}),
        json!({"event": {"type": format!("{tag}-all")}}),
    ] {
        let answer = publish_as_backend(server, body).await;
        assert_eq!(answer["instances"], 1, "only its own instance: {answer}");
    }
}

/// Waits for the opening `retry:` of `stream`: a stream sends nothing before its
/// subscriptions are in effect and it has settled where it starts, so that nothing
/// published from then on is missed.
async fn opened(stream: &mut RawStream) {
    match guard(stream.next()).await {
        Next::Frame(frame) if frame.data.is_empty() && !frame.comment => {}
        other => panic!("the stream should open with `retry:`: {other:?}"),
    }
}

async fn event_types(stream: &mut RawStream, count: usize) -> Vec<String> {
    let mut types = Vec::new();
    while types.len() < count {
        types.push(stream.next_event().await.event);
    }
    types
}

#[tokio::test]
async fn two_prefixes_on_one_redis_share_no_event_ticket_or_count() {
    let redis = RedisServer::start();
    let a = start_with_prefix(&redis, "alpha").await;
    let b = start_with_prefix(&redis, "beta").await;
    let mut alice_on_a = subscribe_with_token(&a, "alice", &["news"]).await;
    let mut carol_on_a = subscribe_with_token(&a, "carol", &[]).await;
    let mut alice_on_b = subscribe_with_token(&b, "alice", &["news"]).await;
    for stream in [&mut alice_on_a, &mut carol_on_a, &mut alice_on_b] {
        opened(stream).await;
    }

    // Events: what A publishes reaches A's streams only, and the other way round.
    publish_to_every_kind_of_target(&a, "a").await;
    assert_eq!(
        event_types(&mut alice_on_a, 3).await,
        ["a-user", "a-topic", "a-all"]
    );
    publish_to_every_kind_of_target(&b, "b").await;
    assert_eq!(
        event_types(&mut alice_on_b, 3).await,
        ["b-user", "b-topic", "b-all"],
        "nothing of A's reached B"
    );
    publish_as_backend(
        &a,
        json!({"user_id": "alice", "event": {"type": "a-marker"}}),
    )
    .await;
    assert_eq!(
        event_types(&mut alice_on_a, 1).await,
        ["a-marker"],
        "nothing of B's reached A"
    );

    // Counts: each instance counts its own prefix's streams only.
    guard(async {
        loop {
            let (on_a, on_b) = (counts(&a, "alice").await, counts(&b, "alice").await);
            if on_a["cluster_total"] == 2 && on_b["cluster_total"] == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Several presence refreshes later, still apart.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (on_a, on_b) = (counts(&a, "alice").await, counts(&b, "alice").await);
    assert_eq!(
        (&on_a["cluster_total"], &on_a["cluster_user"]),
        (&json!(2), &json!(1)),
        "{on_a}"
    );
    assert_eq!(
        (&on_b["cluster_total"], &on_b["cluster_user"]),
        (&json!(1), &json!(1)),
        "{on_b}"
    );

    // Tickets: one issued under A's prefix is unknown under B's, and B's refusal does
    // not consume it.
    let response = guard(
        http()
            .post(a.url("/api/v1/tickets"))
            .bearer_auth(token("alice", &[]))
            .json(&json!({}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let issued: Value = guard(response.json()).await.unwrap();
    let ticket = issued["ticket"].as_str().unwrap();
    let on_b = guard(
        http()
            .get(b.url(&format!("/api/v1/sse?ticket={ticket}")))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(on_b.status(), 401);
    let refusal: Value = guard(on_b.json()).await.unwrap();
    assert_eq!(refusal["reason"], "invalid_ticket", "{refusal}");
    let on_a = guard(
        http()
            .get(a.url(&format!("/api/v1/sse?ticket={ticket}")))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(on_a.status(), 200, "the ticket is still A's to redeem");

    let keys = redis.cli(&["KEYS", "*"]);
    for key in keys.lines() {
        assert!(
            key.starts_with("alpha:") || key.starts_with("beta:"),
            "every key under a prefix: {key}"
        );
    }
}
