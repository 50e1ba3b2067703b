//! The subscriber task: it owns the subscription connection, follows this instance's
//! interest in targets, delivers what arrives to the local streams in each target's order,
//! repairs the gaps it finds from the history, and probes the path through Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod repair;

use super::commands::describe;
use super::control;
use super::endpoint::Endpoint;
use super::envelope::{DroppedLog, Envelope, envelope};
use super::pubsub::{Incoming, PubSub};
use super::tracked::{self, Seen, Step};
use super::{RedisPublisher, Shared};
use crate::broker::BrokerContext;
use crate::metrics::Metrics;
use crate::{Event, Fanout, Interest, Position, Target};

/// Channels subscribed or unsubscribed in one command, at most.
const SUBSCRIBE_BATCH: usize = 1000;

/// Every how many probes the cluster's masters are read again.
const PROBES_RECHECKED_EVERY: u32 = 10;

/// The task that owns the subscription connection.
pub(super) struct Subscriber {
    endpoint: Arc<Endpoint>,
    publisher: RedisPublisher,
    shared: Arc<Shared>,
    fanout: Fanout,
    metrics: Arc<Metrics>,
    interest: mpsc::UnboundedReceiver<Interest>,
    stop: CancellationToken,
    /// The targets this instance wants, whatever the state of the connection, with what
    /// it knows of each: `None` until its position was first read.
    wanted: HashMap<Target, Option<Seen>>,
    dropped: DroppedLog,
    /// Barriers that wait for the subscription to be back.
    barriers: Vec<crate::Barrier>,
    /// Whether Redis's eviction policy was looked at.
    policy_checked: bool,
    /// The channels probes go out on: one, or one per master of a cluster.
    probes: Vec<String>,
}

/// Why a subscription session ended.
enum SessionEnd {
    /// The broker stopped.
    Stopped,
    /// The connection failed: why.
    Lost(String),
}

impl Subscriber {
    /// The task of the subscription connection to `endpoint`; it follows the context's
    /// interest, delivers to its fan-out, counts in its metrics, and stops with `stop`.
    pub(super) fn new(
        endpoint: Arc<Endpoint>,
        publisher: RedisPublisher,
        shared: Arc<Shared>,
        context: &BrokerContext,
        stop: CancellationToken,
    ) -> Self {
        Self {
            endpoint,
            publisher,
            shared,
            fanout: context.fanout(),
            metrics: context.metrics(),
            interest: context.interest(),
            stop,
            wanted: HashMap::new(),
            dropped: DroppedLog::default(),
            barriers: Vec::new(),
            policy_checked: false,
            probes: Vec::new(),
        }
    }

    /// Subscribes, and subscribes again after every failure, until stopped.
    pub(super) async fn run(mut self) {
        let mut delay = Duration::from_millis(100);
        let mut down_since: Option<Instant> = None;
        loop {
            let stop = self.stop.clone();
            let session = tokio::select! {
                () = stop.cancelled() => return,
                session = self.open() => session,
            };
            let reason = match session {
                Ok(pubsub) => {
                    if let Some(since) = down_since.take() {
                        tracing::info!(
                            channels = self.wanted.len(),
                            after_seconds = since.elapsed().as_secs_f64(),
                            "resubscribed to Redis"
                        );
                    } else {
                        tracing::info!(channels = self.wanted.len(), "subscribed to Redis");
                    }
                    match self.catch_up().await {
                        Ok(()) => {
                            delay = Duration::from_millis(100);
                            // Everything wanted is subscribed: waiting streams may read
                            // history.
                            self.pass_barriers();
                            match self.serve(pubsub).await {
                                SessionEnd::Stopped => return,
                                SessionEnd::Lost(reason) => reason,
                            }
                        }
                        Err(reason) => reason,
                    }
                }
                Err(reason) => reason,
            };
            self.shared.health().lost();
            if down_since.is_none() {
                down_since = Some(Instant::now());
                self.metrics.redis_reconnected();
                tracing::warn!(%reason, "Redis subscription down; reconnecting");
            } else {
                tracing::debug!(%reason, "Redis still unreachable");
            }
            if !self.wait(delay).await {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Sleeps for `delay` while keeping track of interest; false when stopped.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = &mut sleep => return true,
                change = self.interest.recv() => match change {
                    Some(change) => { let _ = self.apply(change); }
                    None => return false,
                },
            }
        }
    }

    /// Records a change of interest; returns the channel and whether it is now wanted, or
    /// `None` for a barrier, which waits in `barriers` to be passed.
    fn apply(&mut self, change: Interest) -> Option<(String, bool)> {
        match change {
            Interest::Subscribe(target) => {
                let channel = self.shared.names.channel(&target);
                self.wanted.insert(target, None);
                Some((channel, true))
            }
            Interest::Unsubscribe(target) => {
                let channel = self.shared.names.channel(&target);
                self.wanted.remove(&target);
                Some((channel, false))
            }
            Interest::Barrier(barrier) => {
                self.barriers.push(barrier);
                None
            }
        }
    }

