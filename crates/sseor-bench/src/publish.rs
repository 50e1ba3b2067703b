//! Publishing at a fixed rate over keep-alive HTTP connections, many requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::server::{Channel, PublishApi};
use crate::stats::unix_nanos;

/// What a paced run of publishes did.
pub(crate) struct Published {
    /// Requests answered 2xx.
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// From the first request to the last answer.
    pub(crate) seconds: f64,
    pub(crate) first_error: Option<String>,
}

impl Published {
    /// Publishes answered per second.
    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }
}

/// Publishes through one server's API with a pool of keep-alive connections.
pub(crate) struct Publisher {
    http: reqwest::Client,
    in_flight: usize,
    /// Events per request: above 1, through sseor's batch endpoint.
    batch: usize,
}

impl Publisher {
    pub(crate) fn new(in_flight: usize) -> Result<Self, String> {
        Self::trusting(in_flight, None)
    }

    /// A publisher that also trusts `root` (a DER certificate), for a server that speaks
    /// HTTPS with a certificate of its own.
    pub(crate) fn trusting(in_flight: usize, root: Option<&[u8]>) -> Result<Self, String> {
        let mut http = reqwest::Client::builder()
            .pool_max_idle_per_host(in_flight)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30));
        if let Some(root) = root {
            let root = reqwest::Certificate::from_der(root).map_err(|e| e.to_string())?;
            http = http.use_rustls_tls().add_root_certificate(root);
        }
        let http = http.build().map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            in_flight: in_flight.max(1),
            batch: 1,
        })
    }

    /// Sends `events` events per request (sseor's `POST /api/v1/publish/batch`) rather than
    /// one.
    pub(crate) fn batched(mut self, events: usize) -> Self {
        self.batch = events.max(1);
        self
    }

    /// Publishes events `first..first + count` at `rate` per second, event `n` to
    /// `channel(n)`, each carrying its publish time. A request waits for a free slot when
    /// `in_flight` are unanswered, so the achieved rate can be lower than `rate`;
    /// `f64::INFINITY` publishes as fast as the free slots allow.
    pub(crate) async fn paced(
        &self,
        api: &PublishApi,
        first: u64,
        count: u64,
        rate: f64,
        channel: impl Fn(u64) -> Channel,
    ) -> Published {
        let slots = Arc::new(Semaphore::new(self.in_flight));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
        let every = 1.0 / rate.max(1e-3);
        let started = Instant::now();
        let batch = self.batch as u64;
        for k in (0..count).step_by(self.batch) {
            let due = started + Duration::from_secs_f64(k as f64 * every);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let events = (first + k..first + (k + batch).min(count)).map(|n| (channel(n), n));
            let request = api.request_many(events, unix_nanos(), self.batch > 1);
            let sent = self
                .http
                .post(request.url)
                .header("content-type", "application/json")
                .body(request.body)
                .send();
            let (ok, failed, first_error) = (ok.clone(), failed.clone(), first_error.clone());
            let events = request.events;
            tokio::spawn(async move {
                let (delivered, error) = answered(sent.await, events).await;
                ok.fetch_add(delivered, Ordering::Relaxed);
                failed.fetch_add(events - delivered, Ordering::Relaxed);
                if let Some(error) = error {
                    first_error
                        .lock()
                        .expect("not poisoned")
                        .get_or_insert(error);
                }
                drop(slot);
            });
        }
        // Every slot back: every request answered.
        let _ = slots.acquire_many(self.in_flight as u32).await;
        let first_error = first_error.lock().expect("not poisoned").take();
        Published {
            ok: ok.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
            first_error,
        }
    }
}

/// How many of a request's `events` were published, and the first error; a batch answers
/// each item on its own.
async fn answered(sent: reqwest::Result<reqwest::Response>, events: u64) -> (u64, Option<String>) {
    let response = match sent {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => return (0, Some(format!("answered {}", response.status()))),
        Err(e) => return (0, Some(e.to_string())),
    };
    // Read the body so the connection goes back to the pool.
    let body = response.bytes().await;
    if events == 1 {
        return (1, None);
    }
    let answer: serde_json::Value = match body.map(|body| serde_json::from_slice(&body)) {
        Ok(Ok(answer)) => answer,
        _ => return (0, Some("the batch answer is not JSON".into())),
    };
    let results = answer["results"].as_array().map_or(&[][..], Vec::as_slice);
    let published = results.iter().filter(|r| r.get("error").is_none()).count() as u64;
    let error = (published < events).then(|| format!("the batch was answered {answer}"));
    (published.min(events), error)
}
