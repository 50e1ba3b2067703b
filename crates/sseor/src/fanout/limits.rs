//! The limits on the streams one instance holds open.

use crate::ConnectionLimit;

/// The most streams open at once: in all, per user, per client IP; 0 is no limit.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    pub(crate) total: usize,
    pub(crate) per_user: usize,
    pub(crate) per_ip: usize,
}

/// Why a stream was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The registry is closed (shutting down).
    Closed,
    /// A limit is reached.
    Limit(ConnectionLimit, usize),
}
