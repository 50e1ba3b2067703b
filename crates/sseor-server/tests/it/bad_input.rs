//! The limits of the README's bad-input table that the other files leave to unit tests,
//! against the running `sseor` binary: the 256-byte bounds of user ids, topics, event
//! types and ids (checked from both sides: 256 bytes pass, 257 do not), NUL and other
//! control characters, `POST /api/v1/tickets` with and without authentication, and bytes
//! that are not HTTP. Every refusal is a JSON error naming the field, and changes nothing:
//! a client listening to every target the bad requests name receives none of them.

use serde_json::{Value, json};
use sseor_testkit::server::{Server, command};
use sseor_testkit::{guard, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::SSEOR;

/// The longest user id, topic, event type or event id the server accepts, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// The `error` string of a JSON refusal; panics if there is none.
fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` string in {body}"))
}

/// A name of `len` bytes.
fn name_of(len: usize) -> String {
    "n".repeat(len)
}

/// Asserts a JSON refusal with `status` whose message names `field`.
fn assert_refused(case: &str, (status, body): (u16, Value), expected: u16, field: &str) {
    assert_eq!(status, expected, "{case}: {body}");
    let error = error_of(&body);
    assert!(error.contains(field), "{case}: `{field}` not named: {body}");
}

#[tokio::test]
async fn user_ids_and_topics_over_256_bytes_or_with_nul_are_400_on_streams() {
    let server = Server::start(SSEOR, &[]).await;
    let longest = name_of(MAX_NAME_BYTES);
    let too_long = name_of(MAX_NAME_BYTES + 1);

    // 256 bytes are accepted, as user id and as topic.
    let mut at_the_limit = server.subscribe(&longest, &[&longest]).await;
    server.wait_for_connections(&longest, (1, 1)).await;

    for (case, query, field) in [
        (
            "user id of 257 bytes",
            format!("user_id={too_long}"),
            "user_id",
        ),
        (
            "topic of 257 bytes",
            format!("user_id=u&topic={too_long}"),
            "topic",
        ),
        ("NUL in a user id", "user_id=a%00b".to_owned(), "user_id"),
        (
            "NUL in a topic",
            "user_id=u&topic=a%00b".to_owned(),
            "topic",
        ),
        (
            "other control in a user id",
            "user_id=a%01b".to_owned(),
            "user_id",
        ),
        ("empty topic", "user_id=u&topic=".to_owned(), "topic"),
    ] {
        let answer = server.get_json(&format!("/api/v1/sse?{query}")).await;
        assert_refused(case, answer, 400, field);
    }
    // None of them opened a stream.
    assert_eq!(server.connections("u").await, (0, 1));

    // The stream at the limit works.
    let (status, published) = server
        .publish(&json!({"topic": longest, "event": {"type": "fits", "data": {"n": 1}}}))
        .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(at_the_limit.next_event().await.event, "fits");
}

#[tokio::test]
async fn publish_targets_over_256_bytes_or_with_nul_are_400_and_reach_nobody() {
    let server = Server::start(SSEOR, &[]).await;
    let longest = name_of(MAX_NAME_BYTES);
    let too_long = name_of(MAX_NAME_BYTES + 1);
    // A client that every refused publish below would reach if it were sent: the truncated
    // names, the names without what follows the NUL, and everyone.
    let mut listener = server.subscribe(&longest, &[&longest, "a"]).await;
    let mut user_a = server.subscribe("a", &[]).await;
    server.wait_for_connections("a", (1, 2)).await;

    for (case, target, field) in [
        (
            "user id of 257 bytes",
            json!({"user_id": too_long}),
            "user_id",
        ),
        ("topic of 257 bytes", json!({"topic": too_long}), "topic"),
        ("NUL in a user id", json!({"user_id": "a\u{0}b"}), "user_id"),
        ("NUL in a topic", json!({"topic": "a\u{0}b"}), "topic"),
        (
            "other control in a user id",
            json!({"user_id": "a\u{1}"}),
            "user_id",
        ),
    ] {
        let mut body = target;
        body["event"] = json!({"type": "refused", "data": {"case": case}});
        assert_refused(case, server.publish(&body).await, 400, field);
    }

    // The limit itself passes, and is the first thing each client receives.
    let (status, answer) = server
        .publish(&json!({"user_id": longest, "event": {"type": "fits"}}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(listener.next_event().await.event, "fits");
    let (status, answer) = server
        .publish(&json!({"user_id": "a", "event": {"type": "fits"}}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(user_a.next_event().await.event, "fits");
}

#[tokio::test]
async fn event_types_and_ids_over_256_bytes_or_with_nul_are_422_and_reach_nobody() {
    let server = Server::start(SSEOR, &[]).await;
    let longest = name_of(MAX_NAME_BYTES);
    let too_long = name_of(MAX_NAME_BYTES + 1);
    let mut client = server.subscribe("u", &[]).await;
    server.wait_for_connections("u", (1, 1)).await;

    for (case, event, field) in [
        ("type of 257 bytes", json!({"type": too_long}), "type"),
        (
            "id of 257 bytes",
            json!({"type": "t", "id": too_long}),
            "id",
        ),
        ("NUL in a type", json!({"type": "a\u{0}b"}), "type"),
        ("NUL in an id", json!({"type": "t", "id": "a\u{0}b"}), "id"),
    ] {
        let body = json!({"event": event});
        assert_refused(case, server.publish(&body).await, 422, field);
    }

    // A type and an id of 256 bytes pass, and are the first event the client receives.
    let (status, answer) = server
        .publish(&json!({"event": {"type": longest, "id": longest}}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(client.next_event().await.event, longest);
}

#[tokio::test]
async fn tickets_are_404_without_authentication_and_401_without_a_credential() {
    let server = Server::start(SSEOR, &[]).await;
    let response = guard(http().post(server.url("/api/v1/tickets")).send())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = guard(response.json()).await.unwrap();
    assert_eq!(status, 404, "{body}");
    error_of(&body);

    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .env("SSEOR_JWT_SECRET", "sseor-test-secret-0123456789abcdef");
    let server = Server::spawn(command).await;
    for (case, authorization) in [
        ("no credential", None),
        ("not a token", Some("Bearer not-a-token")),
    ] {
        let mut request = http().post(server.url("/api/v1/tickets"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = guard(request.send()).await.unwrap();
        assert_eq!(response.status(), 401, "{case}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{case}: {:?}",
            response.headers()
        );
        let body: Value = guard(response.json()).await.unwrap();
        error_of(&body);
    }
}

/// Sends `bytes` on a new connection and reads until the server closes it.
async fn answer_to_raw_bytes(server: &Server, bytes: &[u8]) -> String {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    guard(socket.read_to_end(&mut answer))
        .await
        .expect("the connection is closed, not reset");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn bytes_that_are_not_http_get_400_and_the_connection_is_closed() {
    let server = Server::start(SSEOR, &[]).await;
    let tls_client_hello = [
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ][..],
        &[0; 64],
    ]
    .concat();
    for bytes in [&b"HELLO THERE\r\n\r\n"[..], &tls_client_hello] {
        let answer = answer_to_raw_bytes(&server, bytes).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    }
    // And it keeps serving.
    let mut client = server.subscribe("u", &[]).await;
    server.wait_for_connections("u", (1, 1)).await;
    let (status, _) = server.publish(&json!({"event": {"type": "t"}})).await;
    assert_eq!(status, 202);
    assert_eq!(client.next_event().await.event, "t");
}
