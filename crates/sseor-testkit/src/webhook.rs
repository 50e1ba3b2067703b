//! A receiver of lifecycle webhooks: an axum app on a real port that records every
//! request, checks its signature with its own HMAC-SHA256 (not sseor's), and answers what
//! the test scripts (200 unless told otherwise).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How old a signature the receiver accepts, as the documentation advises.
const TOLERANCE_SECONDS: u64 = 300;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its body, as sent.
    pub body: Bytes,
    /// Its `Content-Type` header.
    pub content_type: Option<String>,
    /// Its `Sseor-Signature` header.
    pub signature: Option<String>,
    /// Whether that signature is the HMAC-SHA256 of `t.body` with the secret, with a
    /// timestamp within 5 minutes.
    pub signature_valid: bool,
    /// The body's `changes`.
    pub changes: Vec<Value>,
    /// The status it was answered with.
    pub status: u16,
    /// When it arrived.
    pub at: tokio::time::Instant,
}

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// At once, with this status.
    Status(u16),
    /// With this status after this delay (recorded as received at once: an application
    /// that acted on a request whose answer is lost).
    Late(u16, Duration),
}

struct Shared {
    secret: String,
    received: Mutex<Vec<Received>>,
    /// The answers to the next requests, in order; then `usual`.
    script: Mutex<VecDeque<Answer>>,
    usual: Mutex<u16>,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    /// A receiver on a free port of 127.0.0.1, checking signatures with `secret`.
    pub async fn start(secret: &str) -> Self {
        Self::start_on(0, secret).await
    }

    /// A receiver on `port` of 127.0.0.1 (0: any free one).
    pub async fn start_on(port: u16, secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("cannot bind the webhook receiver");
        let port = listener.local_addr().expect("no local address").port();
        let shared = Arc::new(Shared {
            secret: secret.to_owned(),
            received: Mutex::default(),
            script: Mutex::default(),
            usual: Mutex::new(200),
        });
        let app = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            shared,
            server,
        }
    }

    /// The URL to give the webhook.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Answers the next requests with `answers`, in order, then as usual again.
    pub fn answer_next(&self, answers: &[Answer]) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    /// Answers every request not scripted with `status` (200 at first).
    pub fn answer_usually(&self, status: u16) {
        *self.shared.usual.lock().unwrap() = status;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The changes of the requests answered with a 2xx, repeats (by `id`) dropped, as an
    /// application that receives at least once keeps them.
    pub fn accepted_changes(&self) -> Vec<Value> {
        let mut seen = HashSet::new();
        self.requests()
            .into_iter()
            .filter(|request| (200..300).contains(&request.status))
            .flat_map(|request| request.changes)
            .filter(|change| seen.insert(change["id"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    /// Waits until `count` changes are accepted (see
    /// [`accepted_changes`](Self::accepted_changes)), and returns them.
    pub async fn wait_for_changes(&self, count: usize) -> Vec<Value> {
        crate::guard(async {
            loop {
                let changes = self.accepted_changes();
                if changes.len() >= count {
                    return changes;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// Waits until `count` requests have arrived, and returns them.
    pub async fn wait_for_requests(&self, count: usize) -> Vec<Received> {
        crate::guard(async {
            loop {
                let requests = self.requests();
                if requests.len() >= count {
                    return requests;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let signature = header("sseor-signature");
    let signature_valid = signature
        .as_deref()
        .is_some_and(|signature| is_valid(&shared.secret, signature, &body));
    let changes = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|json| json.get("changes")?.as_array().cloned())
        .unwrap_or_default();
    let usual = Answer::Status(*shared.usual.lock().unwrap());
    let answer = shared.script.lock().unwrap().pop_front().unwrap_or(usual);
    let (status, delay) = match answer {
        Answer::Status(status) => (status, Duration::ZERO),
        Answer::Late(status, delay) => (status, delay),
    };
    shared.received.lock().unwrap().push(Received {
        body,
        content_type: header("content-type"),
        signature,
        signature_valid,
        changes,
        status,
        at: tokio::time::Instant::now(),
    });
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).expect("a scripted status")
}

/// `t=<seconds>,v1=<hex>`, checked as the documentation tells receivers to.
fn is_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut code = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => code = Some(value),
            _ => {}
        }
    }
    let (Some(timestamp), Some(code)) = (timestamp, code) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    match timestamp.parse::<u64>() {
        Ok(t) if now.abs_diff(t) <= TOLERANCE_SECONDS => {}
        _ => return false,
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    expected == code
}
