//! What the registry tells of presence: this instance's connection counts by user, by
//! topic and by user within a topic (all of them, or those that changed since a broker
//! last asked), pages of a topic's users and of the topics, and the first arrival and
//! last departure of each user and topic, for lifecycles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Registry, Tables};
use crate::presence::{TopicPresence, UserPresence};
use crate::{Occupancy, Target};

/// Users, topics and (topic, user) pairs whose counts changed since the broker last asked.
#[derive(Default)]
pub(super) struct Changed {
    users: HashSet<Arc<str>>,
    topics: HashSet<Arc<str>>,
    members: HashSet<(Arc<str>, Arc<str>)>,
}

impl Changed {
    /// Notes that a stream of `targets` opened or closed.
    pub(super) fn note(&mut self, targets: &[Target]) {
        let user = user_of(targets);
        for target in targets {
            match target {
                Target::User(user) => {
                    self.users.insert(user.clone());
                }
                Target::Topic(topic) => {
                    self.topics.insert(topic.clone());
                    if let Some(user) = user {
                        self.members.insert((topic.clone(), user.clone()));
                    }
                }
                Target::All => {}
            }
        }
    }
}

/// The user of a stream of `targets`, if it has one.
fn user_of(targets: &[Target]) -> Option<&Arc<str>> {
    targets.iter().find_map(|target| match target {
        Target::User(user) => Some(user),
        _ => None,
    })
}

/// This instance's connection counts, as a broker writes them to its presence: those
/// that changed since it last asked (0 for what has none left), or all of them.
#[derive(Debug, Default)]
pub(crate) struct PresenceCounts {
    /// Connections by user.
    pub(crate) users: Vec<(Arc<str>, usize)>,
    /// Connections by topic.
    pub(crate) topics: Vec<(Arc<str>, usize)>,
    /// Connections by topic and user: (topic, user, connections).
    pub(crate) members: Vec<(Arc<str>, Arc<str>, usize)>,
}

impl Tables {
    fn count(&self, target: &Target) -> usize {
        self.by_target.get(target).map_or(0, HashMap::len)
    }

    /// Streams of `user` that joined `topic`: a user holds few streams, so they are looked
    /// through rather than the topic's.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn member_count(&self, topic: &Arc<str>, user: &Arc<str>) -> usize {
        let topic = Target::Topic(topic.clone());
        self.by_target
            .get(&Target::User(user.clone()))
            .map_or(0, |streams| {
                streams
                    .keys()
                    .filter_map(|id| self.connections.get(id))
                    .filter(|entry| entry.targets.contains(&topic))
                    .count()
            })
    }

    /// The users of `topic`'s streams, each with its number of them there.
    fn members_of(&self, topic: &Target) -> BTreeMap<Arc<str>, usize> {
        let mut members = BTreeMap::new();
        let streams = self
            .by_target
            .get(topic)
            .into_iter()
            .flat_map(HashMap::keys);
        for entry in streams.filter_map(|id| self.connections.get(id)) {
            if let Some(user) = user_of(&entry.targets) {
                *members.entry(user.clone()).or_default() += 1;
            }
        }
        members
    }

    /// Every user, topic and topic member with connections here, with their counts.
    fn every_count(&self) -> PresenceCounts {
        let mut counts = PresenceCounts::default();
        for (target, streams) in &self.by_target {
            match target {
                Target::User(user) => counts.users.push((user.clone(), streams.len())),
                Target::Topic(topic) => {
                    counts.topics.push((topic.clone(), streams.len()));
                    let members = self.members_of(target);
                    let members = members.into_iter();
                    counts
                        .members
                        .extend(members.map(|(u, n)| (topic.clone(), u, n)));
                }
                Target::All => {}
            }
        }
        counts
    }
}

impl Registry {
    /// From now on, the first local stream of each user and topic, and the last to leave,
    /// are reported to the receiver, in order. For the lifecycle task; a second call gets
    /// a receiver that hears nothing.
    pub(crate) fn follow_occupancy(&self) -> mpsc::UnboundedReceiver<Occupancy> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.occupancy.set(tx);
        rx
    }

    /// Reports that `target` has its first local stream, or lost its last.
    pub(super) fn occupied(&self, target: &Target, occupied: bool) {
        if let (Some(follower), false) = (self.occupancy.get(), matches!(target, Target::All)) {
            // A lifecycle task that stopped needs no more reports.
            let _ = follower.send(Occupancy::new(target.clone(), occupied));
        }
    }

    /// The users whose connection counts changed since the last call, with their counts now
    /// (0 for users who left); every user with connections when `everyone` is set.
    pub(crate) fn user_counts(&self, everyone: bool) -> Vec<(Arc<str>, usize)> {
        let mut tables = self.write();
        let changed = std::mem::take(&mut tables.changed.users);
        if everyone {
            return tables.every_count().users;
        }
        let count = |user: &Arc<str>| tables.count(&Target::User(user.clone()));
        changed
            .iter()
            .map(|user| (user.clone(), count(user)))
            .collect()
    }

    /// The counts of users, topics and topic members that changed since the last call
    /// (0 for those that have no connection left); all of them with `everyone`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn presence_counts(&self, everyone: bool) -> PresenceCounts {
        let mut tables = self.write();
        let changed = std::mem::take(&mut tables.changed);
        if everyone {
            return tables.every_count();
        }
        let users = changed.users.into_iter();
        let topics = changed.topics.into_iter();
        let members = changed.members.into_iter();
        PresenceCounts {
            users: users
                .map(|user| (user.clone(), tables.count(&Target::User(user))))
                .collect(),
            topics: topics
                .map(|topic| (topic.clone(), tables.count(&Target::Topic(topic))))
                .collect(),
            members: members
                .map(|(topic, user)| {
                    let count = tables.member_count(&topic, &user);
                    (topic, user, count)
                })
                .collect(),
        }
    }

    /// The users of `topic`'s local streams after `after`, by user id, at most `limit`,
    /// each with its number of streams there.
    pub(crate) fn topic_users(
        &self,
        topic: &Target,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<UserPresence> {
        let members = self.read().members_of(topic);
        members
            .into_iter()
            .filter(|(user, _)| after.is_none_or(|after| **user > *after))
            .take(limit)
            .map(|(user, connections)| UserPresence::new(&user, connections))
            .collect()
    }

    /// The topics with local streams after `after`, by name, at most `limit`, each with
    /// its number of streams.
    pub(crate) fn topic_list(&self, after: Option<&str>, limit: usize) -> Vec<TopicPresence> {
        let tables = self.read();
        let mut topics: Vec<(&Arc<str>, usize)> = tables
            .by_target
            .iter()
            .filter_map(|(target, streams)| match target {
                Target::Topic(topic) if after.is_none_or(|after| **topic > *after) => {
                    Some((topic, streams.len()))
                }
                _ => None,
            })
            .collect();
        topics.sort_unstable();
        topics.truncate(limit);
        let topics = topics.into_iter();
        topics
            .map(|(topic, connections)| TopicPresence::new(topic, connections))
            .collect()
    }
}
