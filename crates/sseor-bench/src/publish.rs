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
        })
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
        for k in 0..count {
            let due = started + Duration::from_secs_f64(k as f64 * every);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let n = first + k;
            let request = api.request(channel(n), n, unix_nanos());
            let sent = self
                .http
                .post(request.url)
                .header("content-type", "application/json")
                .body(request.body)
                .send();
            let (ok, failed, first_error) = (ok.clone(), failed.clone(), first_error.clone());
            tokio::spawn(async move {
                let error = match sent.await {
                    Ok(response) if response.status().is_success() => {
                        // Read the body so the connection goes back to the pool.
                        let _ = response.bytes().await;
                        None
                    }
                    Ok(response) => Some(format!("answered {}", response.status())),
                    Err(e) => Some(e.to_string()),
                };
                match error {
                    None => ok.fetch_add(1, Ordering::Relaxed),
                    Some(e) => {
                        first_error.lock().expect("not poisoned").get_or_insert(e);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
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
