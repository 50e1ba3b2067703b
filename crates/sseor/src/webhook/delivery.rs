//! A running webhook: the handle that takes changes without waiting ([`Delivery`]), and
//! the task that batches them, signs each batch and posts it, one request at a time, in
//! order, until it is acknowledged or given up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stats::{Counters, Stats};
use super::wire::{self, Change, SIGNATURE_HEADER};
use super::{Options, Webhook};
use crate::Lifecycle;
use crate::metrics::Metrics;

/// A started [`Webhook`]: hand it [`Lifecycle`] changes ([`hook`](Self::hook) or
/// [`send`](Self::send)); a task of its own delivers them. Cheap to clone: clones share
/// the same buffer and task.
///
/// The task ends once [`close`](Self::close) has finished, or once every handle and hook
/// is dropped and what they queued is delivered or given up.
#[derive(Clone)]
pub struct Delivery {
    shared: Arc<Shared>,
}

/// What the handles share.
struct Shared {
    queue: mpsc::Sender<Change>,
    counters: Arc<Counters>,
    control: Arc<Control>,
    /// Makes change ids unique across instances and restarts.
    id_prefix: u64,
    next_id: AtomicU64,
    close_timeout: Duration,
}

/// How the handles tell the task to close, and learn that it has.
#[derive(Default)]
struct Control {
    closing: CancellationToken,
    /// When the last try of a closing delivery ends; set before `closing` is cancelled.
    deadline: OnceLock<Instant>,
    done: CancellationToken,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Starts the task of `webhook`, counting into `metrics`.
    pub(super) fn start(webhook: Webhook, metrics: Arc<Metrics>) -> Self {
        let (queue, changes) = mpsc::channel(webhook.options.buffer);
        let counters = Arc::new(Counters::new(metrics));
        let control = Arc::new(Control::default());
        let close_timeout = webhook.options.close_timeout;
        let worker = Worker {
            changes,
            counters: counters.clone(),
            control: control.clone(),
            options: webhook.options,
            client: webhook.client,
            url: webhook.url,
            secret: webhook.secret,
        };
        tokio::spawn(worker.run());
        Self {
            shared: Arc::new(Shared {
                queue,
                counters,
                control,
                id_prefix: crate::random::u64(),
                next_id: AtomicU64::new(0),
                close_timeout,
            }),
        }
    }

    /// The hook to give [`Builder::on_lifecycle`](crate::Builder::on_lifecycle): it
    /// [`send`](Self::send)s each change, and never blocks.
    pub fn hook(&self) -> impl Fn(Lifecycle) + Send + Sync + 'static {
        let delivery = self.clone();
        move |change| {
            delivery.send(change);
        }
    }

    /// Queues `change` for delivery, without waiting; `false` when it was dropped instead,
    /// because the buffer is full or the delivery is closing (counted in
    /// [`Stats::dropped`] and `sseor_webhook_changes_dropped_total`, and logged at most
    /// every 10 s).
    pub fn send(&self, change: Lifecycle) -> bool {
        let shared = &self.shared;
        if shared.control.closing.is_cancelled() {
            shared.counters.dropped("closed");
            return false;
        }
        let sequence = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let change = Change {
            lifecycle: change,
            at: wire::unix_millis(),
            id: format!("{:016x}-{sequence}", shared.id_prefix),
            queued: Instant::now(),
        };
        // Counted before it is queued, so that the task never delivers more than was taken.
        shared.counters.queued();
        match shared.queue.try_send(change) {
            Ok(()) => true,
            Err(refused) => {
                shared.counters.unqueued();
                let why = match refused {
                    TrySendError::Full(_) => "buffer_full",
                    TrySendError::Closed(_) => "closed",
                };
                shared.counters.dropped(why);
                false
            }
        }
    }

    /// What was taken, delivered, given up and dropped so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.stats()
    }

    /// How long closing may take at most, as the webhook was set up.
    pub(crate) fn close_timeout(&self) -> Duration {
        self.shared.close_timeout
    }

    /// Closes the delivery, within its [close timeout](Webhook::close_timeout); see
    /// [`close_within`](Self::close_within).
    pub async fn close(&self) {
        self.close_within(self.shared.close_timeout).await;
    }

    /// Closes the delivery: from now on changes are dropped, and what is queued gets a
    /// last try: sent at once without waiting to be batched (a batch waiting to be retried
    /// is retried at once), then retried as usual, until `limit` has passed. What is still
    /// undelivered then is given up (counted in [`Stats::failed`] and logged). Completes
    /// when the task has ended, within about `limit`. The first call sets the deadline.
    pub async fn close_within(&self, limit: Duration) {
        let control = &self.shared.control;
        let _ = control.deadline.set(Instant::now() + limit);
        control.closing.cancel();
        // The task stops by itself at the deadline; the margin covers its last steps.
        let margin = Duration::from_millis(100);
        let _ = tokio::time::timeout(limit + margin, control.done.cancelled()).await;
    }
}

