//! The limits on the streams one instance holds open.

/// A limit on the streams one instance holds open; see
/// [`Builder::max_connections`](crate::Builder::max_connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionLimit {
    /// Streams on this instance (answered with 503: try another instance).
    Total,
    /// Streams of one user (answered with 429).
    PerUser,
    /// Streams from one client IP address (answered with 429).
    PerIp,
}

impl ConnectionLimit {
    /// The limit's name, as in the server's configuration: `max_connections`,
    /// `max_connections_per_user`, `max_connections_per_ip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerUser => "max_connections_per_user",
            Self::PerIp => "max_connections_per_ip",
        }
    }
}

impl std::fmt::Display for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Total => "this instance",
            Self::PerUser => "this user",
            Self::PerIp => "this client address",
        })
    }
}

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
