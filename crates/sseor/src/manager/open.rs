//! Opening a stream on a request: its subscription checked, registered with the fan-out,
//! its replay from `Last-Event-ID` (or a reset), and its response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ConnectInfo;
use axum::response::Response;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::Manager;
use crate::broker::History;
use crate::fanout::Refused;
use crate::fanout::queue::{self, Frame, Stamp};
use crate::fanout::registry::{Opening, Sink};
use crate::server::body::{EventBody, Replay};
use crate::server::handoff::{AcceptsHandoff, ConnectionAbort};
use crate::{Cursor, Error, Event, Position, RESET_EVENT, Result, Subscription, Target, encode};

const NO_USER: &str = "the query parameter `user_id` is required";
const MANY_USERS: &str = "the query parameter `user_id` is given more than once";

/// What a request to the standard API's stream endpoint asks for: the users it names
/// (`user_id`, which may repeat) and the topics it joins.
pub(crate) struct Asked<'a> {
    pub(crate) users: Vec<&'a str>,
    pub(crate) topics: Vec<&'a str>,
}

impl Manager {
    /// Opens the stream a request of the standard API asks for, in one call: with a
    /// `?ticket=` or an authorizer, the stream its credential grants (every user it names
    /// must be the credential's, every topic granted); without, the one user it names.
    ///
    /// # Errors
    /// As [`authorize_stream`](Self::authorize_stream) and
    /// [`handle_sse_with`](Self::handle_sse_with); [`Error::InvalidTarget`] when no
    /// credential decides the user and the request names none, or more than one.
    pub(crate) async fn open_asked(
        &self,
        request: http::Request<()>,
        asked: Asked<'_>,
    ) -> Result<Response> {
        let (parts, ()) = request.into_parts();
        let mut topics = asked.topics.iter().copied();
        let subscription = match self.authorize_stream(&parts).await? {
            Some(grant) => {
                let other = asked.users.iter().copied().find(|u| *u != grant.user_id());
                self.counted(grant.subscription(other, topics))?
            }
            None => {
                let user = match asked.users[..] {
                    [user] => user,
                    [] => return Err(Error::InvalidTarget(NO_USER.into())),
                    _ => return Err(Error::InvalidTarget(MANY_USERS.into())),
                };
                topics.try_fold(Subscription::user(user)?, |s, topic| s.topic(topic))?
            }
        };
        self.handle_sse_with(&http::Request::from_parts(parts, ()), subscription)
    }

    /// Opens the event stream of `user_id` on this request: the user's events and
    /// broadcasts. The response streams until the client leaves or the manager closes.
    ///
    /// A request with `Last-Event-ID` (or `?last_event_id=`) resumes: the events the
    /// client missed come first, in order, then live ones, none twice; a position that
    /// cannot be resumed from gets one [`RESET_EVENT`] instead.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] for an empty or malformed user id, [`Error::Closed`] once
    /// the manager is closed. Both convert into an HTTP error response.
    pub fn handle_sse<B>(&self, request: &http::Request<B>, user_id: &str) -> Result<Response> {
        self.handle_sse_with(request, Subscription::user(user_id)?)
    }

