//! Every status the document gives an operation, reached on purpose against the running
//! server, and each answer checked against the document (status, content type, headers,
//! body schema) by `tests/openapi/check_answers.py` with the JSON Schema validator the
//! tools bring. Schemathesis explores what it generates; these are the answers it rarely
//! or never provokes: limits, timeouts, a broker that is down, a history that no longer
//! reaches, and the stream itself, which it cannot read.
//!
//! Each run is a server set up one way (a module of its own) and answers what it asked;
//! [`runs`] lists them. A server with another setup (another authentication, another
//! broker) is one more module and one more line there, and the requests every setup makes
//! of the operations that need a credential are in [`asking`].

mod asking;
mod authenticated;
mod broker_down;
mod shutting_down;
mod unauthenticated;

use std::collections::BTreeSet;

use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, join_all};
use serde_json::Value;
use sseor_testkit::server::Server;
use sseor_testkit::{guard, http};
use tokio::process::Command;

use super::{served_document, tools};
use crate::SSEOR;
use asking::{Answer, ask};

/// Every run, each a server set up one way, run side by side.
fn runs() -> Vec<LocalBoxFuture<'static, Vec<Answer>>> {
    vec![
        unauthenticated::answers().boxed_local(),
        authenticated::answers().boxed_local(),
        broker_down::answers().boxed_local(),
        shutting_down::answers().boxed_local(),
    ]
}

/// Every documented operation asked with a request head over 8 KiB: 431.
async fn oversized_heads(server: &Server, document: &Value) -> Vec<Answer> {
    let padding = "p".repeat(9 * 1024);
    let mut answers = Vec::new();
    let operations: BTreeSet<(String, String)> = documented_statuses(document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    for (method, path) in operations {
        let method_of = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let request = http()
            .request(method_of, server.url(&path))
            .header("x-padding", &padding);
        answers.push(ask(&method, &path, request).await);
    }
    answers
}

/// `(METHOD, path, status)` of every answer the document gives.
fn documented_statuses(document: &Value) -> BTreeSet<(String, String, u16)> {
    let mut statuses = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                let status = status.parse().expect("a documented status is a number");
                statuses.insert((method.to_uppercase(), path.clone(), status));
            }
        }
    }
    statuses
}

fn reached_statuses(answers: &[Answer]) -> BTreeSet<(String, String, u16)> {
    answers
        .iter()
        .map(|answer| {
            let method = answer["method"].as_str().unwrap().to_owned();
            let path = answer["path"].as_str().unwrap().to_owned();
            (method, path, answer["status"].as_u64().unwrap() as u16)
        })
        .collect()
}

#[tokio::test]
async fn every_documented_status_is_reached_and_answered_as_documented() {
    let python = tools::python();
    let mut answers: Vec<Answer> = join_all(runs()).await.into_iter().flatten().collect();

    let server = Server::start(SSEOR, &[]).await;
    let document = served_document(&server).await;
    answers.extend(oversized_heads(&server, &document).await);
    let documented = documented_statuses(&document);
    let reached = reached_statuses(&answers);
    let unreached: Vec<_> = documented.difference(&reached).collect();
    assert!(
        unreached.is_empty(),
        "documented statuses no test reached: {unreached:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let document_file = dir.path().join("openapi.json");
    let answers_file = dir.path().join("answers.json");
    std::fs::write(&document_file, document.to_string()).unwrap();
    let asked = answers.len();
    std::fs::write(&answers_file, Value::from(answers).to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openapi/check_answers.py"
    );
    let output = guard(
        Command::new(&python)
            .arg(script)
            .arg(&document_file)
            .arg(&answers_file)
            .output(),
    )
    .await
    .expect("cannot run check_answers.py");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "answers that the document does not describe:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains(&format!("{asked} answers checked, 0 failures")),
        "{report}"
    );
}
