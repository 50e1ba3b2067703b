//! Who an event is for: one user, one topic, or everyone.

use std::fmt;
use std::sync::Arc;

use crate::{Error, Result};

/// Longest user id or topic name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The audience of a published event.
///
/// Every connection belongs to one user, may join any number of topics, and always receives
/// broadcasts.
///
/// ```
/// use sseor::Target;
/// let user = Target::user("user123").unwrap();
/// assert_eq!(user.to_string(), "user:user123");
/// assert!(Target::topic("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Target {
    /// Every connection of one user.
    User(Arc<str>),
    /// Every connection that joined the topic.
    Topic(Arc<str>),
    /// Every connection.
    All,
}

impl Target {
    /// The connections of `user_id`.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] when the id is empty, longer than [`MAX_NAME_LEN`] bytes or
    /// holds a control character.
    pub fn user(user_id: &str) -> Result<Self> {
        check_name("user_id", user_id).map(|()| Self::User(user_id.into()))
    }

    /// The connections that joined `topic`.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] when the name is empty, longer than [`MAX_NAME_LEN`] bytes or
    /// holds a control character.
    pub fn topic(topic: &str) -> Result<Self> {
        check_name("topic", topic).map(|()| Self::Topic(topic.into()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(user) => write!(f, "user:{user}"),
            Self::Topic(topic) => write!(f, "topic:{topic}"),
            Self::All => f.write_str("all"),
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidTarget(format!("`{what}` must not be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidTarget(format!(
            "`{what}` is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidTarget(format!(
            "`{what}` must not contain control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names() {
        assert!(Target::user("").is_err());
        assert!(Target::user("a\nb").is_err());
        assert!(Target::topic(&"t".repeat(MAX_NAME_LEN + 1)).is_err());
        assert_eq!(Target::topic("news").unwrap().to_string(), "topic:news");
    }
}
