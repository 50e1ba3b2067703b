//! The manager's options from each group of settings, with the checks that clap cannot
//! make because they compare values.

use std::time::Duration;

use super::SettingsError;
use crate::cli::{self, Broker, Limits, Shutdown, Streams};

/// The drain period when none is set: 5 s, or the shutdown timeout when shorter.
const DEFAULT_DRAIN_PERIOD: Duration = Duration::from_secs(5);

impl Broker {
    /// `builder` with the broker, its history and its Redis options.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> sseor::Builder {
        let builder = match &self.redis_ca_file {
            Some(path) => builder.redis_ca_file(path),
            None => builder,
        };
        builder
            .broker_url(self.redis_url.clone().unwrap_or_default())
            .history(self.history_size, self.history_max_age)
            .history_max_bytes(self.history_max_bytes)
            .redis_prefix(self.redis_prefix.clone())
            .redis_timeout(self.redis_timeout)
            .redis_probe_interval(self.probe_interval)
            .redis_presence_ttl(self.presence_ttl)
            .lifecycle_grace(self.lifecycle_grace)
            .redis_wait_replicas(self.redis_wait_replicas)
    }

    /// The broker's kind, for the logs; never the URL, which may hold a password.
    pub(crate) fn name(&self) -> &'static str {
        match self.redis_url.as_deref() {
            None | Some("") => "embedded",
            Some(url) if url.starts_with("memory:") => "embedded",
            Some(_) => "redis",
        }
    }
}

impl Streams {
    /// `builder` with what every stream is sent and may queue.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> sseor::Builder {
        builder
            .heartbeat(self.heartbeat)
            .retry(Some(self.retry).filter(|d| !d.is_zero()))
            .retry_jitter(self.retry_jitter)
            .queue_capacity(self.queue_capacity)
            .queue_bytes(self.queue_bytes)
            .slow_consumer(self.slow_consumer.into())
    }
}

impl Limits {
    /// `builder` with these limits; a burst needs a rate, which clap cannot say since
    /// both default to 0.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> Result<sseor::Builder, SettingsError> {
        if self.publish_burst > 0 && self.publish_rate == 0 {
            return Err(SettingsError::Invalid(format!(
                "{} needs {}: a burst of a rate that is not limited means nothing",
                cli::name("publish_burst"),
                cli::name("publish_rate")
            )));
        }
        Ok(builder
            .publish_rate(self.publish_rate, self.publish_burst)
            .max_connections(self.max_connections)
            .max_connections_per_user(self.max_connections_per_user)
            .max_connections_per_ip(self.max_connections_per_ip)
            .max_topics(self.max_topics)
            .max_body_bytes(self.max_body_bytes)
            .max_batch_events(self.max_batch_events)
            .max_batch_body_bytes(self.max_batch_body_bytes)
            .body_timeout(self.body_timeout)
            .body_bytes_in_flight(self.body_bytes_in_flight))
    }
}

impl Shutdown {
    /// `builder` with the shutdown timeout and the drain period, which must fit in it.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> Result<sseor::Builder, SettingsError> {
        let drain = match self.drain_period {
            Some(drain) if drain > self.shutdown_timeout => {
                return Err(SettingsError::Invalid(format!(
                    "{} {} exceeds {} {}, which bounds the whole shutdown",
                    cli::name("drain_period"),
                    humantime::format_duration(drain),
                    cli::name("shutdown_timeout"),
                    humantime::format_duration(self.shutdown_timeout)
                )));
            }
            Some(drain) => drain,
            None => DEFAULT_DRAIN_PERIOD.min(self.shutdown_timeout),
        };
        Ok(builder
            .shutdown_timeout(self.shutdown_timeout)
            .drain_period(drain))
    }
}
