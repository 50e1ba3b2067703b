//! Publishes that wait together go to Redis together: one `FCALL sseor_publish_batch`
//! numbers, keeps and publishes them all, so that what a call costs Redis (the call, its
//! keys and arguments, its answer) is shared. A publish that finds fewer than
//! [`IN_FLIGHT`] batches under way goes at once, alone; otherwise it waits for the next
//! batch, with the others that arrive meanwhile. Nothing waits for a batch to fill up.
//!
//! The batches run in tasks of their own, so that a caller that gives up waiting does not
//! take the publishes of others with it. On a Redis Cluster a call's keys must share a
//! slot, which publishes to many users seldom do: there each publish goes alone, as many
//! at once as are made.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use super::RedisPublisher;
use crate::{Error, Result, Target};

/// Batches under way at once.
const IN_FLIGHT: usize = 2;

/// Events in one batch at most.
const MOST_EVENTS: usize = 64;

/// What a numbered publish answers: the event's epoch, number, and the instances that
/// received it.
pub(super) type Numbered = (u32, u64, i64);

/// A publish waiting for its batch.
struct Pending {
    sequence: String,
    history: String,
    json: String,
    answer: oneshot::Sender<Result<Numbered>>,
}

/// The publishes waiting, and the batches under way.
#[derive(Debug, Default)]
pub(super) struct Batches {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Pending>,
    in_flight: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("waiting", &self.waiting.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl State {
    /// The next batch, from the publishes that waited longest.
    fn take_batch(&mut self) -> Vec<Pending> {
        let count = self.waiting.len().min(MOST_EVENTS);
        self.waiting.drain(..count).collect()
    }
}

impl Batches {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `pending`; the batch to send when one more may be under way.
    fn queue(&self, pending: Pending) -> Option<Vec<Pending>> {
        let mut state = self.state();
        state.waiting.push_back(pending);
        if state.in_flight >= IN_FLIGHT {
            return None;
        }
        state.in_flight += 1;
        Some(state.take_batch())
    }

    /// After a batch: the next one, or none when nothing waits (the batch's place freed,
    /// in the same step, so that a publish queued meanwhile is never left behind).
    fn next(&self) -> Option<Vec<Pending>> {
        let mut state = self.state();
        if state.waiting.is_empty() {
            state.in_flight -= 1;
            return None;
        }
        Some(state.take_batch())
    }
}

/// Frees a batch's place if its task ends without doing so (a panic).
struct Place<'a> {
    batches: &'a Batches,
    held: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.held {
            self.batches.state().in_flight -= 1;
        }
    }
}

impl RedisPublisher {
    /// Publishes the event `json` to `target` in the next batch.
    pub(super) async fn publish_batched(&self, target: &Target, json: String) -> Result<Numbered> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            sequence: self.names.sequence(target),
            history: self.names.history(target),
            json,
            answer,
        };
        if let Some(batch) = self.batches.queue(pending) {
            let publisher = self.clone();
            tokio::spawn(async move { publisher.send_batches(batch).await });
        }
        answered
            .await
            .unwrap_or_else(|_| Err(Error::Broker("the publish was dropped unanswered".into())))
    }

    /// Sends `batch`, then the batches that gathered meanwhile, until none waits.
    async fn send_batches(self, mut batch: Vec<Pending>) {
        let mut place = Place {
            batches: &self.batches,
            held: true,
        };
        loop {
            self.send_group(batch).await;
            match self.batches.next() {
                Some(next) => batch = next,
                None => {
                    place.held = false;
                    return;
                }
            }
        }
    }

    /// Publishes `group` with one call, and gives each publish its answer.
    async fn send_group(&self, group: Vec<Pending>) {
        let call = self.batch_call(&group);
        match self.answered(&call, group.len()).await {
            Ok(answers) => {
                for (pending, answer) in group.into_iter().zip(answers) {
                    let _ = pending.answer.send(Ok(answer));
                }
            }
            Err(e) => {
                let reason = match e {
                    Error::Broker(reason) => reason,
                    other => other.to_string(),
                };
                for pending in group {
                    let _ = pending.answer.send(Err(Error::Broker(reason.clone())));
                }
            }
        }
    }

    /// The `FCALL sseor_publish_batch` of `group`.
    fn batch_call(&self, group: &[Pending]) -> redis::Cmd {
        let mut call = redis::cmd("FCALL");
        call.arg("sseor_publish_batch").arg(group.len() * 2);
        for pending in group {
            call.arg(&pending.sequence).arg(&pending.history);
        }
        for pending in group {
            call.arg(&pending.json);
        }
        let (max_events, max_age_ms) = self.retention_args();
        call.arg(max_events)
            .arg(max_age_ms)
            .arg(crate::position::unix_millis());
        call
    }
}
