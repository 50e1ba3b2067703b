//! The callout's wire format, both ways: the question sseor asks the application and how
//! its answer becomes a decision.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::request::Parts;
use serde::{Deserialize, Serialize};

use super::endpoint::Failure;
use crate::auth::{AuthReason, Grant};

/// The longest reason of a refusal passed on to the client, in characters.
const MAX_REASON_CHARS: usize = 200;

/// The longest grant accepted (about 30 years): beyond, `expires_in` is surely a mistake
/// such as a timestamp.
const MAX_EXPIRES_IN: f64 = 1e9;

/// The body of a callout: what the request asks for.
#[derive(Debug, Serialize)]
pub(super) struct Question {
    /// The `user_id` of the query (the first one), `null` when it names none.
    user_id: Option<String>,
    /// Every `topic` of the query, in order.
    topics: Vec<String>,
}

impl Question {
    /// What `request` asks for, from its query.
    pub(super) fn of(request: &Parts) -> Self {
        let pairs = crate::auth::query_pairs(request);
        let values = |name: &'static str| {
            pairs
                .iter()
                .filter(move |(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        Self {
            user_id: values("user_id").next(),
            topics: values("topic").collect(),
        }
    }

    /// As JSON.
    pub(super) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What the application decided.
#[derive(Debug, Clone)]
pub(super) enum Decision {
    /// The request may open this grant's streams.
    Granted(Grant),
    /// The application refused it (401 or 403), saying why.
    Refused {
        /// [`AuthReason::Rejected`] (401) or [`AuthReason::Forbidden`] (403).
        reason: AuthReason,
        /// The application's reason, cleaned, or a default.
        message: String,
    },
    /// No decision: the application failed.
    Failed(Failure),
}

/// The answer of a 200: who the session is, what it may join, for how long.
#[derive(Deserialize)]
struct Allowed {
    user: String,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    expires_in: Option<f64>,
}

/// The body of a refusal: its reason, under one of two usual names.
#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The decision of an answer with `status` and `body`, received at `now`.
pub(super) fn decision(status: StatusCode, body: &[u8], now: SystemTime) -> Decision {
    match status {
        StatusCode::OK => match grant(body, now) {
            Ok(grant) => Decision::Granted(grant),
            Err(why) => Decision::Failed(Failure::BadAnswer(why)),
        },
        StatusCode::UNAUTHORIZED => refused(
            AuthReason::Rejected,
            body,
            "the application did not recognise the login",
        ),
        StatusCode::FORBIDDEN => refused(
            AuthReason::Forbidden,
            body,
            "the application does not allow this stream",
        ),
        other => Decision::Failed(Failure::BadAnswer(format!("status {other}"))),
    }
}

fn grant(body: &[u8], now: SystemTime) -> Result<Grant, String> {
    let allowed: Allowed = serde_json::from_slice(body).map_err(|e| {
        format!("a 200 whose body is not `{{\"user\": \"...\", \"topics\": [...], \"expires_in\": seconds}}`: {e}")
    })?;
    let mut grant = Grant::user(&allowed.user)
        .map_err(|e| format!("a 200 whose `user` is not a valid user id: {e}"))?;
    grant = match allowed.topics {
        Some(topics) if topics.iter().any(|t| t == "*") => grant.with_all_topics(),
        Some(topics) => grant.with_topics(topics),
        None => grant,
    };
    match allowed.expires_in {
        None => Ok(grant),
        Some(seconds) if seconds > 0.0 && seconds <= MAX_EXPIRES_IN => {
            Ok(grant.expiring_at(now + Duration::from_secs_f64(seconds)))
        }
        Some(seconds) => Err(format!(
            "a 200 whose `expires_in` ({seconds}) is not a number of seconds above 0"
        )),
    }
}

fn refused(reason: AuthReason, body: &[u8], default: &str) -> Decision {
    let message = serde_json::from_slice::<Refusal>(body)
        .ok()
        .and_then(|refusal| refusal.reason.or(refusal.error))
        .map(|text| cleaned(&text))
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| default.to_owned());
    Decision::Refused { reason, message }
}

/// `text` fit to show a client: without control characters, trimmed, at most
/// [`MAX_REASON_CHARS`] characters.
fn cleaned(text: &str) -> String {
    let kept: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    kept.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(status: u16, body: &str) -> Decision {
        decision(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_200_is_a_grant_with_its_topics_and_expiry() {
        let Decision::Granted(grant) = decide(
            200,
            r#"{"user": "alice", "topics": ["prices"], "expires_in": 60}"#,
        ) else {
            panic!("not a grant");
        };
        assert_eq!(grant.user_id(), "alice");
        assert!(grant.topics().contains("prices") && !grant.topics().contains("news"));
        assert_eq!(
            grant.expires_at(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(60))
        );
        assert!(!grant.may_publish());
        let Decision::Granted(all) =
            decide(200, r#"{"user": "bob", "topics": ["*"], "publish": true}"#)
        else {
            panic!("not a grant");
        };
        assert!(all.topics().contains("anything") && !all.may_publish());
        assert_eq!(all.expires_at(), None);
    }

    #[test]
    fn a_200_that_is_not_a_grant_is_a_failure() {
        for body in [
            "",
            "not json",
            r#"{"topics": []}"#,
            r#"{"user": ""}"#,
            r#"{"user": "a\nb"}"#,
            r#"{"user": "alice", "topics": "prices"}"#,
            r#"{"user": "alice", "expires_in": 0}"#,
            r#"{"user": "alice", "expires_in": -5}"#,
            r#"{"user": "alice", "expires_in": 1.7e12}"#,
        ] {
            assert!(
                matches!(decide(200, body), Decision::Failed(Failure::BadAnswer(_))),
                "{body}"
            );
        }
        for status in [204, 302, 404, 500, 502] {
            assert!(
                matches!(decide(status, "{}"), Decision::Failed(_)),
                "{status}"
            );
        }
    }

    #[test]
    fn refusals_pass_the_applications_reason_on_cleaned_and_bounded() {
        let refused = |status, body| match decide(status, body) {
            Decision::Refused { reason, message } => (reason, message),
            other => panic!("{status} {body}: {other:?}"),
        };
        assert_eq!(
            refused(403, r#"{"reason": "account suspended"}"#),
            (AuthReason::Forbidden, "account suspended".into())
        );
        assert_eq!(
            refused(401, r#"{"error": "session\r\nexpired\u0000"}"#),
            (AuthReason::Rejected, "session  expired".into())
        );
        let (_, message) = refused(401, "<html>Unauthorized</html>");
        assert_eq!(message, "the application did not recognise the login");
        let long = format!(r#"{{"reason": "{}"}}"#, "é".repeat(1000));
        assert_eq!(refused(403, &long).1.chars().count(), MAX_REASON_CHARS);
    }
}
