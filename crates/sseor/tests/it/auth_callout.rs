//! `HttpAuthorizer` asking a real application ([`LoginApp`], on a socket of this process):
//! its answers become grants, refusals with the application's reason, or
//! `Error::AuthUnavailable` when it is gone; a manager with it serves streams to a session
//! cookie and publishes only with the publish token.

use std::time::{Duration, SystemTime};

use axum::http::request::Parts;
use sseor::auth::{AuthReason, Authorizer, HttpAuthorizer};
use sseor::{Error, Manager};
use sseor_testkit::library::Server;
use sseor_testkit::login::{ALICE, BANNED, BANNED_REASON, LoginApp, TlsLoginApp};
use sseor_testkit::{guard, http};

/// The parts of a GET of `path` with `headers`.
fn request(path: &str, headers: &[(&str, &str)]) -> Parts {
    let mut request = axum::http::Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap().into_parts().0
}

/// An authorizer asking `app` that keeps nothing, so that every call asks.
fn asking(app: &LoginApp) -> HttpAuthorizer {
    HttpAuthorizer::new(&app.url())
        .unwrap()
        .cache_ttl(Duration::ZERO)
        .refusal_cache_ttl(Duration::ZERO)
        .timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn answers_become_grants_refusals_or_unavailability() {
    let mut app = LoginApp::start().await;
    let authorizer = asking(&app);
    assert!(!authorizer.grants_publish(), "a login never publishes");

    let asked = request("/api/v1/sse?topic=prices", &[("cookie", ALICE)]);
    let grant = guard(authorizer.authorize(&asked)).await.unwrap();
    assert_eq!(grant.user_id(), "alice");
    assert!(grant.topics().contains("prices") && !grant.topics().contains("news"));
    assert!(!grant.may_publish());
    let expires_in = grant
        .expires_at()
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(expires_in > Duration::from_secs(590), "{expires_in:?}");

    let refusals = [
        (
            vec![("cookie", BANNED)],
            AuthReason::Forbidden,
            BANNED_REASON,
        ),
        (vec![], AuthReason::Rejected, "no session"),
    ];
    for (headers, expected, text) in refusals {
        match guard(authorizer.authorize(&request("/api/v1/sse", &headers))).await {
            Err(Error::Auth { reason, message }) => {
                assert_eq!((reason, message.as_str()), (expected, text))
            }
            other => panic!("{headers:?}: {other:?}"),
        }
    }

    app.stop().await;
    match guard(authorizer.authorize(&asked)).await {
        Err(Error::AuthUnavailable {
            retry_after,
            message,
        }) => {
            assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}");
            assert!(message.contains("cannot be reached"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    app.restart().await;
    assert!(guard(authorizer.authorize(&asked)).await.is_ok());
}

#[tokio::test]
async fn a_manager_serves_the_sessions_stream_and_publishes_only_with_the_token() {
    let app = LoginApp::start().await;
    let token = "a-publish-token-of-this-test";
    let builder = Manager::builder()
        .authorizer(asking(&app))
        .publish_token(token);
    let server = Server::with(builder).await;
    let stream = guard(
        http()
            .get(server.url("/api/v1/sse?topic=prices"))
            .header("cookie", ALICE)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    let publish = |credential: (&'static str, String)| {
        http()
            .post(server.url("/api/v1/publish"))
            .header("content-type", "application/json")
            .header(credential.0, credential.1)
            .body(r#"{"user_id": "alice", "event": {"type": "x"}}"#)
            .send()
    };
    let with_cookie = guard(publish(("cookie", ALICE.into()))).await.unwrap();
    assert_eq!(with_cookie.status(), 401);
    let calls = app.calls();
    let with_token = guard(publish(("authorization", format!("Bearer {token}"))))
        .await
        .unwrap();
    assert_eq!(with_token.status(), 202);
    assert_eq!(app.calls(), calls, "a publish never asks the application");
    drop(stream);
    server.manager.close().await;
}

#[tokio::test]
async fn an_https_endpoint_is_asked_with_its_private_ca_and_refused_without() {
    let app = TlsLoginApp::start().await;
    let asked = request("/api/v1/sse", &[("cookie", ALICE)]);
    let trusting = HttpAuthorizer::with_root_certificates_pem(&app.url(), app.ca_pem.as_bytes())
        .unwrap()
        .timeout(Duration::from_secs(5));
    let grant = guard(trusting.authorize(&asked)).await.unwrap();
    assert_eq!(grant.user_id(), "alice");
    assert_eq!(app.calls(), 1);
    // With the system's roots only, the application's certificate is not trusted: no
    // question reaches it, and the stream is refused as the application being unavailable.
    let system = HttpAuthorizer::new(&app.url()).unwrap();
    let refused = guard(system.authorize(&asked)).await;
    assert!(
        matches!(refused, Err(Error::AuthUnavailable { .. })),
        "{refused:?}"
    );
    assert_eq!(app.calls(), 1);
}
