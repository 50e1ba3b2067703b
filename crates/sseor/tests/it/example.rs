//! The examples, each run as a real process: `examples/transactions.rs` (the Go original's Quick
//! Start) and `examples/axum_app.rs` (an axum application that serves itself).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use sseor_testkit::sse::Client;
use sseor_testkit::{free_port, guard, http};

use sseor::{Position, Target};

use crate::common::{cursor, position_in, user};

/// The example binary `name`, which `cargo test` builds beside the test binaries.
fn example_binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile_dir = deps.parent().unwrap().parent().unwrap();
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo test` (which builds examples) or `cargo build --examples`",
        binary.display()
    );
    binary
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_quick_start_streams_deposits_to_their_user() {
    let (_example, base) = start_example("transactions", "/").await;

    let page = http().get(format!("{base}/")).send().await.unwrap();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(r#"<script src="/sseor.js">"#)
    );
    let client = http().get(format!("{base}/sseor.js")).send().await.unwrap();
    assert_eq!(
        client.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(client.text().await.unwrap(), sseor::browser::SCRIPT);

    let missing = http()
        .get(format!("{base}/api/v1/sse/transactions"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "user_id required");

    let mut alice = Client::connect(&format!("{base}/api/v1/sse/transactions?user_id=alice")).await;
    let mut bob = Client::connect(&format!("{base}/api/v1/sse/transactions?user_id=bob")).await;
    let deposit = |user: &str, amount: f64| {
        http()
            .post(format!("{base}/api/v1/deposit"))
            .json(&json!({"user_id": user, "amount": amount}))
            .send()
    };
    let answer = deposit("alice", 500.0).await.unwrap();
    assert_eq!(answer.status(), 202);
    let answer: Value = answer.json().await.unwrap();
    deposit("bob", 7.25).await.unwrap();

    let event = alice.next_event().await;
    assert_eq!(event.event, "transaction.updated");
    // The stream's id holds the deposit's position in alice's events.
    let position: Position = answer["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(position_in(&event.id, &user("alice")), position);
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["transaction_id"], answer["transaction_id"]);
    assert_eq!(data["status"], "completed");
    assert_eq!(data["amount"], 500.0);
    let data: Value = serde_json::from_str(&bob.next_event().await.data).unwrap();
    assert_eq!(data["amount"], 7.25);

    let bad = http()
        .post(format!("{base}/api/v1/deposit"))
        .body("{\"user_id\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// Starts `name` on a free port and waits until it answers on `probe`.
async fn start_example(name: &str, probe: &str) -> (Running, String) {
    let port = free_port();
    let running = Running(
        Command::new(example_binary(name))
            .env("SERVER_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    guard(async {
        while http().get(format!("{base}{probe}")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    (running, base)
}

#[tokio::test]
async fn the_axum_app_streams_to_the_signed_in_user_and_stops_on_sigterm() {
    let (mut example, base) = start_example("axum_app", "/events").await;
    let anonymous = http().get(format!("{base}/events")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // The user is the session's: a `user_id` in the query changes nothing.
    let stream = |user: &str, query: &str| {
        http()
            .get(format!("{base}/events{query}"))
            .header("x-session-user", user)
            .send()
    };
    let alice = guard(stream("alice", "?user_id=mallory&topic=prices"))
        .await
        .unwrap();
    assert_eq!(alice.status(), 200);
    let mut alice = alice.bytes_stream();
    let mallory = guard(stream("mallory", "")).await.unwrap();
    let mut mallory = mallory.bytes_stream();

    let order = http()
        .post(format!("{base}/orders"))
        .header("x-session-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 202);
    let order: Value = order.json().await.unwrap();
    let position: sseor::Position = order["id"].as_str().unwrap().parse().unwrap();
    // The stream's cursor: alice's events at the order, no event of `prices` or to all.
    let id = cursor(&[
        (user("alice"), position),
        (Target::All, Position::default()),
        (Target::topic("prices").unwrap(), Position::default()),
    ]);
    let expected = format!("id: {id}\nevent: order.placed\n");
    let mut received = String::new();
    guard(async {
        while !received.contains(&expected) {
            let chunk = alice.next().await.unwrap().unwrap();
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;

    // SIGTERM with two clients connected: their streams end cleanly and the process exits
    // within its shutdown timeout (5 s).
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-s", "TERM", &example.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for stream in [&mut alice, &mut mallory] {
        guard(async {
            while let Some(chunk) = stream.next().await {
                chunk.expect("a clean end, not an error");
            }
        })
        .await;
    }
    let exit = guard(async {
        loop {
            if let Some(exit) = example.0.try_wait().unwrap() {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
}
