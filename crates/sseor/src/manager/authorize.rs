//! Who may open which stream and who may publish: tickets, the authorizer, the publish
//! token and rate, each refusal counted in the metrics.

use http::request::Parts;

use super::Manager;
use crate::Result;
use crate::auth::{self, Grant, Ticket};
use crate::error::Error;

impl Manager {
    /// Whether streams need a credential: an [`Authorizer`](crate::auth::Authorizer) is set.
    pub fn requires_auth(&self) -> bool {
        self.inner.config.auth.authorizer.is_some()
    }

    /// What a request that opens a stream may receive: the grant of its `?ticket=` (which
    /// is spent), else the [`Authorizer`](crate::auth::Authorizer)'s answer; `None` when no authorizer is set
    /// (development: the request names its user itself). Turn the grant into the stream
    /// with [`Grant::subscription`].
    ///
    /// # Errors
    /// [`Error::Auth`] when the request has no valid credential or ticket;
    /// [`Error::Broker`] when the ticket cannot be looked up.
    pub async fn authorize_stream(&self, request: &Parts) -> Result<Option<Grant>> {
        let grant = if let Some(ticket) = auth::query_value(request, "ticket") {
            self.redeem_ticket(&ticket).await
        } else if let Some(authorizer) = &self.inner.config.auth.authorizer {
            authorizer.authorize(request).await
        } else {
            return Ok(None);
        };
        auth::trace_outcome("stream", &grant, Grant::user_id);
        self.counted(grant).map(Some)
    }

    /// `result`, with an authentication refusal counted in the metrics by its reason.
    pub(crate) fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(Error::Auth { reason, .. }) = &result {
            self.inner.metrics.auth_failed(reason.as_str());
        }
        result
    }

    /// Whether `request` may publish now: it carries the publish token or a grant with the
    /// publish right in its headers (cookies and `?token=` do not count: a cookie would let
    /// any page its user visits publish in their name), and its credential is within the
    /// publish rate. Anyone may when neither an authorizer nor a publish token is set.
    ///
    /// # Errors
    /// [`Error::Auth`] (401 without a valid credential, 403 for a subscriber's);
    /// [`Error::RateLimited`] over the rate.
    pub async fn authorize_publish(&self, request: &Parts) -> Result<()> {
        let publisher = self.inner.config.auth.publisher(request).await;
        auth::trace_outcome("publish", &publisher, auth::Publisher::name);
        let publisher = self.counted(publisher);
        match &self.inner.limiter {
            Some(limiter) => limiter.check(&publisher?),
            None => publisher.map(drop),
        }
    }

    /// Whether `request` carries a publisher's credential, as
    /// [`authorize_publish`](Self::authorize_publish) without counting a publish: for the
    /// endpoints that serve backends (connection counts).
    pub(crate) async fn authorize_backend(&self, request: &Parts) -> Result<()> {
        self.counted(self.inner.config.auth.publisher(request).await.map(drop))
    }

    /// The grant for which `request` asks a ticket, from its headers only (a ticket exists
    /// to keep tokens out of URLs); `None` when no authorizer is set.
    pub(crate) async fn authorize_ticket(&self, request: &Parts) -> Result<Option<Grant>> {
        match &self.inner.config.auth.authorizer {
            Some(authorizer) => {
                let grant = authorizer.authorize(&auth::headers_only(request)).await;
                self.counted(grant).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A single-use ticket for `grant`, valid for the ticket TTL on any instance that
    /// shares this broker: a page puts it in its stream URL (`?ticket=`) instead of a
    /// long-lived token. A stream opened with it ends when `grant` expires.
    ///
    /// # Errors
    /// [`Error::Broker`] when the broker cannot keep it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
    /// let manager = sseor::Manager::new("").await?;
    /// let ticket = manager.issue_ticket(&sseor::auth::Grant::user("user123")?).await?;
    /// let grant = manager.redeem_ticket(ticket.value()).await?;
    /// assert_eq!(grant.user_id(), "user123");
    /// assert!(manager.redeem_ticket(ticket.value()).await.is_err()); // used up
    /// # Ok(()) }
    /// ```
    pub async fn issue_ticket(&self, grant: &Grant) -> Result<Ticket> {
        let ttl = self.inner.config.auth.ticket_ttl;
        auth::issue(self.inner.broker.as_ref(), grant, ttl).await
    }

    /// The grant of `ticket`, which is spent: a second redemption fails.
    ///
    /// # Errors
    /// [`Error::Auth`] with [`AuthReason::InvalidTicket`](crate::auth::AuthReason) when it
    /// is unknown, expired or used; [`Error::Broker`] when the broker cannot be reached.
    pub async fn redeem_ticket(&self, ticket: &str) -> Result<Grant> {
        auth::redeem(self.inner.broker.as_ref(), ticket).await
    }
}
