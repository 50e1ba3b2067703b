//! The names of Redis keys and channels.

use crate::Target;

/// The names of channels and keys under a prefix:
/// channels `PREFIX:user:ID`, `PREFIX:topic:NAME`, `PREFIX:all`, `PREFIX:probe:INSTANCE`, and
/// the keys documented on each method.
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix`.
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix of every name.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The channel events for `target` are published on.
    pub(super) fn channel(&self, target: &Target) -> String {
        format!("{}:{}", self.prefix, Self::suffix(target))
    }

    /// What names a target under each kind of key: `user:ID`, `topic:NAME`, `all`.
    fn suffix(target: &Target) -> String {
        match target {
            Target::User(user) => format!("user:{user}"),
            Target::Topic(topic) => format!("topic:{topic}"),
            Target::All => "all".to_owned(),
        }
    }

    /// The target whose channel is `channel`; `None` for any other channel.
    pub(super) fn target(&self, channel: &str) -> Option<Target> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if rest == "all" {
            return Some(Target::All);
        }
        if let Some(user) = rest.strip_prefix("user:") {
            return Target::user(user).ok();
        }
        Target::topic(rest.strip_prefix("topic:")?).ok()
    }

    /// The hash that numbers events: `ms` (the last time used) and `seq`.
    pub(super) fn clock(&self) -> String {
        format!("{}:clock", self.prefix)
    }

    /// Changes when the history is lost, so that old positions are recognized.
    pub(super) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The stream of a target's last events.
    pub(super) fn history(&self, target: &Target) -> String {
        format!("{}:history:{}", self.prefix, Self::suffix(target))
    }

    /// The id of the newest event trimmed from a target's history.
    pub(super) fn trimmed(&self, target: &Target) -> String {
        format!("{}:trimmed:{}", self.prefix, Self::suffix(target))
    }

    /// Remembers that a publisher already sent the event with this id to this target:
    /// `PREFIX:sent:LEN:TARGET:ID`, where LEN is the length of `TARGET` in bytes, so that
    /// no other (target, id) pair gives the same key (`user:a:b` + `c` and `user:a` +
    /// `b:c` would otherwise both be `user:a:b:c`).
    pub(super) fn publisher_id(&self, target: &Target, id: &str) -> String {
        let suffix = Self::suffix(target);
        format!("{}:sent:{}:{suffix}:{id}", self.prefix, suffix.len())
    }

    /// The most events per target that the serving instances keep.
    pub(super) fn retention_events(&self) -> String {
        format!("{}:retention:events", self.prefix)
    }

    /// The longest time (ms) the serving instances keep events.
    pub(super) fn retention_age(&self) -> String {
        format!("{}:retention:age", self.prefix)
    }

    /// The channel an instance publishes its probes to, and subscribes to.
    pub(super) fn probe(&self, instance: &str) -> String {
        format!("{}:probe:{instance}", self.prefix)
    }

    /// A hash of one instance's connections: user id -> count, and `""` -> total.
    pub(super) fn presence(&self, instance: &str) -> String {
        format!("{}:presence:{instance}", self.prefix)
    }

    /// A sorted set of live instances, scored by when their presence expires (Unix ms).
    pub(super) fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// A stream ticket, by the digest it is kept under.
    pub(super) fn ticket(&self, key: &str) -> String {
        format!("{}:ticket:{key}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_back_to_their_targets() {
        let names = Names::new("app");
        for target in [
            Target::user("u:1").unwrap(),
            Target::topic("news").unwrap(),
            Target::All,
        ] {
            assert_eq!(names.target(&names.channel(&target)), Some(target));
        }
        assert_eq!(names.channel(&Target::user("u").unwrap()), "app:user:u");
        assert_eq!(names.target("other:user:u"), None);
        assert_eq!(names.target("app:seq"), None);
        assert_eq!(names.target("app:user:"), None);
    }

    #[test]
    fn publisher_id_keys_tell_every_target_and_id_apart() {
        let names = Names::new("app");
        let key = |user: &str, id: &str| names.publisher_id(&Target::user(user).unwrap(), id);
        assert_ne!(key("a:b", "c"), key("a", "b:c"));
        assert_eq!(key("a", "b:c"), "app:sent:6:user:a:b:c");
    }
}
