//! The library's authorization: an application's own `Authorizer` in front of the standard
//! API, streams that end when their subscription expires, and tickets kept by the embedded
//! broker and by Redis.

use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::response::IntoResponse;
use futures_util::StreamExt;
use http::request::Parts;
use serde_json::{Value, json};
use sseor::auth::{AuthReason, Grant};
use sseor::{Error, Manager, Subscription};
use sseor_testkit::library::Server;
use sseor_testkit::redis::RedisServer;
use sseor_testkit::sse::Client;
use sseor_testkit::{guard, http};

/// An authorizer for services behind a gateway that authenticates users and passes them
/// on in `x-user` (and `x-role: publisher` for backends).
fn gateway(request: &Parts) -> sseor::Result<Grant> {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let user = header("x-user").ok_or_else(|| Error::auth(AuthReason::Missing, "no x-user"))?;
    if user == "mallory" {
        return Err(Error::auth(AuthReason::Forbidden, "mallory is banned"));
    }
    Ok(Grant::user(user)?
        .with_topics(["prices"])
        .with_publish(header("x-role") == Some("publisher")))
}

async fn status_and_reason(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = guard(response.json()).await.unwrap();
    (status, body["reason"].clone())
}

#[tokio::test]
async fn an_applications_own_authorizer_guards_the_standard_api() {
    let server = Server::with(Manager::builder().authorizer(gateway)).await;
    let sse = server.url("/api/v1/sse?topic=prices");
    let refused = guard(http().get(&sse).send()).await.unwrap();
    assert_eq!(
        refused.headers()["www-authenticate"],
        r#"Bearer realm="sseor""#
    );
    assert_eq!(status_and_reason(refused).await, (401, json!("missing")));
    let banned = guard(http().get(&sse).header("x-user", "mallory").send())
        .await
        .unwrap();
    assert_eq!(status_and_reason(banned).await, (403, json!("forbidden")));

    let response = guard(http().get(&sse).header("x-user", "alice").send())
        .await
        .unwrap();
    let mut events = Client::from_response(response);
    server.wait_for_total(1).await;

    let publish = |role: Option<&'static str>| {
        let mut request = http()
            .post(server.url("/api/v1/publish"))
            .header("x-user", "billing")
            .header("content-type", "application/json")
            .body(json!({"topic": "prices", "event": {"type": "tick"}}).to_string());
        if let Some(role) = role {
            request = request.header("x-role", role);
        }
        async move { guard(request.send()).await.unwrap() }
    };
    let (status, reason) = status_and_reason(publish(None).await).await;
    assert_eq!((status, reason), (403, json!("forbidden_publish")));
    assert_eq!(publish(Some("publisher")).await.status(), 202);
    assert_eq!(events.next_event().await.event, "tick");
}

#[tokio::test]
async fn a_subscription_that_expires_ends_cleanly_then() {
    let server = Server::start().await;
    server
        .manager
        .route("/events", |request: Request, manager: Manager| async move {
            let expires_at = SystemTime::now() + Duration::from_millis(700);
            let subscription = Subscription::user("alice")?.expires_at(expires_at);
            manager
                .handle_sse_with(&request, subscription)
                .map(IntoResponse::into_response)
        })
        .unwrap();
    let app = server.manager.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let manager = server.manager.clone();
    tokio::spawn(async move { manager.serve(listener, app).await });

    let opened = SystemTime::now();
    let response = guard(http().get(format!("http://{addr}/events")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A stream cut off without its last chunk ends with an error here.
    let mut body = response.bytes_stream();
    guard(async {
        while let Some(chunk) = body.next().await {
            chunk.expect("the stream ended with an error");
        }
    })
    .await;
    assert!(opened.elapsed().unwrap() >= Duration::from_millis(650));
    server.wait_for_total(0).await;

    // A time already past ends the stream at once.
    let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
    let request = http::Request::from_parts(parts, ());
    let past = Subscription::user("bob")
        .unwrap()
        .expires_at(SystemTime::UNIX_EPOCH);
    let response = server.manager.handle_sse_with(&request, past).unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16);
    let bytes = guard(body).await.unwrap();
    assert!(bytes.starts_with(b"retry:"), "{bytes:?}");
}

#[tokio::test]
async fn tickets_of_the_embedded_broker_are_single_use_and_short_lived() {
    let manager = Manager::builder()
        .ticket_ttl(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let grant = Grant::user("alice").unwrap().with_topics(["prices"]);
    let ticket = manager.issue_ticket(&grant).await.unwrap();
    assert_eq!(ticket.ttl(), Duration::from_secs(1));
    assert!(!format!("{ticket:?}").contains(ticket.value()));
    assert_eq!(manager.redeem_ticket(ticket.value()).await.unwrap(), grant);
    let again = manager.redeem_ticket(ticket.value()).await;
    assert!(
        matches!(
            again,
            Err(Error::Auth {
                reason: AuthReason::InvalidTicket,
                ..
            })
        ),
        "{again:?}"
    );

    let late = manager.issue_ticket(&grant).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(manager.redeem_ticket(late.value()).await.is_err());
    for made_up in ["", "abc", &"g".repeat(64)] {
        assert!(manager.redeem_ticket(made_up).await.is_err(), "{made_up}");
    }
    manager.close().await;
}

#[tokio::test]
async fn a_redis_ticket_is_redeemed_once_by_whichever_instance_is_first() {
    let redis = RedisServer::start();
    let builder = || {
        Manager::builder()
            .broker_url(redis.url())
            .ticket_ttl(Duration::from_secs(1))
    };
    let a = builder().build().await.unwrap();
    let b = builder().build().await.unwrap();
    let grant = Grant::user("alice").unwrap().with_all_topics();
    for _ in 0..5 {
        let ticket = a.issue_ticket(&grant).await.unwrap();
        let attempts = (0..8).map(|i| {
            let manager = if i % 2 == 0 { a.clone() } else { b.clone() };
            let value = ticket.value().to_owned();
            tokio::spawn(async move { manager.redeem_ticket(&value).await })
        });
        let results = futures_util::future::join_all(attempts).await;
        let redeemed: Vec<Grant> = results
            .into_iter()
            .filter_map(|joined| joined.unwrap().ok())
            .collect();
        assert_eq!(redeemed, std::slice::from_ref(&grant));
    }
    let late = b.issue_ticket(&grant).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(a.redeem_ticket(late.value()).await.is_err());

    // Redis gone: an error to retry, not a refusal.
    drop(redis);
    let unreachable = a.issue_ticket(&grant).await;
    assert!(
        matches!(unreachable, Err(Error::Broker(_))),
        "{unreachable:?}"
    );
    a.close().await;
    b.close().await;
}
