//! Who may open which stream, and who may publish.
//!
//! An [`Authorizer`] looks at a request and answers with a [`Grant`]: the user it speaks
//! for, the topics it may join, whether it may publish, and until when. Two are built in:
//! `JwtAuthorizer` (feature `jwt`) checks tokens, `HttpAuthorizer` (feature `auth-callout`)
//! asks an endpoint of the application about the request's session cookie. An application
//! plugs in its own check (a header set by an API gateway) by implementing the trait, or
//! with a closure:
//!
//! ```
//! use sseor::auth::{AuthReason, Grant};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
//! // Behind a gateway that has already checked the user and says who it is.
//! let manager = sseor::Manager::builder()
//!     .authorizer(|request: &axum::http::request::Parts| {
//!         let user = request
//!             .headers
//!             .get("x-authenticated-user")
//!             .and_then(|value| value.to_str().ok())
//!             .ok_or_else(|| sseor::Error::auth(AuthReason::Missing, "no gateway header"))?;
//!         Ok(Grant::user(user)?.with_topics(["prices"]))
//!     })
//!     .build()
//!     .await?;
//! # manager.close().await; Ok(()) }
//! ```
//!
//! With an authorizer set, the standard [`api`](crate::api) requires it on every stream and
//! publish; tickets ([`Manager::issue_ticket`](crate::Manager::issue_ticket)) let a page
//! open a stream without putting a long-lived token in the URL. Refusals are
//! [`Error::Auth`]: a stable [`AuthReason`] and a message that never contains the
//! credential.

#[cfg(feature = "auth-callout")]
mod callout;
#[cfg(feature = "jwt")]
mod jwt;
mod limit;
mod ticket;

#[cfg(feature = "auth-callout")]
pub use callout::HttpAuthorizer;
#[cfg(feature = "jwt")]
pub use jwt::{JwtAuthorizer, MIN_SECRET_LEN};
pub(crate) use limit::PublishLimiter;
pub use ticket::Ticket;
pub(crate) use ticket::{issue, redeem};

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::request::Parts;
use serde::{Deserialize, Serialize};

pub use crate::error::AuthReason;
use crate::{Error, Result, Subscription, Target};

/// Decides who a request speaks for and what it may do.
///
/// Called once per stream opened, per publish and per ticket issued; the answer is a
/// [`Grant`], or an [`Error::Auth`] (401 or 403 by its reason). Implement it for an
/// application's own check; any `Fn(&Parts) -> Result<Grant>` closure is one too.
pub trait Authorizer: Send + Sync + 'static {
    /// What `request` may do.
    ///
    /// # Errors
    /// [`Error::Auth`] when the request carries no valid credential (a reason whose
    /// [`status`](AuthReason::status) is 401); any other error is answered as it is.
    fn authorize<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<Grant>>;

    /// Whether a grant of this authorizer may ever carry the publish right (`true` unless
    /// overridden). When it may not, publishing needs the publish token and a publish
    /// request never reaches [`authorize`](Self::authorize): a wrong publisher credential
    /// costs the authorizer nothing.
    ///
    /// ```
    /// use sseor::auth::{Authorizer, Grant};
    /// let authorizer = |_: &axum::http::request::Parts| Grant::user("user123");
    /// assert!(authorizer.grants_publish());
    /// ```
    fn grants_publish(&self) -> bool {
        true
    }
}

impl<F> Authorizer for F
where
    F: Fn(&Parts) -> Result<Grant> + Send + Sync + 'static,
{
    fn authorize<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<Grant>> {
        let grant = self(request);
        Box::pin(async move { grant })
    }
}

/// The topics a [`Grant`] lets its holder join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Topics {
    /// Every topic.
    All,
    /// These topics only (none when empty).
    Only(BTreeSet<String>),
}

impl Topics {
    /// Whether `topic` is one of them.
    pub fn contains(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(topics) => topics.contains(topic),
        }
    }
}

/// What an authorized request may do: whose stream it may open, which topics it may join,
/// whether it may publish, and until when.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use sseor::auth::Grant;
///
/// let grant = Grant::user("user123")?
///     .with_topics(["prices"])
///     .expiring_at(SystemTime::now() + Duration::from_secs(3600));
/// assert!(grant.topics().contains("prices"));
/// // The stream of user123 with topic `prices`, closed when the grant expires.
/// let subscription = grant.subscription(None, ["prices"])?;
/// assert!(grant.subscription(Some("someone-else"), []).is_err());
/// # drop(subscription); Ok::<(), sseor::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
pub struct Grant {
    user_id: String,
    topics: Topics,
    publish: bool,
    expires_at: Option<SystemTime>,
}

