//! A small application with a login of its own, in the test's process on a real socket:
//! what sseor's auth callout (`--auth-url`) asks. It knows a few sessions by cookie (and
//! one API key by `Authorization`), answers as the callout protocol says, counts the
//! questions it is asked and remembers the last one; it can be slowed down, stopped and
//! started again on the same address. [`TlsLoginApp`] is the same behind HTTPS, with a
//! certificate of a CA made for it.
//!
//! | credential | answer |
//! |---|---|
//! | `Cookie: session=s-alice` or `Authorization: Bearer k-alice` | 200 `{"user": "alice", "topics": ["prices"], "expires_in": 600}` |
//! | `Cookie: session=s-brief` | 200 `{"user": "alice", "expires_in": 1}` |
//! | `Cookie: session=s-banned` | 403 `{"reason": "account suspended"}` |
//! | any, asking the topic `admin` | 403 `{"reason": "admins only"}` |
//! | none or another | 401 `{"error": "no session"}` |

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::hang::guard;

/// The cookie of alice's session: the stream of `alice` with the topic `prices`.
pub const ALICE: &str = "session=s-alice";
/// The API key of alice, sent as `Authorization: Bearer k-alice`.
pub const ALICE_KEY: &str = "Bearer k-alice";
/// The cookie of a session that expires one second after each answer.
pub const BRIEF: &str = "session=s-brief";
/// The cookie of a banned session.
pub const BANNED: &str = "session=s-banned";
/// What the application says of the banned session.
pub const BANNED_REASON: &str = "account suspended";

/// What the application saw and how it behaves, shared with its handler.
#[derive(Default)]
struct Shared {
    calls: AtomicUsize,
    delay_ms: AtomicU64,
    last: Mutex<Option<Asked>>,
}

/// One question the application was asked.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The JSON body.
    pub body: Value,
    /// The headers.
    pub headers: HeaderMap,
}

/// The running application; stopped when dropped.
pub struct LoginApp {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LoginApp {
    /// Starts it on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Arc::default()).await
    }

    async fn start_on(addr: SocketAddr, shared: Arc<Shared>) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("cannot bind the login application");
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            let _ = serving.await;
        });
        Self {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The URL of its authorization endpoint, for `--auth-url`.
    pub fn url(&self) -> String {
        format!("http://{}/sseor-auth", self.addr)
    }

    /// How many questions it has been asked.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// The last question it was asked.
    pub fn last(&self) -> Option<Asked> {
        self.shared.last.lock().unwrap().clone()
    }

    /// Makes every answer from now on wait `delay` first.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops it: nothing listens on its address any more, and its connections are
    /// closed (answers under way are finished first).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            guard(task).await.unwrap();
        }
    }

    /// Starts it again on the same address, with the same counts.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Self::start_on(self.addr, Arc::clone(&self.shared)).await;
    }
}

impl Drop for LoginApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The application's one route, answering with `shared`.
fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/sseor-auth", post(decide))
        .with_state(shared)
}

/// The application behind HTTPS, served by a `sseor` manager's own TLS server loop; stopped
/// when dropped.
pub struct TlsLoginApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The PEM certificate of the CA that issued its certificate.
    pub ca_pem: String,
    shared: Arc<Shared>,
    manager: sseor::Manager,
    _files: crate::certs::CertFiles,
}

impl TlsLoginApp {
    /// Starts it on a free port of 127.0.0.1, with a certificate for 127.0.0.1 issued by a
    /// CA made now.
    pub async fn start() -> Self {
        let ca = crate::certs::Ca::new("login");
        let files = ca.issue();
        let tls = sseor::TlsConfig::from_pem_files(&files.cert, &files.key).unwrap();
        let manager = sseor::Manager::builder()
            .tls(tls)
            .handle_signals(false)
            .build()
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::<Shared>::default();
        let app = router(Arc::clone(&shared));
        tokio::spawn({
            let manager = manager.clone();
            async move { manager.serve(listener, app).await }
        });
        Self {
            addr,
            ca_pem: ca.pem(),
            shared,
            manager,
            _files: files,
        }
    }

    /// The URL of its authorization endpoint.
    pub fn url(&self) -> String {
        format!("https://{}/sseor-auth", self.addr)
    }

    /// How many questions it has been asked.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }
}

impl Drop for TlsLoginApp {
    fn drop(&mut self) {
        let manager = self.manager.clone();
        tokio::spawn(async move { manager.close().await });
    }
}

async fn decide(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Json<Value>,
) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let Json(body) = body;
    let topics = body["topics"].as_array().cloned().unwrap_or_default();
    *shared.last.lock().unwrap() = Some(Asked {
        body,
        headers: headers.clone(),
    });
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    };
    let cookie = header("cookie");
    let has_cookie = |wanted: &str| cookie.split(';').any(|pair| pair.trim() == wanted);
    if topics.iter().any(|topic| topic == "admin") {
        return refuse(StatusCode::FORBIDDEN, json!({"reason": "admins only"}));
    }
    if has_cookie(BANNED) {
        return refuse(StatusCode::FORBIDDEN, json!({"reason": BANNED_REASON}));
    }
    if has_cookie(ALICE) || header("authorization") == ALICE_KEY {
        return Json(json!({"user": "alice", "topics": ["prices"], "expires_in": 600}))
            .into_response();
    }
    if has_cookie(BRIEF) {
        return Json(json!({"user": "alice", "expires_in": 1})).into_response();
    }
    refuse(StatusCode::UNAUTHORIZED, json!({"error": "no session"}))
}

fn refuse(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}
