//! Lifecycle webhooks: every [`Lifecycle`](crate::Lifecycle) change this instance sees, POSTed to the
//! application in signed batches, at least once.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
//! use sseor::webhook::Webhook;
//! let webhook = Webhook::new("https://app.example.com/hooks/sseor", &std::env::var("WEBHOOK_SECRET").unwrap())?;
//! let manager = sseor::Manager::builder().webhook(webhook).build().await?;
//! # manager.close().await; Ok(()) }
//! ```
//!
//! # The request
//!
//! `POST` to the webhook's URL, `Content-Type: application/json`, with a body such as
//!
//! ```json
//! {"changes": [
//!   {"type": "user.online", "user_id": "user123", "at": 1764590400123, "id": "5f0c2a9e81d4b7c3-41"},
//!   {"type": "topic.vacated", "topic": "prices", "at": 1764590400180, "id": "5f0c2a9e81d4b7c3-42"}
//! ]}
//! ```
//!
//! Each change is a [`Lifecycle`](crate::Lifecycle) as it serializes (`type`, and `user_id` or `topic`),
//! plus `at`, when this instance saw it (Unix milliseconds), and `id`, unique to the
//! change and the same in every attempt to deliver it. The changes of a batch, and the
//! batches, come in the order this instance saw them: one request at a time.
//!
//! # The signature
//!
//! Every request carries `Sseor-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
//! the HMAC-SHA256, keyed with the webhook's secret, of the timestamp, a dot and the body
//! exactly as received (`"<t>.<body>"`); each attempt is signed anew. A receiver computes
//! the same, compares in constant time, and refuses a timestamp more than 5 minutes from
//! its clock, so that a captured request cannot be replayed. In Python:
//!
//! ```python
//! import hashlib, hmac, time
//!
//! def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
//!     parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
//!     timestamp = parts.get("t", "")
//!     if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
//!         return False
//!     signed = timestamp.encode() + b"." + body
//!     expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
//!     return hmac.compare_digest(expected, parts.get("v1", ""))
//! ```
//!
//! A receiver in Rust calls [`verify`].
//!
//! # At least once
//!
//! A batch is tried again until a 2xx answers it: after any other answer (redirects
//! included), a connection error or the [timeout](Webhook::timeout), it waits with
//! exponential backoff and jitter ([`retry_delay`](Webhook::retry_delay) doubled each time,
//! at most 10 s) and gives up once the next attempt would start more than
//! [`retry_for`](Webhook::retry_for) (1 minute) after the first; what is given up is
//! counted and logged. Since an answer can be lost after the application acted on a
//! request, a change may arrive twice: drop repeats by `id`. While a batch is retried, the
//! changes behind it wait in the buffer; when the buffer is full, new changes are dropped
//! (counted and logged), never waited for: the hook never blocks.
//!
//! # Closing
//!
//! [`Manager::close`](crate::Manager::close) closes the webhooks of its builder once its
//! streams are drained (so that the changes of the drain are in): what is buffered is sent
//! at once, in batches, and retried as usual, for at most the
//! [close timeout](Webhook::close_timeout) (5 s) and what is left of the manager's
//! shutdown timeout; what is still undelivered then is given up, counted and logged.
//!
//! # Counted
//!
//! In the manager's `/metrics`: `sseor_webhook_changes_delivered_total`,
//! `sseor_webhook_changes_failed_total` (given up), `sseor_webhook_changes_dropped_total`
//! (buffer full, or closed) and `sseor_webhook_requests_failed_total`; a delivery started
//! on its own with [`Webhook::start`] has its counts in [`Delivery::stats`].

mod delivery;
mod retry;
mod stats;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use delivery::Delivery;
pub use stats::Stats;
pub use wire::{DEFAULT_TOLERANCE, InvalidSignature, SIGNATURE_HEADER, sign_now, verify};

use crate::metrics::Metrics;
use crate::{Error, Result};
use retry::Backoff;

/// The shortest secret accepted, in bytes: as for HS256 tokens, 32 random bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The webhook that tells the application of [`Lifecycle`](crate::Lifecycle) changes: where to, signed with
/// what, and how changes are batched and retried. Give it to
/// [`Builder::webhook`](crate::Builder::webhook), or [`start`](Self::start) it on its own.
///
/// ```
/// # fn main() -> sseor::Result<()> {
/// use std::time::Duration;
/// use sseor::webhook::Webhook;
/// let webhook = Webhook::new("http://127.0.0.1:8000/hooks/sseor", "0123456789abcdef0123456789abcdef")?
///     .batch_size(50)
///     .batch_delay(Duration::from_millis(250))
///     .retry_for(Duration::from_secs(30));
/// # drop(webhook); Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct Webhook {
    url: reqwest::Url,
    secret: String,
    client: reqwest::Client,
    options: Options,
}

