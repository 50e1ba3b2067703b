//! The `sseor` binary end to end: a real process, real sockets, real HTTP.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use sseor::Target;
use sseor_testkit::server::{Server, command, listening_command, run_to_exit, server_env};
use sseor_testkit::sse::{Client, data_of};
use sseor_testkit::{guard, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::SSEOR;
use crate::cursor::{cursor_at, position_in, seq_of, topic, user};

// ---------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn help_lists_every_setting_with_its_default() {
    let help = run_to_exit(SSEOR, &["--help"], &[]).await;
    assert!(help.status.success(), "{}", help.all_output());
    for name in server_env() {
        assert!(
            help.stdout.contains(&name),
            "--help does not name {name}:\n{}",
            help.stdout
        );
    }
    for default in [
        "[default: 9090]",
        "[default: info]",
        "[default: 127.0.0.1]",
        "[default: 15s]",
    ] {
        assert!(
            help.stdout.contains(default),
            "--help does not show {default}:\n{}",
            help.stdout
        );
    }
}

#[tokio::test]
async fn an_invalid_log_level_fails_clearly() {
    let run = run_to_exit(SSEOR, &["--port", "0"], &[("LOG_LEVEL", "[[[")]).await;
    assert!(!run.status.success(), "{}", run.all_output());
    assert!(run.status.code().is_some(), "killed by a signal: {run:?}");
    assert!(
        run.stderr.contains("LOG_LEVEL") && run.stderr.contains("[[["),
        "the message should name the setting and the value:\n{}",
        run.all_output()
    );
    assert!(
        !run.stdout.contains("listening"),
        "it must not start: {}",
        run.all_output()
    );
}

/// Arguments, environment, and the variable the error line must name.
type InvalidCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn an_invalid_value_stops_with_one_line_and_exit_code_2() {
    let cases: &[InvalidCase] = &[
        (&["--port", "99999"], &[], "SERVER_PORT"),
        (&[], &[("SERVER_PORT", "abc")], "SERVER_PORT"),
        (
            &["--port", "0"],
            &[("SSEOR_HEARTBEAT", "soon")],
            "SSEOR_HEARTBEAT",
        ),
        (
            &["--port", "0"],
            &[("SSEOR_QUEUE_CAPACITY", "-1")],
            "SSEOR_QUEUE_CAPACITY",
        ),
        (
            &["--port", "0"],
            &[("SERVER_HOST", "nowhere")],
            "SERVER_HOST",
        ),
        (&["--port", "0"], &[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (&["--port", "0"], &[("SSEOR_HOST", "nowhere")], "SSEOR_HOST"),
        // The new name wins over the deprecated one.
        (
            &["--port", "0"],
            &[("SSEOR_LOG_FORMAT", "xml"), ("LOG_FORMAT", "json")],
            "SSEOR_LOG_FORMAT",
        ),
        (&["--port", "0", "--no-such-flag"], &[], "--no-such-flag"),
    ];
    for (args, envs, named) in cases {
        let run = run_to_exit(SSEOR, args, envs).await;
        let output = run.all_output();
        assert_eq!(run.status.code(), Some(2), "{args:?} {envs:?}: {output}");
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?} {envs:?}: one line expected:\n{output}"
        );
        assert!(run.stderr.contains(named), "{args:?} {envs:?}: {output}");
        assert!(!output.contains("listening"), "it must not start: {output}");
    }
}

#[tokio::test]
async fn an_unknown_broker_scheme_fails_without_leaking_the_password() {
    for format in ["text", "json"] {
        let run = run_to_exit(
            SSEOR,
            &["--port", "0", "--log-format", format],
            &[("REDIS_URL", "foo://user:s3cret@host:6379")],
        )
        .await;
        let output = run.all_output();
        assert!(!run.status.success(), "{output}");
        assert!(
            output.contains("scheme") && output.contains("`foo`"),
            "the message should name the scheme:\n{output}"
        );
        assert!(!output.contains("s3cret"), "the password leaked:\n{output}");
        assert!(!output.contains("listening"), "it must not start: {output}");
    }
}

