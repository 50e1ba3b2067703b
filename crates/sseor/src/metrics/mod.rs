//! What an instance counts, in the Prometheus text format: connections, events published and
//! delivered, connections closed and refused and why, authentication failures, Redis
//! reconnects, publish latency, and the lifecycle webhooks' changes delivered, given up and
//! dropped.
//!
//! Every [`Manager`](crate::Manager) has its own set (no global recorder), so that several
//! managers in one process do not add up each other's numbers. The metrics carry no user
//! ids, tokens or topic names: labels are fixed, short reasons, so that their number stays
//! small whatever the traffic.
//!
//! Without the `prometheus` feature nothing is counted and there is no `/metrics`: the
//! same calls reach a set of counters that keeps nothing.

#[cfg(not(feature = "prometheus"))]
mod off;
#[cfg(feature = "prometheus")]
mod prometheus;

#[cfg(not(feature = "prometheus"))]
pub(crate) use off::Metrics;
#[cfg(feature = "prometheus")]
pub(crate) use prometheus::Metrics;
