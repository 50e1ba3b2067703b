//! How events are published to each server under test.

use serde_json::{Value, json};

use super::Channel;

/// How events are published to a server.
#[derive(Clone, Debug)]
pub(crate) enum PublishApi {
    /// `POST /api/v1/publish` with `{"user_id"?, "event": {...}}`.
    Sseor(String),
    /// `POST {base}CHANNEL` with the event's data as the body.
    Nchan(String),
    /// Pushpin's HTTP control API, `POST /publish/` with items.
    Pushpin(String),
}

impl PublishApi {
    /// sseor's API at 127.0.0.1:`port`.
    pub(crate) fn sseor(port: u16) -> Self {
        Self::Sseor(format!("http://127.0.0.1:{port}/api/v1/publish"))
    }

    /// The request that publishes event `n` with publish time `t` (unix ns) to `channel`.
    pub(crate) fn request(&self, channel: Channel, n: u64, t: u64) -> PublishRequest {
        let data = json!({"n": n, "t": t});
        match self {
            PublishApi::Sseor(url) => PublishRequest {
                url: url.clone(),
                body: sseor_publish(channel, data).to_string(),
                events: 1,
            },
            PublishApi::Nchan(base) => PublishRequest {
                url: format!("{base}{}", channel.name()),
                body: data.to_string(),
                events: 1,
            },
            PublishApi::Pushpin(url) => {
                let content = format!("event: bench\ndata: {data}\n\n");
                let body = json!({"items": [{
                    "channel": channel.name(),
                    "formats": {"http-stream": {"content": content}},
                }]});
                PublishRequest {
                    url: url.clone(),
                    body: body.to_string(),
                    events: 1,
                }
            }
        }
    }

    /// The request that publishes `events` (each a channel and a number) with publish time
    /// `t`: one batch request with `batch` (sseor only: the bench refuses `--batch` for
    /// other servers), else the request of the first.
    pub(crate) fn request_many(
        &self,
        mut events: impl Iterator<Item = (Channel, u64)>,
        t: u64,
        batch: bool,
    ) -> PublishRequest {
        let url = match self {
            PublishApi::Sseor(url) if batch => url,
            _ => {
                let (channel, n) = events.next().expect("a request publishes an event");
                return self.request(channel, n, t);
            }
        };
        let items: Vec<Value> = events
            .map(|(channel, n)| sseor_publish(channel, json!({"n": n, "t": t})))
            .collect();
        PublishRequest {
            url: format!("{url}/batch"),
            events: items.len() as u64,
            body: json!({ "events": items }).to_string(),
        }
    }
}

/// The body of sseor's `POST /api/v1/publish` (an item of its batch) for an event with
/// `data` to `channel`.
fn sseor_publish(channel: Channel, data: Value) -> Value {
    let event = json!({"type": "bench", "data": data});
    match channel {
        Channel::Broadcast => json!({ "event": event }),
        Channel::Own(_) => json!({"user_id": channel.name(), "event": event}),
    }
}

/// One publish request: its URL and body.
pub(crate) struct PublishRequest {
    pub(crate) url: String,
    pub(crate) body: String,
    /// The events it publishes.
    pub(crate) events: u64,
}