/// How changes are batched and retried.
#[derive(Debug, Clone, Copy)]
struct Options {
    batch_size: usize,
    batch_delay: Duration,
    buffer: usize,
    timeout: Duration,
    backoff: Backoff,
    close_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch_size: 100,
            batch_delay: Duration::from_millis(100),
            buffer: 10_000,
            timeout: Duration::from_secs(10),
            backoff: Backoff {
                first_delay: Duration::from_millis(250),
                give_up_after: Duration::from_secs(60),
            },
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &shown_url(&self.url))
            .field("secret", &"***")
            .field("options", &self.options)
            .finish()
    }
}

impl Webhook {
    /// A webhook that POSTs to `url` (`http://` or `https://`, checked against the
    /// system's root certificates), signed with `secret`, with every other option at its
    /// default.
    ///
    /// # Errors
    /// [`Error::InvalidWebhook`] when `url` does not parse or is not `http`/`https` with a
    /// host, or `secret` is shorter than [`MIN_SECRET_LEN`] bytes. The message never holds
    /// the secret, nor the URL (which may hold a credential).
    pub fn new(url: &str, secret: &str) -> Result<Self> {
        let invalid = |why: String| Error::InvalidWebhook(why);
        let url = reqwest::Url::parse(url)
            .map_err(|e| invalid(format!("the URL does not parse: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(format!(
                "the URL must be http:// or https:// with a host, not `{}:`",
                url.scheme()
            )));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(invalid(format!(
                "the secret is {} bytes long; at least {MIN_SECRET_LEN} are needed (such as \
                 `openssl rand -hex 32`)",
                secret.len()
            )));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("sseor/", env!("CARGO_PKG_VERSION")))
            // A redirected POST would become a GET elsewhere: a 3xx is a failed attempt.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("no HTTP client: {e}")))?;
        Ok(Self {
            url,
            secret: secret.to_owned(),
            client,
            options: Options::default(),
        })
    }

    /// The most changes in one request (default 100; at least 1).
    pub fn batch_size(mut self, changes: usize) -> Self {
        self.options.batch_size = changes.max(1);
        self
    }

    /// How long a change may wait for others to join its batch (default 100 ms; zero
    /// sends at once, batching only the changes that queue while a request is out).
    pub fn batch_delay(mut self, delay: Duration) -> Self {
        self.options.batch_delay = delay;
        self
    }

    /// How many changes may wait to be delivered (default 10,000; at least 1); beyond,
    /// new changes are dropped, counted and logged.
    pub fn buffer(mut self, changes: usize) -> Self {
        self.options.buffer = changes.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }

    /// How long one request may take, from connecting to the answer's status (default
    /// 10 s; at least 1 ms); longer is a failed attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a batch is retried: no attempt starts later than this after its first
    /// (default 1 minute; zero: one attempt only). Then the batch is given up.
    pub fn retry_for(mut self, limit: Duration) -> Self {
        self.options.backoff.give_up_after = limit;
        self
    }

    /// The wait after a batch's first failed attempt (default 250 ms; at least 1 ms),
    /// doubled after each further one up to 10 s, each drawn between half and all of it.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.options.backoff.first_delay = delay.max(Duration::from_millis(1));
        self
    }

    /// How long closing may take at most: the last try of what is still buffered then
    /// (default 5 s); see [`Delivery::close_within`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.options.close_timeout = timeout;
        self
    }

    /// Starts delivering on a task of its own, counting in the returned [`Delivery`]'s
    /// [`stats`](Delivery::stats); give its [`hook`](Delivery::hook) to
    /// [`Builder::on_lifecycle`](crate::Builder::on_lifecycle), or
    /// [`send`](Delivery::send) changes to it. [`Builder::webhook`](crate::Builder::webhook)
    /// does both, counts in the manager's `/metrics` and closes it with the manager.
    ///
    /// # Panics
    /// Outside a Tokio runtime, as `tokio::spawn`.
    pub fn start(self) -> Delivery {
        self.start_counting(Arc::new(Metrics::new()))
    }

    /// Starts delivering, counting in `metrics` too.
    pub(crate) fn start_counting(self, metrics: Arc<Metrics>) -> Delivery {
        Delivery::start(self, metrics)
    }
}

/// `url` for logs: scheme, host, port and path, never a password or a query.
fn shown_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

#[cfg(test)]
mod tests;
