//! Authentication and authorization of the real `sseor` binary: JWT subscribers (HS256,
//! RS256, ES256), publishers, stream tickets (across two instances on one Redis), the
//! publish rate limit, the rules for listening without authentication, and secrets kept
//! out of the output.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sseor_testkit::keys::KeyFiles;
use sseor_testkit::redis::RedisServer;
use sseor_testkit::server::{Server, command, run_to_exit};
use sseor_testkit::sse::{EventsWithData, events_of};
use sseor_testkit::{guard, http};

use crate::SSEOR;

/// The HS256 secret of the servers started here (at least 32 bytes).
const SECRET: &str = "sseor-test-secret-0123456789abcdef";

/// The publish token of the servers started here.
pub(crate) const PUBLISH_TOKEN: &str = "sseor-test-publish-token-42";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a subscriber token for `sub`, valid for ten minutes.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600})
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        claims,
    )
}

/// A token whose header says `alg: none` and that has no signature.
fn unsigned(claims: &Value) -> String {
    let b64 = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// A directory for key files, removed when dropped.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// A key pair made now (see [`KeyFiles`]) that signs tokens.
struct KeyPair(KeyFiles);

impl KeyPair {
    fn rsa(dir: &TempDir, name: &str) -> Self {
        Self(KeyFiles::rsa(dir.0.path(), name))
    }

    fn p256(dir: &TempDir, name: &str) -> Self {
        Self(KeyFiles::p256(dir.0.path(), name))
    }

    /// The path of the public key (PEM) for the server.
    fn public(&self) -> &Path {
        &self.0.public
    }

    fn sign(&self, algorithm: Algorithm, claims: &Value) -> String {
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.0.private_pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(self.0.private_pem.as_bytes()).unwrap(),
        };
        sign(algorithm, &key, claims)
    }
}

/// `sseor` with `envs` and `args`, logging JSON, on a free port.
async fn start(envs: &[(&str, &str)], args: &[&str]) -> Server {
    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .args(args)
        .envs(envs.iter().copied());
    Server::spawn(command).await
}

