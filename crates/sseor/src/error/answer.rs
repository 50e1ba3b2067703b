//! The HTTP answer of every [`Error`], in one place: its status, a JSON body
//! `{"error": message}` (with `"reason"` for refused credentials and rate limits),
//! `WWW-Authenticate` on a refused credential, and `Retry-After` in whole seconds on what a
//! client may try again. The server loop, the standard API and an application's own
//! handlers (`Error` is an [`IntoResponse`]) all answer through it.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::{AuthReason, ConnectionLimit, Error};

/// When a client refused because the broker is unavailable should try again: the broker
/// reconnects with a backoff of at most 2 s.
const BROKER_RETRY_AFTER: Duration = Duration::from_secs(2);

/// A JSON error response: `{"error": message}` with `status`.
///
/// ```
/// use axum::http::StatusCode;
/// let response = sseor::api::error(StatusCode::NOT_FOUND, "no such order");
/// assert_eq!(response.status(), StatusCode::NOT_FOUND);
/// ```
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `Retry-After` for `delay`: whole seconds, rounded up, at least one (a client told 0
/// would come back at once).
pub(crate) fn retry_after_seconds(delay: Duration) -> u64 {
    (delay.as_secs() + u64::from(delay.subsec_nanos() > 0)).max(1)
}

/// A 503 for work this instance cannot take on now (too many request bodies at once),
/// with `Retry-After`.
pub(crate) fn busy(message: &str, retry_after: Duration) -> Response {
    with_retry_after(
        json_error(StatusCode::SERVICE_UNAVAILABLE, message),
        retry_after,
    )
}

fn with_retry_after(mut response: Response, delay: Duration) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after_seconds(delay).into());
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::InvalidBatchItem { index, error } => {
                return indexed_error(item_status(error), *index, self.to_string());
            }
            Error::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::InvalidTarget(_) | Error::InvalidBatch(_) => StatusCode::BAD_REQUEST,
            Error::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Closed | Error::Broker(_) | Error::AuthUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::TooManyConnections { limit, .. } => match limit {
                ConnectionLimit::Total => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::TOO_MANY_REQUESTS,
            },
            Error::Auth { reason, message } => return refused_credential(*reason, message),
            Error::RateLimited { retry_after } => {
                let body = json!({ "error": self.to_string(), "reason": "rate_limited" });
                let response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                return with_retry_after(response, *retry_after);
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after = match &self {
            Error::TooManyConnections { retry_after, .. } => Some(*retry_after),
            Error::Broker(_) => Some(BROKER_RETRY_AFTER),
            Error::AuthUnavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let response = json_error(status, self.to_string());
        match retry_after {
            Some(delay) => with_retry_after(response, delay),
            None => response,
        }
    }
}

/// The refusal of a whole batch for its item at `index`: `{"error": message, "index": index}`
/// with the status the item alone would have got.
pub(crate) fn indexed_error(status: StatusCode, index: usize, message: String) -> Response {
    (status, Json(json!({ "error": message, "index": index }))).into_response()
}

/// The status of a batch refused for one of its items: the one a publish of that item
/// alone gets (422 for an event that cannot be sent, 400 for the rest).
fn item_status(error: &Error) -> StatusCode {
    match error {
        Error::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The answer to an [`Error::Auth`]: its status, `WWW-Authenticate: Bearer` (RFC 6750),
/// and `{"error": message, "reason": reason}`.
fn refused_credential(reason: AuthReason, message: &str) -> Response {
    let challenge = match reason {
        AuthReason::Missing => r#"Bearer realm="sseor""#,
        reason if reason.status() == StatusCode::FORBIDDEN => {
            r#"Bearer realm="sseor", error="insufficient_scope""#
        }
        _ => r#"Bearer realm="sseor", error="invalid_token""#,
    };
    let body = json!({ "error": message, "reason": reason.as_str() });
    let mut response = (reason.status(), Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn every_retryable_refusal_says_when() {
        let limited = Error::RateLimited {
            retry_after: Duration::from_millis(1500),
        };
        assert!(limited.to_string().contains("retry in 2 s"), "{limited}");
        let response = limited.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = Error::Broker("down".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let unavailable = Error::AuthUnavailable {
            message: "the login check timed out".into(),
            retry_after: Duration::from_secs(3),
        };
        let response = unavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