    /// Opens an event stream for a [`Subscription`]: a user, its topics and broadcasts;
    /// with [`Subscription::expires_at`], until then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// use sseor::auth::Grant;
    /// let manager = sseor::Manager::new("").await?;
    /// // What an authorizer granted: the stream of user123 with `prices`.
    /// let grant = Grant::user("user123")?.with_topics(["prices"]);
    /// let request = axum::http::Request::get("/events?topic=prices").body(()).unwrap();
    /// let response = manager.handle_sse_with(&request, grant.subscription(None, ["prices"])?)?;
    /// assert_eq!(response.headers()["content-type"], "text/event-stream");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`] once the manager is closed; [`Error::TooManyConnections`] when a
    /// limit on open streams is reached (see [`Builder::max_connections`](crate::Builder::max_connections));
    /// [`Error::InvalidTarget`] when the subscription has more topics than
    /// [`Builder::max_topics`](crate::Builder::max_topics).
    pub fn handle_sse_with<B>(
        &self,
        request: &http::Request<B>,
        subscription: Subscription,
    ) -> Result<Response> {
        let config = &self.inner.config;
        config.input.check_topics(&subscription.targets)?;
        if let Some(reason) = self.inner.broker.outage() {
            return Err(Error::Broker(reason));
        }
        let Subscription {
            targets,
            slow_consumer,
            expires_at,
        } = subscription;
        let (tx, rx) = queue::bounded(queue::Bounds {
            events: config.queue_capacity,
            bytes: config.queue_bytes,
            policy: slow_consumer.unwrap_or(config.slow_consumer),
        });
        let opening = config.retry.map_or_else(
            || encode::comment("ok"),
            |delay| {
                let delay = jittered(delay, config.retry_jitter);
                encode::retry(delay.as_millis().try_into().unwrap_or(u64::MAX))
            },
        );
        let abort = request
            .extensions()
            .get::<ConnectionAbort>()
            .map(|abort| abort.0.clone());
        let client_ip = self.client_ip(request)?;
        let registry = &self.inner.registry;
        // Registered first, so that nothing published while the history is read is lost;
        // the stream drops what the replay already covered.
        let registration = registry
            .register(Opening {
                sink: Sink::new(tx, abort),
                targets: targets.clone(),
                client_ip,
            })
            .map_err(|refused| self.refusal(refused))?;
        if let Some(at) = expires_at {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            // Past any date a token can hold: such a stream simply never expires.
            if let Some(deadline) = Instant::now().checked_add(left.min(MAX_STREAM_LIFETIME)) {
                let _ = self.inner.expiry.send((deadline, registration.id()));
            }
        }
        let replay = self.replay(targets, last_event_id(request), registry.barrier());
        let handoff = request.extensions().get::<AcceptsHandoff>().is_some();
        Ok(EventBody::new(opening, replay, rx, registration).into_response(handoff))
    }

    /// The client's address: from the configured proxy header when it holds one, else the
    /// socket's peer.
    ///
    /// # Errors
    /// [`Error::Misconfigured`] when a limit per address is set and the address is unknown:
    /// a server that records no [`ConnectInfo`] would otherwise make the limit a silent
    /// no-op.
    fn client_ip<B>(&self, request: &http::Request<B>) -> Result<Option<IpAddr>> {
        let forwarded = self
            .inner
            .config
            .client_ip_header
            .as_ref()
            .and_then(|header| forwarded_ip(request.headers(), header));
        let ip = forwarded
            .or_else(|| {
                request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.ip())
            })
            .map(|ip| ip.to_canonical());
        if ip.is_none() && self.inner.config.limits.per_ip > 0 {
            return Err(self.unknown_client_address());
        }
        Ok(ip)
    }

    /// The refusal of a stream whose address a limit per address needs, logged once.
    fn unknown_client_address(&self) -> Error {
        const FIX: &str = "max_connections_per_ip is set but the client's address is unknown: \
            serve with Manager::serve, or with axum::serve(listener, \
            app.into_make_service_with_connect_info::<std::net::SocketAddr>())";
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| tracing::error!("streams are refused: {FIX}"));
        Error::Misconfigured(FIX.to_owned())
    }

    fn refusal(&self, refused: Refused) -> Error {
        match refused {
            Refused::Closed => Error::Closed,
            Refused::Limit(limit, max) => Error::TooManyConnections {
                limit,
                max,
                retry_after: jittered(
                    self.inner.config.retry.unwrap_or(Duration::from_secs(1)),
                    self.inner.config.retry_jitter,
                ),
            },
        }
    }

    /// Where the stream starts, once all its targets are subscribed (so that nothing
    /// published meanwhile is lost: the overlap with live events is dropped by position):
    /// after the events its client missed since the cursor `last`, or after a reset when
    /// they cannot be told; live everywhere without a cursor.
    fn replay(
        &self,
        targets: Vec<Target>,
        last: Option<String>,
        subscribed: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> BoxFuture<'static, Replay> {
        let broker = self.inner.broker.clone();
        Box::pin(async move {
            if let Some(subscribed) = subscribed {
                let _ = subscribed.await;
            }
            let live = || {
                targets
                    .iter()
                    .map(|t| (t.clone(), None))
                    .collect::<Vec<_>>()
            };
            let placed = last.as_deref().map(|last| Cursor::parse(last, &targets));
            match placed.unwrap_or_else(|| Ok(live())) {
                Ok(start) => replay_of(broker.resume(start.clone()).await, &start),
                Err(invalid) => {
                    let positions = match broker.resume(live()).await {
                        History::Events { positions, .. } | History::Reset { positions, .. } => {
                            positions
                        }
                    };
                    let reset = History::Reset {
                        reason: invalid.to_string(),
                        positions,
                    };
                    replay_of(reset, &live())
                }
            }
        })
    }
}

