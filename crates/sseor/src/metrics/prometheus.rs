//! The metrics, counted with `prometheus-client` and rendered in its text format.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Target;

type Labelled = Family<[(&'static str, &'static str); 1], Counter>;

/// The counters of one manager; cheap to update from any thread.
pub(crate) struct Metrics {
    registry: Registry,
    connections: Gauge,
    users: Gauge,
    ready: Gauge,
    published: Labelled,
    delivered: Counter,
    closed: Labelled,
    refused: Labelled,
    auth_failures: Labelled,
    redis_reconnects: Counter,
    publish_seconds: Histogram,
    webhook: WebhookCounters,
}

/// What the lifecycle webhooks count, in changes (requests for the failed ones).
#[derive(Default)]
struct WebhookCounters {
    delivered: Counter,
    failed: Counter,
    dropped: Counter,
    requests_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("sseor"),
            connections: Gauge::default(),
            users: Gauge::default(),
            ready: Gauge::default(),
            published: Labelled::default(),
            delivered: Counter::default(),
            closed: Labelled::default(),
            refused: Labelled::default(),
            auth_failures: Labelled::default(),
            redis_reconnects: Counter::default(),
            // 100 µs to ~3 s: an embedded publish takes microseconds, a Redis one a round trip.
            publish_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            webhook: WebhookCounters::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "connections",
            "Open event streams on this instance",
            metrics.connections.clone(),
        );
        registry.register(
            "connected_users",
            "Distinct users with at least one open stream on this instance",
            metrics.users.clone(),
        );
        registry.register(
            "ready",
            "1 when events published now reach this instance (broker reachable), else 0",
            metrics.ready.clone(),
        );
        registry.register(
            "events_published",
            "Events published through this instance, by target kind (user, topic, all)",
            metrics.published.clone(),
        );
        registry.register(
            "events_delivered",
            "Events queued to local streams (one per recipient; heartbeats not counted)",
            metrics.delivered.clone(),
        );
        registry.register(
            "connections_closed",
            "Streams ended, by reason",
            metrics.closed.clone(),
        );
        registry.register(
            "connections_refused",
            "Streams refused by a connection limit, by limit",
            metrics.refused.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused by authentication or authorization, by reason",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "redis_reconnects",
            "Times the Redis subscription was lost (or unreachable at start) and reconnecting began",
            metrics.redis_reconnects.clone(),
        );
        registry.register(
            "publish_duration_seconds",
            "Time from a publish call to the broker's acknowledgement",
            metrics.publish_seconds.clone(),
        );
        metrics.webhook.register(&mut metrics.registry);
        metrics
    }

    pub(crate) fn published(&self, target: &Target, seconds: f64) {
        let kind = match target {
            Target::User(_) => "user",
            Target::Topic(_) => "topic",
            Target::All => "all",
        };
        self.published.get_or_create(&[("target", kind)]).inc();
        self.publish_seconds.observe(seconds);
    }

    pub(crate) fn delivered(&self, recipients: usize) {
        self.delivered.inc_by(recipients as u64);
    }

    pub(crate) fn closed(&self, reason: &'static str) {
        self.closed.get_or_create(&[("reason", reason)]).inc();
    }

    pub(crate) fn refused(&self, limit: &'static str) {
        self.refused.get_or_create(&[("limit", limit)]).inc();
    }

    pub(crate) fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn redis_reconnected(&self) {
        self.redis_reconnects.inc();
    }

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_delivered(&self, changes: usize) {
        self.webhook.delivered.inc_by(changes as u64);
    }

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_failed(&self, changes: usize) {
        self.webhook.failed.inc_by(changes as u64);
    }

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_dropped(&self) {
        self.webhook.dropped.inc();
    }

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_request_failed(&self) {
        self.webhook.requests_failed.inc();
    }

    /// The text exposition, with the gauges read now.
    pub(crate) fn render(&self, connections: usize, users: usize, ready: bool) -> String {
        self.connections.set(gauge_value(connections));
        self.users.set(gauge_value(users));
        self.ready.set(i64::from(ready));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl WebhookCounters {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_changes_delivered",
            "Lifecycle changes whose webhook request was answered with a 2xx",
            self.delivered.clone(),
        );
        registry.register(
            "webhook_changes_failed",
            "Lifecycle changes given up: their webhook batch failed until the retry limit or the close timeout",
            self.failed.clone(),
        );
        registry.register(
            "webhook_changes_dropped",
            "Lifecycle changes dropped because the webhook's buffer was full or it was closed",
            self.dropped.clone(),
        );
        registry.register(
            "webhook_requests_failed",
            "Webhook requests that failed (no answer, or not 2xx), each retried or given up",
            self.requests_failed.clone(),
        );
    }
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_labels() {
        let metrics = Metrics::new();
        metrics.published(&Target::All, 0.002);
        metrics.published(&Target::user("u1").unwrap(), 0.001);
        metrics.delivered(3);
        metrics.closed("slow_consumer");
        metrics.auth_failed("expired");
        metrics.refused("max_connections_per_ip");
        metrics.redis_reconnected();
        metrics.webhook_delivered(3);
        metrics.webhook_failed(2);
        metrics.webhook_dropped();
        metrics.webhook_request_failed();
        let text = metrics.render(5, 2, true);
        for line in [
            "sseor_connections 5",
            "sseor_connected_users 2",
            "sseor_ready 1",
            "sseor_events_published_total{target=\"all\"} 1",
            "sseor_events_published_total{target=\"user\"} 1",
            "sseor_events_delivered_total 3",
            "sseor_connections_closed_total{reason=\"slow_consumer\"} 1",
            "sseor_connections_refused_total{limit=\"max_connections_per_ip\"} 1",
            "sseor_auth_failures_total{reason=\"expired\"} 1",
            "sseor_redis_reconnects_total 1",
            "sseor_publish_duration_seconds_count 2",
            "sseor_webhook_changes_delivered_total 3",
            "sseor_webhook_changes_failed_total 2",
            "sseor_webhook_changes_dropped_total 1",
            "sseor_webhook_requests_failed_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }
}
