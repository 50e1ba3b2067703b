//! Redis faults at the library level, against real `redis-server` processes: a frozen
//! Redis, a subscription that goes silent while its socket stays open, a history that
//! cannot be read after a reconnection, resume edge cases on both brokers, and concurrent
//! publishes that share a publisher id.

use std::time::{Duration, Instant};

use eventsource_stream::Event as SseEvent;
use serde_json::{Value, json};
use sseor::{Event, Position, RESET_EVENT, Target};
use sseor_testkit::library::Server;
use sseor_testkit::redis::{RedisServer, StallingProxy, app_user, wait_for_subscribers};
use sseor_testkit::sse::{Client, Next};
use sseor_testkit::{guard, http};

use crate::common::{
    PROBE_INTERVAL, cursor, position_in, published_position, redis_builder, user, user_channel,
};

/// A shorter timeout than the usual one, so that a frozen Redis is noticed sooner.
const REDIS_TIMEOUT: Duration = Duration::from_millis(300);

async fn ready_instance(url: &str) -> Server {
    let server = Server::with(redis_builder(url).redis_timeout(REDIS_TIMEOUT)).await;
    wait_for_readyz(&server, 200).await;
    server
}

/// Polls `/readyz` until it answers `status`; returns its JSON.
async fn wait_for_readyz(server: &Server, status: u16) -> Value {
    guard(async {
        loop {
            let (seen, body) = get_json(server, "/readyz").await;
            if seen == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

async fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let response = guard(http().get(server.url(path)).send()).await.unwrap();
    let status = response.status().as_u16();
    (status, guard(response.json()).await.unwrap())
}

/// Publishes `{"n": n}` to `user` over HTTP; the status and the answer.
async fn publish_n(server: &Server, user: &str, n: u64) -> (u16, Value) {
    crate::common::publish(
        server,
        json!({"user_id": user, "event": {"type": "n", "data": {"n": n}}}),
    )
    .await
}

fn n_of(event: &SseEvent) -> Option<u64> {
    serde_json::from_str::<Value>(&event.data).ok()?["n"].as_u64()
}

/// A client that behaves as a browser's `EventSource`: when its stream ends cleanly it
/// reconnects with the last id it saw. A stream that fails is a test failure.
struct Browser {
    url: String,
    stream: Client,
    last: Option<String>,
    received: Vec<SseEvent>,
    reconnections: usize,
}

impl Browser {
    /// Opens the stream, and waits until it is live (its opening id read).
    async fn open(url: String) -> Self {
        let mut stream = Client::open(&url, None).await;
        stream.opening_id().await;
        Self {
            url,
            stream,
            last: None,
            received: Vec::new(),
            reconnections: 0,
        }
    }

    /// Reads, reconnecting after clean ends, until `done` holds for what was received.
    async fn read_until(&mut self, done: impl Fn(&[SseEvent]) -> bool) {
        guard(async {
            while !done(&self.received) {
                match self.stream.next_or_ending().await {
                    Next::Event(event) => self.received.push(event),
                    Next::End => {
                        // The last id it saw, an id-only block's included.
                        let last = self.stream.last_id();
                        if !last.is_empty() {
                            self.last = Some(last.to_owned());
                        }
                        self.reconnections += 1;
                        self.stream = Client::open(&self.url, self.last.as_deref()).await;
                    }
                    Next::CutOff(e) => panic!("the stream failed instead of ending: {e}"),
                }
            }
        })
        .await;
    }

    /// The `n` of every event received, in order; resets show as `None`.
    fn numbers(&self) -> Vec<Option<u64>> {
        self.received.iter().map(n_of).collect()
    }

    fn resets(&self) -> usize {
        self.received
            .iter()
            .filter(|event| event.event == RESET_EVENT)
            .count()
    }
}

/// True once every number of `expected` was received.
fn has_all(expected: &[u64]) -> impl Fn(&[SseEvent]) -> bool + '_ {
    move |received| {
        expected
            .iter()
            .all(|n| received.iter().any(|event| n_of(event) == Some(*n)))
    }
}

#[tokio::test]
async fn a_frozen_redis_turns_not_ready_refuses_publishes_with_503_and_loses_no_acknowledged_event()
{
    let redis = RedisServer::start();
    let server = ready_instance(&redis.url()).await;
    let mut browser = Browser::open(server.url("/api/v1/sse?user_id=fay")).await;
    wait_for_subscribers(&redis, &user_channel("fay"), "1").await;
    let mut acknowledged = Vec::new();
    for n in 0..2 {
        assert_eq!(publish_n(&server, "fay", n).await.0, 202);
        acknowledged.push(n);
    }
    browser.read_until(has_all(&acknowledged)).await;

    redis.pause();
    let frozen = Instant::now();
    let not_ready = wait_for_readyz(&server, 503).await;
    eprintln!(
        "frozen Redis noticed after {:?}: {not_ready}",
        frozen.elapsed()
    );
    assert!(
        not_ready["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{not_ready}"
    );
    let (status, refused) = publish_n(&server, "fay", 100).await;
    assert_eq!(status, 503, "a publish to a frozen Redis: {refused}");
    assert!(
        refused["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{refused}"
    );
    // Frozen for longer than three probe intervals and a command timeout.
    let outage = PROBE_INTERVAL * 3 + REDIS_TIMEOUT + Duration::from_millis(600);
    tokio::time::sleep(outage.saturating_sub(frozen.elapsed())).await;
    assert_eq!(get_json(&server, "/readyz").await.0, 503, "still frozen");
    redis.resume();
    let thawed = Instant::now();
    wait_for_readyz(&server, 200).await;
    eprintln!("ready again {:?} after the thaw", thawed.elapsed());

    for n in 2..5 {
        // The command connection may need a moment after the thaw: retry refusals only.
        guard(async {
            while publish_n(&server, "fay", n).await.0 != 202 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        acknowledged.push(n);
    }
    browser.read_until(has_all(&acknowledged)).await;
    assert_eq!(browser.resets(), 0, "Redis kept its data: nothing to reset");
    assert_eq!(browser.reconnections, 0, "the stream stayed open");
    // The refused publish may have run once Redis thawed; every acknowledged one arrived
    // once, in order.
    let delivered: Vec<u64> = browser
        .numbers()
        .into_iter()
        .flatten()
        .filter(|n| *n != 100)
        .collect();
    assert_eq!(delivered, acknowledged);
}

#[tokio::test]
async fn a_subscription_silent_behind_an_open_socket_is_noticed_and_its_open_streams_lose_nothing()
{
    let redis = RedisServer::start();
    let proxy = StallingProxy::start(redis.port);
    let server = ready_instance(&proxy.url()).await;
    let mut browser = Browser::open(server.url("/api/v1/sse?user_id=gil")).await;
    wait_for_subscribers(&redis, &user_channel("gil"), "1").await;
    for n in 0..2 {
        assert_eq!(publish_n(&server, "gil", n).await.0, 202);
    }
    browser.read_until(has_all(&[0, 1])).await;

    // The subscription's socket stays open, but nothing comes through it any more.
    proxy.stall_subscriptions();
    let stalled = Instant::now();
    let not_ready = wait_for_readyz(&server, 503).await;
    eprintln!(
        "silent subscription noticed after {:?}: {not_ready}",
        stalled.elapsed()
    );
    // Commands still work: these publishes are acknowledged, and must not be lost.
    for n in 2..12 {
        let (status, answer) = publish_n(&server, "gil", n).await;
        assert_eq!(status, 202, "{answer}");
    }
    tokio::time::sleep(PROBE_INTERVAL * 5).await;
    assert_eq!(
        get_json(&server, "/readyz").await.0,
        503,
        "not ready while no subscription works"
    );
    proxy.heal();
    let healed = Instant::now();
    wait_for_readyz(&server, 200).await;
    eprintln!("ready again {:?} after the path healed", healed.elapsed());
    for n in 12..15 {
        assert_eq!(publish_n(&server, "gil", n).await.0, 202);
    }
    let all: Vec<u64> = (0..15).collect();
    browser.read_until(has_all(&all)).await;
    assert_eq!(browser.resets(), 0, "the history had every event");
    assert_eq!(
        browser.numbers(),
        all.iter().copied().map(Some).collect::<Vec<_>>(),
        "every acknowledged event once, in order"
    );
    assert_eq!(
        browser.reconnections, 0,
        "the stream stayed open, and got what it missed from the history"
    );
}

#[tokio::test]
async fn when_what_was_missed_cannot_be_read_the_streams_wait_open_until_it_can() {
    let redis = RedisServer::start();
    let url = app_user(&redis);
    let server = ready_instance(&url).await;
    let stream_url = server.url("/api/v1/sse?user_id=hal");
    let mut stream = Client::open(&stream_url, None).await;
    stream.opening_id().await;
    wait_for_subscribers(&redis, &user_channel("hal"), "1").await;
    for n in 0..3 {
        server
            .manager
            .publish("hal", Event::new("n").with_data(json!({ "n": n })))
            .await
            .unwrap();
        assert_eq!(n_of(&stream.next_event().await), Some(n));
    }

    // Reads are refused from now on; subscribing still works. The subscription is cut:
    // once back, the instance cannot tell whether its streams missed events, so it is not
    // ready, and tries again; the streams wait, open.
    assert_eq!(redis.cli(&["ACL", "SETUSER", "app", "-@read"]), "OK");
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    wait_for_readyz(&server, 503).await;
    assert_eq!(
        server.manager.total_connections(),
        1,
        "the stream stays open"
    );

    assert_eq!(redis.cli(&["ACL", "SETUSER", "app", "+@all"]), "OK");
    wait_for_readyz(&server, 200).await;
    server
        .manager
        .publish("hal", Event::new("n").with_data(json!({ "n": 3 })))
        .await
        .unwrap();
    let next = stream.next_event().await;
    assert_eq!(
        (next.event.as_str(), n_of(&next)),
        ("n", Some(3)),
        "the same stream goes on; nothing was missed, so no reset: {next:?}"
    );
}

#[tokio::test]
async fn a_resume_while_history_cannot_be_read_gets_a_reset_then_live() {
    let redis = RedisServer::start();
    let url = app_user(&redis);
    let server = ready_instance(&url).await;
    let stream_url = server.url("/api/v1/sse?user_id=ike");
    let mut stream = Client::open(&stream_url, None).await;
    stream.opening_id().await;
    server
        .manager
        .publish("ike", Event::new("n").with_data(json!({ "n": 0 })))
        .await
        .unwrap();
    let first = stream.next_event().await;
    drop(stream);
    server
        .manager
        .publish("ike", Event::new("n").with_data(json!({ "n": 1 })))
        .await
        .unwrap();

    assert_eq!(redis.cli(&["ACL", "SETUSER", "app", "-@read"]), "OK");
    let mut resumed = Client::open(&stream_url, Some(&first.id)).await;
    let reset = resumed.next_event().await;
    assert_eq!(reset.event, RESET_EVENT, "{reset:?}");
    let reason = serde_json::from_str::<Value>(&reset.data).unwrap()["reason"].clone();
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("cannot be read")),
        "{reason}"
    );
    assert!(!reason.to_string().contains("app-pass"), "{reason}");

    assert_eq!(redis.cli(&["ACL", "SETUSER", "app", "+@all"]), "OK");
    wait_for_subscribers(&redis, &user_channel("ike"), "1").await;
    let live = server
        .manager
        .publish("ike", Event::new("n").with_data(json!({ "n": 2 })))
        .await
        .unwrap();
    let next = resumed.next_event().await;
    assert_eq!(
        (n_of(&next), position_in(&next.id, &user("ike"))),
        (Some(2), published_position(&live))
    );
}

/// How a resume from one last id was answered: the first event's type, what kind of
/// reason it gave, whether its id is the stream's cursor at the latest position, and
/// whether live events follow.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    edge: &'static str,
    event: String,
    reason: &'static str,
    carries_current_position: bool,
    then_live: bool,
}

/// The reasons a reset may give, by the words that tell them apart.
const REASONS: [&str; 4] = [
    "not a position",
    "gone",
    "not been reached",
    "older than the history",
];

/// Resumes `u` on `server` from malformed ids, ids of the former formats, a cursor in the
/// future and one of another epoch, and says how each was answered.
async fn answers_to_edge_positions(server: &Server, redis: Option<&RedisServer>) -> Vec<Answer> {
    let url = server.url("/api/v1/sse?user_id=u");
    let u = user("u");
    // The stream's cursor with `u` at `position`, and no broadcast ever.
    let at = |position| cursor(&[(u.clone(), position), (Target::All, Position::default())]);
    let current = server
        .manager
        .publish("u", Event::new("n").with_data(json!({ "n": 0 })))
        .await
        .unwrap();
    let mut now = published_position(&current);
    let edges = [
        ("empty", String::new()),
        ("words", "not-a-position".to_owned()),
        ("5000 digits", "9".repeat(5000)),
        ("negative", "-1".to_owned()),
        ("three words", "a-b-c".to_owned()),
        ("a position, not a cursor", now.to_string()),
        (
            "the former format",
            format!("{:x}-1764331200000-{}", now.epoch(), now.seq()),
        ),
        ("another version", at(now).replacen("1.", "2.", 1)),
        ("not base64", "1.!!!!".to_owned()),
        (
            "the future",
            at(Position::new(now.epoch(), now.seq() + 10_000)),
        ),
        (
            "another epoch",
            at(Position::new(now.epoch().wrapping_add(1).max(1), now.seq())),
        ),
    ];
    let mut answers = Vec::new();
    for (edge, last) in edges {
        let mut stream = Client::open(&url, Some(&last)).await;
        let first = stream.next_event().await;
        let reason = serde_json::from_str::<Value>(&first.data)
            .ok()
            .and_then(|data| data["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if let Some(redis) = redis {
            wait_for_subscribers(redis, &user_channel("u"), "1").await;
        }
        let live = server
            .manager
            .publish("u", Event::new("n").with_data(json!({ "n": 1 })))
            .await
            .unwrap();
        let carries_current_position = first.id == at(now);
        now = published_position(&live);
        let next = stream.next_event().await;
        answers.push(Answer {
            edge,
            event: first.event,
            reason: REASONS
                .into_iter()
                .find(|words| reason.contains(words))
                .unwrap_or("other"),
            carries_current_position,
            then_live: next.id == at(now),
        });
        drop(stream);
        if let Some(redis) = redis {
            wait_for_subscribers(redis, &user_channel("u"), "0").await;
        }
    }
    answers
}

#[tokio::test]
async fn malformed_future_and_other_epoch_positions_get_the_same_answer_on_both_brokers() {
    let embedded = Server::start().await;
    let on_memory = answers_to_edge_positions(&embedded, None).await;
    for answer in &on_memory {
        assert_eq!(answer.event, RESET_EVENT, "{answer:?}");
        assert!(answer.carries_current_position, "{answer:?}");
        assert!(answer.then_live, "{answer:?}");
        assert_ne!(answer.reason, "other", "{answer:?}");
    }
    let redis = RedisServer::start();
    let on_redis = ready_instance(&redis.url()).await;
    let on_redis = answers_to_edge_positions(&on_redis, Some(&redis)).await;
    assert_eq!(on_redis, on_memory);
}

/// Fires 20 pairs of publishes, each pair at once with the same publisher id, over HTTP
/// to one user; checks the answers, then that the user's stream got each event once.
async fn concurrent_duplicates_are_sent_once(server: &Server, redis: Option<&RedisServer>) {
    let mut stream = Client::open(&server.url("/api/v1/sse?user_id=dup"), None).await;
    match redis {
        Some(redis) => wait_for_subscribers(redis, &user_channel("dup"), "1").await,
        None => server.wait_for_total(1).await,
    }
    stream.opening_id().await;
    let mut positions = Vec::new();
    for n in 0..20u64 {
        let body = json!({"user_id": "dup", "event": {"type": "n", "id": format!("order-{n}"), "data": {"n": n}}});
        let ((first_status, first), (second_status, second)) = tokio::join!(
            crate::common::publish(server, body.clone()),
            crate::common::publish(server, body)
        );
        assert_eq!(
            (first_status, second_status),
            (202, 202),
            "{first} {second}"
        );
        assert_eq!(first["id"], second["id"], "one position for both");
        let duplicates = [&first, &second]
            .iter()
            .filter(|answer| answer["duplicate"] == json!(true))
            .count();
        assert_eq!(
            duplicates, 1,
            "exactly one is the duplicate: {first} {second}"
        );
        positions.push(first["id"].as_str().unwrap().parse::<Position>().unwrap());
    }
    let marker = server
        .manager
        .publish("dup", Event::new("marker"))
        .await
        .unwrap();
    let mut received = Vec::new();
    loop {
        let event = stream.next_event().await;
        let position = position_in(&event.id, &user("dup"));
        if position == published_position(&marker) {
            break;
        }
        received.push((n_of(&event).unwrap(), position));
    }
    let expected: Vec<(u64, Position)> = (0..20).zip(positions).collect();
    assert_eq!(
        received, expected,
        "each event once, at the position answered"
    );
}

#[tokio::test]
async fn concurrent_publishes_with_one_publisher_id_are_delivered_once_on_both_brokers() {
    let embedded = Server::start().await;
    concurrent_duplicates_are_sent_once(&embedded, None).await;
    let redis = RedisServer::start();
    let on_redis = ready_instance(&redis.url()).await;
    concurrent_duplicates_are_sent_once(&on_redis, Some(&redis)).await;
}