#[tokio::test]
async fn a_mistyped_broker_url_does_not_leak_its_password() {
    // A single slash typed instead of two, and a URL whose scheme was forgotten.
    for url in ["redis:/user:s3cret@host:6379", "user:s3cret@host:6379"] {
        let run = run_to_exit(SSEOR, &["--port", "0"], &[("REDIS_URL", url)]).await;
        let output = run.all_output();
        assert!(!run.status.success(), "{url}: {output}");
        assert!(
            !output.contains("s3cret"),
            "the password of {url} leaked:\n{output}"
        );
    }
}

#[tokio::test]
async fn a_malformed_redis_url_fails_without_leaking_the_password() {
    for url in [
        "redis://user:s3cret@host:notaport",
        "redis://user:s3cret@[::1/0",
    ] {
        let run = run_to_exit(SSEOR, &["--port", "0"], &[("REDIS_URL", url)]).await;
        let output = run.all_output();
        assert!(!run.status.success(), "{url}: {output}");
        assert!(output.contains("cannot start"), "{url}: {output}");
        assert!(
            !output.contains("s3cret"),
            "the password of {url} leaked:\n{output}"
        );
    }
}

/// An unreachable Redis does not stop the start; the server says so, is not ready, and
/// never prints the password, even in debug logs.
#[tokio::test]
async fn an_unreachable_redis_is_reported_without_leaking_the_password() {
    let mut command = listening_command(SSEOR);
    command
        .args(["--redis-timeout", "300ms"])
        .args(["--probe-interval", "100ms"])
        // Port 1 on loopback: nothing listens there, so every attempt is refused.
        .env("REDIS_URL", "redis://user:s3cret@127.0.0.1:1/0")
        .env("LOG_LEVEL", "debug");
    let mut server = Server::spawn(command).await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(
        !body.to_string().contains("s3cret"),
        "the password leaked: {body}"
    );
    // Let it log a few failed attempts before looking.
    guard(async {
        while server.output().matches("Redis").count() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    server.signal("TERM");
    let status = server.wait_exit().await;
    let output = server.output();
    assert!(status.success(), "{status:?}\n{output}");
    assert!(
        output.contains("Redis"),
        "the logs should mention Redis:\n{output}"
    );
    assert!(!output.contains("s3cret"), "the password leaked:\n{output}");
}

/// With `--port 0` the system picks the port; the log line must name that one, since it is
/// the only way to find the server (every other test relies on it too).
#[tokio::test]
async fn logs_the_port_it_actually_listens_on() {
    let server = Server::start(SSEOR, &[]).await;
    assert_ne!(server.addr.port(), 0);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    let (status, body) = server.get_json("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

// ---------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn readme_walkthrough_reaches_the_user_the_topic_and_everyone() {
    // Configured through the environment this time, as a deployment would.
    let mut command = command(SSEOR);
    command.envs([("SERVER_PORT", "0"), ("LOG_FORMAT", "json")]);
    let server = Server::spawn(command).await;

    // curl -N 'http://localhost:9090/api/v1/sse?user_id=user123'
    let mut user123 = server.subscribe("user123", &[]).await;
    let mut user456 = server.subscribe("user456", &["news"]).await;
    assert_eq!(server.connections("user123").await, (1, 2));

    let data = json!({"transaction_id": "txn_123", "status": "completed", "amount": 500.0});
    let (status, published) = server
        .publish(&json!({
            "user_id": "user123",
            "event": {"type": "transaction.updated", "data": data},
        }))
        .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["delivered_locally"], 1, "{published}");
    let id = published["id"].as_str().expect("a string id").to_owned();
    assert_eq!(seq_of(&id), 1, "the user's first event: {id}");

    // The event's `id:` is the stream's cursor, which holds the event's position.
    let event = user123.next_event().await;
    assert_eq!(event.event, "transaction.updated");
    assert_eq!(position_in(&event.id, &user("user123")), id);
    assert_eq!(data_of(&event), data);

    // A topic event: only user456 joined `news`.
    let (status, published) = server
        .publish(&json!({"topic": "news", "event": {"type": "headline", "data": {"n": 1}}}))
        .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["delivered_locally"], 1, "{published}");
    let news_id = published["id"].as_str().unwrap().to_owned();
    assert_eq!(
        seq_of(&news_id),
        1,
        "the topic numbers its own events: {news_id}"
    );
    // Its first event is the topic event: the user123 event, published earlier, never
    // reached it.
    let event = user456.next_event().await;
    assert_eq!(event.event, "headline");
    assert_eq!(position_in(&event.id, &topic("news")), news_id);
    assert_eq!(data_of(&event), json!({"n": 1}));

    // A broadcast reaches both; for user123 it is the next event, so the topic event did
    // not reach it.
    let (status, published) = server
        .publish(&json!({"event": {"type": "maintenance", "data": {"in": "5m"}}}))
        .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["delivered_locally"], 2, "{published}");
    let everyone_id = published["id"].as_str().unwrap().to_owned();
    assert_eq!(
        seq_of(&everyone_id),
        1,
        "the broadcasts number their own events"
    );
    for client in [&mut user123, &mut user456] {
        let event = client.next_event().await;
        assert_eq!(event.event, "maintenance");
        assert_eq!(position_in(&event.id, &Target::All), everyone_id);
        assert_eq!(data_of(&event), json!({"in": "5m"}));
    }

    // An id given by the publisher deduplicates: clients see a position, once.
    let body = json!({"user_id": "user123", "event": {"id": "custom-7", "type": "t"}});
    let (status, published) = server.publish(&body).await;
    assert_eq!(status, 202);
    let custom_id = published["id"].as_str().unwrap().to_owned();
    assert_eq!(
        seq_of(&custom_id),
        2,
        "the user's second event: {custom_id}"
    );
    let (status, repeated) = server.publish(&body).await;
    assert_eq!((status, &repeated["duplicate"]), (202, &json!(true)));
    assert_eq!(repeated["id"], published["id"]);
    let event = user123.next_event().await;
    assert_eq!(position_in(&event.id, &user("user123")), custom_id);
    assert_eq!(event.data, "{}");
}