/// The task's side: the queue's receiver and what it needs to post.
struct Worker {
    changes: mpsc::Receiver<Change>,
    counters: Arc<Counters>,
    control: Arc<Control>,
    options: Options,
    client: reqwest::Client,
    url: reqwest::Url,
    secret: String,
}

impl Worker {
    /// Delivers until the queue ends, or until the deadline of a close: then what is left
    /// is given up.
    async fn run(mut self) {
        let control = self.control.clone();
        let counters = self.counters.clone();
        let _done = control.done.clone().drop_guard();
        let url = self.shown_url();
        let deadline = async {
            control.closing.cancelled().await;
            let at = control.deadline.get().copied().unwrap_or_else(Instant::now);
            tokio::time::sleep_until(at).await;
        };
        tokio::select! {
            () = self.deliver_all() => {}
            () = deadline => {
                let left = counters.stats().pending();
                if left > 0 {
                    counters.failed(usize::try_from(left).unwrap_or(usize::MAX));
                    tracing::warn!(
                        changes = left,
                        url,
                        "webhook: lifecycle changes not delivered within the close timeout, given up"
                    );
                }
            }
        }
    }

    async fn deliver_all(&mut self) {
        while let Some(batch) = self.next_batch().await {
            self.deliver(batch).await;
        }
    }

    fn closing(&self) -> bool {
        self.control.closing.is_cancelled()
    }

    /// The next batch: the first change waiting, then those that join it until the batch
    /// is full or the first has waited the batch delay (at once when closing). `None` once
    /// the queue has ended: every handle dropped, or closed and emptied.
    async fn next_batch(&mut self) -> Option<Vec<Change>> {
        let first = self.receive().await?;
        let send_by = first.queued + self.options.batch_delay;
        let mut batch = vec![first];
        while batch.len() < self.options.batch_size {
            match self.changes.try_recv() {
                Ok(change) => {
                    batch.push(change);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if self.closing() => break,
                Err(TryRecvError::Empty) => {}
            }
            tokio::select! {
                change = self.changes.recv() => match change {
                    Some(change) => batch.push(change),
                    None => break,
                },
                () = tokio::time::sleep_until(send_by) => break,
                // Loops once more: takes what is there, then sends.
                () = self.control.closing.cancelled() => {}
            }
        }
        Some(batch)
    }

    /// The next change; once closing, the queue refuses more and this drains it.
    async fn receive(&mut self) -> Option<Change> {
        if !self.closing() {
            tokio::select! {
                change = self.changes.recv() => return change,
                () = self.control.closing.cancelled() => {}
            }
        }
        self.changes.close();
        self.changes.recv().await
    }

    /// Posts `batch` until a 2xx answers it, or gives it up once the next attempt would
    /// start beyond the retry limit.
    async fn deliver(&self, batch: Vec<Change>) {
        let body = wire::body(&batch);
        let started = Instant::now();
        let mut failed = 0u32;
        loop {
            let why = match self.post(&body).await {
                Ok(()) => return self.counters.delivered(batch.len()),
                Err(why) => why,
            };
            self.counters.request_failed();
            failed += 1;
            match self.options.backoff.delay(failed, started.elapsed()) {
                Some(delay) => {
                    tracing::debug!(attempt = failed, error = why, ?delay, "webhook: retrying");
                    self.wait_to_retry(delay).await;
                }
                None => return self.give_up(batch.len(), failed, &why),
            }
        }
    }

    fn give_up(&self, changes: usize, attempts: u32, why: &str) {
        self.counters.failed(changes);
        tracing::warn!(
            changes,
            attempts,
            url = self.shown_url(),
            error = why,
            "webhook: batch of lifecycle changes given up after the retry limit"
        );
    }

    /// Waits `delay`; a close that begins meanwhile cuts the wait short once, so that the
    /// last try starts at once.
    async fn wait_to_retry(&self, delay: Duration) {
        if self.closing() {
            return tokio::time::sleep(delay).await;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.control.closing.cancelled() => {}
        }
    }

    /// One attempt: `body` signed now and posted; the error says why it failed, without
    /// the URL (which may hold a credential).
    async fn post(&self, body: &Bytes) -> Result<(), String> {
        let signature = wire::signature(self.secret.as_bytes(), wire::unix_seconds(), body);
        let response = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .timeout(self.options.timeout)
            .body(body.clone())
            .send()
            .await
            .map_err(|e| describe(&e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }

    /// The URL for logs: scheme, host, port and path, never a password or query.
    fn shown_url(&self) -> String {
        super::shown_url(&self.url)
    }
}

/// `error` and its causes in one line ("error sending request: ...: Connection refused").
fn describe(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        line.push_str(": ");
        line.push_str(&inner.to_string());
        cause = inner.source();
    }
    line
}
