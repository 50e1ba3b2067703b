//! The event that applications publish, in the JSON shape `{"id", "type", "data", "retry"}`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The type of the event a resuming client receives when its position cannot be resumed
/// from: it must reload its state, then continues live.
pub const RESET_EVENT: &str = "sseor.reset";

/// Longest event type or id accepted, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// Longest reconnection hint accepted, in milliseconds (one hour): a browser told a
/// longer one in effect never comes back.
pub const MAX_RETRY_MS: u64 = 3_600_000;

/// An event as published: a type, a JSON object of data, and optionally an id and a
/// reconnection hint.
///
/// It serializes to `{"id": "...", "type": "...", "data": {...}, "retry": 3000}`, with `id`
/// and `retry` left out when empty, and reaches the browser as one Server-Sent Event whose
/// `event:` is the type and whose `data:` is the JSON of `data`.
///
/// Read from JSON strictly: an unknown field (a target put inside the event, `"date"` for
/// `"data"`) and a `null` where a value is expected are errors, never silently dropped.
///
/// ```
/// use serde_json::json;
/// use sseor::Event;
///
/// let event = Event::new("transaction.updated")
///     .with_data(json!({"transaction_id": "txn_123", "status": "completed", "amount": 500.0}));
/// assert_eq!(
///     serde_json::to_value(&event).unwrap(),
///     json!({"type": "transaction.updated",
///            "data": {"transaction_id": "txn_123", "status": "completed", "amount": 500.0}})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The publisher's id of the event: a second publish with the same id to the same
    /// target is recognised as a duplicate and not sent again. Clients never see it: the
    /// `id:` they receive is the event's position, assigned by the broker, which is what
    /// they resume from.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_string_as_none"
    )]
    pub id: Option<String>,

    /// The event type (`event:`), which browsers dispatch to `addEventListener(type)`.
    #[serde(rename = "type")]
    pub event_type: String,

    /// The payload, a JSON object (`data:`).
    #[serde(default)]
    pub data: Map<String, Value>,

    /// The reconnection delay the client should use, in milliseconds (`retry:`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub retry: Option<u64>,

    /// Kept out of the history: the event costs the broker one message and no storage,
    /// carries no `id:`, and a client that resumes does not get it again. For events
    /// nobody needs after the moment, such as typing indicators or price ticks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transient: bool,
}

impl Event {
    /// An event of the given type with empty data.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            id: None,
            event_type: event_type.into(),
            data: Map::new(),
            retry: None,
            transient: false,
        }
    }

    /// Sets the data. A JSON value that is not an object is wrapped as `{"value": ...}`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = match data {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        self
    }

    /// Sets the publisher's id of the event, by which a publish that is retried (after a
    /// timeout, say) is recognised and not delivered twice. The client does not see it:
    /// its `id:` is the position the broker assigns. An empty id is no id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into()).filter(|id| !id.is_empty());
        self
    }

    /// Keeps the event out of the history, as the field `transient` says.
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// Sets the reconnection hint, in milliseconds (0: none); more than [`MAX_RETRY_MS`]
    /// is refused by [`validate`](Self::validate).
    pub fn with_retry(mut self, retry_ms: u64) -> Self {
        self.retry = Some(retry_ms).filter(|&ms| ms > 0);
        self
    }

    /// Checks that the event can be sent as exactly one Server-Sent Event.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] when the type is empty, when the type or id is longer than
    /// [`MAX_FIELD_LEN`] bytes, when either holds a CR, LF or NUL (which would let a
    /// publisher inject fields or events of its own), or when `retry` is over
    /// [`MAX_RETRY_MS`].
    ///
    /// ```
    /// use sseor::Event;
    /// assert!(Event::new("ok").validate().is_ok());
    /// assert!(Event::new("").validate().is_err());
    /// assert!(Event::new("a\nevent: forged").validate().is_err());
    /// assert!(Event::new("ok").with_id("1\r2").validate().is_err());
    /// assert!(Event::new("ok").with_retry(sseor::MAX_RETRY_MS + 1).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.event_type.is_empty() {
            return Err(Error::InvalidEvent("`type` must not be empty".into()));
        }
        check_field("type", &self.event_type)?;
        if let Some(id) = &self.id {
            check_field("id", id)?;
        }
        match self.retry {
            Some(ms) if ms > MAX_RETRY_MS => Err(Error::InvalidEvent(format!(
                "`retry` is {ms} ms; at most {MAX_RETRY_MS} (one hour) is allowed"
            ))),
            _ => Ok(()),
        }
    }
}

fn check_field(name: &str, value: &str) -> Result<()> {
    if value.len() > MAX_FIELD_LEN {
        return Err(Error::InvalidEvent(format!(
            "`{name}` is {} bytes long; at most {MAX_FIELD_LEN} are allowed",
            value.len()
        )));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(Error::InvalidEvent(format!(
            "`{name}` must not contain CR, LF or NUL"
        )));
    }
    Ok(())
}

// A field that is present must hold a value: `null` is refused rather than read as
// absent, so that the absence of a field is always deliberate.

fn empty_string_as_none<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(Some(String::deserialize(de)?).filter(|s| !s.is_empty()))
}

fn zero_as_none<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    Ok(Some(u64::deserialize(de)?).filter(|&ms| ms > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn omits_empty_id_and_retry() {
        let event: Event =
            serde_json::from_value(json!({"id": "", "type": "t", "data": {}, "retry": 0})).unwrap();
        assert_eq!(event, Event::new("t"));
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"t","data":{}}"#
        );
    }

    #[test]
    fn keeps_id_and_retry() {
        let event = Event::new("t").with_id("7").with_retry(2500);
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"id": "7", "type": "t", "data": {}, "retry": 2500})
        );
    }

    #[test]
    fn rejects_long_fields() {
        let long = "x".repeat(MAX_FIELD_LEN + 1);
        assert!(Event::new(long.clone()).validate().is_err());
        assert!(Event::new("t").with_id(long).validate().is_err());
        assert!(Event::new("x".repeat(MAX_FIELD_LEN)).validate().is_ok());
    }

    #[test]
    fn refuses_unknown_fields_and_nulls() {
        let unknown = json!({"type": "t", "user_id": "alice", "data": {}});
        let refused = serde_json::from_value::<Event>(unknown).unwrap_err();
        assert!(refused.to_string().contains("user_id"), "{refused}");
        for null in [
            json!({"type": "t", "id": null}),
            json!({"type": "t", "retry": null}),
        ] {
            assert!(serde_json::from_value::<Event>(null).is_err());
        }
    }

    #[test]
    fn bounds_retry() {
        assert!(Event::new("t").with_retry(MAX_RETRY_MS).validate().is_ok());
        let refused = Event::new("t").with_retry(u64::MAX).validate().unwrap_err();
        assert!(refused.to_string().contains("`retry`"), "{refused}");
    }

    #[test]
    fn rejects_nul_in_id() {
        let err = Event::new("t").with_id("a\0b").validate().unwrap_err();
        assert!(err.to_string().contains("`id`"), "{err}");
    }
}
