//! Why a request was refused by authentication.

use std::fmt;

use http::StatusCode;

/// Why a request was refused: a short, stable word (for clients, logs and metric labels)
/// and the HTTP status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthReason {
    /// No credential at all (401).
    Missing,
    /// Not a token this server can read: not a JWT, a claim of the wrong type (401).
    Malformed,
    /// Its `exp` is past (401).
    Expired,
    /// Its `nbf` is still to come (401).
    NotYetValid,
    /// Its signature does not verify with the configured key (401).
    BadSignature,
    /// Signed with another algorithm than the one configured, `none` included (401).
    BadAlgorithm,
    /// Its `iss` is not the configured issuer (401).
    BadIssuer,
    /// Its `aud` is not the configured audience (401).
    BadAudience,
    /// The ticket is unknown, expired or already used (401).
    InvalidTicket,
    /// Refused by an application's own authorizer (401).
    Rejected,
    /// Valid, but for another user's stream (403).
    ForbiddenUser,
    /// Valid, but it does not grant a topic asked for (403).
    ForbiddenTopic,
    /// Valid, but not a publisher's credential (403).
    ForbiddenPublish,
    /// Valid, but refused by an application's own authorizer (403).
    Forbidden,
}

impl AuthReason {
    /// The reason as one lowercase word: `missing`, `malformed`, `expired`,
    /// `not_yet_valid`, `bad_signature`, `bad_algorithm`, `bad_issuer`, `bad_audience`,
    /// `invalid_ticket`, `rejected`, `forbidden_user`, `forbidden_topic`,
    /// `forbidden_publish`, `forbidden`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::BadAlgorithm => "bad_algorithm",
            Self::BadIssuer => "bad_issuer",
            Self::BadAudience => "bad_audience",
            Self::InvalidTicket => "invalid_ticket",
            Self::Rejected => "rejected",
            Self::ForbiddenUser => "forbidden_user",
            Self::ForbiddenTopic => "forbidden_topic",
            Self::ForbiddenPublish => "forbidden_publish",
            Self::Forbidden => "forbidden",
        }
    }

    /// 401 when the request has no valid credential, 403 when its credential does not
    /// grant what it asks.
    ///
    /// ```
    /// use sseor::auth::AuthReason;
    /// assert_eq!(AuthReason::Expired.status(), axum::http::StatusCode::UNAUTHORIZED);
    /// assert_eq!(AuthReason::ForbiddenTopic.status(), axum::http::StatusCode::FORBIDDEN);
    /// ```
    pub fn status(self) -> StatusCode {
        match self {
            Self::ForbiddenUser
            | Self::ForbiddenTopic
            | Self::ForbiddenPublish
            | Self::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl fmt::Display for AuthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
