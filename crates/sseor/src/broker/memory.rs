use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::{Broker, History, Published, Retention};
use crate::position::{new_epoch, unix_millis};
use crate::{Event, Fanout, Position, Result, Target};

/// The embedded broker: events go straight to this instance's connections, and the last
/// events of every target are kept in memory for clients that resume.
///
/// Positions come from one sequence shared by all targets, in an epoch drawn at start:
/// events reach each connection in the order of their positions, and a restart (which
/// loses the history) changes the epoch, so that an old position is recognized as such.
#[derive(Debug)]
pub struct MemoryBroker {
    fanout: Fanout,
    epoch: String,
    retention: Retention,
    /// Held while an event is numbered, delivered and stored, so that positions reach
    /// clients in order and a history read sees a consistent sequence.
    state: Mutex<State>,
    /// Stream tickets: a lock of their own, so that they never wait for a publish.
    tickets: Mutex<Tickets>,
}

/// Tickets by key, with their deadlines; expired ones are swept as the table grows.
#[derive(Debug, Default)]
struct Tickets {
    kept: HashMap<String, (Instant, String)>,
    /// The table is swept when it reaches this size, then twice what is left.
    sweep_at: usize,
}

/// The smallest table of tickets that is swept.
const TICKETS_SWEPT_FROM: usize = 1024;

#[derive(Debug, Default)]
struct State {
    seq: u64,
    /// When the last event was published (Unix ms).
    ms: u64,
    histories: HashMap<Target, TargetHistory>,
    /// The highest position of any history dropped whole (all its events too old).
    forgotten_through: u64,
    publishes_since_sweep: u32,
}

#[derive(Debug, Default)]
struct TargetHistory {
    events: VecDeque<Stored>,
    /// The highest position trimmed from this history.
    trimmed_through: u64,
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    ms: u64,
    at: Instant,
    /// The id the publisher gave, kept to recognize a publish that is repeated.
    publisher_id: Option<String>,
    event: Event,
}

impl TargetHistory {
    fn trim(&mut self, retention: &Retention, now: Instant) {
        while self.events.len() > retention.max_events
            || self
                .events
                .front()
                .is_some_and(|oldest| now.saturating_duration_since(oldest.at) > retention.max_age)
        {
            if let Some(dropped) = self.events.pop_front() {
                self.trimmed_through = dropped.seq;
            }
        }
    }
}

impl MemoryBroker {
    /// A broker that delivers to `fanout`, keeping history as `retention` says.
    pub fn new(fanout: Fanout, retention: Retention) -> Self {
        Self {
            fanout,
            epoch: new_epoch(),
            retention,
            state: Mutex::default(),
            tickets: Mutex::default(),
        }
    }

    fn tickets(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_now(&self, target: Target, mut event: Event) -> Result<Published> {
        let mut state = self.state();
        let publisher_id = event.id.take();
        if let Some(id) = &publisher_id
            && let Some(earlier) = state.histories.get(&target).and_then(|history| {
                history
                    .events
                    .iter()
                    .find(|stored| stored.publisher_id.as_ref() == Some(id))
            })
        {
            return Ok(Published {
                id: Position::new(self.epoch.clone(), earlier.ms, earlier.seq).to_string(),
                delivered_locally: Some(0),
                instances: None,
                duplicate: true,
            });
        }
        state.seq += 1;
        let seq = state.seq;
        // Never earlier than the previous event, whatever the wall clock does.
        let ms = unix_millis().max(state.ms);
        state.ms = ms;
        let id = Position::new(self.epoch.clone(), ms, seq).to_string();
        event.id = Some(id.clone());
        let delivered_locally = self.fanout.deliver(&target, seq, &event)?;
        let history = state.histories.entry(target).or_default();
        let now = Instant::now();
        history.events.push_back(Stored {
            seq,
            ms,
            at: now,
            publisher_id,
            event,
        });
        history.trim(&self.retention, now);
        self.sweep(&mut state);
        Ok(Published {
            id,
            delivered_locally: Some(delivered_locally),
            instances: None,
            duplicate: false,
        })
    }

    /// Now and then, drops the histories of targets whose every event is too old, so that
    /// targets published to once do not hold memory for ever.
    fn sweep(&self, state: &mut State) {
        state.publishes_since_sweep += 1;
        if state.publishes_since_sweep < 1024 {
            return;
        }
        state.publishes_since_sweep = 0;
        let mut forgotten = state.forgotten_through;
        // One clock reading for every target: this runs under the broker's lock.
        let now = Instant::now();
        state.histories.retain(|_, history| {
            history.trim(&self.retention, now);
            if history.events.is_empty() {
                forgotten = forgotten.max(history.trimmed_through);
                return false;
            }
            true
        });
        state.forgotten_through = forgotten;
    }

    fn history_now(&self, targets: &[Target], after: Option<&Position>) -> History {
        let mut state = self.state();
        let current = Position::new(self.epoch.clone(), state.ms, state.seq);
        let reset = |reason: &str| History::Reset {
            reason: reason.to_owned(),
            current: Some(current.clone()),
        };
        let Some(after) = after else {
            return reset("the last event id is not a position of this server");
        };
        if after.epoch() != self.epoch {
            return reset("the history that position belongs to is gone (the server restarted)");
        }
        if after.seq() > state.seq {
            return reset("that position has not been reached yet");
        }
        if u128::from(unix_millis().saturating_sub(after.ms())) > self.retention.max_age.as_millis()
        {
            return reset("that position is older than the history kept");
        }
        let forgotten_through = state.forgotten_through;
        let now = Instant::now();
        let mut missed = Vec::new();
        for target in targets {
            match state.histories.get_mut(target) {
                Some(history) => {
                    history.trim(&self.retention, now);
                    if after.seq() < history.trimmed_through {
                        return reset("that position is older than the history kept");
                    }
                    missed.extend(
                        history
                            .events
                            .iter()
                            .filter(|stored| stored.seq > after.seq())
                            .map(|stored| (stored.seq, stored.event.clone())),
                    );
                }
                None if after.seq() < forgotten_through => {
                    return reset("that position is older than the history kept");
                }
                None => {}
            }
        }
        missed.sort_by_key(|(seq, _)| *seq);
        History::Events {
            events: missed,
            through: state.seq,
        }
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, target: Target, event: Event) -> BoxFuture<'_, Result<Published>> {
        let result = self.publish_now(target, event);
        Box::pin(async move { result })
    }

    fn history(&self, targets: Vec<Target>, after: Option<Position>) -> BoxFuture<'_, History> {
        let history = self.history_now(&targets, after.as_ref());
        Box::pin(async move { history })
    }

    fn put_ticket(&self, key: String, value: String, ttl: Duration) -> BoxFuture<'_, Result<()>> {
        let now = Instant::now();
        let mut tickets = self.tickets();
        if tickets.kept.len() >= tickets.sweep_at.max(TICKETS_SWEPT_FROM) {
            tickets.kept.retain(|_, (deadline, _)| *deadline > now);
            tickets.sweep_at = tickets.kept.len() * 2;
        }
        tickets.kept.insert(key, (now + ttl, value));
        Box::pin(async { Ok(()) })
    }

    fn take_ticket(&self, key: String) -> BoxFuture<'_, Result<Option<String>>> {
        let taken = self.tickets().kept.remove(&key);
        let value = taken
            .filter(|(deadline, _)| *deadline > Instant::now())
            .map(|(_, value)| value);
        Box::pin(async move { Ok(value) })
    }
}
