//! Pages of presence across instances: the users of a topic, and the topics. Each live
//! instance keeps its names in a sorted set read in order of name and its counts in a
//! hash (`presence`); a page takes the first names of every instance, this instance's own
//! from its registry (live, while its presence in Redis lags), and adds up their counts.

use super::RedisBroker;
use super::commands::unavailable;
use super::presence::member_name;
use crate::presence::first_names;
use crate::{PresencePage, Result, Target, TopicPresence, UserPresence};

/// Where a listing's names are, in each instance's presence.
struct Listing<'a> {
    /// The sorted set of an instance's names.
    index: &'a (dyn Fn(&str) -> String + Sync),
    /// The hash of its counts by name.
    counts: &'a (dyn Fn(&str) -> String + Sync),
    /// What every name of the listing starts with in the set (`TOPIC\n` for a topic's
    /// members), not part of the name given back.
    prefix: String,
    /// The first name past the listing in the set, as a `ZRANGEBYLEX` bound.
    end: String,
}

impl RedisBroker {
    /// The users of `topic` on every instance after `after`, at most `limit`.
    pub(super) async fn topic_page(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PresencePage<UserPresence>> {
        let names = &self.shared.names;
        let local = Target::topic(topic).map_or_else(
            |_| Vec::new(),
            |target| {
                self.fanout
                    .registry()
                    .topic_users(&target, after, limit + 1)
            },
        );
        let local = local
            .into_iter()
            .map(|user| (user.user_id, user.connections));
        let listing = Listing {
            index: &|instance| names.members(instance),
            counts: &|instance| names.member_counts(instance),
            prefix: member_name(topic, ""),
            // Past every `TOPIC\n...`: the byte after the line feed.
            end: format!("({topic}\u{b}"),
        };
        let (items, more) = self.page(&listing, after, limit, local.collect()).await?;
        let items = items.iter().map(|(user, n)| UserPresence::new(user, *n));
        Ok(PresencePage::new(items.collect(), more))
    }

    /// The topics on every instance after `after`, at most `limit`.
    pub(super) async fn topics_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PresencePage<TopicPresence>> {
        let names = &self.shared.names;
        let local = self.fanout.registry().topic_list(after, limit + 1);
        let local = local
            .into_iter()
            .map(|topic| (topic.topic, topic.connections));
        let listing = Listing {
            index: &|instance| names.topics(instance),
            counts: &|instance| names.topic_counts(instance),
            prefix: String::new(),
            end: "+".into(),
        };
        let (items, more) = self.page(&listing, after, limit, local.collect()).await?;
        let items = items.iter().map(|(topic, n)| TopicPresence::new(topic, *n));
        Ok(PresencePage::new(items.collect(), more))
    }

    /// The first `limit` names of `listing` after `after` across the other live instances
    /// and `local` (this instance's, up to `limit + 1`, in order), with their counts added
    /// up; and whether more follow.
    async fn page(
        &self,
        listing: &Listing<'_>,
        after: Option<&str>,
        limit: usize,
        local: Vec<(String, usize)>,
    ) -> Result<(Vec<(String, usize)>, bool)> {
        let others = self
            .publisher
            .live_instances(Some(&self.shared.instance))
            .await?;
        let prefix = &listing.prefix;
        let start = after.map_or_else(|| format!("[{prefix}"), |after| format!("({prefix}{after}"));
        let mut firsts = redis::pipe();
        for instance in &others {
            firsts
                .cmd("ZRANGEBYLEX")
                .arg((listing.index)(instance))
                .arg(&start)
                .arg(&listing.end)
                .arg("LIMIT")
                .arg(0)
                .arg(limit + 1);
        }
        let mut lists: Vec<Vec<String>> = if others.is_empty() {
            Vec::new()
        } else {
            let commands = &self.publisher.commands;
            commands.pipeline(&firsts).await.map_err(unavailable)?
        };
        for list in &mut lists {
            for name in list.iter_mut() {
                name.drain(..prefix.len().min(name.len()));
            }
        }
        lists.push(local.iter().map(|(name, _)| name.clone()).collect());
        let (names, more) = first_names(lists, limit);
        let mut totals: Vec<(String, usize)> = names
            .into_iter()
            .map(|name| {
                let here = local.iter().find(|(local, _)| *local == name);
                let here = here.map_or(0, |(_, count)| *count);
                (name, here)
            })
            .collect();
        if totals.is_empty() || others.is_empty() {
            return Ok((totals, more));
        }
        let fields: Vec<String> = totals
            .iter()
            .map(|(name, _)| format!("{prefix}{name}"))
            .collect();
        let mut counts = redis::pipe();
        for instance in &others {
            counts
                .cmd("HMGET")
                .arg((listing.counts)(instance))
                .arg(&fields);
        }
        let commands = &self.publisher.commands;
        let counts: Vec<Vec<Option<usize>>> =
            commands.pipeline(&counts).await.map_err(unavailable)?;
        for instance_counts in counts {
            for ((_, total), count) in totals.iter_mut().zip(instance_counts) {
                *total += count.unwrap_or(0);
            }
        }
        Ok((totals, more))
    }
}
