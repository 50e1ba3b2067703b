//! The metrics of the real `sseor` binary as operators scrape them: every family provoked
//! (streams opened and closed for each reason a single instance can show, refusals by a
//! connection limit, authentication failures, publishes by target kind), the values and
//! label values production emits, and a snapshot of every metric name with its label
//! keys, so that a dashboard built on them cannot break without this file changing too.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sseor_testkit::raw::{Ending, Options, RawStream};
use sseor_testkit::server::{Server, command};
use sseor_testkit::sse::Client;
use sseor_testkit::{guard, http};

use crate::SSEOR;

/// The HS256 secret of the server started here (at least 32 bytes).
const SECRET: &str = "sseor-test-secret-0123456789abcdef";

/// The publish token of the server started here.
const PUBLISH_TOKEN: &str = "sseor-test-publish-token-42";

/// Every metric the server exposes, as `name{label keys}`, sorted. Dashboards and alerts
/// are built on these: a change here is a change operators must hear about.
const METRIC_SNAPSHOT: &[&str] = &[
    "sseor_auth_failures_total{reason}",
    "sseor_connected_users",
    "sseor_connections",
    "sseor_connections_closed_total{reason}",
    "sseor_connections_refused_total{limit}",
    "sseor_events_delivered_total",
    "sseor_events_published_total{target}",
    "sseor_publish_duration_seconds_bucket{le}",
    "sseor_publish_duration_seconds_count",
    "sseor_publish_duration_seconds_sum",
    "sseor_ready",
    "sseor_redis_reconnects_total",
    "sseor_webhook_changes_delivered_total",
    "sseor_webhook_changes_dropped_total",
    "sseor_webhook_changes_failed_total",
    "sseor_webhook_requests_failed_total",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub`, expiring at `exp`.
fn token(sub: &str, exp: u64) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `sseor` with authentication, one stream per user, and a small queue per stream.
async fn start() -> Server {
    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .args(["--jwt-leeway", "0s", "--max-connections-per-user", "1"])
        .args(["--queue-capacity", "4", "--queue-bytes", "65536"])
        .env("SSEOR_JWT_SECRET", SECRET)
        .env("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN);
    Server::spawn(command).await
}

/// A GET of `path` with `Authorization: Bearer token` (if any).
async fn get(server: &Server, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = http().get(server.url(path));
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    guard(request.send()).await.unwrap()
}

/// Publishes `body` with the publish token; the answer must be 202.
async fn publish(server: &Server, body: &Value) {
    let response = guard(
        http()
            .post(server.url("/api/v1/publish"))
            .header("authorization", bearer(PUBLISH_TOKEN))
            .json(body)
            .send(),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    let answer = guard(response.text()).await.unwrap();
    assert_eq!(status, 202, "{answer}");
}

/// How many streams `user_id` has on `server`, asked with the publish token.
async fn user_streams(server: &Server, user_id: &str) -> Value {
    let response = get(
        server,
        &format!("/api/v1/connections?user_id={user_id}"),
        Some(PUBLISH_TOKEN),
    )
    .await;
    let counts: Value = response.json().await.unwrap();
    counts["user"].clone()
}

/// Polls (with the publish token) until `user_id` has `expected` streams.
async fn wait_for_user(server: &Server, user_id: &str, expected: u64) {
    guard(async {
        loop {
            if user_streams(server, user_id).await == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn scrape(server: &Server) -> String {
    let response = get(server, "/metrics", None).await;
    assert_eq!(response.status(), 200);
    guard(response.text()).await.unwrap()
}

/// `name{key1,key2}` of a sample line `name{key1="v",key2="w"} value`.
fn name_and_label_keys(sample: &str) -> String {
    let series = sample.rsplit_once(' ').map_or(sample, |(series, _)| series);
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_owned();
    };
    let keys: Vec<&str> = labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| pair.split_once('=').map(|(key, _)| key))
        .collect();
    format!("{name}{{{}}}", keys.join(","))
}

/// The sorted, distinct `name{label keys}` of every sample in `text`.
fn snapshot_of(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(name_and_label_keys)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The families `# TYPE` announces.
fn families_of(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect()
}

fn assert_sample(text: &str, sample: &str) {
    assert!(
        text.lines().any(|line| line == sample),
        "missing `{sample}`:\n{text}"
    );
}

/// Opens a stream for `user` that never reads, and publishes to it until the server cuts
/// it off as a slow consumer.
async fn provoke_a_slow_consumer(server: &Server, user: &str) {
    let auth = bearer(&token(user, now() + 600));
    let options = Options {
        recv_buffer: Some(4096),
        from: None,
    };
    let path = format!("/api/v1/sse?user_id={user}");
    let mut stalled = guard(RawStream::open(
        server.addr,
        &path,
        &[("authorization", &auth)],
        options,
    ))
    .await
    .expect("the stream opens");
    wait_for_user(server, user, 1).await;
    // Large events (the body limit is 64 KiB) fill the socket buffers in few publishes.
    let pad = "x".repeat(48 * 1024);
    guard(async {
        for n in 0.. {
            let event = json!({"type": "big", "data": {"n": n, "pad": pad}});
            publish(server, &json!({"user_id": user, "event": event})).await;
            if user_streams(server, user).await == 0 {
                return;
            }
        }
    })
    .await;
    guard(stalled.read_to_end()).await;
    assert_eq!(stalled.ending(), Some(Ending::Cut));
}

#[tokio::test]
async fn every_metric_is_provoked_and_their_names_and_labels_are_pinned() {
    let server = start().await;

    // A stream opens; a second one of the same user is over the per-user limit.
    let alice = token("alice", now() + 600);
    let mut stream = Client::from_response(get(&server, "/api/v1/sse", Some(&alice)).await);
    wait_for_user(&server, "alice", 1).await;
    assert_eq!(
        get(&server, "/api/v1/sse", Some(&alice)).await.status(),
        429
    );

    // Authentication failures: no credential, an expired token.
    assert_eq!(get(&server, "/api/v1/sse", None).await.status(), 401);
    let expired = token("alice", now() - 120);
    assert_eq!(
        get(&server, "/api/v1/sse", Some(&expired)).await.status(),
        401
    );

    // One publish of each target kind; alice receives two of them.
    publish(
        &server,
        &json!({"user_id": "alice", "event": {"type": "one"}}),
    )
    .await;
    publish(
        &server,
        &json!({"topic": "prices", "event": {"type": "two"}}),
    )
    .await;
    publish(&server, &json!({"event": {"type": "three"}})).await;
    assert_eq!(stream.next_event().await.event, "one");
    assert_eq!(stream.next_event().await.event, "three");

    let open = scrape(&server).await;
    assert_sample(&open, "sseor_connections 1");
    assert_sample(&open, "sseor_connected_users 1");
    assert_sample(&open, "sseor_events_delivered_total 2");

    // Closes: the client leaves, a client stops reading, a token expires.
    drop(stream);
    wait_for_user(&server, "alice", 0).await;
    provoke_a_slow_consumer(&server, "slow").await;
    let expiring = token("carol", now() + 2);
    let mut carol = Client::from_response(get(&server, "/api/v1/sse", Some(&expiring)).await);
    carol
        .read_to_end()
        .await
        .expect("an expired stream ends cleanly");

    let text = scrape(&server).await;
    for sample in [
        "sseor_connections 0",
        "sseor_connected_users 0",
        "sseor_ready 1",
        "sseor_redis_reconnects_total 0",
        // No webhook set: nothing to count (tests/it/webhook.rs sets one).
        "sseor_webhook_changes_delivered_total 0",
        "sseor_webhook_changes_dropped_total 0",
        "sseor_connections_refused_total{limit=\"max_connections_per_user\"} 1",
        "sseor_auth_failures_total{reason=\"missing\"} 1",
        "sseor_auth_failures_total{reason=\"expired\"} 1",
        "sseor_connections_closed_total{reason=\"client_left\"} 1",
        "sseor_connections_closed_total{reason=\"slow_consumer\"} 1",
        "sseor_connections_closed_total{reason=\"expired\"} 1",
        "sseor_events_published_total{target=\"topic\"} 1",
        "sseor_events_published_total{target=\"all\"} 1",
    ] {
        assert_sample(&text, sample);
    }
    let user_publishes = text
        .lines()
        .find_map(|line| line.strip_prefix("sseor_events_published_total{target=\"user\"} "))
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no publishes to users:\n{text}"));
    assert!(user_publishes > 1, "{text}");

    let snapshot = snapshot_of(&text);
    assert_eq!(
        snapshot, METRIC_SNAPSHOT,
        "the metric names or label keys changed: update METRIC_SNAPSHOT and the README \
         together\n{text}"
    );
    // Every family announced has a sample above: none goes unchecked.
    for family in families_of(&text) {
        assert!(
            snapshot.iter().any(|entry| entry.starts_with(family)),
            "`{family}` has no sample:\n{text}"
        );
    }
}