impl Grant {
    /// The stream of `user_id` (and broadcasts), no topic, no publishing, no expiry.
    ///
    /// # Errors
    /// [`Error::InvalidTarget`] when `user_id` is not a valid user id.
    pub fn user(user_id: &str) -> Result<Self> {
        Target::user(user_id)?;
        Ok(Self {
            user_id: user_id.to_owned(),
            topics: Topics::Only(BTreeSet::new()),
            publish: false,
            expires_at: None,
        })
    }

    /// Also these topics.
    pub fn with_topics<I, T>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        if let Topics::Only(granted) = &mut self.topics {
            granted.extend(topics.into_iter().map(Into::into));
        }
        self
    }

    /// Every topic.
    pub fn with_all_topics(mut self) -> Self {
        self.topics = Topics::All;
        self
    }

    /// Whether the holder may publish.
    pub fn with_publish(mut self, publish: bool) -> Self {
        self.publish = publish;
        self
    }

    /// Valid until `at`: a stream opened with it ends then.
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The user it speaks for.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The topics it may join.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Whether it may publish.
    pub fn may_publish(&self) -> bool {
        self.publish
    }

    /// When it stops being valid, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The [`Subscription`] a request with this grant asks for: the stream of `user_id`
    /// (the grant's own user when `None`) with `topics`, ending when the grant expires.
    ///
    /// # Errors
    /// [`Error::Auth`] with [`AuthReason::ForbiddenUser`] for another user's stream,
    /// [`AuthReason::ForbiddenTopic`] for a topic not granted; [`Error::InvalidTarget`]
    /// for a malformed topic.
    pub fn subscription<'a, I>(&self, user_id: Option<&str>, topics: I) -> Result<Subscription>
    where
        I: IntoIterator<Item = &'a str>,
    {
        if user_id.is_some_and(|asked| asked != self.user_id) {
            return Err(Error::auth(
                AuthReason::ForbiddenUser,
                "the credential does not grant another user's stream",
            ));
        }
        let mut subscription = Subscription::user(&self.user_id)?;
        for topic in topics {
            if !self.topics.contains(topic) {
                return Err(Error::auth(
                    AuthReason::ForbiddenTopic,
                    format!("the credential does not grant the topic `{topic}`"),
                ));
            }
            subscription = subscription.topic(topic)?;
        }
        Ok(match self.expires_at {
            Some(at) => subscription.expires_at(at),
            None => subscription,
        })
    }
}

/// The bearer token of a request: the `Authorization: Bearer` header, else the cookie
/// named `cookie`, else the `token` query parameter (for browsers' `EventSource`, which
/// cannot set headers). `None` when there is none; an `Authorization` header of another
/// scheme is passed over.
///
/// ```
/// let request = axum::http::Request::get("/api/v1/sse?token=abc").body(()).unwrap();
/// let (parts, ()) = request.into_parts();
/// assert_eq!(sseor::auth::bearer_token(&parts, "sseor_token").as_deref(), Some("abc"));
/// ```
pub fn bearer_token(request: &Parts, cookie: &str) -> Option<String> {
    from_header(request)
        .or_else(|| from_cookie(request, cookie))
        .or_else(|| from_query(request))
}

fn from_header(request: &Parts) -> Option<String> {
    request
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .filter(|token| !token.is_empty())
}

fn from_cookie(request: &Parts, name: &str) -> Option<String> {
    request
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then(|| value.trim_matches('"').to_owned()))
        .filter(|token| !token.is_empty())
}

fn from_query(request: &Parts) -> Option<String> {
    query_value(request, "token").filter(|token| !token.is_empty())
}

/// The first value of the query parameter `name`, decoded.
pub(crate) fn query_value(request: &Parts, name: &str) -> Option<String> {
    query_pairs(request)
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// Every parameter of the query, decoded, in order; none when it does not decode.
pub(crate) fn query_pairs(request: &Parts) -> Vec<(String, String)> {
    if request.uri.query().is_none() {
        return Vec::new();
    }
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&request.uri)
        .map(|query| query.0)
        .unwrap_or_default()
}

