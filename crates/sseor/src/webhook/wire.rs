//! What goes over the wire: the JSON body of a batch, and its `Sseor-Signature` header,
//! made here and checked by [`verify`].

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::Lifecycle;

/// The header that carries a batch's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Sseor-Signature";

/// How old a signature's timestamp a receiver should accept at most, by default: five
/// minutes, as [`verify`] is usually called with.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

type HmacSha256 = Hmac<Sha256>;

/// One change as the application receives it: the [`Lifecycle`] change's own fields
/// (`type` and `user_id` or `topic`), when it was seen and an id unique to it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Change {
    #[serde(flatten)]
    pub(super) lifecycle: Lifecycle,
    /// When this instance saw the change, in Unix milliseconds.
    pub(super) at: u64,
    /// Unique to this change, the same in every attempt to deliver it, so that a receiver
    /// can drop what it was sent twice.
    pub(super) id: String,
    /// When the change was queued, for how long it may wait to be batched.
    #[serde(skip)]
    pub(super) queued: tokio::time::Instant,
}

/// The body of a request: `{"changes": [...]}`.
pub(super) fn body(changes: &[Change]) -> bytes::Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        changes: &'a [Change],
    }
    // Serializing strings and numbers into a vector cannot fail.
    serde_json::to_vec(&Body { changes })
        .unwrap_or_default()
        .into()
}

/// The value of the [`SIGNATURE_HEADER`] of `body` signed with `secret` at `timestamp`
/// (Unix seconds): `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub(super) fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let code = mac(secret, timestamp, body).finalize().into_bytes();
    let mut header = format!("t={timestamp},v1=");
    for byte in code {
        // Writing into a String cannot fail.
        let _ = write!(header, "{byte:02x}");
    }
    header
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Now, in Unix seconds.
pub(super) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, in Unix milliseconds.
pub(super) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSignature {
    /// The header is not `t=<unix seconds>,v1=<hex>`.
    #[error("the signature header is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    /// The timestamp is further from now than the tolerance: a replay, or a clock far off.
    #[error("the signature's timestamp is {age_seconds} s from now, beyond the tolerance")]
    Stale {
        /// How far the timestamp is from now, in seconds.
        age_seconds: u64,
    },
    /// No `v1` signature in the header matches the body and the secret.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a webhook request, for a receiver written in Rust: `header` is the value of its
/// [`SIGNATURE_HEADER`], `body` its body exactly as received, `secret` the webhook's, and
/// a timestamp further than `tolerance` from now (5 minutes is usual:
/// [`DEFAULT_TOLERANCE`]) is refused so that a captured request cannot be replayed later.
/// The comparison takes the same time whatever the bytes.
///
/// ```
/// use sseor::webhook::{DEFAULT_TOLERANCE, verify};
/// let secret = "a secret of at least thirty-two bytes";
/// # let header = sseor::webhook::sign_now(secret, br#"{"changes":[]}"#);
/// // header: the request's `Sseor-Signature`, body: its bytes
/// assert!(verify(secret, &header, br#"{"changes":[]}"#, DEFAULT_TOLERANCE).is_ok());
/// assert!(verify(secret, &header, br#"{"changes":[{}]}"#, DEFAULT_TOLERANCE).is_err());
/// ```
///
/// # Errors
/// [`InvalidSignature`] saying why.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), InvalidSignature> {
    let mut timestamp = None;
    let mut codes = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
            Some(("v1", value)) => codes.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(InvalidSignature::Malformed)?;
    let age_seconds = unix_seconds().abs_diff(timestamp);
    if age_seconds > tolerance.as_secs() {
        return Err(InvalidSignature::Stale { age_seconds });
    }
    let matches = |code: &&str| {
        decode_hex(code).is_some_and(|code| {
            mac(secret.as_bytes(), timestamp, body)
                .verify_slice(&code)
                .is_ok()
        })
    };
    if codes.iter().any(matches) {
        Ok(())
    } else {
        Err(InvalidSignature::Mismatch)
    }
}

/// The [`SIGNATURE_HEADER`] value of `body` signed with `secret` now, as a delivery signs
/// it: for a receiver's own tests.
pub fn sign_now(secret: &str, body: &[u8]) -> String {
    signature(secret.as_bytes(), unix_seconds(), body)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hmac_of_the_timestamp_a_dot_and_the_body() {
        // Known answer: printf '1700000000.{"changes":[]}' | openssl dgst -sha256 -hmac key
        let header = signature(b"key", 1_700_000_000, br#"{"changes":[]}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=64964550fbbf2d03a2a9fd5c80beb1706ff3f052a6d896606fe408ee0a6b72d5"
        );
    }

    #[test]
    fn verify_refuses_a_changed_body_an_old_timestamp_and_a_bad_header() {
        let secret = "0123456789abcdef0123456789abcdef";
        let body = br#"{"changes":[{"type":"user.online","user_id":"u"}]}"#;
        let header = sign_now(secret, body);
        assert_eq!(verify(secret, &header, body, DEFAULT_TOLERANCE), Ok(()));
        let other = br#"{"changes":[{"type":"user.online","user_id":"v"}]}"#;
        assert_eq!(
            verify(secret, &header, other, DEFAULT_TOLERANCE),
            Err(InvalidSignature::Mismatch)
        );
        let old = signature(secret.as_bytes(), unix_seconds() - 600, body);
        assert!(matches!(
            verify(secret, &old, body, DEFAULT_TOLERANCE),
            Err(InvalidSignature::Stale { .. })
        ));
        for bad in ["", "v1=00", "t=x,v1=00", "t=1"] {
            assert!(
                verify(secret, bad, body, DEFAULT_TOLERANCE).is_err(),
                "{bad}"
            );
        }
    }
}
