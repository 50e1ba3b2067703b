//! Stream tickets: short-lived, single-use passes that a page puts in its `EventSource`
//! URL instead of a long-lived token.
//!
//! A ticket is 256 random bits. The broker keeps the grant it stands for under the
//! ticket's SHA-256 digest (so that whoever can read the broker's keys, Redis `MONITOR`
//! included, sees no usable ticket) and hands it out once: redeeming takes it away.

use std::fmt;
use std::time::Duration;

use super::{AuthReason, Grant, digest};
use crate::broker::Broker;
use crate::{Error, Result};

/// A ticket's length in hexadecimal digits (256 bits).
const TICKET_HEX_LEN: usize = 64;

/// A single-use pass to open one stream with the [`Grant`] it was issued for, valid for a
/// short time; see [`Manager::issue_ticket`](crate::Manager::issue_ticket).
///
/// Its debug output hides the value, so that it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    value: String,
    ttl: Duration,
}

impl Ticket {
    /// The ticket, to put in the stream's URL as `?ticket=`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// How long it may be redeemed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("value", &"***")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Issues a ticket for `grant` (without its publish right: a ticket opens a stream).
pub(crate) async fn issue(broker: &dyn Broker, grant: &Grant, ttl: Duration) -> Result<Ticket> {
    let mut random = [0u8; TICKET_HEX_LEN / 2];
    crate::random::fill(&mut random)?;
    let value = hex(&random);
    let grant = grant.clone().with_publish(false);
    let stored = serde_json::to_string(&grant)
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    broker.put_ticket(storage_key(&value), stored, ttl).await?;
    Ok(Ticket { value, ttl })
}

/// The grant of `ticket`, which is spent by this call.
pub(crate) async fn redeem(broker: &dyn Broker, ticket: &str) -> Result<Grant> {
    let invalid = || {
        Error::auth(
            AuthReason::InvalidTicket,
            "the ticket is unknown, expired or already used; ask for a new one",
        )
    };
    // Not worth a broker round trip: no ticket looks like this.
    if ticket.len() != TICKET_HEX_LEN || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let stored = broker
        .take_ticket(storage_key(&ticket.to_ascii_lowercase()))
        .await?
        .ok_or_else(invalid)?;
    serde_json::from_str(&stored).map_err(|_| invalid())
}

fn storage_key(ticket: &str) -> String {
    hex(&digest(ticket.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}
