//! The counters of a build without the `prometheus` feature: they keep nothing.

use crate::Target;

/// Counts nothing; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Metrics;

impl Metrics {
    pub(crate) fn new() -> Self {
        Self
    }

    pub(crate) fn published(&self, _target: &Target, _seconds: f64) {}

    pub(crate) fn delivered(&self, _recipients: usize) {}

    pub(crate) fn closed(&self, _reason: &'static str) {}

    pub(crate) fn refused(&self, _limit: &'static str) {}

    pub(crate) fn auth_failed(&self, _reason: &'static str) {}

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn redis_reconnected(&self) {}

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_delivered(&self, _changes: usize) {}

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_failed(&self, _changes: usize) {}

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_dropped(&self) {}

    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    pub(crate) fn webhook_request_failed(&self) {}
}
