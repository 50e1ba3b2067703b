//! The names of Redis keys and channels.
//!
//! Everything of one target lives under one hash tag, `PREFIX:{user:ID}`,
//! `PREFIX:{topic:NAME}`, `PREFIX:{all}`: its sequence (that very key, a hash of its epoch
//! in `e` and its number under the field named by the epoch, which is also the name of its
//! channel), its history (`...}:history`, a list of the messages published) and the ids
//! publishers gave (`...}:sent:ID`). So a publish
//! touches one slot of a Redis Cluster, and no key is shared by all publishes. The keys
//! that span instances (presence, retention) keep tags of their own.

use crate::Target;

/// The names of channels and keys under a prefix.
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

    /// The hash that holds `target`'s sequence, and the channel its events are published
    /// on: `PREFIX:{user:ID}`, `PREFIX:{topic:NAME}`, `PREFIX:{all}`.
    pub(super) fn sequence(&self, target: &Target) -> String {
        match target {
            Target::User(user) => format!("{}:{{user:{user}}}", self.prefix),
            Target::Topic(topic) => format!("{}:{{topic:{topic}}}", self.prefix),
            Target::All => format!("{}:{{all}}", self.prefix),
        }
    }

    /// The channel events for `target` are published on: its sequence's name.
    pub(super) fn channel(&self, target: &Target) -> String {
        self.sequence(target)
    }

    /// The target whose channel is `channel`; `None` for any other channel.
    pub(super) fn target(&self, channel: &str) -> Option<Target> {
        let tagged = channel
            .strip_prefix(&self.prefix)?
            .strip_prefix(":{")?
            .strip_suffix('}')?;
        if tagged == "all" {
            return Some(Target::All);
        }
        if let Some(user) = tagged.strip_prefix("user:") {
            return Target::user(user).ok();
        }
        Target::topic(tagged.strip_prefix("topic:")?).ok()
    }

    /// The list of a target's last events: the messages published, oldest first.
    pub(super) fn history(&self, target: &Target) -> String {
        format!("{}:history", self.sequence(target))
    }

    /// Remembers that a publisher already sent the event with this id to this target:
    /// `...}:sent:HEX`, the id in hexadecimal, so that no other (target, id) pair gives
    /// the same key (a user id may hold `}:sent:` itself).
    pub(super) fn publisher_id(&self, target: &Target, id: &str) -> String {
        use std::fmt::Write;
        let mut key = format!("{}:sent:", self.sequence(target));
        for byte in id.bytes() {
            let _ = write!(key, "{byte:02x}");
        }
        key
    }

    /// The most events per target that the serving instances keep.
    pub(super) fn retention_events(&self) -> String {
        format!("{}:{{retention}}:events", self.prefix)
    }

    /// The longest time (ms) the serving instances keep events.
    pub(super) fn retention_age(&self) -> String {
        format!("{}:{{retention}}:age", self.prefix)
    }

    /// The channel an instance publishes its probes to, and subscribes to.
    pub(super) fn probe(&self, instance: &str) -> String {
        format!("{}:probe:{instance}", self.prefix)
    }

    /// The probe channel of an instance on the cluster slot of `tag`.
    pub(super) fn probe_in(&self, instance: &str, tag: &str) -> String {
        format!("{}:{{{tag}}}:probe:{instance}", self.prefix)
    }

    /// A hash of one instance's connections: user id -> count, and `""` -> total.
    pub(super) fn presence(&self, instance: &str) -> String {
        format!("{}:{{presence}}:{instance}", self.prefix)
    }

    /// A sorted set of live instances, scored by when their presence expires (Unix ms).
    pub(super) fn instances(&self) -> String {
        format!("{}:{{presence}}:instances", self.prefix)
    }

    /// A sorted set (all scores 0, read in order of name) of the topics an instance has
    /// streams of.
    pub(super) fn topics(&self, instance: &str) -> String {
        format!("{}:{{presence}}:{instance}:topics", self.prefix)
    }

    /// A hash of an instance's streams by topic.
    pub(super) fn topic_counts(&self, instance: &str) -> String {
        format!("{}:{{presence}}:{instance}:topic-counts", self.prefix)
    }

    /// A sorted set (all scores 0, read in order of name) of an instance's topic
    /// members, each `TOPIC\nUSER` (no name holds a line feed), so that the members of
    /// one topic are a range of it.
    pub(super) fn members(&self, instance: &str) -> String {
        format!("{}:{{presence}}:{instance}:members", self.prefix)
    }

    /// A hash of an instance's streams by topic member, `TOPIC\nUSER`.
    pub(super) fn member_counts(&self, instance: &str) -> String {
        format!("{}:{{presence}}:{instance}:member-counts", self.prefix)
    }

    /// Every presence key of an instance.
    pub(super) fn presence_keys(&self, instance: &str) -> [String; 5] {
        [
            self.presence(instance),
            self.topics(instance),
            self.topic_counts(instance),
            self.members(instance),
            self.member_counts(instance),
        ]
    }

    /// The set of the users and topics an instance holds for lifecycles (`u:ID`,
    /// `t:NAME`, and `""` while it is kept): it outlives the instance's presence until a
    /// survivor has released them.
    pub(super) fn held(&self, instance: &str) -> String {
        format!("{}:{{presence}}:{instance}:held", self.prefix)
    }

    /// Set for a while once a survivor released what an instance held: that instance,
    /// back, reports its users and topics again.
    pub(super) fn swept(&self, instance: &str) -> String {
        format!("{}:{{presence}}:{instance}:swept", self.prefix)
    }

    /// A sorted set of the instances whose presence expired, claimed by a survivor that
    /// releases what they held, scored by when its claim ends (Unix ms).
    pub(super) fn departed(&self) -> String {
        format!("{}:{{presence}}:departed", self.prefix)
    }

    /// The set of the instances that hold streams of `target`, for lifecycles.
    pub(super) fn holders(&self, target: &Target) -> String {
        format!("{}:holders", self.sequence(target))
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
            Target::user("u:1}").unwrap(),
            Target::topic("news").unwrap(),
            Target::All,
        ] {
            assert_eq!(names.target(&names.channel(&target)), Some(target));
        }
        assert_eq!(names.channel(&Target::user("u").unwrap()), "app:{user:u}");
        assert_eq!(names.target("other:{user:u}"), None);
        assert_eq!(names.target("app:probe:x"), None);
        assert_eq!(names.target("app:{user:}"), None);
    }

    #[test]
    fn a_targets_keys_share_its_hash_tag() {
        let names = Names::new("app");
        let user = Target::user("a}b").unwrap();
        let tag = |key: &str| {
            let open = key.find('{').unwrap();
            let close = open + key[open..].find('}').unwrap();
            key[open + 1..close].to_owned()
        };
        let sequence = names.sequence(&user);
        assert_eq!(tag(&names.history(&user)), tag(&sequence));
        assert_eq!(tag(&names.publisher_id(&user, "x}y")), tag(&sequence));
        assert_eq!(tag(&names.presence("i")), tag(&names.instances()));
        for key in names.presence_keys("i") {
            assert_eq!(tag(&key), tag(&names.departed()));
        }
        assert_eq!(tag(&names.held("i")), tag(&names.swept("i")));
        assert_eq!(tag(&names.holders(&user)), tag(&sequence));
        assert_eq!(tag(&names.retention_age()), tag(&names.retention_events()));
    }

    #[test]
    fn publisher_id_keys_tell_every_target_and_id_apart() {
        let names = Names::new("app");
        let key = |user: &str, id: &str| names.publisher_id(&Target::user(user).unwrap(), id);
        assert_ne!(key("a}:sent:62", "c"), key("a", "b}:sent:c"));
        assert_eq!(key("a", "b:"), "app:{user:a}:sent:623a");
    }
}
