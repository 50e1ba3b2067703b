//! What the instance knows of its subscription path, from the subscription's state and
//! the probes it publishes to itself: what readiness and outages are told from.

use std::time::{Duration, Instant};

/// The state of the subscription and of the probes.
#[derive(Debug, Default)]
pub(super) struct Health {
    subscribed: bool,
    /// Whether the subscription failed and is not back yet (not merely not confirmed, as
    /// right after start).
    lost: bool,
    /// When the last probe came back.
    answered: Option<Instant>,
    /// When the oldest probe still unanswered was sent.
    waiting_since: Option<Instant>,
}

impl Health {
    /// The subscription is (back) in place; no probe has come back through it yet.
    pub(super) fn subscribed(&mut self) {
        self.subscribed = true;
        self.lost = false;
        self.answered = None;
        self.waiting_since = None;
    }

    /// The subscription failed.
    pub(super) fn lost(&mut self) {
        self.subscribed = false;
        self.lost = true;
    }

    /// Whether the subscription failed and is not back yet.
    pub(super) fn is_lost(&self) -> bool {
        self.lost
    }

    /// A probe was sent; the oldest one unanswered is what counts.
    pub(super) fn probe_sent(&mut self) {
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// A probe came back.
    pub(super) fn probe_answered(&mut self) {
        self.answered = Some(Instant::now());
        self.waiting_since = None;
    }

    /// Ready when subscribed and a probe came back within `limit`; otherwise why not.
    pub(super) fn readiness(&self, limit: Duration) -> std::result::Result<(), String> {
        if !self.subscribed {
            return Err("not subscribed to Redis".into());
        }
        match self.answered {
            None => Err("waiting for the first probe to come back through Redis".into()),
            Some(at) if at.elapsed() > limit => Err(format!(
                "no probe came back through Redis for {:.1} s",
                at.elapsed().as_secs_f64()
            )),
            Some(_) => Ok(()),
        }
    }

    /// Whether a probe has waited longer than `limit` for its answer.
    pub(super) fn probe_overdue(&self, limit: Duration) -> bool {
        self.waiting_since
            .is_some_and(|since| since.elapsed() > limit)
    }
}