/// `sseor` checking HS256 tokens with [`SECRET`], publishing with [`PUBLISH_TOKEN`].
async fn start_hs256(args: &[&str]) -> Server {
    start(
        &[
            ("SSEOR_JWT_SECRET", SECRET),
            ("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN),
        ],
        args,
    )
    .await
}

/// A GET of `path` with `headers`.
pub(crate) async fn get(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http().get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    guard(request.send()).await.unwrap()
}

/// A POST of `body` to `path` with `headers`; the status and the JSON answer.
pub(crate) async fn post(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let mut request = http()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = guard(request.send()).await.unwrap();
    let status = response.status().as_u16();
    (status, guard(response.json()).await.unwrap())
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Publishes `event_type` to the user `user_id` with the publish token.
pub(crate) async fn publish_to_user(server: &Server, user_id: &str, event_type: &str) {
    let body = json!({"user_id": user_id, "event": {"type": event_type}});
    let auth = bearer(PUBLISH_TOKEN);
    let (status, answer) = post(
        server,
        "/api/v1/publish",
        &[("authorization", &auth)],
        &body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
}

/// Asserts that `response` is a refusal with `status`, `WWW-Authenticate: Bearer` and the
/// JSON `{"error", "reason": reason}`.
pub(crate) async fn assert_refused(response: reqwest::Response, status: u16, reason: &str) {
    assert_eq!(response.status().as_u16(), status, "expected {reason}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{reason}: {challenge:?}");
    let body: Value = guard(response.json()).await.unwrap();
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

/// Opens the stream at `path` with `headers`, publishes to `user_id`, and expects the
/// event on the stream.
async fn assert_streams(server: &Server, path: &str, headers: &[(&str, &str)], user_id: &str) {
    let response = get(server, path, headers).await;
    assert_eq!(response.status(), 200, "{path}");
    let mut events = events_of(response);
    wait_for_user(server, user_id, 1).await;
    publish_to_user(server, user_id, "hello").await;
    let event = guard(events.next()).await.expect("the stream ended");
    assert_eq!(event.event, "hello");
}

/// Opens the `prices` stream with the bearer `token` of alice, once it counts as hers.
async fn alice_on_prices(server: &Server, token: &str) -> EventsWithData {
    let auth = bearer(token);
    let response = get(
        server,
        "/api/v1/sse?topic=prices",
        &[("authorization", &auth)],
    )
    .await;
    let events = events_of(response);
    wait_for_user(server, "alice", 1).await;
    events
}

/// Polls (with the publish token) until `user_id` has `expected` connections.
pub(crate) async fn wait_for_user(server: &Server, user_id: &str, expected: u64) {
    let auth = bearer(PUBLISH_TOKEN);
    guard(async {
        loop {
            let response = get(
                server,
                &format!("/api/v1/connections?user_id={user_id}"),
                &[("authorization", &auth)],
            )
            .await;
            assert_eq!(response.status(), 200);
            let counts: Value = response.json().await.unwrap();
            if counts["user"] == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn hs256_rs256_and_es256_tokens_open_streams_with_their_topics() {
    let keys = TempDir::new();
    let rsa = KeyPair::rsa(&keys, "rsa");
    let ec = KeyPair::p256(&keys, "ec");
    let token_claims = json!({"sub": "alice", "exp": now() + 600, "topics": ["prices"]});
    let cases = [
        ("SSEOR_JWT_SECRET", SECRET.to_owned(), hs256(&token_claims)),
        (
            "SSEOR_JWT_PUBLIC_KEY",
            rsa.public().to_str().unwrap().to_owned(),
            rsa.sign(Algorithm::RS256, &token_claims),
        ),
        (
            "SSEOR_JWT_PUBLIC_KEY",
            ec.public().to_str().unwrap().to_owned(),
            ec.sign(Algorithm::ES256, &token_claims),
        ),
    ];
    for (variable, value, token) in cases {
        let server = start(
            &[(variable, &value), ("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN)],
            &[],
        )
        .await;
        let mut events = alice_on_prices(&server, &token).await;
        publish_to_user(&server, "alice", "to-alice").await;
        let topic = json!({"topic": "prices", "event": {"type": "to-prices", "data": {"p": 1}}});
        let publisher = bearer(PUBLISH_TOKEN);
        let (status, _) = post(
            &server,
            "/api/v1/publish",
            &[("authorization", &publisher)],
            &topic,
        )
        .await;
        assert_eq!(status, 202);
        let received: Vec<String> = guard(events.by_ref().take(2).map(|e| e.event).collect()).await;
        assert_eq!(received, ["to-alice", "to-prices"], "{variable}");
    }
}

#[tokio::test]
async fn refused_tokens_get_401_with_their_reason() {
    let keys = TempDir::new();
    let rsa = KeyPair::rsa(&keys, "rsa");
    let server = start_hs256(&[]).await;
    let wrong_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, just as long as the right one").unwrap(),
        &claims("alice"),
    );
    let cases = [
        ("missing", None),
        (
            "expired",
            Some(hs256(&json!({"sub": "alice", "exp": now() - 120}))),
        ),
        (
            "not_yet_valid",
            Some(hs256(
                &json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300}),
            )),
        ),
        ("bad_signature", Some(wrong_secret)),
        (
            "bad_algorithm",
            Some(rsa.sign(Algorithm::RS256, &claims("alice"))),
        ),
        ("bad_algorithm", Some(unsigned(&claims("alice")))),
        ("malformed", Some("not-a-jwt".to_owned())),
        ("malformed", Some(hs256(&json!({"sub": "alice"})))),
        ("malformed", Some(hs256(&json!({"exp": now() + 600})))),
        (
            "malformed",
            Some(hs256(
                &json!({"sub": "alice", "exp": now() + 600, "topics": "prices"}),
            )),
        ),
    ];
    for (reason, token) in cases {
        let auth = token.as_deref().map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let response = get(&server, "/api/v1/sse?user_id=alice", &headers).await;
        assert_refused(response, 401, reason).await;
    }
    assert_eq!(
        server
            .log_messages()
            .iter()
            .filter(|m| m.contains("panic"))
            .count(),
        0
    );
}

#[tokio::test]
async fn public_key_servers_refuse_other_keys_and_algorithm_confusion() {
    let keys = TempDir::new();
    let rsa = KeyPair::rsa(&keys, "rsa");
    let other = KeyPair::rsa(&keys, "other");
    let public_pem = std::fs::read(rsa.public()).unwrap();
    let server = start(
        &[("SSEOR_JWT_PUBLIC_KEY", rsa.public().to_str().unwrap())],
        &[],
    )
    .await;
    // HS256 "signed" with the public key's text: accepted by servers that use the key as
    // an HMAC secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem).unwrap(),
        &claims("alice"),
    );
    let cases = [
        (
            "bad_signature",
            other.sign(Algorithm::RS256, &claims("alice")),
        ),
        ("bad_algorithm", confused),
        (
            "bad_algorithm",
            rsa.sign(Algorithm::RS512, &claims("alice")),
        ),
        ("bad_algorithm", unsigned(&claims("alice"))),
    ];
    for (reason, token) in cases {
        let auth = bearer(&token);
        let response = get(&server, "/api/v1/sse", &[("authorization", &auth)]).await;
        assert_refused(response, 401, reason).await;
    }
    let auth = bearer(&rsa.sign(Algorithm::RS256, &claims("alice")));
    assert_eq!(
        get(&server, "/api/v1/sse", &[("authorization", &auth)])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn another_users_stream_and_topics_not_granted_are_403() {
    let server = start_hs256(&[]).await;
    let token = hs256(&json!({"sub": "alice", "exp": now() + 600, "topics": ["prices"]}));
    let auth = bearer(&token);
    let headers = [("authorization", auth.as_str())];
    for path in [
        "/api/v1/sse?user_id=bob",
        "/api/v1/sse?user_id=alice&user_id=bob",
    ] {
        assert_refused(get(&server, path, &headers).await, 403, "forbidden_user").await;
    }
    for path in [
        "/api/v1/sse?topic=news",
        "/api/v1/sse?user_id=alice&topic=prices&topic=news",
    ] {
        assert_refused(get(&server, path, &headers).await, 403, "forbidden_topic").await;
    }
    let metrics = get(&server, "/metrics", &[]).await.text().await.unwrap();
    for line in [
        "sseor_auth_failures_total{reason=\"forbidden_user\"} 2",
        "sseor_auth_failures_total{reason=\"forbidden_topic\"} 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}`:\n{metrics}"
        );
    }
    assert_streams(
        &server,
        "/api/v1/sse?user_id=alice&topic=prices",
        &headers,
        "alice",
    )
    .await;

    // "*" grants every topic.
    let everything = bearer(&hs256(
        &json!({"sub": "carol", "exp": now() + 600, "topics": ["*"]}),
    ));
    let response = get(
        &server,
        "/api/v1/sse?topic=news&topic=sports",
        &[("authorization", &everything)],
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn tokens_in_the_header_a_cookie_and_the_query_open_streams() {
    let server = start_hs256(&["--auth-cookie", "session_jwt"]).await;
    let alice = hs256(&claims("alice"));
    let auth = bearer(&alice);
    assert_streams(&server, "/api/v1/sse", &[("authorization", &auth)], "alice").await;

    let bob = hs256(&claims("bob"));
    let cookie = format!("theme=dark; session_jwt={bob}");
    assert_streams(&server, "/api/v1/sse", &[("cookie", &cookie)], "bob").await;
    // The default cookie name is not read when another is configured.
    let default_cookie = format!("sseor_token={bob}");
    assert_refused(
        get(&server, "/api/v1/sse", &[("cookie", &default_cookie)]).await,
        401,
        "missing",
    )
    .await;

    let carol = hs256(&claims("carol"));
    assert_streams(&server, &format!("/api/v1/sse?token={carol}"), &[], "carol").await;
}

/// How much later than its token's expiry plus the leeway a stream may end: the deadline
/// queue's own delay and a busy machine, not a tolerance of the server's clock.
const EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// Opens a stream with a token that expires in 2 s on a server started with
/// `--jwt-leeway leeway`, and checks that the stream ends cleanly (with the chunked
/// terminator) between the expiry plus the leeway and that plus [`EXPIRY_MARGIN`], that
/// it is counted as expired, and that the token opens no new stream afterwards.
async fn a_stream_ends_cleanly_at_expiry_plus(leeway: Duration) {
    let server = start_hs256(&["--jwt-leeway", &format!("{}s", leeway.as_secs())]).await;
    let exp = now() + 2;
    let token = hs256(&json!({"sub": "alice", "exp": exp}));
    let auth = bearer(&token);
    let response = get(&server, "/api/v1/sse", &[("authorization", &auth)]).await;
    assert_eq!(response.status(), 200);
    // A stream cut off without its closing chunk fails here instead of ending.
    let mut bytes = response.bytes_stream();
    let mut received = Vec::new();
    guard(async {
        while let Some(chunk) = bytes.next().await {
            received.extend_from_slice(&chunk.expect("the stream ended with an error"));
        }
    })
    .await;
    let ended_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let closes_at = Duration::from_secs(exp) + leeway;
    assert!(
        ended_at >= closes_at,
        "ended {:?} before its token expired (plus leeway {leeway:?})",
        closes_at - ended_at
    );
    assert!(
        ended_at <= closes_at + EXPIRY_MARGIN,
        "ended {:?} after its token expired (plus leeway {leeway:?})",
        ended_at - closes_at
    );
    assert!(
        received.starts_with(b"retry:"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    wait_for_user(&server, "alice", 0).await;
    let metrics = get(&server, "/metrics", &[]).await.text().await.unwrap();
    assert!(
        metrics.contains("sseor_connections_closed_total{reason=\"expired\"} 1\n"),
        "{metrics}"
    );
    // The same token no longer opens one.
    assert_refused(
        get(&server, "/api/v1/sse", &[("authorization", &auth)]).await,
        401,
        "expired",
    )
    .await;
}

#[tokio::test]
async fn a_stream_ends_cleanly_when_its_token_expires() {
    a_stream_ends_cleanly_at_expiry_plus(Duration::ZERO).await;
}

#[tokio::test]
async fn with_a_leeway_a_stream_ends_cleanly_that_long_after_its_token_expires() {
    a_stream_ends_cleanly_at_expiry_plus(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn publishing_and_counts_need_a_publishers_credential() {
    let server = start_hs256(&[]).await;
    let body = json!({"user_id": "alice", "event": {"type": "x"}});
    let publish = |headers: Vec<(&'static str, String)>| {
        let server = &server;
        let body = &body;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            post(server, "/api/v1/publish", &headers, body).await
        }
    };
    let subscriber = hs256(&claims("alice"));
    let publisher_jwt = hs256(&json!({"sub": "billing", "exp": now() + 600, "publish": true}));

    let (status, answer) = publish(vec![]).await;
    assert_eq!(
        (status, &answer["reason"]),
        (401, &json!("missing")),
        "{answer}"
    );
    let (status, answer) = publish(vec![("authorization", bearer(&subscriber))]).await;
    assert_eq!(
        (status, &answer["reason"]),
        (403, &json!("forbidden_publish")),
        "{answer}"
    );
    let (status, answer) = publish(vec![("authorization", bearer("a-wrong-publish-token"))]).await;
    assert_eq!(
        (status, &answer["reason"]),
        (401, &json!("malformed")),
        "{answer}"
    );
    // The publish token counts in the header only: not in a cookie, not in the URL.
    let (status, _) = publish(vec![("cookie", format!("sseor_token={PUBLISH_TOKEN}"))]).await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &server,
        &format!("/api/v1/publish?token={publisher_jwt}"),
        &[],
        &body,
    )
    .await;
    assert_eq!(status, 401);

    let (status, answer) = publish(vec![("authorization", bearer(PUBLISH_TOKEN))]).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = publish(vec![("authorization", bearer(&publisher_jwt))]).await;
    assert_eq!(status, 202, "{answer}");

    let counts = "/api/v1/connections?user_id=alice";
    assert_refused(get(&server, counts, &[]).await, 401, "missing").await;
    let auth = bearer(&subscriber);
    assert_refused(
        get(&server, counts, &[("authorization", &auth)]).await,
        403,
        "forbidden_publish",
    )
    .await;
    let auth = bearer(&publisher_jwt);
    assert_eq!(
        get(&server, counts, &[("authorization", &auth)])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_history_needs_a_publishers_credential() {
    let server = start_hs256(&[]).await;
    let history = "/api/v1/history?user_id=alice";
    assert_refused(get(&server, history, &[]).await, 401, "missing").await;
    let auth = bearer(&hs256(&claims("alice")));
    assert_refused(
        get(&server, history, &[("authorization", &auth)]).await,
        403,
        "forbidden_publish",
    )
    .await;
    let auth = bearer(PUBLISH_TOKEN);
    assert_eq!(
        get(&server, history, &[("authorization", &auth)])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_publish_token_alone_guards_publishing_and_leaves_streams_open() {
    let server = start(&[("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN)], &[]).await;
    let body = json!({"event": {"type": "x"}});
    let (status, answer) = post(&server, "/api/v1/publish", &[], &body).await;
    assert_eq!(
        (status, &answer["reason"]),
        (401, &json!("missing")),
        "{answer}"
    );
    let (status, answer) = post(
        &server,
        "/api/v1/publish",
        &[("authorization", "Bearer nope")],
        &body,
    )
    .await;
    assert_eq!(
        (status, &answer["reason"]),
        (401, &json!("rejected")),
        "{answer}"
    );
    assert_streams(&server, "/api/v1/sse?user_id=dev", &[], "dev").await;
}

#[tokio::test]
async fn over_its_publish_rate_a_credential_gets_429_with_retry_after() {
    let server = start_hs256(&["--publish-rate", "1", "--publish-burst", "3"]).await;
    let body = json!({"event": {"type": "x"}});
    let token = bearer(PUBLISH_TOKEN);
    let mut limited = None;
    for _ in 0..10 {
        let response = guard(
            http()
                .post(server.url("/api/v1/publish"))
                .header("authorization", &token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send(),
        )
        .await
        .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 202);
    }
    let limited = limited.expect("ten publishes at once went through a rate of 1/s, burst 3");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "Retry-After: {retry_after}");
    let answer: Value = limited.json().await.unwrap();
    assert_eq!(answer["reason"], "rate_limited", "{answer}");
    // Another credential has its own allowance.
    let publisher_jwt = bearer(&hs256(
        &json!({"sub": "billing", "exp": now() + 600, "publish": true}),
    ));
    let (status, _) = post(
        &server,
        "/api/v1/publish",
        &[("authorization", &publisher_jwt)],
        &body,
    )
    .await;
    assert_eq!(status, 202);
}

/// Asks `server` for a ticket with `token` in the `Authorization` header.
async fn ticket(server: &Server, token: &str) -> String {
    let auth = bearer(token);
    let (status, answer) = post(
        server,
        "/api/v1/tickets",
        &[("authorization", &auth)],
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{answer}"
    );
    let ticket = answer["ticket"].as_str().expect("a ticket").to_owned();
    assert!(ticket.len() >= 32, "{ticket}");
    ticket
}

#[tokio::test]
async fn a_ticket_opens_one_stream_once() {
    let server = start_hs256(&[]).await;
    let token = hs256(&json!({"sub": "alice", "exp": now() + 600, "topics": ["prices"]}));
    let first = ticket(&server, &token).await;
    assert_streams(
        &server,
        &format!("/api/v1/sse?ticket={first}&topic=prices"),
        &[],
        "alice",
    )
    .await;
    let reused = get(&server, &format!("/api/v1/sse?ticket={first}"), &[]).await;
    assert_refused(reused, 401, "invalid_ticket").await;

    // A ticket grants what its token grants, no more.
    let second = ticket(&server, &token).await;
    let response = get(
        &server,
        &format!("/api/v1/sse?ticket={second}&topic=news"),
        &[],
    )
    .await;
    assert_refused(response, 403, "forbidden_topic").await;
    let made_up = "0".repeat(64);
    assert_refused(
        get(&server, &format!("/api/v1/sse?ticket={made_up}"), &[]).await,
        401,
        "invalid_ticket",
    )
    .await;

    // Tickets are for the Authorization header: not for a token in the URL or a cookie.
    let (status, answer) = post(
        &server,
        &format!("/api/v1/tickets?token={token}"),
        &[],
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, &answer["reason"]),
        (401, &json!("missing")),
        "{answer}"
    );
    let cookie = format!("sseor_token={token}");
    let (status, _) = post(
        &server,
        "/api/v1/tickets",
        &[("cookie", &cookie)],
        &json!({}),
    )
    .await;
    assert_eq!(status, 401);
    let expired = hs256(&json!({"sub": "alice", "exp": now() - 120}));
    let auth = bearer(&expired);
    let (status, answer) = post(
        &server,
        "/api/v1/tickets",
        &[("authorization", &auth)],
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, &answer["reason"]),
        (401, &json!("expired")),
        "{answer}"
    );
}

#[tokio::test]
async fn an_expired_ticket_is_401() {
    let server = start_hs256(&["--ticket-ttl", "1s"]).await;
    let expiring = ticket(&server, &hs256(&claims("alice"))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = get(&server, &format!("/api/v1/sse?ticket={expiring}"), &[]).await;
    assert_refused(response, 401, "invalid_ticket").await;
}

/// `sseor` on `redis_url` with [`SECRET`] and [`PUBLISH_TOKEN`], once it is ready.
async fn start_on_redis(redis_url: &str) -> Server {
    let server = start(
        &[
            ("REDIS_URL", redis_url),
            ("SSEOR_JWT_SECRET", SECRET),
            ("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN),
        ],
        &["--probe-interval", "100ms"],
    )
    .await;
    guard(async {
        while server.get_json("/readyz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server
}

#[tokio::test]
async fn a_ticket_from_one_instance_is_redeemed_once_on_another() {
    let redis = RedisServer::start();
    let a = start_on_redis(&redis.url()).await;
    let b = start_on_redis(&redis.url()).await;
    let issued = ticket(&a, &hs256(&claims("alice"))).await;
    // Redis holds a digest of the ticket, not the ticket.
    let keys = redis.cli(&["KEYS", "sseor:ticket:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(!keys.contains(&issued), "{keys}");

    assert_streams(&b, &format!("/api/v1/sse?ticket={issued}"), &[], "alice").await;
    for server in [&a, &b] {
        let response = get(server, &format!("/api/v1/sse?ticket={issued}"), &[]).await;
        assert_refused(response, 401, "invalid_ticket").await;
    }
    assert_eq!(redis.cli(&["KEYS", "sseor:ticket:*"]).trim(), "");
}

#[tokio::test]
async fn without_authentication_only_loopback_unless_insecure() {
    let refused = run_to_exit(SSEOR, &["--port", "0", "--host", "0.0.0.0"], &[]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", refused.all_output());
    assert_eq!(
        refused.stderr.lines().count(),
        1,
        "{}",
        refused.all_output()
    );
    assert!(
        refused.stderr.contains("--insecure"),
        "{}",
        refused.all_output()
    );

    let insecure = start(&[("SSEOR_INSECURE", "true")], &["--host", "0.0.0.0"]).await;
    assert_eq!(insecure.get_json("/healthz").await.0, 200);
    assert!(
        insecure
            .log_messages()
            .iter()
            .any(|m| m.contains("no authentication configured")),
        "{}",
        insecure.output()
    );

    let development = start(&[], &[]).await;
    assert!(
        development
            .log_messages()
            .iter()
            .any(|m| m.contains("no authentication configured")),
        "{}",
        development.output()
    );
    let secured = start(&[("SSEOR_JWT_SECRET", SECRET)], &["--host", "0.0.0.0"]).await;
    assert!(
        !secured
            .log_messages()
            .iter()
            .any(|m| m.contains("no authentication configured")),
        "{}",
        secured.output()
    );
    assert_refused(
        get(&secured, "/api/v1/sse?user_id=alice", &[]).await,
        401,
        "missing",
    )
    .await;
}

#[tokio::test]
async fn unusable_auth_settings_stop_the_server_with_exit_code_2() {
    let keys = TempDir::new();
    let rsa = KeyPair::rsa(&keys, "rsa");
    let private_key = keys.path("rsa.key");
    let not_pem = keys.path("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = keys.path("missing.pem");
    let p384_public = KeyFiles::p384(keys.0.path(), "p384").public;
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let short_secret = "short-secret-xyz";
    let short_token = "tok-xyz-123";
    // The environment, the arguments, and what the one line on stderr must say.
    type Case<'a> = (Vec<(&'a str, String)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("SSEOR_JWT_SECRET", SECRET.into()),
                ("SSEOR_JWT_PUBLIC_KEY", path(rsa.public())),
            ],
            vec![],
            "both set",
        ),
        (
            vec![("SSEOR_JWT_SECRET", short_secret.into())],
            vec![],
            "at least 32",
        ),
        (
            vec![("SSEOR_JWT_PUBLIC_KEY", path(&missing))],
            vec![],
            "cannot read",
        ),
        (
            vec![("SSEOR_JWT_PUBLIC_KEY", path(&not_pem))],
            vec![],
            "not a PEM",
        ),
        (
            vec![("SSEOR_JWT_PUBLIC_KEY", path(&private_key))],
            vec![],
            "not a public key",
        ),
        (
            vec![("SSEOR_JWT_PUBLIC_KEY", path(&p384_public))],
            vec![],
            "P-256",
        ),
        (
            vec![("SSEOR_PUBLISH_TOKEN", short_token.into())],
            vec![],
            "too short",
        ),
        (
            vec![("SSEOR_JWT_ISSUER", "https://issuer".into())],
            vec![],
            "tokens are not checked",
        ),
        (
            vec![("SSEOR_JWT_SECRET", SECRET.into())],
            vec!["--auth-cookie", "a b"],
            "cookie name",
        ),
        (vec![], vec!["--ticket-ttl", "0s"], "SSEOR_TICKET_TTL"),
        (vec![], vec!["--publish-burst", "5"], "SSEOR_PUBLISH_RATE"),
        (vec![], vec!["--publish-rate", "lots"], "invalid value"),
    ];
    for (envs, args, expected) in cases {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let run = run_to_exit(SSEOR, &[&["--port", "0"], args.as_slice()].concat(), &envs).await;
        let output = run.all_output();
        assert_eq!(run.status.code(), Some(2), "{expected}: {output}");
        assert!(run.stderr.contains(expected), "{expected}: {output}");
        for secret in [SECRET, short_secret, short_token] {
            assert!(
                !output.contains(secret),
                "{expected}: a secret in the output: {output}"
            );
        }
        if expected != "invalid value" {
            assert_eq!(run.stderr.trim().lines().count(), 1, "{expected}: {output}");
        }
    }
}

#[tokio::test]
async fn help_lists_the_auth_settings_without_their_values() {
    let envs = [
        ("SSEOR_JWT_SECRET", SECRET),
        ("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN),
    ];
    let help = run_to_exit(SSEOR, &["--help"], &envs).await;
    assert!(help.status.success(), "{}", help.all_output());
    for setting in [
        "SSEOR_JWT_SECRET",
        "SSEOR_JWT_PUBLIC_KEY",
        "SSEOR_JWT_ISSUER",
        "SSEOR_JWT_AUDIENCE",
        "SSEOR_JWT_TOPICS_CLAIM",
        "SSEOR_JWT_LEEWAY",
        "SSEOR_AUTH_COOKIE",
        "SSEOR_PUBLISH_TOKEN",
        "SSEOR_TICKET_TTL",
        "SSEOR_PUBLISH_RATE",
        "SSEOR_PUBLISH_BURST",
        "SSEOR_INSECURE",
    ] {
        assert!(
            help.stdout.contains(setting),
            "{setting} missing from --help"
        );
    }
    assert!(help.stdout.contains("Authentication:"), "{}", help.stdout);
    assert!(!help.stdout.contains(SECRET) && !help.stdout.contains(PUBLISH_TOKEN));
}

#[tokio::test]
async fn tokens_tickets_and_secrets_never_reach_the_output_even_at_trace() {
    let mut server = start_hs256(&["--log-level", "trace"]).await;
    let token = hs256(&json!({"sub": "alice", "exp": now() + 600, "topics": ["prices"]}));
    let auth = bearer(&token);
    assert_streams(
        &server,
        "/api/v1/sse?topic=prices",
        &[("authorization", &auth)],
        "alice",
    )
    .await;
    let cookie = format!("sseor_token={token}");
    assert_streams(&server, "/api/v1/sse", &[("cookie", &cookie)], "alice").await;
    assert_streams(&server, &format!("/api/v1/sse?token={token}"), &[], "alice").await;
    let issued = ticket(&server, &token).await;
    assert_streams(
        &server,
        &format!("/api/v1/sse?ticket={issued}"),
        &[],
        "alice",
    )
    .await;
    let refused = [
        hs256(&json!({"sub": "alice", "exp": now() - 120})),
        format!("{token}x"),
        unsigned(&claims("alice")),
    ];
    for bad in &refused {
        let auth = bearer(bad);
        assert_eq!(
            get(&server, "/api/v1/sse", &[("authorization", &auth)])
                .await
                .status(),
            401
        );
        assert_eq!(
            get(&server, &format!("/api/v1/sse?token={bad}"), &[])
                .await
                .status(),
            401
        );
    }
    let publisher = bearer(PUBLISH_TOKEN);
    let (status, _) = post(
        &server,
        "/api/v1/publish",
        &[("authorization", &publisher)],
        &json!({"event": {"type": "x"}}),
    )
    .await;
    assert_eq!(status, 202);

    server.signal("TERM");
    assert!(server.wait_exit().await.success());
    let output = server.output();
    let logged = server.log_messages();
    assert!(logged.iter().any(|m| m == "authorized"), "{output}");
    assert!(logged.iter().any(|m| m == "refused"), "{output}");
    let secrets = [SECRET, PUBLISH_TOKEN, &token, &issued]
        .into_iter()
        .chain(refused.iter().map(String::as_str));
    for secret in secrets {
        // Any piece of a token long enough to be its signature or payload.
        let piece = &secret[secret.len().saturating_sub(24)..];
        assert!(
            !output.contains(piece),
            "`{piece}` is in the output:\n{output}"
        );
    }
}

#[tokio::test]
async fn tokens_with_an_issuer_and_audience_must_match() {
    let server = start_hs256(&[
        "--jwt-issuer",
        "https://id.example",
        "--jwt-audience",
        "sseor",
    ])
    .await;
    let good =
        json!({"sub": "alice", "exp": now() + 600, "iss": "https://id.example", "aud": "sseor"});
    let auth = bearer(&hs256(&good));
    assert_eq!(
        get(&server, "/api/v1/sse", &[("authorization", &auth)])
            .await
            .status(),
        200
    );
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://elsewhere");
    let mut other_audience = good.clone();
    other_audience["aud"] = json!("billing");
    let mut no_issuer = good.clone();
    no_issuer.as_object_mut().unwrap().remove("iss");
    for (reason, claims) in [
        ("bad_issuer", other_issuer),
        ("bad_audience", other_audience),
        ("malformed", no_issuer),
    ] {
        let auth = bearer(&hs256(&claims));
        assert_refused(
            get(&server, "/api/v1/sse", &[("authorization", &auth)]).await,
            401,
            reason,
        )
        .await;
    }
}

#[tokio::test]
async fn a_custom_topics_claim_grants_topics_and_the_default_one_no_longer_does() {
    let server = start(
        &[
            ("SSEOR_JWT_SECRET", SECRET),
            ("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN),
            ("SSEOR_JWT_TOPICS_CLAIM", "channels"),
        ],
        &[],
    )
    .await;
    let custom = hs256(&json!({"sub": "alice", "exp": now() + 600, "channels": ["prices"]}));
    let mut events = alice_on_prices(&server, &custom).await;
    let (status, answer) = post(
        &server,
        "/api/v1/publish",
        &[("authorization", &bearer(PUBLISH_TOKEN))],
        &json!({"topic": "prices", "event": {"type": "tick"}}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let event = guard(events.next()).await.expect("the stream ended");
    assert_eq!(event.event, "tick");
    // Only the named claim counts: `topics` grants nothing on this server.
    let default_claim = hs256(&json!({"sub": "bob", "exp": now() + 600, "topics": ["prices"]}));
    let auth = bearer(&default_claim);
    assert_refused(
        get(
            &server,
            "/api/v1/sse?topic=prices",
            &[("authorization", &auth)],
        )
        .await,
        403,
        "forbidden_topic",
    )
    .await;
}

#[tokio::test]
async fn a_token_with_an_audience_is_refused_when_no_audience_is_configured() {
    let server = start_hs256(&[]).await;
    let meant_for_someone_else =
        hs256(&json!({"sub": "alice", "exp": now() + 600, "aud": "billing"}));
    let auth = bearer(&meant_for_someone_else);
    assert_refused(
        get(&server, "/api/v1/sse", &[("authorization", &auth)]).await,
        401,
        "bad_audience",
    )
    .await;
    // The same claims without `aud` are accepted.
    let auth = bearer(&hs256(&claims("alice")));
    assert_eq!(
        get(&server, "/api/v1/sse", &[("authorization", &auth)])
            .await
            .status(),
        200
    );
}
