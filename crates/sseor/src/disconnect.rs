//! Ending a user's streams on every instance, for an application that bans a user or
//! revokes a session: which streams and why ([`Disconnect`]), what was ended
//! ([`Disconnected`]), and the event each of those streams receives last
//! ([`DISCONNECT_EVENT`]).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use crate::{Error, Event, MAX_RETRY_MS, Result, Target};

/// The type of the last event a stream ended by [`Manager::disconnect`](crate::Manager::disconnect)
/// receives: `data: {"reason": "...", "reconnect": false}`. `sseor.js` closes for good on
/// it when `reconnect` is false.
pub const DISCONNECT_EVENT: &str = "sseor.disconnect";

/// Longest reason accepted, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// The reason of a [`Disconnect`] that gives none.
pub const DEFAULT_REASON: &str = "disconnected";

/// Which streams to end, on every instance, and what their clients are told.
///
/// The streams of one user, or only those of them that joined a topic. Each receives one
/// last event, [`DISCONNECT_EVENT`], after everything queued for it before, and then ends
/// cleanly. Unless `reconnect` is set, that event also carries `retry: 3600000`, so that a
/// plain `EventSource` waits an hour before it tries again (`sseor.js` does not try again
/// at all).
///
/// It reads from, and writes as, the JSON of `POST /api/v1/disconnect`:
/// `{"user_id": "U", "topic": "T", "reason": "...", "reconnect": false}`, all but
/// `user_id` optional, checked as the builder checks them.
///
/// ```
/// use sseor::Disconnect;
/// let banned = Disconnect::user("user123")?.reason("banned")?;
/// assert_eq!(banned.user_id(), "user123");
/// assert!(!banned.reconnects());
/// // Only the streams that joined `auction-7`, which may come back.
/// let kicked = Disconnect::user("user123")?.topic("auction-7")?.reconnect(true);
/// assert_eq!(kicked.topic_name(), Some("auction-7"));
/// assert!(Disconnect::user("user123")?.reason("a\nb").is_err());
/// # Ok::<(), sseor::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Requested", into = "Requested")]
pub struct Disconnect {
    user: Target,
    topic: Option<Target>,
    reason: String,
    reconnect: bool,
}

impl Disconnect {
    /// The streams of `user_id`, with the [`DEFAULT_REASON`], not to reconnect.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] for a user id that [`Target::user`] refuses.
    pub fn user(user_id: &str) -> Result<Self> {
        Ok(Self {
            user: Target::user(user_id)?,
            topic: None,
            reason: DEFAULT_REASON.to_owned(),
            reconnect: false,
        })
    }

    /// Only the streams of the user that joined `topic`.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] for a name that [`Target::topic`] refuses.
    pub fn topic(mut self, topic: &str) -> Result<Self> {
        self.topic = Some(Target::topic(topic)?);
        Ok(self)
    }

    /// Why, as the clients are told in the event's `reason`.
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] when `reason` is empty, longer than [`MAX_REASON_LEN`] bytes,
    /// or holds a CR, LF or NUL: the rules of an event's own fields.
    pub fn reason(mut self, reason: impl Into<String>) -> Result<Self> {
        let reason = reason.into();
        check_reason(&reason)?;
        self.reason = reason;
        Ok(self)
    }

    /// Whether the clients may come back (default false): `true` for a session moved
    /// elsewhere or a topic closed, `false` for a ban.
    pub fn reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// The user whose streams end.
    pub fn user_id(&self) -> &str {
        match &self.user {
            Target::User(user) => user,
            _ => "",
        }
    }

    /// The topic that narrows it, if any.
    pub fn topic_name(&self) -> Option<&str> {
        match &self.topic {
            Some(Target::Topic(topic)) => Some(topic),
            _ => None,
        }
    }

    /// The reason the clients are told.
    pub fn reason_text(&self) -> &str {
        &self.reason
    }

    /// Whether the clients may come back.
    pub fn reconnects(&self) -> bool {
        self.reconnect
    }

    /// The user's target.
    pub(crate) fn user_target(&self) -> &Target {
        &self.user
    }

    /// The topic's target, when the disconnect is narrowed to one.
    pub(crate) fn topic_target(&self) -> Option<&Target> {
        self.topic.as_ref()
    }

    /// The last event the streams receive.
    pub(crate) fn event(&self) -> Event {
        let event = Event::new(DISCONNECT_EVENT)
            .with_data(json!({ "reason": self.reason, "reconnect": self.reconnect }));
        if self.reconnect {
            event
        } else {
            event.with_retry(MAX_RETRY_MS)
        }
    }
}

/// What a [`Manager::disconnect`](crate::Manager::disconnect) did, as
/// `POST /api/v1/disconnect` answers it: `{"disconnected": 2, "instances": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Disconnected {
    /// How many streams of this instance were ended.
    pub disconnected: usize,
    /// How many instances received the disconnect, when the broker spans instances
    /// (Redis: those that follow the user, as they have streams of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
}

