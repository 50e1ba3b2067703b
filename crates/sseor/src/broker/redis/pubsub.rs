//! The subscription connection: `SUBSCRIBE` on one server (or the master Sentinel names),
//! sharded `SSUBSCRIBE` on a Redis Cluster, where one connection per master carries the
//! channels of its slots; and what arrives on it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{Msg, PushKind, RedisResult};
use tokio::sync::mpsc;

use super::commands::describe;
use super::endpoint::Endpoint;

/// An open subscription connection.
pub(super) enum PubSub {
    Plain {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Sharded {
        connection: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
        /// Channels this instance subscribed whose confirmation is still to come: any
        /// other confirmation is a subscription the connection made again by itself.
        asked: HashSet<String>,
    },
}

/// What arrives on the subscription connection.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A message published on a channel.
    Message(Msg),
    /// A channel subscribed again without being asked: the cluster connection lost a node
    /// and came back to it (or to its replacement).
    Resubscribed(String),
    /// A channel the cluster unsubscribed: its slot moved to another master.
    Dropped(String),
    /// The connection to one node of the cluster closed: what its channels carried
    /// meanwhile must be looked for.
    Disconnected,
    /// A confirmation of what was asked, or a notice that needs nothing.
    Other,
}

impl PubSub {
    /// Opens the connection for `endpoint`, within `timeout`.
    pub(super) async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Self, String> {
        let opened = tokio::time::timeout(timeout, async {
            if let Some(cluster) = endpoint.cluster() {
                let (sender, pushes) = mpsc::unbounded_channel();
                let connection = cluster.client(Some(sender))?.get_async_connection().await?;
                return Ok(Self::Sharded {
                    connection,
                    pushes,
                    asked: HashSet::new(),
                });
            }
            let pubsub = endpoint.client().await?.get_async_pubsub().await?;
            let (sink, stream) = pubsub.split();
            RedisResult::Ok(Self::Plain { sink, stream })
        })
        .await
        .map_err(|_| "Redis did not answer in time".to_owned())?;
        opened.map_err(|e| describe(&e))
    }

    /// Subscribes to `channels`.
    pub(super) async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Self::Plain { sink, .. } => sink.subscribe(channels).await,
            Self::Sharded {
                connection, asked, ..
            } => {
                asked.extend(channels.iter().cloned());
                per_slot(connection, channels, true).await
            }
        }
    }

    /// Subscribes to `channel` again after the cluster dropped it (its slot moved): its
    /// confirmation then reads as [`Incoming::Resubscribed`], so that what the channel
    /// missed meanwhile is looked for.
    pub(super) async fn resubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Plain { sink, .. } => sink.subscribe(channel).await,
            Self::Sharded { connection, .. } => connection.ssubscribe(channel).await,
        }
    }

    /// Unsubscribes from `channels`.
    pub(super) async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Self::Plain { sink, .. } => sink.unsubscribe(channels).await,
            Self::Sharded {
                connection, asked, ..
            } => {
                for channel in channels {
                    asked.remove(channel);
                }
                per_slot(connection, channels, false).await
            }
        }
    }

    /// What arrives next; `None` once the connection is closed.
    pub(super) async fn next(&mut self) -> Option<Incoming> {
        match self {
            Self::Plain { stream, .. } => stream.next().await.map(Incoming::Message),
            Self::Sharded { pushes, asked, .. } => {
                let push = pushes.recv().await?;
                Some(sharded(push, asked))
            }
        }
    }
}

/// Subscription commands sent at once on a cluster.
const COMMANDS_IN_FLIGHT: usize = 64;

/// Subscribes to `channels` (unsubscribes, unless `subscribe`) on the cluster: the
/// channels of one command must share a slot, so one command per slot, many in flight.
async fn per_slot(
    connection: &ClusterConnection,
    channels: &[String],
    subscribe: bool,
) -> RedisResult<()> {
    let commands = by_slot(channels).into_values().map(|channels| {
        let mut connection = connection.clone();
        async move {
            if subscribe {
                connection.ssubscribe(channels).await
            } else {
                connection.sunsubscribe(channels).await
            }
        }
    });
    futures_util::stream::iter(commands)
        .buffer_unordered(COMMANDS_IN_FLIGHT)
        .collect::<Vec<RedisResult<()>>>()
        .await
        .into_iter()
        .collect()
}

/// `channels` grouped by their cluster slot.
fn by_slot(channels: &[String]) -> HashMap<u16, Vec<String>> {
    let mut groups: HashMap<u16, Vec<String>> = HashMap::new();
    for channel in channels {
        groups
            .entry(super::probes::slot_of_key(channel))
            .or_default()
            .push(channel.clone());
    }
    groups
}

/// What a push of the cluster connection means.
fn sharded(push: redis::PushInfo, asked: &mut HashSet<String>) -> Incoming {
    let channel = || {
        push.data
            .first()
            .and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
    };
    match push.kind {
        PushKind::SMessage | PushKind::Message => {
            Msg::from_push_info(push).map_or(Incoming::Other, Incoming::Message)
        }
        PushKind::SSubscribe => match channel() {
            Some(channel) if !asked.remove(&channel) => Incoming::Resubscribed(channel),
            _ => Incoming::Other,
        },
        // An unsubscription this instance asked for was forgotten in `unsubscribe`; one it
        // did not ask for comes from a slot that moved.
        PushKind::SUnsubscribe => channel().map_or(Incoming::Other, Incoming::Dropped),
        PushKind::Disconnection => Incoming::Disconnected,
        _ => Incoming::Other,
    }
}