/// The request as a publisher's credential is read from it: headers only. A cookie would
/// let any page its user visits publish in their name, and a token in the URL ends up in
/// access logs.
pub(crate) fn headers_only(request: &Parts) -> Parts {
    let mut parts = request.clone();
    parts.headers.remove(http::header::COOKIE);
    if let Ok(path) = http::Uri::try_from(request.uri.path()) {
        parts.uri = path;
    }
    parts.extensions.insert(HeadersOnly);
    parts
}

/// Marks a request whose credential may come from its headers only, so that a refusal
/// names only what the endpoint accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadersOnly;

/// What a request without a credential is told it needs: the header alone where cookies
/// and `?token=` are not read (publishing, tickets, counts), else every way a token may
/// come with `cookie`.
#[cfg(feature = "jwt")]
pub(crate) fn missing_token_message(request: &Parts, cookie: &str) -> String {
    if request.extensions.get::<HeadersOnly>().is_some() {
        "a token is required in the `Authorization: Bearer` header".into()
    } else {
        format!("a token is required: `Authorization: Bearer`, the cookie `{cookie}` or `?token=`")
    }
}

/// A static publisher secret, kept as its SHA-256 digest and compared in constant time.
#[derive(Clone)]
pub(crate) struct PublishToken([u8; 32]);

impl PublishToken {
    pub(crate) fn new(secret: &str) -> Self {
        Self(digest(secret.as_bytes()))
    }

    /// Whether `candidate` is the secret. Digests of equal length are compared, so the
    /// time taken tells nothing about the secret, not even its length.
    pub(crate) fn matches(&self, candidate: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.ct_eq(&digest(candidate.as_bytes())))
    }
}

impl fmt::Debug for PublishToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublishToken(***)")
    }
}

pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Who published, for the rate limit: one key per credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Publisher {
    /// The static publish token.
    Token,
    /// A grant with the publish right, by its user.
    User(String),
    /// Nobody: no publisher authentication is configured.
    Anonymous,
}

impl Publisher {
    /// Who it is, for the logs.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Token => "publish token",
            Self::User(user) => user,
            Self::Anonymous => "anonymous",
        }
    }
}

/// Logs an authorization's outcome for operators: who at trace level, the reason of a
/// refusal at debug level; never the credential.
pub(crate) fn trace_outcome<T>(action: &str, outcome: &Result<T>, who: impl Fn(&T) -> &str) {
    match outcome {
        Ok(granted) => tracing::trace!(action, who = who(granted), "authorized"),
        Err(Error::Auth { reason, .. }) => tracing::debug!(action, %reason, "refused"),
        Err(error) => tracing::debug!(action, %error, "authorization failed"),
    }
}

/// The authentication settings of a manager.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
    pub(crate) publish_token: Option<PublishToken>,
    pub(crate) ticket_ttl: std::time::Duration,
    /// Publishes per second per credential, and the burst; `None`: unlimited.
    pub(crate) publish_rate: Option<(std::num::NonZeroU32, std::num::NonZeroU32)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            authorizer: None,
            publish_token: None,
            ticket_ttl: std::time::Duration::from_secs(30),
            publish_rate: None,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("authorizer", &self.authorizer.is_some())
            .field("publish_token", &self.publish_token.is_some())
            .field("ticket_ttl", &self.ticket_ttl)
            .field("publish_rate", &self.publish_rate)
            .finish()
    }
}

impl Settings {
    /// Who may publish with `request`: the publish token, or a grant with the publish
    /// right; anyone when neither is configured.
    pub(crate) async fn publisher(&self, request: &Parts) -> Result<Publisher> {
        if self.authorizer.is_none() && self.publish_token.is_none() {
            return Ok(Publisher::Anonymous);
        }
        let request = headers_only(request);
        if let (Some(token), Some(secret)) = (from_header(&request), &self.publish_token)
            && secret.matches(&token)
        {
            return Ok(Publisher::Token);
        }
        let Some(authorizer) = self.authorizer.as_ref().filter(|a| a.grants_publish()) else {
            let reason = if from_header(&request).is_some() {
                AuthReason::Rejected
            } else {
                AuthReason::Missing
            };
            return Err(Error::auth(
                reason,
                "publishing needs the publish token in `Authorization: Bearer`",
            ));
        };
        let grant = authorizer.authorize(&request).await?;
        if !grant.may_publish() {
            return Err(Error::auth(
                AuthReason::ForbiddenPublish,
                "this credential may open streams but not publish",
            ));
        }
        Ok(Publisher::User(grant.user_id))
    }
}