impl Disconnected {
    /// `disconnected` streams of this instance ended, `instances` reached.
    pub fn new(disconnected: usize, instances: Option<usize>) -> Self {
        Self {
            disconnected,
            instances,
        }
    }
}

fn check_reason(reason: &str) -> Result<()> {
    if reason.is_empty() {
        return Err(Error::InvalidEvent("`reason` must not be empty".into()));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(Error::InvalidEvent(format!(
            "`reason` is {} bytes long; at most {MAX_REASON_LEN} are allowed",
            reason.len()
        )));
    }
    if reason.contains(['\r', '\n', '\0']) {
        return Err(Error::InvalidEvent(
            "`reason` must not contain CR, LF or NUL".into(),
        ));
    }
    Ok(())
}

/// The JSON shape of a [`Disconnect`], read strictly: an unknown field or a `null` is an
/// error naming it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requested {
    user_id: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    topic: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    reason: Option<String>,
    #[serde(default)]
    reconnect: bool,
}

/// A field that is present holds a string: `null` is refused, never read as absent (a
/// `"topic": null` would otherwise end every stream of the user).
fn present<'de, D: Deserializer<'de>>(de: D) -> std::result::Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(de)? {
        Some(value) => Ok(Some(value)),
        None => Err(D::Error::custom(
            "null is not allowed: give a string, or leave the field out",
        )),
    }
}

impl TryFrom<Requested> for Disconnect {
    type Error = String;

    fn try_from(requested: Requested) -> std::result::Result<Self, String> {
        let read = || {
            let mut disconnect = Self::user(&requested.user_id)?.reconnect(requested.reconnect);
            if let Some(topic) = &requested.topic {
                disconnect = disconnect.topic(topic)?;
            }
            match requested.reason {
                Some(reason) => disconnect.reason(reason),
                None => Ok(disconnect),
            }
        };
        // The message without the error's own prefix ("invalid target: "): it names the
        // field already.
        read().map_err(|e| match e {
            Error::InvalidTarget(message) | Error::InvalidEvent(message) => message,
            other => other.to_string(),
        })
    }
}

impl From<Disconnect> for Requested {
    fn from(disconnect: Disconnect) -> Self {
        Self {
            user_id: disconnect.user_id().to_owned(),
            topic: disconnect.topic_name().map(str::to_owned),
            reason: Some(disconnect.reason),
            reconnect: disconnect.reconnect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_body_strictly() {
        let read = |json: serde_json::Value| serde_json::from_value::<Disconnect>(json);
        let full =
            read(json!({"user_id": "u", "topic": "t", "reason": "banned", "reconnect": true}))
                .unwrap();
        assert_eq!(
            full,
            Disconnect::user("u")
                .unwrap()
                .topic("t")
                .unwrap()
                .reason("banned")
                .unwrap()
                .reconnect(true)
        );
        assert_eq!(
            read(json!({"user_id": "u"})).unwrap(),
            Disconnect::user("u").unwrap()
        );
        for (refused, names) in [
            (json!({}), "user_id"),
            (json!({"user_id": "u", "topic": null}), "null"),
            (json!({"user_id": "u", "reason": ""}), "`reason`"),
            (json!({"user_id": "u", "reason": "a\nb"}), "`reason`"),
            (
                json!({"user_id": "u", "reason": "x".repeat(MAX_REASON_LEN + 1)}),
                "`reason`",
            ),
            (json!({"user_id": "u", "topic": ""}), "`topic`"),
            (json!({"user_id": "u", "reconnect": "no"}), "boolean"),
            (json!({"user_id": "u", "why": "x"}), "why"),
        ] {
            let error = read(refused.clone()).unwrap_err().to_string();
            assert!(error.contains(names), "{refused}: {error}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let disconnect = Disconnect::user("u")
            .unwrap()
            .topic("t")
            .unwrap()
            .reason("moved")
            .unwrap();
        let json = serde_json::to_value(&disconnect).unwrap();
        assert_eq!(
            json,
            json!({"user_id": "u", "topic": "t", "reason": "moved", "reconnect": false})
        );
        assert_eq!(
            serde_json::from_value::<Disconnect>(json).unwrap(),
            disconnect
        );
    }

    #[test]
    fn the_event_pushes_a_plain_event_source_away_unless_it_may_come_back() {
        let banned = Disconnect::user("u").unwrap().reason("banned").unwrap();
        let event = banned.event();
        assert_eq!(event.event_type, DISCONNECT_EVENT);
        assert_eq!(event.retry, Some(MAX_RETRY_MS));
        assert_eq!(
            serde_json::Value::Object(event.data),
            json!({"reason": "banned", "reconnect": false})
        );
        assert_eq!(banned.reconnect(true).event().retry, None);
    }
}
