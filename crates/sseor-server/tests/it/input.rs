//! What the real `sseor` binary does with bad input to its HTTP API: targets that are
//! null, unknown event fields, trailing bytes, other content types, slow and anonymous
//! bodies, query strings that do not decode, hidden characters in names, and the limits
//! on `retry` and topics. Every refusal changes nothing: a stream watching for a leak
//! receives only the marker published after the bad requests.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sseor_testkit::server::{Server, command, run_to_exit};
use sseor_testkit::sse::Client;
use sseor_testkit::{guard, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::SSEOR;

/// The HS256 secret of the servers that authenticate (at least 32 bytes).
pub(crate) const SECRET: &str = "sseor-input-test-secret-0123456789";

/// The publish token of the servers that authenticate.
pub(crate) const PUBLISH_TOKEN: &str = "sseor-input-test-publish-token";

/// `sseor` checking tokens and publishers, with `args`.
pub(crate) async fn start_authenticated(args: &[&str]) -> Server {
    let mut command = command(SSEOR);
    command
        .args(["--port", "0", "--log-format", "json"])
        .args(args)
        .envs([
            ("SSEOR_JWT_SECRET", SECRET),
            ("SSEOR_PUBLISH_TOKEN", PUBLISH_TOKEN),
        ]);
    Server::spawn(command).await
}

/// POSTs `body` to `path` with `content_type` (none when `None`); status and JSON answer.
pub(crate) async fn post(
    server: &Server,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut request = http().post(server.url(path)).body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = guard(request.send()).await.unwrap();
    let status = response.status().as_u16();
    let text = guard(response.text()).await.unwrap();
    let answer = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: not JSON ({e}): {text:?}"));
    (status, answer)
}

/// Subscribes as `bob`, the user who must not receive what the refused requests carried.
pub(crate) async fn watch_for_leaks(server: &Server) -> Client {
    let bob = server.subscribe("bob", &[]).await;
    server.wait_for_connections("bob", (1, 1)).await;
    bob
}

/// Publishes a marker to `bob` and checks that it is the first event he receives: none
/// of the refused publishes reached him.
pub(crate) async fn assert_nothing_leaked(server: &Server, bob: &mut Client) {
    let (status, answer) = server
        .publish(&json!({"user_id": "bob", "event": {"type": "marker"}}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let first = bob.next_event().await;
    assert_eq!(
        first.event, "marker",
        "a refused publish reached bob: {first:?}"
    );
}

/// Asserts a JSON refusal with `status` whose message contains every one of `words`.
pub(crate) fn assert_refused(
    case: &str,
    (status, answer): (u16, Value),
    expected: u16,
    words: &[&str],
) {
    assert_eq!(status, expected, "{case}: {answer}");
    let message = answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: {answer}"));
    for word in words {
        assert!(
            message.contains(word),
            "{case}: `{word}` not in {message:?}"
        );
    }
}

#[tokio::test]
async fn a_null_empty_or_non_string_target_is_400_and_reaches_nobody() {
    let server = Server::start(SSEOR, &[]).await;
    let mut bob = watch_for_leaks(&server).await;
    let event = json!({"type": "private", "data": {"secret": "alice's"}});
    for (field, value) in [
        ("user_id", json!(null)),
        ("topic", json!(null)),
        ("user_id", json!("")),
        ("topic", json!("")),
        ("user_id", json!(5)),
        ("user_id", json!(["alice"])),
        ("topic", json!({"name": "news"})),
        ("user_id", json!(false)),
    ] {
        let body = json!({field: value.clone(), "event": event.clone()});
        let answer = server.publish(&body).await;
        assert_refused(&format!("{field}: {value}"), answer, 400, &[field]);
    }
    assert_nothing_leaked(&server, &mut bob).await;
}

#[tokio::test]
async fn unknown_fields_inside_the_event_are_400_naming_the_field() {
    let server = Server::start(SSEOR, &[]).await;
    let mut bob = watch_for_leaks(&server).await;
    let cases = [
        (
            json!({"type": "x", "user_id": "alice", "data": {}}),
            "user_id",
        ),
        (json!({"type": "x", "date": {"secret": 1}}), "date"),
        (json!({"type": "x", "id": null}), "id"),
        (json!({"type": "x", "retry": null}), "retry"),
        (json!({"type": "x", "data": null}), "data"),
    ];
    for (event, field) in cases {
        let answer = server.publish(&json!({"event": event.clone()})).await;
        assert_refused(&event.to_string(), answer, 400, &[field]);
    }
    assert_nothing_leaked(&server, &mut bob).await;
}

#[tokio::test]
async fn a_body_must_be_exactly_one_json_value() {
    let server = Server::start(SSEOR, &[]).await;
    let mut bob = watch_for_leaks(&server).await;
    let one = json!({"event": {"type": "first"}}).to_string();
    for body in [
        format!("{one} xyz"),
        format!("{one}{one}"),
        format!(
            "{one}\n{}",
            json!({"user_id": "bob", "event": {"type": "second"}})
        ),
        format!("{one} 1"),
    ] {
        let answer = server.post_raw(body.clone().into_bytes()).await;
        assert_refused(&body, answer, 400, &["one JSON value"]);
    }
    // Whitespace after the value is not more data.
    let (status, answer) = server.post_raw(format!("{one} \r\n\t").into_bytes()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(bob.next_event().await.event, "first");
    assert_nothing_leaked(&server, &mut bob).await;
}

#[tokio::test]
async fn a_publish_that_is_not_declared_json_is_415() {
    let server = Server::start(SSEOR, &[]).await;
    let mut bob = watch_for_leaks(&server).await;
    let body = json!({"user_id": "bob", "event": {"type": "cross-site"}}).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        let answer = post(&server, "/api/v1/publish", content_type, &body).await;
        assert_refused(
            &format!("{content_type:?}"),
            answer,
            415,
            &["Content-Type: application/json"],
        );
    }
    assert_nothing_leaked(&server, &mut bob).await;
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let body = json!({"user_id": "bob", "event": {"type": content_type}}).to_string();
        let (status, answer) = post(&server, "/api/v1/publish", Some(content_type), &body).await;
        assert_eq!(status, 202, "{content_type}: {answer}");
        assert_eq!(bob.next_event().await.event, content_type);
    }
}

/// A connection that sent `head` and `body` and goes on waiting; what it was answered.
struct Answer {
    status: u16,
    head: String,
    body: Value,
    /// From the end of the sending to the end of the answer.
    after: Duration,
}

/// Sends `head` and the first bytes of a body, keeps the connection open without sending
/// the rest, and reads the answer.
async fn send_and_stall(server: &Server, head: &str, body: &[u8]) -> (Answer, TcpStream) {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let sent = Instant::now();
    let answer = guard(read_answer(&mut socket)).await;
    let answer = Answer {
        after: sent.elapsed(),
        ..answer
    };
    (answer, socket)
}

/// Reads one response with a `Content-Length` body.
async fn read_answer(socket: &mut TcpStream) -> Answer {
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed without a full answer: {received:?}");
        received.extend_from_slice(&buffer[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) = response.parse(&received).unwrap() else {
            continue;
        };
        let length: usize = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .expect("an answer with a Content-Length");
        if received.len() < head_len + length {
            continue;
        }
        return Answer {
            status: response.code.unwrap(),
            head: String::from_utf8_lossy(&received[..head_len]).into_owned(),
            body: serde_json::from_slice(&received[head_len..head_len + length]).unwrap(),
            after: Duration::ZERO,
        };
    }
}

/// The head of a publish whose body is `length` bytes long, with `extra` header lines.
fn publish_head(length: usize, extra: &str) -> String {
    format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn with_authentication_an_anonymous_body_is_refused_before_it_is_sent() {
    let server = start_authenticated(&[]).await;
    // The headers promise 64 KiB and no byte of it comes: the answer must not wait for it.
    let (answer, _socket) = send_and_stall(&server, &publish_head(65_536, ""), b"").await;
    assert_eq!(answer.status, 401, "{}{}", answer.head, answer.body);
    assert_eq!(answer.body["reason"], "missing", "{}", answer.body);
    // Far below the body timeout (10 s): the credential was checked from the headers alone.
    assert!(
        answer.after < Duration::from_secs(5),
        "answered after {:?}",
        answer.after
    );
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_after_the_body_timeout() {
    let server = start_authenticated(&["--body-timeout", "1s"]).await;
    let head = publish_head(100, &format!("Authorization: Bearer {PUBLISH_TOKEN}\r\n"));
    let (answer, _socket) = send_and_stall(&server, &head, br#"{"event": {"#).await;
    assert_eq!(answer.status, 408, "{}{}", answer.head, answer.body);
    assert!(
        answer.body["error"].as_str().unwrap().contains("1000 ms"),
        "{}",
        answer.body
    );
    assert!(
        answer.after >= Duration::from_millis(900) && answer.after < Duration::from_secs(5),
        "a 1 s body timeout answered after {:?}",
        answer.after
    );
}

#[tokio::test]
async fn request_bodies_in_flight_are_bounded_for_the_whole_process() {
    let server = Server::start(
        SSEOR,
        &[
            "--body-bytes-in-flight",
            "100000",
            "--max-body-bytes",
            "65536",
        ],
    )
    .await;
    // Three slow bodies of 40,000 bytes: two fit in the 100,000 bytes, the third does not,
    // whichever it is. It is refused at once, while the two others wait for their bodies
    // (until the 10 s body timeout).
    let head = publish_head(40_000, "");
    let slow_bodies = (0..3).map(|_| Box::pin(send_and_stall(&server, &head, b"{")));
    let ((refused, _socket), _, others) =
        guard(futures_util::future::select_all(slow_bodies)).await;
    assert_eq!(refused.status, 503, "{}{}", refused.head, refused.body);
    assert!(
        refused
            .head
            .to_ascii_lowercase()
            .contains("retry-after: 1\r\n"),
        "{}",
        refused.head
    );
    assert!(
        refused.after < Duration::from_secs(9),
        "the refusal waited {:?}",
        refused.after
    );
    // Once the slow clients leave, their shares are free again: a body of 50,000 bytes,
    // which does not fit beside theirs, goes through.
    drop(others);
    let publish = json!({"event": {"type": "after", "data": {"pad": "x".repeat(50_000)}}});
    guard(async {
        while server.publish(&publish).await.0 != 202 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn query_parameters_must_decode_to_utf8_and_name_one_user() {
    let server = Server::start(SSEOR, &[]).await;
    for query in [
        "user_id=%ff%fe",
        "user_id=%c3%28",
        "user_id=bob&topic=%ff",
        "user_id=alice&user_id=bob",
        "user_id=a%E2%80%8Bb",
        "user_id=bob&topic=news%E2%80%AE",
        "user_id=bob%E2%80%A8",
        "user_id=%EF%BB%BFbob",
    ] {
        let answer = server.get_json(&format!("/api/v1/sse?{query}")).await;
        assert_refused(query, answer, 400, &[]);
    }
    for query in [
        "user_id=%00%0a",
        "user_id=",
        "user_id=%ff",
        "user_id=a&user_id=b",
    ] {
        let answer = server
            .get_json(&format!("/api/v1/connections?{query}"))
            .await;
        assert_refused(query, answer, 400, &["user_id"]);
    }
    // Valid UTF-8, percent-encoded or with `+` for a space, is read as it is meant.
    let client = Client::connect(&server.url("/api/v1/sse?user_id=caf%C3%A9+au+lait")).await;
    guard(async {
        loop {
            let (status, counts) = server
                .get_json("/api/v1/connections?user_id=caf%C3%A9+au+lait")
                .await;
            assert_eq!(status, 200, "{counts}");
            assert_eq!(counts["user_id"], "café au lait", "{counts}");
            if counts["user"] == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(client);
}

#[tokio::test]
async fn invisible_and_bidirectional_characters_are_refused_in_published_targets() {
    let server = Server::start(SSEOR, &[]).await;
    let mut bob = watch_for_leaks(&server).await;
    for name in [
        "bob\u{200B}",
        "\u{202E}bob",
        "bob\u{2028}",
        "bo\u{2066}b",
        "\u{FEFF}bob",
    ] {
        for field in ["user_id", "topic"] {
            let body = json!({field: name, "event": {"type": "hidden"}});
            let answer = server.publish(&body).await;
            assert_refused(&format!("{field}: {name:?}"), answer, 400, &["invisible"]);
        }
    }
    assert_nothing_leaked(&server, &mut bob).await;
}

#[tokio::test]
async fn a_retry_over_one_hour_is_422() {
    let server = Server::start(SSEOR, &[]).await;
    let mut bob = watch_for_leaks(&server).await;
    for retry in ["3600001", "18446744073709551615"] {
        let body = format!(r#"{{"user_id": "bob", "event": {{"type": "x", "retry": {retry}}}}}"#);
        let answer = server.post_raw(body.into_bytes()).await;
        assert_refused(retry, answer, 422, &["retry", "3600000"]);
    }
    assert_nothing_leaked(&server, &mut bob).await;
    let body = json!({"user_id": "bob", "event": {"type": "hour", "retry": 3_600_000}});
    let (status, answer) = server.publish(&body).await;
    assert_eq!(status, 202, "{answer}");
    let event = bob.next_event().await;
    assert_eq!(
        (event.event.as_str(), event.retry),
        ("hour", Some(Duration::from_secs(3600)))
    );
}

#[tokio::test]
async fn a_stream_joins_at_most_max_topics() {
    let server = Server::start(SSEOR, &["--max-topics", "3"]).await;
    let answer = server
        .get_json("/api/v1/sse?user_id=bob&topic=a&topic=b&topic=c&topic=d")
        .await;
    assert_refused("four topics", answer, 400, &["at most 3 topics"]);
    // The same topic twice is one topic.
    let client = server.subscribe("bob", &["a", "b", "c", "c"]).await;
    server.wait_for_connections("bob", (1, 1)).await;
    drop(client);
}

#[tokio::test]
async fn a_401_names_only_what_each_endpoint_accepts() {
    let server = start_authenticated(&[]).await;
    let body = json!({"event": {"type": "x"}}).to_string();
    let refusals = [
        (
            "publish",
            post(&server, "/api/v1/publish", Some("application/json"), &body).await,
        ),
        ("tickets", post(&server, "/api/v1/tickets", None, "").await),
        ("connections", server.get_json("/api/v1/connections").await),
    ];
    for (endpoint, (status, answer)) in refusals {
        assert_eq!(status, 401, "{endpoint}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains("Authorization: Bearer"),
            "{endpoint}: {message}"
        );
        for refused in ["cookie", "token="] {
            assert!(
                !message.contains(refused),
                "{endpoint} names `{refused}`: {message}"
            );
        }
    }
    // Streams do take the cookie and `?token=`: their message says so.
    let (status, answer) = server.get_json("/api/v1/sse").await;
    assert_eq!(status, 401, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(
        message.contains("sseor_token") && message.contains("?token="),
        "{message}"
    );
}

#[tokio::test]
async fn input_limits_that_cannot_work_stop_the_start() {
    for (flag, value) in [
        ("--body-timeout", "0s"),
        ("--body-bytes-in-flight", "0"),
        ("--max-topics", "0"),
    ] {
        let finished = run_to_exit(SSEOR, &["--port", "0", flag, value], &[]).await;
        assert_eq!(finished.status.code(), Some(2), "{}", finished.all_output());
        assert!(finished.stderr.contains(flag), "{}", finished.all_output());
    }
}

#[tokio::test]
async fn the_batch_limits_come_from_the_command_line() {
    let server = Server::start(
        SSEOR,
        &["--max-batch-events", "2", "--max-batch-body-bytes", "400"],
    )
    .await;
    let item = json!({"user_id": "bob", "event": {"type": "n"}});
    let batch = |items: usize| json!({"events": vec![item.clone(); items]}).to_string();
    let path = "/api/v1/publish/batch";
    let json_type = Some("application/json");
    let (status, answer) = post(&server, path, json_type, &batch(2)).await;
    assert_eq!(status, 202, "{answer}");
    assert_refused(
        "three events",
        post(&server, path, json_type, &batch(3)).await,
        413,
        &["2"],
    );
    let padded = json!({"events": [{"user_id": "bob", "event": {"type": "n", "data": {"pad": "x".repeat(500)}}}]});
    let (status, answer) = post(&server, path, json_type, &padded.to_string()).await;
    assert_eq!(status, 413, "{answer}");
}
