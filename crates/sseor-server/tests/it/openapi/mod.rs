//! The OpenAPI document the server serves at `/api/v1/openapi.json`: valid OpenAPI 3.1 by
//! `openapi-spec-validator`, and true of the running server by Schemathesis, which sends
//! it requests generated from the document, with and without authentication, and checks
//! every answer against it. `statuses` reaches every documented status on purpose.
//!
//! Needs `python3` with `venv`; the tools are installed by [`tools`].

mod statuses;
mod tools;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sseor_testkit::redis::RedisServer;
use sseor_testkit::server::Server;
use tokio::process::Command;

use crate::SSEOR;
// The authenticated servers are those of the input tests: HS256 tokens of `SECRET`, and
// `PUBLISH_TOKEN`.
use crate::input::{PUBLISH_TOKEN, SECRET, start_authenticated};

/// The checks every Schemathesis run makes: no 5xx, every answer as the document says
/// (its status, content type, headers and body), and a method the document does not give
/// a path answered 405 with `Allow`.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      unsupported_method,allow_header_conformance";

/// Test cases per operation and phase: with a dozen operations, a run takes under a
/// minute on two cores (about 1,300 test cases).
const MAX_EXAMPLES: &str = "150";

/// Bound of one Schemathesis run: a guard, not a measure.
const RUN_BOUND: Duration = Duration::from_secs(600);

/// The document as `server` serves it.
async fn served_document(server: &Server) -> Value {
    let (status, document) = server.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200, "{document}");
    document
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1() {
    let python = tools::python();
    let server = Server::start(SSEOR, &[]).await;
    let document = served_document(&server).await;
    assert_eq!(document["openapi"], "3.1.0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let output = tokio::time::timeout(
        RUN_BOUND,
        Command::new(&python)
            .args([
                "-m",
                "openapi_spec_validator",
                "--schema",
                "3.1",
                "--errors",
                "all",
            ])
            .arg(&file)
            .output(),
    )
    .await
    .expect("openapi-spec-validator hung")
    .expect("cannot run openapi-spec-validator");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "the document is not valid OpenAPI 3.1:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs Schemathesis against `server` with `checks` and `extra` arguments; fails with its
/// report when it finds anything.
async fn schemathesis(server: &Server, checks: &str, extra: &[&str]) {
    let python = tools::python();
    // One worker: Python 3.11 before 3.11.8 (Debian 12 has 3.11.2) can fail parsing the
    // source of Hypothesis's strategies in several threads at once ("AST constructor
    // recursion depth mismatch"), which Schemathesis reports as an error of the run.
    // Its working directory takes whatever it writes (reports, caches).
    let dir = tempfile::tempdir().unwrap();
    let mut run = Command::new(&python);
    run.args(["-m", "schemathesis.cli", "run"])
        .arg(server.url("/api/v1/openapi.json"))
        .args(["--checks", checks, "--max-examples", MAX_EXAMPLES])
        .args(["--workers", "1", "--request-timeout", "10", "--no-color"])
        .args([
            "--generation-database",
            "none",
            "--suppress-health-check",
            "all",
        ])
        .args(extra)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_BOUND, run.output())
        .await
        .expect("Schemathesis did not finish in time")
        .expect("cannot run Schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "Schemathesis found answers that the document does not describe:\n{report}\n{}",
        server
            .output()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        report.contains("passed"),
        "Schemathesis ran no test:\n{report}"
    );
}

/// Without authentication, a stream that opens never ends, and Schemathesis reads every
/// answer to its end: the stream endpoint is left out of this run. Its answers are
/// checked by the authenticated run (where every request it makes is refused, its
/// credential being the publish token) and by `statuses`, which opens streams.
#[tokio::test]
async fn schemathesis_finds_nothing_without_authentication() {
    let server = Server::start(SSEOR, &[]).await;
    schemathesis(&server, CHECKS, &["--exclude-path", "/api/v1/sse"]).await;
}

/// Every request carries the publish token: publishes, disconnects, counts, cursors,
/// history, presence and topics are served; streams and tickets, which need a subscriber's token, are refused with 401.
/// `ignored_auth` also checks that each operation needing a credential refuses requests
/// without one or with a wrong one. The server runs on Redis, so that the answers of the
/// broker that spans instances (publishes, presence pages, history, disconnects) are
/// explored too; the run without authentication explores the embedded broker's.
#[tokio::test]
async fn schemathesis_finds_nothing_with_authentication() {
    let redis = RedisServer::start();
    let server = start_authenticated(&["--redis-url", &redis.url()]).await;
    let authorization = format!("Authorization: Bearer {PUBLISH_TOKEN}");
    let checks = format!("{CHECKS},ignored_auth");
    schemathesis(&server, &checks, &["--header", &authorization]).await;
}
