use std::sync::{Mutex, PoisonError};

use futures_util::future::BoxFuture;

use super::{Broker, Published};
use crate::{Event, Fanout, Result, Target};

/// The embedded broker: events go straight to this instance's connections.
///
/// Ids come from one sequence (1, 2, 3, ...) shared by all targets, so they increase for
/// every target, and events reach each connection in the order of their ids.
#[derive(Debug)]
pub struct MemoryBroker {
    fanout: Fanout,
    /// The last id given; held while an event is delivered, so ids reach clients in order.
    sequence: Mutex<u64>,
}

impl MemoryBroker {
    /// A broker that delivers to `fanout`.
    pub fn new(fanout: Fanout) -> Self {
        Self {
            fanout,
            sequence: Mutex::new(0),
        }
    }

    fn publish_now(&self, target: &Target, mut event: Event) -> Result<Published> {
        let mut sequence = self.sequence.lock().unwrap_or_else(PoisonError::into_inner);
        *sequence += 1;
        let id = event.id.get_or_insert_with(|| sequence.to_string()).clone();
        let delivered_locally = self.fanout.deliver(target, &event)?;
        Ok(Published {
            id,
            delivered_locally: Some(delivered_locally),
            instances: None,
        })
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, target: Target, event: Event) -> BoxFuture<'_, Result<Published>> {
        let result = self.publish_now(&target, event);
        Box::pin(async move { result })
    }
}