    /// Everything asked before the pending barriers is in effect.
    fn pass_barriers(&mut self) {
        for barrier in self.barriers.drain(..) {
            barrier.pass();
        }
    }

    async fn open(&mut self) -> std::result::Result<PubSub, String> {
        let timeout = self.shared.options.timeout;
        let mut pubsub = PubSub::open(&self.endpoint, timeout).await?;
        let probes = self
            .publisher
            .probe_channels(&self.shared.instance)
            .await
            .ok_or_else(|| "the cluster's masters cannot be read".to_owned())?;
        let mut channels: Vec<String> = self
            .wanted
            .keys()
            .map(|target| self.shared.names.channel(target))
            .collect();
        channels.extend(probes.iter().cloned());
        for batch in channels.chunks(SUBSCRIBE_BATCH) {
            tokio::time::timeout(timeout, pubsub.subscribe(batch))
                .await
                .map_err(|_| "SUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        self.shared.health().subscribed(&probes);
        self.probes = probes;
        Ok(pubsub)
    }

    async fn serve(&mut self, mut pubsub: PubSub) -> SessionEnd {
        let mut probes = tokio::time::interval(self.shared.options.probe_interval);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return SessionEnd::Stopped,
                incoming = pubsub.next() => match incoming {
                    None => return SessionEnd::Lost("the subscription connection closed".into()),
                    Some(incoming) => {
                        if let Err(reason) = self.receive(&mut pubsub, incoming).await {
                            return SessionEnd::Lost(reason);
                        }
                    }
                },
                change = self.interest.recv() => {
                    let Some(change) = change else { return SessionEnd::Stopped };
                    if let Err(reason) = self.follow(&mut pubsub, change).await {
                        return SessionEnd::Lost(reason);
                    }
                }
                _ = probes.tick() => {
                    if self.shared.probe_overdue() {
                        return SessionEnd::Lost("probes stopped coming back".into());
                    }
                    ticks = ticks.wrapping_add(1);
                    if ticks.is_multiple_of(PROBES_RECHECKED_EVERY) {
                        self.follow_masters(&mut pubsub).await;
                    }
                    self.send_probes();
                }
            }
        }
    }

    /// Handles what arrived on the subscription connection.
    async fn receive(
        &mut self,
        pubsub: &mut PubSub,
        incoming: Incoming,
    ) -> std::result::Result<(), String> {
        match incoming {
            Incoming::Message(message) => {
                let channel = message.get_channel_name();
                if !self.shared.health().probe_answered(channel) {
                    self.deliver(channel, message.get_payload_bytes()).await;
                }
            }
            Incoming::Resubscribed(channel) => {
                if let Some(target) = self.shared.names.target(&channel) {
                    self.catch_up_with(&target).await;
                }
            }
            Incoming::Dropped(channel) => {
                let wanted = self
                    .shared
                    .names
                    .target(&channel)
                    .is_some_and(|target| self.wanted.contains_key(&target));
                if wanted || self.probes.contains(&channel) {
                    tracing::debug!(
                        channel,
                        "the cluster moved a channel's slot; subscribing again"
                    );
                    pubsub
                        .resubscribe(&channel)
                        .await
                        .map_err(|e| describe(&e))?;
                }
            }
            // The connection would come back by itself, but this instance could not tell
            // when: it starts over, subscribes to everything again and catches up.
            Incoming::Disconnected => return Err("a Redis node closed its connection".into()),
            Incoming::Other => {}
        }
        Ok(())
    }

    /// What `target` missed, once its channel was subscribed again by itself.
    async fn catch_up_with(&mut self, target: &Target) {
        if !self.wanted.contains_key(target) {
            return;
        }
        match self.publisher.position(target).await {
            Ok(now) => self.returned(target, now).await,
            Err(e) => {
                tracing::warn!(%target, error = %e, "cannot tell what a resubscribed target missed")
            }
        }
    }

    /// Follows a change of the cluster's masters (a failover, a new master): probes
    /// every master of now.
    async fn follow_masters(&mut self, pubsub: &mut PubSub) {
        let Some(probes) = self.publisher.probe_channels(&self.shared.instance).await else {
            return;
        };
        let new: Vec<String> = probes
            .iter()
            .filter(|channel| !self.probes.contains(channel))
            .cloned()
            .collect();
        if new.is_empty() && probes.len() == self.probes.len() {
            return;
        }
        if let Err(e) = pubsub.subscribe(&new).await {
            tracing::debug!(error = %describe(&e), "new probe channels not subscribed yet");
            return;
        }
        self.shared.health().probe_on(&probes);
        self.probes = probes;
    }