/// The replay of a stream that starts at `start` (each target's position, `None` where it
/// starts live) and needs `history`.
fn replay_of(history: History, start: &[(Target, Option<Position>)]) -> Replay {
    match history {
        History::Events { events, positions } => {
            let now = |target: &Target| {
                positions
                    .iter()
                    .find_map(|(t, position)| (t == target).then_some(*position))
                    .unwrap_or_default()
            };
            let cursor = start
                .iter()
                .map(|(target, at)| (target.clone(), at.unwrap_or_else(|| now(target))))
                .collect();
            let frames = events
                .into_iter()
                .filter_map(|(target, position, event)| {
                    Some(Arc::new(Frame {
                        bytes: encode::event_without_id(&event).ok()?,
                        kind: Some(event.event_type.into()),
                        stamp: Some(Stamp::Event(target, position)),
                    }))
                })
                .collect();
            Replay {
                cursor: Cursor::at(cursor),
                frames,
                through: positions,
                live: start
                    .iter()
                    .filter(|(_, at)| at.is_none())
                    .map(|(target, _)| target.clone())
                    .collect(),
            }
        }
        History::Reset { reason, positions } => {
            tracing::debug!(%reason, "a resuming client gets a reset");
            let reset = Event::new(RESET_EVENT).with_data(serde_json::json!({ "reason": reason }));
            let frames = encode::event_without_id(&reset)
                .map(|bytes| {
                    Arc::new(Frame {
                        stamp: Some(Stamp::Cursor),
                        bytes,
                        kind: None,
                    })
                })
                .into_iter()
                .collect();
            Replay {
                cursor: Cursor::at(positions),
                frames,
                through: Vec::new(),
                live: Vec::new(),
            }
        }
    }
}

/// Streams whose credential lasts longer are not watched: DelayQueue's timer wheel holds
/// about two years.
const MAX_STREAM_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// `base`, spread uniformly between `(1 - jitter)` and `(1 + jitter)` times it.
fn jittered(base: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return base;
    }
    base.mul_f64(1.0 - jitter + 2.0 * jitter * crate::random::unit())
}
/// The right-most address in the last `header` line: the one the proxy in front of this
/// server wrote (those left of it come from the client). Accepts `ADDRESS` and
/// `ADDRESS:PORT` (IPv6 with a port in brackets).
fn forwarded_ip(headers: &http::HeaderMap, header: &http::HeaderName) -> Option<IpAddr> {
    let value = headers.get_all(header).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|address| address.ip()))
}
/// The client's last event id: the `Last-Event-ID` header a browser sends when it
/// reconnects, or `?last_event_id=` for clients that cannot set headers.
fn last_event_id<B>(request: &http::Request<B>) -> Option<String> {
    if let Some(header) = request.headers().get("last-event-id") {
        return Some(String::from_utf8_lossy(header.as_bytes()).into_owned());
    }
    let query = request.uri().query()?;
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .ok()
        .filter(|_| !query.is_empty())?
        .0
        .into_iter()
        .find_map(|(key, value)| (key == "last_event_id").then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_address_is_the_right_most_one() {
        let name = http::HeaderName::from_static("x-forwarded-for");
        let mut headers = http::HeaderMap::new();
        assert_eq!(forwarded_ip(&headers, &name), None);
        headers.append(&name, "203.0.113.9, 198.51.100.7".parse().unwrap());
        assert_eq!(
            forwarded_ip(&headers, &name),
            Some("198.51.100.7".parse().unwrap())
        );
        headers.append(&name, "1.2.3.4, [2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            forwarded_ip(&headers, &name),
            Some("2001:db8::1".parse().unwrap())
        );
        headers.insert(&name, "unknown".parse().unwrap());
        assert_eq!(forwarded_ip(&headers, &name), None);
    }

    #[test]
    fn jitter_spreads_within_its_range() {
        let base = Duration::from_secs(3);
        assert_eq!(jittered(base, 0.0), base);
        let spread: Vec<Duration> = (0..200).map(|_| jittered(base, 0.5)).collect();
        assert!(
            spread
                .iter()
                .all(|d| (Duration::from_millis(1500)..=Duration::from_millis(4500)).contains(d))
        );
        assert!(spread.iter().any(|d| *d != spread[0]));
    }
}