#[tokio::test]
async fn two_connections_of_one_user_both_receive_and_are_forgotten_when_gone() {
    let server = Server::start(SSEOR, &["--heartbeat", "200ms"]).await;
    let mut first = server.subscribe("user123", &[]).await;
    let mut second = server.subscribe("user123", &[]).await;
    let other = server.subscribe("someone-else", &[]).await;
    assert_eq!(server.connections("user123").await, (2, 3));
    assert_eq!(server.connections("nobody").await, (0, 3));

    let (status, published) = server
        .publish(&json!({"user_id": "user123", "event": {"type": "ping", "data": {"k": "v"}}}))
        .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["delivered_locally"], 2, "{published}");
    for client in [&mut first, &mut second] {
        let event = client.next_event().await;
        assert_eq!(event.event, "ping");
        assert_eq!(data_of(&event), json!({"k": "v"}));
    }

    drop(first);
    drop(second);
    server.wait_for_connections("user123", (0, 1)).await;
    drop(other);
    server.wait_for_connections("user123", (0, 0)).await;
    let (status, published) = server.publish(&json!({"event": {"type": "t"}})).await;
    assert_eq!((status, &published["delivered_locally"]), (202, &json!(0)));
}

#[tokio::test]
async fn bad_requests_get_a_status_and_a_json_error() {
    let server = Server::start(SSEOR, &["--max-body-bytes", "1024"]).await;
    let error_of = |body: &serde_json::Value| {
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` string in {body}"))
            .to_owned()
    };

    // Subscribing without a user.
    let (status, body) = server.get_json("/api/v1/sse").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("user_id"), "{body}");
    let (status, body) = server.get_json("/api/v1/sse?topic=news").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get_json("/api/v1/sse?user_id=a%0Ab").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("user_id"), "{body}");

    // Malformed JSON names the field path.
    let (status, body) = server
        .publish(&json!({"user_id": "u", "event": {"type": 5}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("event.type"), "{body}");
    let (status, body) = server.post_raw(b"{\"event\": ".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("invalid JSON"), "{body}");
    let (status, body) = server.publish(&json!({"user_id": "u"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("event"), "{body}");
    let (status, body) = server
        .publish(&json!({"user": "u", "event": {"type": "t"}}))
        .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    let (status, body) = server
        .publish(&json!({"user_id": "u", "topic": "t", "event": {"type": "t"}}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .publish(&json!({"user_id": "", "event": {"type": "t"}}))
        .await;
    assert_eq!(status, 400, "{body}");

    // Too large a body.
    let big = json!({"event": {"type": "t", "data": {"pad": "x".repeat(2048)}}});
    let (status, body) = server.publish(&big).await;
    assert_eq!(status, 413, "{body}");
    error_of(&body);

    // Events that cannot be sent as one Server-Sent Event.
    for bad_type in ["", "a\nevent: forged", "a\rb", "a\r\nid: 9"] {
        let (status, body) = server.publish(&json!({"event": {"type": bad_type}})).await;
        assert_eq!(status, 422, "type {bad_type:?}: {body}");
        assert!(error_of(&body).contains("type"), "{body}");
    }
    let (status, body) = server
        .publish(&json!({"event": {"id": "1\n2", "type": "t"}}))
        .await;
    assert_eq!(status, 422, "{body}");

    // Unknown routes.
    let (status, body) = server.get_json("/api/v2/nothing").await;
    assert_eq!(status, 404, "{body}");
    assert!(error_of(&body).contains("/api/v2/nothing"), "{body}");

    // Still healthy after all that.
    let (status, body) = server.get_json("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

/// FAILS today: the API promises JSON errors, but a wrong method gets an empty 405.
#[tokio::test]
async fn a_wrong_method_gets_a_json_error() {
    let server = Server::start(SSEOR, &[]).await;
    let response = guard(http().get(server.url("/api/v1/publish")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let text = response.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("405 body is not JSON ({e}): {text:?}"));
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn an_injected_event_reaches_no_client() {
    let server = Server::start(SSEOR, &[]).await;
    let mut client = server.subscribe("victim", &["news"]).await;

    for target in [
        json!({"user_id": "victim"}),
        json!({"topic": "news"}),
        json!({}),
    ] {
        let mut forged = target.clone();
        forged["event"] = json!({"type": "a\nevent: forged\ndata: {\"pwned\":true}", "data": {}});
        let (status, body) = server.publish(&forged).await;
        assert_eq!(status, 422, "{body}");
        let mut forged_id = target.clone();
        forged_id["event"] = json!({"id": "1\nevent: forged", "type": "t"});
        let (status, body) = server.publish(&forged_id).await;
        assert_eq!(status, 422, "{body}");
    }

    let (status, published) = server
        .publish(&json!({"user_id": "victim", "event": {"type": "good", "data": {"ok": 1}}}))
        .await;
    assert_eq!(status, 202, "{published}");
    let event = client.next_event().await;
    assert_eq!(event.event, "good", "the first event received: {event:?}");
    assert_eq!(
        position_in(&event.id, &user("victim")),
        published["id"].as_str().unwrap()
    );
    assert_eq!(data_of(&event), json!({"ok": 1}));
}

#[tokio::test]
async fn streams_have_sse_headers_open_with_retry_and_carry_heartbeats() {
    let server = Server::start(SSEOR, &["--heartbeat", "200ms"]).await;
    let response = guard(http().get(server.sse_url("user123", &[])).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-cache"),
        "{headers:?}"
    );
    assert_eq!(headers["x-accel-buffering"], "no");

    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    guard(async {
        while seen.windows(3).filter(|w| w == b":\n\n").count() < 2 {
            let chunk = body.next().await.expect("the stream ended").unwrap();
            seen.extend_from_slice(&chunk);
        }
    })
    .await;
    assert!(
        seen.starts_with(b"retry: "),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test]
async fn the_retry_setting_is_announced_or_left_out() {
    let server = Server::start(SSEOR, &["--retry", "1500ms", "--retry-jitter", "0"]).await;
    let mut body = guard(http().get(server.sse_url("u", &[])).send())
        .await
        .unwrap()
        .bytes_stream();
    let first = guard(body.next()).await.unwrap().unwrap();
    assert_eq!(&first[..], b"retry: 1500\n\n");

    let mut command = command(SSEOR);
    command.args(["--port", "0", "--log-format", "json"]);
    command.env("SSEOR_RETRY", "0s");
    let server = Server::spawn(command).await;
    let mut body = guard(http().get(server.sse_url("u", &[])).send())
        .await
        .unwrap()
        .bytes_stream();
    let first = guard(body.next()).await.unwrap().unwrap();
    assert!(
        first.starts_with(b":"),
        "with `0s` the stream opens with a comment, not `retry:`: {first:?}"
    );
}

#[tokio::test]
async fn the_root_serves_the_demo_page() {
    let server = Server::start(SSEOR, &[]).await;
    let response = guard(http().get(server.url("/")).send()).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("<title>sseor"), "{page}");
    // Whether streams need a credential, which the page's script asks for.
    let (status, settings) = server.get_json("/demo/settings.json").await;
    assert_eq!((status, settings), (200, json!({"auth": false})));

    // The page's parts, each named in it: the browser client (as a plain script and as an
    // ES module), the page's stylesheet and its script.
    for link in [
        r#"<link rel="stylesheet" href="/demo.css">"#,
        r#"<script src="/sseor.js">"#,
        r#"<script src="/demo.js">"#,
    ] {
        assert!(page.contains(link), "{link} in {page}");
    }
    let javascript = "text/javascript; charset=utf-8";
    for (path, content_type, marker) in [
        ("/sseor.js", javascript, "root.Sseor ="),
        ("/sseor.mjs", javascript, "export {"),
        ("/demo.css", "text/css; charset=utf-8", "--accent:"),
        ("/demo.js", javascript, "Sseor.connect("),
        ("/demo.js", javascript, r#"fetch("/demo/settings.json""#),
    ] {
        let response = guard(http().get(server.url(path)).send()).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-cache", "{path}");
        assert!(response.text().await.unwrap().contains(marker), "{path}");
    }
}

// ---------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_ends_two_hundred_open_streams_and_exits_0() {
    const STREAMS: usize = 200;
    let mut server = Server::start(SSEOR, &[]).await;
    let client = http();
    let responses = guard(futures_util::future::join_all((0..STREAMS).map(|i| {
        client
            .get(server.sse_url(&format!("user{}", i % 50), &["all-hands"]))
            .send()
    })))
    .await;
    let streams: Vec<_> = responses
        .into_iter()
        .map(|response| {
            let response = response.expect("subscribing");
            assert_eq!(response.status(), 200);
            response.bytes_stream()
        })
        .collect();
    server
        .wait_for_connections("user0", (4, STREAMS as u64))
        .await;

    server.signal("TERM");

    let endings = guard(futures_util::future::join_all(streams.into_iter().map(
        |mut stream| async move {
            let mut seen = Vec::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) => seen.extend_from_slice(&chunk),
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
            Ok(seen)
        },
    )))
    .await;
    for (i, ending) in endings.into_iter().enumerate() {
        let seen = ending.unwrap_or_else(|e| panic!("stream {i} failed instead of ending: {e}"));
        assert!(seen.starts_with(b"retry: "), "stream {i}: {seen:?}");
    }

    let status = server.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", server.output());
    let messages = server.log_messages();
    assert!(
        messages.iter().any(|m| m == "sseor stopped"),
        "{}",
        server.output()
    );
}

#[tokio::test]
async fn sigint_ends_streams_and_exits_0() {
    let mut server = Server::start(SSEOR, &[]).await;
    let mut client = server.subscribe("user123", &[]).await;
    server.wait_for_connections("user123", (1, 1)).await;
    server.signal("INT");
    client
        .read_to_end()
        .await
        .expect("the stream should end cleanly");
    let status = server.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", server.output());
}

#[tokio::test]
async fn shutdown_cuts_off_a_client_that_stopped_reading_at_the_deadline() {
    // Queues large enough to take all 48 MiB, so that the client is not cut off as a slow
    // consumer before shutdown.
    let mut server = Server::start(
        SSEOR,
        &[
            "--shutdown-timeout",
            "1s",
            "--max-body-bytes",
            "1100000",
            "--queue-bytes",
            "100000000",
        ],
    )
    .await;
    // A client that sends its request and never reads: its socket buffers fill up, so
    // its stream cannot drain and only the shutdown deadline can end it.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /api/v1/sse?user_id=stalled HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    server.wait_for_connections("stalled", (1, 1)).await;
    // 48 MiB queued: more than the kernel's largest socket buffers (tcp_rmem/wmem max)
    // can absorb, whatever they are tuned to here.
    let big = json!({
        "user_id": "stalled",
        "event": {"type": "t", "data": {"pad": "x".repeat(1 << 20)}},
    });
    let big = big.to_string().into_bytes();
    let publishes = (0..48).map(|_| server.post_raw(big.clone()));
    for (status, body) in guard(futures_util::future::join_all(publishes)).await {
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["delivered_locally"], 1, "{body}");
    }

    let signalled = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit().await;
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}\n{}", server.output());
    // The stalled stream held shutdown up until the deadline (1 s after the signal),
    // which cut it off; a second of margin above for a loaded machine.
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(2)).contains(&took),
        "the process exited {took:?} after SIGTERM; the shutdown timeout is 1 s\n{}",
        server.output()
    );
    assert!(
        server.log_messages().iter().any(
            |message| message.starts_with("connections still open after the shutdown deadline")
        ),
        "shutdown should have reached its deadline:\n{}",
        server.output()
    );

    // The connection was closed: reading drains what was buffered, then ends.
    let mut sink = vec![0; 1 << 16];
    guard(async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// `GET /metrics` is Prometheus text with what happened: streams, publishes by target
/// kind, deliveries, closes by reason, latency; and no user id in it.
#[tokio::test]
async fn metrics_count_streams_publishes_and_deliveries() {
    let server = Server::start(SSEOR, &[]).await;
    let mut alice = server.subscribe("alice-secret-name", &["prices"]).await;
    let mut bob = server.subscribe("bob", &[]).await;
    server.wait_for_connections("bob", (1, 2)).await;
    let publishes = [
        json!({"user_id": "alice-secret-name", "event": {"type": "one"}}),
        json!({"topic": "prices", "event": {"type": "two"}}),
        json!({"event": {"type": "three"}}),
    ];
    for body in &publishes {
        assert_eq!(server.publish(body).await.0, 202);
    }
    for expected in ["one", "two", "three"] {
        assert_eq!(alice.next_event().await.event, expected);
    }
    assert_eq!(bob.next_event().await.event, "three");

    let response = guard(http().get(server.url("/metrics")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    for line in [
        "sseor_connections 2",
        "sseor_connected_users 2",
        "sseor_ready 1",
        "sseor_events_published_total{target=\"user\"} 1",
        "sseor_events_published_total{target=\"topic\"} 1",
        "sseor_events_published_total{target=\"all\"} 1",
        "sseor_events_delivered_total 4",
        "sseor_publish_duration_seconds_count 3",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        !text.contains("alice"),
        "a user id leaked into the metrics:\n{text}"
    );
}

/// Publishes an event of about 2 KiB to `user`; its position.
async fn publish_padded(server: &Server, user: &str, n: usize) -> String {
    let body = json!({
        "user_id": user,
        "event": {"type": "n", "data": {"n": n, "padding": "x".repeat(2048)}},
    });
    let (status, answer) = server.publish(&body).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// `--history-max-bytes` bounds the embedded broker's history across every user: the
/// oldest events go first, a resume from before them is a reset, one after them a replay.
#[tokio::test]
async fn history_beyond_its_byte_bound_is_evicted_oldest_first() {
    let server = Server::start(SSEOR, &["--history-max-bytes", "65536"]).await;
    let first = publish_padded(&server, "user0", 0).await;
    publish_padded(&server, "user0", 1).await;
    // About 200 KiB to other users, nobody connected: user0's first two events go.
    for n in 2..100 {
        publish_padded(&server, &format!("user{n}"), n).await;
    }
    let kept = publish_padded(&server, "user0", 100).await;
    publish_padded(&server, "user0", 101).await;

    // What a client that saw the event at `after` resumes from: after `first`, it needs
    // the second event, which is gone.
    let resume = |after: &str| {
        let cursor = cursor_at(&[(user("user0"), after)]);
        format!("{}&last_event_id={cursor}", server.sse_url("user0", &[]))
    };
    let mut evicted = Client::connect(&resume(&first)).await;
    let reset = evicted.next_event().await;
    assert_eq!(reset.event, "sseor.reset");
    let reason = data_of(&reset)["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("older than the history kept"), "{reason}");
    let mut replayed = Client::connect(&resume(&kept)).await;
    let event = replayed.next_event().await;
    assert_eq!(event.event, "n");
    assert_eq!(data_of(&event)["n"], 101);
}