    /// Subscribes or unsubscribes for `first` and every change already queued behind it,
    /// in as few commands as possible.
    async fn follow(
        &mut self,
        pubsub: &mut PubSub,
        first: Interest,
    ) -> std::result::Result<(), String> {
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        let mut next = Some(first);
        while let Some(change) = next {
            // A barrier waits in `barriers`: it is passed once this whole batch is sent.
            let Some((channel, wanted)) = self.apply(change) else {
                next = self.interest.try_recv().ok();
                continue;
            };
            if wanted {
                unsubscribe.retain(|c| c != &channel);
                subscribe.push(channel);
            } else {
                subscribe.retain(|c| c != &channel);
                unsubscribe.push(channel);
            }
            if subscribe.len() + unsubscribe.len() >= SUBSCRIBE_BATCH {
                break;
            }
            next = self.interest.try_recv().ok();
        }
        let timeout = self.shared.options.timeout;
        if !subscribe.is_empty() {
            tokio::time::timeout(timeout, pubsub.subscribe(&subscribe))
                .await
                .map_err(|_| "SUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        if !unsubscribe.is_empty() {
            tokio::time::timeout(timeout, pubsub.unsubscribe(&unsubscribe))
                .await
                .map_err(|_| "UNSUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        self.learn_positions(&subscribe).await;
        self.pass_barriers();
        // Probe answers waited behind all this: they are not late.
        self.shared.health().was_busy();
        Ok(())
    }

    /// Reads where the targets of the channels just subscribed stand, so that a gap
    /// before their next event is seen. A target whose position cannot be read learns it
    /// from its first event.
    async fn learn_positions(&mut self, channels: &[String]) {
        let targets: Vec<Target> = channels
            .iter()
            .filter_map(|channel| self.shared.names.target(channel))
            .filter(|target| matches!(self.wanted.get(target), Some(None)))
            .collect();
        if let Ok(now) = self.publisher.positions(&targets).await {
            for (target, position) in targets.iter().zip(now) {
                self.see(target, Seen { position, ms: 0 });
            }
        }
    }

    async fn deliver(&mut self, channel: &str, payload: &[u8]) {
        let Some(target) = self.shared.names.target(channel) else {
            tracing::warn!(channel, "message on an unexpected channel skipped");
            return;
        };
        let Some(Envelope { position, ms, json }) = envelope(payload) else {
            return self.deliver_foreign(&target, channel, payload);
        };
        let event = match serde_json::from_str::<Event>(&json) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(channel, error = %e, "numbered event that cannot be read skipped");
                return;
            }
        };
        let Some(&known) = self.wanted.get(&target) else {
            return; // Unsubscribed meanwhile.
        };
        let seen = known.unwrap_or(Seen {
            position: position.before(),
            ms: 0,
        });
        match tracked::on_event(seen, position) {
            Step::Deliver | Step::Rewound => {}
            Step::Repair(from) => self.repair(&target, seen, from, position.before()).await,
            Step::NewEpoch => {
                // Another client may publish with an envelope of its own: only an epoch
                // Redis holds is one.
                match self.publisher.position(&target).await {
                    Ok(now) if now.epoch() == position.epoch() => {
                        // The subscription never broke, so the streams saw every event of
                        // the old epoch (its history was emptied or expired meanwhile):
                        // the new one is delivered from its start, with no reset.
                        let start = Seen {
                            position: Position::new(position.epoch(), 0),
                            ms: 0,
                        };
                        if position.seq() > 1 {
                            self.repair(&target, start, 1, position.before()).await;
                        }
                    }
                    _ => return self.deliver_foreign(&target, channel, payload),
                }
            }
        }
        if let Err(e) = self.fanout.deliver(&target, Some(position), &event) {
            tracing::warn!(channel, error = %e, "invalid event skipped");
        }
        if position.seq() > seen.position.seq() || position.epoch() != seen.position.epoch() {
            self.see(&target, Seen { position, ms });
        }
    }

    /// Delivers a message another Redis client published: it gets the checks of a publish,
    /// and goes out without a position. A control message (a disconnect) is carried out.
    fn deliver_foreign(&mut self, target: &Target, channel: &str, payload: &[u8]) {
        if payload.len() > self.shared.options.foreign_message_limit {
            self.dropped.note(channel, payload.len());
            return;
        }
        let event = match serde_json::from_slice::<Event>(payload) {
            Ok(event) => event,
            Err(_) if control::obey(&self.fanout, &self.shared, target, payload) => return,
            Err(e) => {
                tracing::warn!(channel, bytes = payload.len(), error = %e, "payload that is not an event skipped");
                return;
            }
        };
        if let Err(e) = self.fanout.deliver(target, None, &event) {
            tracing::warn!(channel, error = %e, "invalid event skipped");
        }
    }

    fn send_probes(&self) {
        for channel in &self.probes {
            self.shared.health().probe_sent(channel);
            let publisher = self.publisher.clone();
            let channel = channel.clone();
            tokio::spawn(async move {
                if let Err(e) = publisher.probe(&channel).await {
                    tracing::debug!(error = %describe(&e), "probe not sent");
                }
            });
        }
    }
}
