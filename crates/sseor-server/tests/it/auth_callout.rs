//! Streams authorized by the application's own login (`--auth-url`): the real `sseor`
//! binary asks a real application ([`LoginApp`], on a socket of this process) about each
//! stream, with the request's cookie; its decisions are reused for the cache TTL; a slow or
//! stopped application makes streams 503 with Retry-After, never hang; tickets come from
//! its grants; publishing still needs the publish token.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use sseor_testkit::guard;
use sseor_testkit::login::{ALICE, ALICE_KEY, BANNED, BANNED_REASON, BRIEF, LoginApp};
use sseor_testkit::server::{Server, listening_command};
use sseor_testkit::sse::events_of;

use crate::SSEOR;
use crate::auth::{
    PUBLISH_TOKEN, assert_refused, bearer, get, post, publish_to_user, wait_for_user,
};

/// `sseor` asking `app`, with the publish token and `args`.
async fn start(app: &LoginApp, args: &[&str]) -> Server {
    let mut command = listening_command(SSEOR);
    command
        .args(["--auth-url", &app.url()])
        .args(args)
        .env("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN);
    Server::spawn(command).await
}

/// The status of a stream opened at `path` with the cookie `cookie`; the stream is
/// dropped.
async fn open_status(server: &Server, path: &str, cookie: &str) -> u16 {
    get(server, path, &[("cookie", cookie)])
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_session_cookie_opens_its_stream_and_its_events_arrive() {
    let app = LoginApp::start().await;
    let server = start(
        &app,
        &["--auth-forward-headers", "x-forwarded-for,x-request-id"],
    )
    .await;
    assert_eq!(
        server.listening_log()["fields"]["authentication"],
        "auth-callout"
    );
    let cookies = format!("theme=dark; {ALICE}");
    let response = get(
        &server,
        "/api/v1/sse?topic=prices",
        &[
            ("cookie", &cookies),
            ("x-forwarded-for", "10.1.2.3"),
            ("user-agent", "t"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut events = events_of(response);
    wait_for_user(&server, "alice", 1).await;
    publish_to_user(&server, "alice", "to-alice").await;
    let topic = json!({"topic": "prices", "event": {"type": "to-prices"}});
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
    assert_eq!(received, ["to-alice", "to-prices"]);

    let asked = app.last().expect("the application was asked");
    assert_eq!(asked.body, json!({"user_id": null, "topics": ["prices"]}));
    assert_eq!(asked.headers["cookie"], cookies.as_str());
    assert_eq!(asked.headers["x-forwarded-for"], "10.1.2.3");
    assert_eq!(asked.headers["content-type"], "application/json");
    assert!(
        asked.headers.get("user-agent").is_none_or(|ua| ua != "t"),
        "{asked:?}"
    );
    assert!(asked.headers.get("x-request-id").is_none(), "{asked:?}");
    // The user may be named, as long as it is the session's.
    assert_eq!(
        open_status(&server, "/api/v1/sse?user_id=alice", ALICE).await,
        200
    );
    assert_eq!(app.last().unwrap().body["user_id"], "alice");
}

#[tokio::test]
async fn no_session_is_401_and_a_banned_one_403_with_the_applications_reason() {
    let app = LoginApp::start().await;
    let server = start(&app, &[]).await;
    for headers in [vec![], vec![("cookie", "session=unknown")]] {
        let response = get(&server, "/api/v1/sse", &headers).await;
        let body = refusal(response, 401, "rejected").await;
        assert_eq!(body["error"], "no session", "{headers:?}");
    }
    let response = get(&server, "/api/v1/sse", &[("cookie", BANNED)]).await;
    let body = refusal(response, 403, "forbidden").await;
    assert_eq!(body["error"], BANNED_REASON);
}

/// Checks the refusal as every credential refusal is, and gives its body.
async fn refusal(response: reqwest::Response, status: u16, reason: &str) -> Value {
    let challenge = response.headers().get("www-authenticate").cloned();
    assert_eq!(response.status().as_u16(), status, "expected {reason}");
    assert!(challenge.is_some_and(|c| c.to_str().unwrap().starts_with("Bearer")));
    let body: Value = guard(response.json()).await.unwrap();
    assert_eq!(body["reason"], reason, "{body}");
    body
}

#[tokio::test]
async fn topics_and_users_are_as_the_application_grants() {
    let app = LoginApp::start().await;
    let server = start(&app, &[]).await;
    let alice = [("cookie", ALICE)];
    assert_eq!(
        open_status(&server, "/api/v1/sse?topic=prices", ALICE).await,
        200
    );
    let cases = [
        ("/api/v1/sse?topic=news", "forbidden_topic"),
        ("/api/v1/sse?topic=prices&topic=news", "forbidden_topic"),
        ("/api/v1/sse?user_id=bob", "forbidden_user"),
    ];
    for (path, reason) in cases {
        assert_refused(get(&server, path, &alice).await, 403, reason).await;
    }
    // The application itself refuses a topic, saying why.
    let response = get(&server, "/api/v1/sse?topic=admin", &alice).await;
    assert_eq!(
        refusal(response, 403, "forbidden").await["error"],
        "admins only"
    );
}

#[tokio::test]
async fn decisions_are_reused_within_the_cache_ttl_and_asked_again_after() {
    let app = LoginApp::start().await;
    let server = start(&app, &["--auth-cache-ttl", "1s"]).await;
    assert_eq!(open_status(&server, "/api/v1/sse", ALICE).await, 200);
    assert_eq!(open_status(&server, "/api/v1/sse", ALICE).await, 200);
    assert_eq!(
        app.calls(),
        1,
        "the second open within the TTL asks nothing"
    );
    // Another question of the same session is asked on its own.
    assert_eq!(
        open_status(&server, "/api/v1/sse?topic=prices", ALICE).await,
        200
    );
    assert_eq!(app.calls(), 2);
    // Refusals are reused too.
    for _ in 0..3 {
        assert_eq!(open_status(&server, "/api/v1/sse", BANNED).await, 403);
    }
    assert_eq!(app.calls(), 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(open_status(&server, "/api/v1/sse", ALICE).await, 200);
    assert_eq!(open_status(&server, "/api/v1/sse", BANNED).await, 403);
    assert_eq!(app.calls(), 5, "asked again after the TTL");
}

#[tokio::test]
async fn identical_opens_at_once_share_one_question() {
    let app = LoginApp::start().await;
    let server = start(&app, &["--auth-timeout", "10s"]).await;
    // Slow enough that every open arrives while the first question is under way.
    app.set_delay(Duration::from_secs(2));
    let opens = (0..10).map(|_| open_status(&server, "/api/v1/sse?topic=prices", ALICE));
    let statuses = guard(futures_util::future::join_all(opens)).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn a_stopped_application_gives_503_with_retry_after_until_it_is_back() {
    let mut app = LoginApp::start().await;
    let server = start(
        &app,
        &["--auth-cache-ttl", "0s", "--log-level", "sseor=trace"],
    )
    .await;
    assert_eq!(open_status(&server, "/api/v1/sse", ALICE).await, 200);
    app.stop().await;
    let response = get(&server, "/api/v1/sse", &[("cookie", ALICE)]).await;
    assert_unavailable(response).await;
    app.restart().await;
    assert_eq!(open_status(&server, "/api/v1/sse", ALICE).await, 200);
    // Neither the cookie nor the API key reaches the logs, even at trace.
    assert_eq!(
        get(&server, "/api/v1/sse", &[("authorization", ALICE_KEY)])
            .await
            .status(),
        200
    );
    let output = server.output();
    assert!(output.contains("gave no decision"), "{output}");
    for secret in ["s-alice", "k-alice"] {
        assert!(
            !output.contains(secret),
            "`{secret}` is in the output:\n{output}"
        );
    }
}

/// Checks that `response` is a 503 with `Retry-After` and a JSON error.
async fn assert_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), 503);
    let retry_after = response.headers().get("retry-after").expect("Retry-After");
    let seconds: u64 = retry_after.to_str().unwrap().parse().unwrap();
    assert!(seconds >= 1, "{seconds}");
    let body: Value = guard(response.json()).await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("retry later")),
        "{body}"
    );
}

#[tokio::test]
async fn a_slow_application_gives_503_once_the_timeout_has_passed() {
    let app = LoginApp::start().await;
    let server = start(&app, &["--auth-timeout", "500ms"]).await;
    app.set_delay(Duration::from_secs(5));
    let started = Instant::now();
    let response = get(&server, "/api/v1/sse", &[("cookie", ALICE)]).await;
    let waited = started.elapsed();
    assert_unavailable(response).await;
    // Not before the timeout, and well before the application would have answered.
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn tickets_come_from_the_applications_grant_by_header_never_by_cookie() {
    let app = LoginApp::start().await;
    let server = start(&app, &[]).await;
    let (status, answer) = post(
        &server,
        "/api/v1/tickets",
        &[("authorization", ALICE_KEY)],
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let asked = app.last().unwrap();
    assert_eq!(asked.body, json!({"user_id": null, "topics": []}));
    let ticket = answer["ticket"].as_str().expect("a ticket");
    let response = get(
        &server,
        &format!("/api/v1/sse?ticket={ticket}&topic=prices"),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut events = events_of(response);
    wait_for_user(&server, "alice", 1).await;
    publish_to_user(&server, "alice", "by-ticket").await;
    assert_eq!(guard(events.next()).await.unwrap().event, "by-ticket");
    // A cookie does not get a ticket: it is not forwarded for one.
    let (status, answer) = post(&server, "/api/v1/tickets", &[("cookie", ALICE)], &json!({})).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("rejected")),
        "{answer}"
    );
    assert!(app.last().unwrap().headers.get("cookie").is_none());
}

#[tokio::test]
async fn publishing_needs_the_publish_token_and_never_asks_the_application() {
    let app = LoginApp::start().await;
    let server = start(&app, &[]).await;
    let event = json!({"event": {"type": "x"}});
    for headers in [[("cookie", ALICE)], [("authorization", ALICE_KEY)]] {
        let (status, answer) = post(&server, "/api/v1/publish", &headers, &event).await;
        assert_eq!(status, 401, "{headers:?}: {answer}");
    }
    assert_eq!(app.calls(), 0);
    let publisher = bearer(PUBLISH_TOKEN);
    let (status, _) = post(
        &server,
        "/api/v1/publish",
        &[("authorization", &publisher)],
        &event,
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_stream_ends_when_the_applications_grant_expires() {
    let app = LoginApp::start().await;
    let server = start(&app, &[]).await;
    let response = get(&server, "/api/v1/sse", &[("cookie", BRIEF)]).await;
    assert_eq!(response.status(), 200);
    let mut bytes = response.bytes_stream();
    // The grant lasts one second: the stream ends cleanly on its own.
    guard(async {
        while let Some(chunk) = bytes.next().await {
            chunk.expect("the stream ended with an error");
        }
    })
    .await;
    wait_for_user(&server, "alice", 0).await;
}
