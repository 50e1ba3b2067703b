//! Starting a [`Manager`] from its [`Builder`]: the metrics, the registry of streams, the
//! broker and the background tasks.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tasks::{expire_streams, heartbeat};
use super::transitions::Transitions;
use super::{Builder, Inner, Manager};
use crate::auth::PublishLimiter;
use crate::broker::{Broker, BrokerContext, MemoryBroker};
use crate::fanout::registry::Registry;
use crate::metrics::Metrics;
use crate::{Error, Result};

impl Builder {
    /// Starts the manager and its broker.
    ///
    /// A Redis that is not reachable yet does not stop the start: the manager reports it in
    /// [`Manager::readiness`] and connects as soon as it can.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the broker URL is not one this build supports or does not
    /// parse; [`Error::Broker`] when Redis refuses the credentials.
    pub async fn build(mut self) -> Result<Manager> {
        self.drain_period = self.drain_period.min(self.shutdown_timeout);
        let metrics = Arc::new(Metrics::new());
        #[cfg(feature = "webhook")]
        let webhooks = self.start_webhooks(&metrics);
        let registry = Arc::new(Registry::new(self.limits, metrics.clone()));
        let context = BrokerContext {
            registry: registry.clone(),
            retention: self.retention,
            metrics: metrics.clone(),
            lifecycle: self.lifecycle.clone(),
        };
        let broker = match &self.start_broker {
            Some(start) => start(context).await?,
            None => self.broker_for_url(context).await?,
        };
        let transitions = Transitions::start(&registry, &broker, &self.lifecycle);
        let shutdown = CancellationToken::new();
        tokio::spawn(heartbeat(
            registry.clone(),
            self.heartbeat,
            shutdown.clone(),
        ));
        let (expiry, deadlines) = mpsc::unbounded_channel();
        tokio::spawn(expire_streams(
            registry.clone(),
            deadlines,
            shutdown.clone(),
        ));
        let limiter = self
            .auth
            .publish_rate
            .map(|(rate, burst)| PublishLimiter::new(rate, burst));
        Ok(Manager {
            inner: Arc::new(Inner {
                config: self,
                registry,
                broker,
                routes: Mutex::default(),
                shutdown,
                closing_since: OnceLock::new(),
                drained: CancellationToken::new(),
                servers: TaskTracker::new(),
                expiry,
                limiter,
                metrics,
                #[cfg(feature = "webhook")]
                webhooks,
                transitions,
            }),
        })
    }

    /// The broker of [`broker_url`](Self::broker_url).
    async fn broker_for_url(&self, context: BrokerContext) -> Result<Arc<dyn Broker>> {
        let url = self.broker_url.as_str();
        let scheme = match url.split_once("://") {
            Some((scheme, _)) => scheme,
            None if url.is_empty() => "",
            // Never echo it: without a scheme, there is no telling where a password is.
            None => {
                return Err(Error::InvalidUrl(
                    "the broker URL has no scheme; expected `memory://`, `redis://`, \
                     `rediss://` or `redis+unix://`"
                        .into(),
                ));
            }
        };
        match scheme {
            "" | "memory" => Ok(Arc::new(MemoryBroker::new(
                context.fanout(),
                context.retention(),
            ))),
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" | "unix" | "redis+sentinel" | "redis+cluster"
            | "rediss+cluster" => {
                let mut options = self.redis.clone();
                options.retention = self.retention;
                options.foreign_message_limit = self.max_body_bytes;
                let broker =
                    crate::broker::redis::RedisBroker::connect(url, context, options).await?;
                Ok(Arc::new(broker))
            }
            _ => Err(Error::InvalidUrl(format!(
                "unsupported scheme `{scheme}`; expected `memory://`, `redis://`, `rediss://`, \
                 `redis+unix://`, `redis+sentinel://`, `redis+cluster://` or `rediss+cluster://`"
            ))),
        }
    }
}
