//! Who an event is for: one user, one topic, or everyone.

use std::fmt;
use std::sync::Arc;

use crate::{Error, Result};

/// Longest user id or topic name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The audience of a published event.
///
/// Every connection belongs to one user, may join topics (up to
/// [`Builder::max_topics`](crate::Builder::max_topics)), and always receives
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
    /// The streams of `user_id`.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] when the id is empty, longer than [`MAX_NAME_LEN`] bytes or
    /// holds a control, invisible or bidirectional-control character.
    pub fn user(user_id: &str) -> Result<Self> {
        check_name("user_id", user_id).map(|()| Self::User(user_id.into()))
    }

    /// The connections that joined `topic`.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] when the name is empty, longer than [`MAX_NAME_LEN`] bytes or
    /// holds a control, invisible or bidirectional-control character.
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
    if let Some(hidden) = name.chars().find(|&c| is_hidden(c)) {
        return Err(Error::InvalidTarget(format!(
            "`{what}` must not contain invisible or bidirectional-control characters \
             (found U+{:04X})",
            u32::from(hidden)
        )));
    }
    Ok(())
}

/// Characters that show as nothing, or reorder what surrounds them: two names that look
/// the same on a screen or in a log would otherwise be different users or topics.
fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' // soft hyphen
            | '\u{034F}' // combining grapheme joiner
            | '\u{061C}' // Arabic letter mark
            | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
            | '\u{180E}' // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width spaces and joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line and paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}' // zero-width no-break space (byte order mark)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tags
    )
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

    #[test]
    fn rejects_invisible_and_bidi_characters() {
        for hidden in [
            '\u{200B}', '\u{202E}', '\u{2028}', '\u{2029}', '\u{2066}', '\u{FEFF}',
        ] {
            let name = format!("ali{hidden}ce");
            let refused = Target::user(&name).unwrap_err().to_string();
            assert!(refused.contains("invisible"), "{refused}");
            assert!(Target::topic(&name).is_err());
        }
        assert!(Target::user("Zoë-ünïcode-用户").is_ok());
    }
}
