//! The subscriber task: it owns the subscription connection, follows this instance's
//! interest in targets, delivers what arrives to the local streams, probes the path
//! through Redis, and after a loss of the subscription ends or resets the streams that
//! may have missed events.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::Script;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::commands::{Commands, Endpoint, describe};
use super::envelope::{DroppedLog, envelope_position};
use super::scripts::SEQUENCE;
use crate::broker::BrokerContext;
use crate::broker::resume::REDIS_LOST_HISTORY;
use crate::metrics::Metrics;
use crate::position::new_epoch;
use crate::{Event, Fanout, Interest, Position, Target};

/// Channels subscribed or unsubscribed in one command, at most.
const SUBSCRIBE_BATCH: usize = 1000;

/// Epochs of foreign messages remembered, at most.
const MAX_FOREIGN_EPOCHS: usize = 64;

/// The task that owns the subscription connection.
pub(super) struct Subscriber {
    endpoint: Arc<Endpoint>,
    commands: Commands,
    shared: Arc<Shared>,
    fanout: Fanout,
    metrics: Arc<Metrics>,
    interest: mpsc::UnboundedReceiver<Interest>,
    stop: CancellationToken,
    /// The channels this instance wants, whatever the state of the connection.
    wanted: HashSet<String>,
    /// The epoch of the events delivered here: only positions of this epoch are trusted.
    /// `None` until it was first read.
    epoch: Option<String>,
    /// The highest sequence number of `epoch` delivered or read here, to tell after a loss
    /// of the subscription whether events were published meanwhile.
    last_seen: u64,
    sequence_script: Script,
    /// Epochs of messages that turned out not to be sseor's, so that Redis is asked once.
    foreign_epochs: HashSet<String>,
    dropped: DroppedLog,
    /// Barriers that wait for the subscription to be back.
    barriers: Vec<crate::Barrier>,
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
        commands: Commands,
        shared: Arc<Shared>,
        context: &BrokerContext,
        stop: CancellationToken,
    ) -> Self {
        Self {
            endpoint,
            commands,
            shared,
            fanout: context.fanout(),
            metrics: context.metrics(),
            interest: context.interest(),
            stop,
            wanted: HashSet::new(),
            epoch: None,
            last_seen: 0,
            sequence_script: Script::new(SEQUENCE),
            foreign_epochs: HashSet::new(),
            dropped: DroppedLog::default(),
            barriers: Vec::new(),
        }
    }

    /// Subscribes, and subscribes again after every failure, until stopped.
    pub(super) async fn run(mut self) {
        let mut delay = Duration::from_millis(100);
        let mut down_since: Option<Instant> = None;
        loop {
            let session = tokio::select! {
                () = self.stop.cancelled() => return,
                session = self.open() => session,
            };
            let reason = match session {
                Ok((sink, stream)) => {
                    if let Some(since) = down_since.take() {
                        tracing::info!(
                            channels = self.wanted.len(),
                            after_seconds = since.elapsed().as_secs_f64(),
                            "resubscribed to Redis"
                        );
                    } else {
                        tracing::info!(channels = self.wanted.len(), "subscribed to Redis");
                    }
                    self.release_if_missed().await;
                    delay = Duration::from_millis(100);
                    // Everything wanted is subscribed: waiting streams may read history.
                    self.pass_barriers();
                    match self.serve(sink, stream).await {
                        SessionEnd::Stopped => return,
                        SessionEnd::Lost(reason) => reason,
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

    /// Once subscribed: if anything was published while the subscription was down, this
    /// instance's clients may have missed it, so their streams end and they resume from
    /// history (a browser reconnects by itself, with `Last-Event-ID`). If Redis lost its
    /// data meanwhile (a new epoch), every stream gets a reset first: no position it holds
    /// can be resumed from.
    async fn release_if_missed(&mut self) {
        let Some(now) = self.read_sequence().await else {
            tracing::warn!("cannot tell what was missed; ending streams");
            self.fanout.release_all();
            return;
        };
        let Some(known) = self.epoch.clone() else {
            // The first subscription: no stream has seen anything yet.
            self.epoch = Some(now.epoch().to_owned());
            self.last_seen = now.seq();
            self.warn_if_evicting().await;
            return;
        };
        if known != now.epoch() {
            tracing::debug!(
                known,
                last_seen = self.last_seen,
                now = %now,
                "the epoch changed while the subscription was down"
            );
            self.reset_all(REDIS_LOST_HISTORY, now.clone());
            self.epoch = Some(now.epoch().to_owned());
            self.last_seen = now.seq();
            return;
        }
        if now.seq() > self.last_seen {
            let released = self.fanout.release_all();
            tracing::info!(
                streams = released,
                "events may have been missed while the subscription was down; \
                 streams end so that their clients resume from history"
            );
        }
    }

    /// Says so when Redis may evict keys: an evicted history stream or trim marker would
    /// make a resume look complete when it is not. Managed Redis services often refuse
    /// `CONFIG`: then nothing is said.
    async fn warn_if_evicting(&self) {
        let mut config = redis::pipe();
        config
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy");
        let Ok((limit, policy)) = self
            .commands
            .pipeline::<(Vec<String>, Vec<String>)>(&config)
            .await
        else {
            return;
        };
        let limited = limit.get(1).is_some_and(|bytes| bytes != "0");
        let policy = policy.get(1).map_or("", String::as_str);
        if limited && policy != "noeviction" && !policy.is_empty() {
            tracing::warn!(
                policy,
                "Redis may evict keys (maxmemory with an evicting policy): a history it \
                 evicts is lost without a reset; use maxmemory-policy noeviction"
            );
        }
    }

    /// The position the event sequence is at (a new epoch when Redis lost the old one);
    /// `None` when Redis cannot tell. The command connection may be reconnecting too:
    /// its first answers can be errors.
    async fn read_sequence(&self) -> Option<Position> {
        let mut invocation = self.sequence_script.prepare_invoke();
        invocation
            .key(self.shared.names.clock())
            .key(self.shared.names.epoch())
            .arg(self.epoch.as_deref().unwrap_or_default())
            .arg(self.last_seen)
            .arg(new_epoch());
        let invocation = &invocation;
        for _ in 0..3 {
            let read: redis::RedisResult<(String, u64, u64)> = self
                .commands
                .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
                .await;
            match read {
                Ok((epoch, ms, seq)) => return Some(Position::new(epoch, ms, seq)),
                Err(e) => tracing::debug!(error = %describe(&e), "sequence not read"),
            }
            tokio::time::sleep(self.shared.options.probe_interval / 2).await;
        }
        None
    }

    /// Sends every local stream a reset whose id is `current`, where its client resumes
    /// from, and ends the stream: its positions belong to a history that is gone, and
    /// what it missed of the new one cannot be told.
    fn reset_all(&self, reason: &str, current: Position) {
        let mut reset =
            Event::new(crate::RESET_EVENT).with_data(serde_json::json!({ "reason": reason }));
        reset.id = Some(current.to_string());
        // Every stream receives broadcasts: this reaches them all.
        if let Err(e) = self.fanout.deliver(&Target::All, 0, &reset) {
            tracing::warn!(error = %e, "reset not sent");
        }
        let released = self.fanout.release_all();
        tracing::warn!(
            streams = released,
            epoch = current.epoch(),
            "{reason}: every stream gets a reset and ends"
        );
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
                self.wanted.insert(channel.clone());
                Some((channel, true))
            }
            Interest::Unsubscribe(target) => {
                let channel = self.shared.names.channel(&target);
                self.wanted.remove(&channel);
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

    async fn open(&self) -> std::result::Result<(PubSubSink, redis::aio::PubSubStream), String> {
        let timeout = self.shared.options.timeout;
        let pubsub = tokio::time::timeout(timeout, async {
            self.endpoint.client().await?.get_async_pubsub().await
        })
        .await
        .map_err(|_| "Redis did not answer in time".to_owned())?
        .map_err(|e| describe(&e))?;
        let (mut sink, stream) = pubsub.split();
        let mut channels: Vec<String> = self.wanted.iter().cloned().collect();
        channels.push(self.shared.names.probe(&self.shared.instance));
        for batch in channels.chunks(SUBSCRIBE_BATCH) {
            tokio::time::timeout(timeout, sink.subscribe(batch))
                .await
                .map_err(|_| "SUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        self.shared.health().subscribed();
        Ok((sink, stream))
    }

    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut stream: redis::aio::PubSubStream,
    ) -> SessionEnd {
        let probe_channel = self.shared.names.probe(&self.shared.instance);
        let mut probes = tokio::time::interval(self.shared.options.probe_interval);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return SessionEnd::Stopped,
                message = stream.next() => match message {
                    None => return SessionEnd::Lost("the subscription connection closed".into()),
                    Some(message) if message.get_channel_name() == probe_channel => self.probe_answered(),
                    Some(message) => self.deliver(message.get_channel_name(), message.get_payload_bytes()).await,
                },
                change = self.interest.recv() => {
                    let Some(change) = change else { return SessionEnd::Stopped };
                    if let Err(reason) = self.follow(&mut sink, change).await {
                        return SessionEnd::Lost(reason);
                    }
                }
                _ = probes.tick() => {
                    if self.shared.probe_overdue() {
                        return SessionEnd::Lost("probes stopped coming back".into());
                    }
                    self.send_probe(&probe_channel);
                }
            }
        }
    }

    /// Subscribes or unsubscribes for `first` and every change already queued behind it,
    /// in as few commands as possible.
    async fn follow(
        &mut self,
        sink: &mut PubSubSink,
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
            tokio::time::timeout(timeout, sink.subscribe(&subscribe))
                .await
                .map_err(|_| "SUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        if !unsubscribe.is_empty() {
            tokio::time::timeout(timeout, sink.unsubscribe(&unsubscribe))
                .await
                .map_err(|_| "UNSUBSCRIBE timed out".to_owned())?
                .map_err(|e| describe(&e))?;
        }
        self.pass_barriers();
        Ok(())
    }

    async fn deliver(&mut self, channel: &str, payload: &[u8]) {
        let Some(target) = self.shared.names.target(channel) else {
            tracing::warn!(channel, "message on an unexpected channel skipped");
            return;
        };
        let position = self.own_position(payload).await;
        if position.is_none() && payload.len() > self.shared.options.foreign_message_limit {
            self.dropped.note(channel, payload.len());
            return;
        }
        let mut event = match serde_json::from_slice::<Event>(payload) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(channel, bytes = payload.len(), error = %e, "payload that is not an event skipped");
                return;
            }
        };
        let seq = match &position {
            Some(position) => {
                self.last_seen = self.last_seen.max(position.seq());
                position.seq()
            }
            None => {
                // What other Redis clients publish gets the checks of a publish; its id is
                // no position (a browser that sent it back would be reset), so the event
                // goes out without one.
                if let Err(e) = event.validate() {
                    tracing::warn!(channel, error = %e, "invalid event skipped");
                    return;
                }
                event.id = None;
                0
            }
        };
        if let Err(e) = self.fanout.deliver(&target, seq, &event) {
            tracing::warn!(channel, error = %e, "invalid event skipped");
        }
    }

    /// The position of a message that sseor's publish script numbered, in the epoch Redis
    /// holds; `None` for a message of another Redis client. A message of a new epoch (Redis
    /// lost its data while this instance stayed subscribed) resets every stream first.
    async fn own_position(&mut self, payload: &[u8]) -> Option<Position> {
        let position = envelope_position(payload)?;
        if self.epoch.as_deref() == Some(position.epoch()) {
            return Some(position);
        }
        if self.foreign_epochs.contains(position.epoch()) {
            return None;
        }
        let mut get = redis::cmd("GET");
        get.arg(self.shared.names.epoch());
        let stored = match self.commands.query::<Option<String>>(&get).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %describe(&e), "cannot tell whose message this is; sent without its id");
                return None;
            }
        };
        if stored.as_deref() != Some(position.epoch()) {
            if self.foreign_epochs.len() >= MAX_FOREIGN_EPOCHS {
                self.foreign_epochs.clear();
            }
            self.foreign_epochs.insert(position.epoch().to_owned());
            return None;
        }
        if self.epoch.is_some() {
            // Streams resume from just before this event: it and what follows is in the
            // new history; what came before it is what the reset stands for.
            let before = Position::new(
                position.epoch(),
                position.ms(),
                position.seq().saturating_sub(1),
            );
            self.reset_all(REDIS_LOST_HISTORY, before);
        }
        self.epoch = Some(position.epoch().to_owned());
        self.last_seen = position.seq();
        self.foreign_epochs.clear();
        Some(position)
    }

    fn probe_answered(&self) {
        self.shared.health().probe_answered();
    }

    fn send_probe(&self, channel: &str) {
        self.shared.health().probe_sent();
        let commands = self.commands.clone();
        let mut probe = redis::cmd("PUBLISH");
        probe.arg(channel).arg("probe");
        tokio::spawn(async move {
            let sent: redis::RedisResult<usize> = commands.query(&probe).await;
            if let Err(e) = sent {
                tracing::debug!(error = %describe(&e), "probe not sent");
            }
        });
    }
}
