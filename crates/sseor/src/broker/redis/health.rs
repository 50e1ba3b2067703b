//! What the instance knows of its subscription path, from the subscription's state and
//! the probes it publishes to itself (one per Redis master on a cluster): what readiness
//! and outages are told from.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The state of the subscription and of the probes.
#[derive(Debug, Default)]
pub(super) struct Health {
    subscribed: bool,
    /// Whether the subscription failed and is not back yet (not merely not confirmed, as
    /// right after start).
    lost: bool,
    /// Each probe channel (one per master), with what is known of its probes.
    probes: HashMap<String, Probe>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Probe {
    /// When the last probe came back.
    answered: Option<Instant>,
    /// When the oldest probe still unanswered was sent.
    waiting_since: Option<Instant>,
}

impl Health {
    /// The subscription is (back) in place, probed on `channels`; no probe has come back
    /// through it yet.
    pub(super) fn subscribed(&mut self, channels: &[String]) {
        self.subscribed = true;
        self.lost = false;
        self.probes = channels
            .iter()
            .map(|channel| (channel.clone(), Probe::default()))
            .collect();
    }

    /// The probe channels changed (the cluster's masters did): new ones start unanswered,
    /// the others keep their state.
    pub(super) fn probe_on(&mut self, channels: &[String]) {
        let mut probes: HashMap<String, Probe> = channels
            .iter()
            .map(|channel| (channel.clone(), Probe::default()))
            .collect();
        for (channel, probe) in &mut probes {
            if let Some(known) = self.probes.get(channel) {
                *probe = *known;
            }
        }
        self.probes = probes;
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

    /// A probe was sent on `channel`; the oldest one unanswered is what counts.
    pub(super) fn probe_sent(&mut self, channel: &str) {
        if let Some(probe) = self.probes.get_mut(channel) {
            probe.waiting_since.get_or_insert_with(Instant::now);
        }
    }

    /// A probe came back on `channel`; false for a channel that is not a probe's.
    pub(super) fn probe_answered(&mut self, channel: &str) -> bool {
        let Some(probe) = self.probes.get_mut(channel) else {
            return false;
        };
        probe.answered = Some(Instant::now());
        probe.waiting_since = None;
        true
    }

    /// Ready when subscribed and every probe came back within `limit`; otherwise why not.
    pub(super) fn readiness(&self, limit: Duration) -> std::result::Result<(), String> {
        if !self.subscribed {
            return Err("not subscribed to Redis".into());
        }
        let shards = self.probes.len();
        for probe in self.probes.values() {
            match probe.answered {
                None => {
                    return Err(if shards > 1 {
                        format!("waiting for the probes of all {shards} Redis masters to come back")
                    } else {
                        "waiting for the first probe to come back through Redis".into()
                    });
                }
                Some(at) if at.elapsed() > limit => {
                    return Err(format!(
                        "no probe came back through Redis{} for {:.1} s",
                        if shards > 1 {
                            " from one of its masters"
                        } else {
                            ""
                        },
                        at.elapsed().as_secs_f64()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The subscriber was busy (subscribing thousands of channels, catching up): the
    /// answers of the probes it sent meanwhile wait unread, so their time starts now.
    pub(super) fn was_busy(&mut self) {
        let now = Instant::now();
        for probe in self.probes.values_mut() {
            if let Some(since) = &mut probe.waiting_since {
                *since = now;
            }
        }
    }

    /// Whether a probe has waited longer than `limit` for its answer.
    pub(super) fn probe_overdue(&self, limit: Duration) -> bool {
        self.probes.values().any(|probe| {
            probe
                .waiting_since
                .is_some_and(|since| since.elapsed() > limit)
        })
    }
}
