//! The one error type of the crate, and the HTTP answer each error gets.

mod answer;
mod auth_reason;

pub use answer::json_error;
pub(crate) use answer::{busy, indexed_error, retry_after_seconds};
pub use auth_reason::AuthReason;

use std::io;

/// Everything that can go wrong in sseor, with a message a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event was rejected before anything was sent: see the message for the field.
    #[error("invalid event: {0}")]
    InvalidEvent(String),

    /// A batch publish was refused as a whole, before anything was sent, because one of
    /// its items was: `index` counts from 0, and `error` says what is wrong with the item.
    #[error("item {index}: {error}")]
    InvalidBatchItem {
        /// The position of the item in the batch, from 0.
        index: usize,
        /// Why the item was refused.
        error: Box<Error>,
    },

    /// A batch publish was refused before anything was sent (it holds no event).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),

    /// A batch publish holds more events than allowed (HTTP 413); nothing was sent.
    #[error("a batch holds at most {max} events; this one holds {items}")]
    BatchTooLarge {
        /// The events in the batch.
        items: usize,
        /// The most allowed.
        max: usize,
    },

    /// A user id or topic name was rejected (empty, too long, or holding a control character).
    #[error("invalid target: {0}")]
    InvalidTarget(String),

    /// The broker URL could not be used.
    #[error("invalid broker URL: {0}")]
    InvalidUrl(String),

    /// A route could not be registered: see the message for the path.
    #[error("invalid route {0}")]
    InvalidRoute(String),

    /// The listen address could not be understood.
    #[error("invalid listen address `{0}`: expected `:PORT` or `HOST:PORT`")]
    InvalidAddress(String),

    /// The TLS certificate or key could not be used: see the message for the file and the
    /// reason (the contents of the files are never part of it).
    #[error("invalid TLS configuration: {0}")]
    Tls(String),

    /// The manager was closed with [`Manager::close`](crate::Manager::close); it takes no new work.
    #[error("the manager is closed")]
    Closed,

    /// A limit on open streams is reached: the stream was not opened. The HTTP answer is
    /// 503 for the instance's limit (another instance may have room), 429 for a user's or
    /// an address's, each with `Retry-After`.
    #[error(
        "too many open streams for {limit}: the limit `{}` ({max}) is reached; retry later",
        limit.as_str()
    )]
    TooManyConnections {
        /// Which limit.
        limit: ConnectionLimit,
        /// Its value.
        max: usize,
        /// When to try again (jittered, so that refused clients do not return together).
        retry_after: std::time::Duration,
    },

    /// The broker could not carry the event; nothing was delivered.
    #[error("broker unavailable: {0}")]
    Broker(String),

    /// A socket operation failed (binding the listen address, accepting).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// The request's credential was refused (HTTP 401) or does not grant what the request
    /// asks (HTTP 403): [`AuthReason::status`](AuthReason::status) tells which.
    /// The message never holds the credential itself.
    #[error("{message}")]
    Auth {
        /// Why, in a word that is stable across versions (`expired`, `forbidden_topic`).
        reason: AuthReason,
        /// What went wrong, for the client.
        message: String,
    },

    /// The application that decides who may open a stream could not be asked (it did not
    /// answer in time, could not be reached, or answered something other than a decision):
    /// HTTP 503 with `Retry-After`. The message says which, never the credential.
    #[error("{message}")]
    AuthUnavailable {
        /// What went wrong, for the client.
        message: String,
        /// When to try again.
        retry_after: std::time::Duration,
    },

    /// The credential published more than its rate allows (HTTP 429); it may again after
    /// `retry_after`.
    #[error(
        "too many publishes with this credential; retry in {} s",
        retry_after_seconds(*retry_after)
    )]
    RateLimited {
        /// How long until the next publish is allowed.
        retry_after: std::time::Duration,
    },

    /// The manager is set up in a way the server it runs under cannot honour (a limit per
    /// client address without the address); the message names the fix. HTTP 500.
    #[error("misconfigured server: {0}")]
    Misconfigured(String),

    /// An authentication setting cannot be used (a key that is not a PEM public key, a
    /// secret too short); the message names the setting, never the secret.
    #[error("invalid authentication setting: {0}")]
    InvalidAuthConfig(String),

    /// A lifecycle webhook cannot be used (a URL that is not `http`/`https`, a secret too
    /// short); the message never holds the secret or the URL.
    #[error("invalid webhook: {0}")]
    InvalidWebhook(String),
}

impl Error {
    /// An [`Error::InvalidBatchItem`]: `error` is what refused the item at `index`.
    pub fn in_batch(index: usize, error: Error) -> Self {
        Self::InvalidBatchItem {
            index,
            error: Box::new(error),
        }
    }

    /// An [`Error::Auth`] with `reason` and `message`, for an
    /// [`Authorizer`](crate::auth::Authorizer) that refuses a request.
    ///
    /// ```
    /// use sseor::auth::AuthReason;
    /// let error = sseor::Error::auth(AuthReason::Missing, "no session cookie");
    /// assert_eq!(error.to_string(), "no session cookie");
    /// ```
    pub fn auth(reason: AuthReason, message: impl Into<String>) -> Self {
        Self::Auth {
            reason,
            message: message.into(),
        }
    }
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
