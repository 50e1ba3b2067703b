//! `examples/transactions.rs`, the spec's Quick Start, run as a real process.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, guard, http};
use serde_json::{Value, json};

/// The example binary, which `cargo test` builds beside the test binaries.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile_dir = deps.parent().unwrap().parent().unwrap();
    let binary = profile_dir.join("examples").join("transactions");
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _example = Running(
        Command::new(example_binary())
            .env("SERVER_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    guard(async {
        while http().get(format!("{base}/")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

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
    assert_eq!(event.id, answer["id"].as_str().unwrap());
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
