//! Who is connected, across every instance: a user's connections, the users of a topic,
//! the topics that have subscribers, as [`Manager`](crate::Manager) answers them (see
//! [`Manager::presence_of_topic`](crate::Manager::presence_of_topic)).

use serde::Serialize;

/// How many users or topics a page holds when the caller does not say.
pub const DEFAULT_PRESENCE_PAGE: usize = 100;

/// The most users or topics one page holds.
pub const MAX_PRESENCE_PAGE: usize = 1000;

/// A user and their open streams: in all, or within one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UserPresence {
    /// The user.
    pub user_id: String,
    /// Their open streams, on every instance.
    pub connections: usize,
}

impl UserPresence {
    /// `user_id` with `connections` streams.
    pub fn new(user_id: &str, connections: usize) -> Self {
        Self {
            user_id: user_id.to_owned(),
            connections,
        }
    }

    /// Whether the user has a stream open anywhere.
    pub fn online(&self) -> bool {
        self.connections > 0
    }
}

/// A topic and the streams that joined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TopicPresence {
    /// The topic.
    pub topic: String,
    /// The streams that joined it, on every instance.
    pub connections: usize,
}

impl TopicPresence {
    /// `topic` with `connections` streams.
    pub fn new(topic: &str, connections: usize) -> Self {
        Self {
            topic: topic.to_owned(),
            connections,
        }
    }
}

/// One page of a listing in a stable order (by user id, or by topic name, as bytes):
/// ask for the next with the last item's id or name as `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresencePage<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// Whether more follow the last one.
    pub more: bool,
}

impl<T> PresencePage<T> {
    /// A page of `items`, followed by more when `more`.
    pub fn new(items: Vec<T>, more: bool) -> Self {
        Self { items, more }
    }
}

/// The first `limit` names after merging `lists`, each sorted and without repeats, and
/// whether any name follows them: which users (or topics) a page holds when every
/// instance gave its first `limit + 1`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn first_names(lists: Vec<Vec<String>>, limit: usize) -> (Vec<String>, bool) {
    let mut names: Vec<String> = lists.into_iter().flatten().collect();
    names.sort_unstable();
    names.dedup();
    let more = names.len() > limit;
    names.truncate(limit);
    (names, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_merge_lists_in_order_without_repeats() {
        let lists = vec![
            vec!["b".to_owned(), "d".to_owned()],
            vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
        ];
        assert_eq!(
            first_names(lists.clone(), 3),
            (vec!["a".into(), "b".into(), "c".into()], true)
        );
        assert!(!first_names(lists, 4).1);
    }
}
