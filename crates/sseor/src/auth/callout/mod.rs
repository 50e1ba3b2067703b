//! [`HttpAuthorizer`]: streams authorized by the application's own login, which an HTTP
//! endpoint of the application checks (an "auth callout").
//!
//! The protocol and the cache are described on [`HttpAuthorizer`].

mod decisions;
mod endpoint;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};

use super::{Authorizer, Grant, digest};
use crate::{Error, Result};
use decisions::{Decisions, Key, Lifetimes};
use endpoint::{Endpoint, Roots};
use wire::{Decision, Question};

/// How long a callout may take by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a grant is reused by default.
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);

/// How long a refusal is reused by default.
const DEFAULT_REFUSAL_TTL: Duration = Duration::from_secs(2);

/// How many decisions are kept by default.
const DEFAULT_CAPACITY: usize = 10_000;

/// When a client refused because the application failed should try again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Headers that are always forwarded: the usual carriers of a login.
const ALWAYS_FORWARDED: [HeaderName; 2] = [header::COOKIE, header::AUTHORIZATION];

/// Headers the callout sets itself or that belong to one connection: not forwarded.
const NOT_FORWARDABLE: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "accept",
    "accept-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
];

/// An [`Authorizer`] that asks an HTTP endpoint of the application whether a request's
/// login (its session cookie, its `Authorization` header) may open the stream it asks for.
///
/// Its grants never carry the publish right: publishers use the publish token
/// ([`Builder::publish_token`](crate::Builder::publish_token)), so that a cookie can never
/// publish.
///
/// ```
/// use std::time::Duration;
/// use sseor::auth::HttpAuthorizer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sseor::Result<()> {
/// let authorizer = HttpAuthorizer::new("http://127.0.0.1:8000/internal/sseor-auth")?
///     .forward_header("x-forwarded-for")?
///     .timeout(Duration::from_secs(1))
///     .cache_ttl(Duration::from_secs(10));
/// let manager = sseor::Manager::builder()
///     .authorizer(authorizer)
///     .publish_token("a-long-random-publisher-secret")
///     .build()
///     .await?;
/// # manager.close().await; Ok(()) }
/// ```
///
/// # The protocol
///
/// For each stream opened (and each ticket asked for), sseor sends the application, over
/// HTTP/1.1 (`http://`, or `https://` with rustls) on connections kept alive between
/// questions,
///
/// ```text
/// POST <url>
/// Content-Type: application/json
/// Cookie: <the request's Cookie, if any>
/// Authorization: <the request's Authorization, if any>
/// <each extra forwarded header the request has>
///
/// {"user_id": "alice", "topics": ["prices"]}
/// ```
///
/// `user_id` is the `user_id` of the stream's query (`null` when it names none), `topics`
/// its `topic`s. A ticket request forwards its headers but never its cookie (as for every
/// ticket), and asks for no user and no topic: the application answers with all the
/// session may join. The application answers
///
/// * `200 {"user": "alice", "topics": ["prices"], "expires_in": 300}`: the stream of
///   `alice` with those topics (`["*"]`: every topic; leave `topics` out: none), ending
///   after `expires_in` seconds (leave it out: when the client leaves). Other fields are
///   ignored; in particular an answer never grants publishing.
/// * `401` (no valid login) or `403` (a login that may not have this stream), with
///   `{"reason": "..."}` or `{"error": "..."}`: the client gets the same status with
///   `{"error": <that reason>, "reason": "rejected"}` (or `"forbidden"`). The reason is
///   cut to 200 characters, control characters blanked.
/// * anything else (another status, a 200 that is not a grant, no answer within the
///   timeout, no connection): the client gets 503 with `Retry-After`, and the failure is
///   logged (never a header's value).
///
/// sseor then checks the request against the grant as for any authorizer: a `user_id`
/// other than `user` is 403 `forbidden_user`, a topic not granted 403 `forbidden_topic`.
///
/// # Cache
///
/// Decisions are kept by a SHA-256 digest of the forwarded headers and the question (no
/// cookie is kept as text): a grant for [`cache_ttl`](Self::cache_ttl) (5 s;
/// never beyond its expiry), a refusal for
/// [`refusal_cache_ttl`](Self::refusal_cache_ttl) (2 s), at most
/// [`cache_capacity`](Self::cache_capacity) of them (the oldest go first).
/// Identical requests at once share one callout; a failure is not kept.
pub struct HttpAuthorizer {
    url: Uri,
    endpoint: Arc<Endpoint>,
    forwarded: Vec<HeaderName>,
    lifetimes: Lifetimes,
    decisions: Arc<Decisions>,
}

impl HttpAuthorizer {
    /// Asks the endpoint at `url` (`http://` or `https://`, checked against the system's
    /// root certificates), with the defaults: a 2 s timeout, grants kept 5 s, refusals 2 s,
    /// at most 10,000 kept; `Cookie` and `Authorization` forwarded.
    ///
    /// Use `http://` only for an endpoint on the same host or a private network: the
    /// request's cookie travels to it.
    ///
    /// ```
    /// let authorizer = sseor::auth::HttpAuthorizer::new("http://127.0.0.1:8000/sseor-auth")?;
    /// assert!(sseor::auth::HttpAuthorizer::new("ftp://app.internal/").is_err());
    /// # drop(authorizer); Ok::<(), sseor::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidAuthConfig`] when `url` is not an absolute `http://` or `https://`
    /// URL, holds a user name or password, or is `https://` on a system without root
    /// certificates.
    pub fn new(url: &str) -> Result<Self> {
        Self::with_roots(url, &Roots::Native)
    }

    /// As [`new`](Self::new), checking an `https://` endpoint's certificate against the
    /// certificate authorities in `pem` (one or more PEM certificates) instead of the
    /// system's: for an application on a private network with its own CA.
    ///
    /// # Errors
    /// As [`new`](Self::new); [`Error::InvalidAuthConfig`] when `pem` holds no usable
    /// certificate.
    ///
    /// ```
    /// use sseor::auth::HttpAuthorizer;
    /// let refused = HttpAuthorizer::with_root_certificates_pem("https://app.internal/auth", b"");
    /// assert!(refused.is_err());
    /// ```
    pub fn with_root_certificates_pem(url: &str, pem: &[u8]) -> Result<Self> {
        Self::with_roots(url, &Roots::Pem(pem.to_vec()))
    }

    fn with_roots(url: &str, roots: &Roots) -> Result<Self> {
        let url = endpoint_url(url)?;
        let endpoint = Endpoint::new(&url, roots, DEFAULT_TIMEOUT)?;
        Ok(Self {
            url,
            endpoint: Arc::new(endpoint),
            forwarded: ALWAYS_FORWARDED.to_vec(),
            lifetimes: Lifetimes {
                grant: DEFAULT_CACHE_TTL,
                refusal: DEFAULT_REFUSAL_TTL,
            },
            decisions: Arc::new(Decisions::new(DEFAULT_CAPACITY)),
        })
    }

    /// Also forwards the request's header `name` (such as `X-Forwarded-For`) when it has
    /// one. Decisions are kept per value of every forwarded header.
    ///
    /// ```
    /// let authorizer = sseor::auth::HttpAuthorizer::new("http://127.0.0.1:8000/auth")?
    ///     .forward_header("X-Forwarded-For")?;
    /// # drop(authorizer); Ok::<(), sseor::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidAuthConfig`] when `name` is not a header name, or one the callout
    /// sets itself or that belongs to one connection (`Host`, `Content-Type`,
    /// `Connection`...).
    pub fn forward_header(mut self, name: &str) -> Result<Self> {
        let invalid =
            |why: &str| Error::InvalidAuthConfig(format!("the forwarded header `{name}` {why}"));
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("is not an HTTP header name"))?;
        if NOT_FORWARDABLE.contains(&name.as_str()) {
            return Err(invalid(
                "is set by the callout itself or belongs to one connection",
            ));
        }
        if !self.forwarded.contains(&name) {
            self.forwarded.push(name);
        }
        Ok(self)
    }

    /// How long a callout may take, connecting included (default 2 s); beyond, the
    /// request is refused with 503 and `Retry-After`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let authorizer = sseor::auth::HttpAuthorizer::new("http://127.0.0.1:8000/auth")?
    ///     .timeout(Duration::from_millis(500));
    /// # drop(authorizer); Ok::<(), sseor::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        let timeout = timeout.max(Duration::from_millis(1));
        self.endpoint = Arc::new(self.endpoint.with_timeout(timeout));
        self
    }

    /// How long a grant is reused for the same credential and question (default 5 s; never
    /// beyond the grant's expiry; zero: every stream asks).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let authorizer = sseor::auth::HttpAuthorizer::new("http://127.0.0.1:8000/auth")?
    ///     .cache_ttl(Duration::from_secs(30));
    /// # drop(authorizer); Ok::<(), sseor::Error>(())
    /// ```
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.lifetimes.grant = ttl;
        self
    }

    /// How long a refusal (401, 403) is reused for the same credential and question
    /// (default 2 s; zero: not kept).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let authorizer = sseor::auth::HttpAuthorizer::new("http://127.0.0.1:8000/auth")?
    ///     .refusal_cache_ttl(Duration::from_secs(1));
    /// # drop(authorizer); Ok::<(), sseor::Error>(())
    /// ```
    pub fn refusal_cache_ttl(mut self, ttl: Duration) -> Self {
        self.lifetimes.refusal = ttl;
        self
    }

    /// How many decisions are kept at most (default 10,000; zero: none); beyond, the
    /// oldest are forgotten first.
    ///
    /// ```
    /// let authorizer = sseor::auth::HttpAuthorizer::new("http://127.0.0.1:8000/auth")?
    ///     .cache_capacity(100_000);
    /// # drop(authorizer); Ok::<(), sseor::Error>(())
    /// ```
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.decisions = Arc::new(Decisions::new(capacity));
        self
    }

    /// The headers of `request` that are forwarded; cookies split over several headers
    /// (as HTTP/2 sends them) joined into one.
    fn forwarded_headers(&self, request: &Parts) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for name in &self.forwarded {
            let values = request.headers.get_all(name);
            if *name == header::COOKIE {
                let joined: Vec<&[u8]> = values.iter().map(HeaderValue::as_bytes).collect();
                if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..]))
                    && !value.is_empty()
                {
                    headers.insert(header::COOKIE, value);
                }
            } else {
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        headers
    }

    /// What `decision` means for the request.
    fn answer(decision: Decision) -> Result<Grant> {
        match decision {
            Decision::Granted(grant) => Ok(grant),
            Decision::Refused { reason, message } => Err(Error::auth(reason, message)),
            Decision::Failed(failure) => Err(Error::AuthUnavailable {
                message: failure.client_message().into(),
                retry_after: RETRY_AFTER,
            }),
        }
    }
}

impl Authorizer for HttpAuthorizer {
    fn authorize<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<Grant>> {
        async move {
            let headers = self.forwarded_headers(request);
            let body = Question::of(request).to_json();
            let key = key_of(&headers, &body);
            let endpoint = Arc::clone(&self.endpoint);
            let ask = move || ask(endpoint, headers, body).boxed();
            let decision = self.decisions.decide(key, self.lifetimes, ask).await;
            Self::answer(decision)
        }
        .boxed()
    }

    fn grants_publish(&self) -> bool {
        false
    }
}

/// One callout: the application's decision, a failure logged for the operator.
async fn ask(endpoint: Arc<Endpoint>, headers: HeaderMap, body: Vec<u8>) -> Decision {
    let decision = match endpoint.post(headers, body).await {
        Ok((status, answer)) => wire::decision(status, &answer, SystemTime::now()),
        Err(failure) => Decision::Failed(failure),
    };
    match &decision {
        Decision::Failed(failure) => tracing::warn!(
            failure = %failure.detail(),
            "the authorization endpoint gave no decision: streams are refused with 503"
        ),
        Decision::Refused { reason, .. } => {
            tracing::debug!(%reason, "the authorization endpoint refused")
        }
        Decision::Granted(grant) => {
            tracing::trace!(user = grant.user_id(), "the authorization endpoint granted")
        }
    }
    decision
}

/// The cache key of a callout: a digest of each forwarded header and its value (each
/// length-prefixed, so that no two requests share a key) and the question.
fn key_of(headers: &HeaderMap, question: &[u8]) -> Key {
    let mut bytes = Vec::with_capacity(question.len() + 256);
    for (name, value) in headers {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            bytes.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            bytes.extend_from_slice(part);
        }
    }
    bytes.push(0xff);
    bytes.extend_from_slice(question);
    digest(&bytes)
}

/// `url`, when sseor can ask it.
fn endpoint_url(url: &str) -> Result<Uri> {
    let invalid = |why: &str| Error::InvalidAuthConfig(format!("the authorization URL {why}"));
    let parsed: Uri = url
        .trim()
        .parse()
        .map_err(|_| invalid("is not a URL, such as http://127.0.0.1:8000/sseor-auth"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err(invalid("must start with http:// or https://"));
    }
    let Some(authority) = parsed.authority() else {
        return Err(invalid("names no host"));
    };
    if authority.as_str().contains('@') {
        return Err(invalid(
            "must not hold a user name or password (they would end up in logs)",
        ));
    }
    Ok(parsed)
}

impl fmt::Debug for HttpAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAuthorizer")
            .field("url", &self.url)
            .field("forwarded", &self.forwarded)
            .field("timeout", &self.endpoint.timeout())
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn only_absolute_http_urls_without_credentials_are_accepted() {
        for url in [
            "http://127.0.0.1:8000/auth",
            "https://app.internal/sseor/auth?v=1",
        ] {
            assert!(endpoint_url(url).is_ok(), "{url}");
        }
        for url in [
            "",
            "/auth",
            "ftp://host/",
            "http://user:pw@host/auth",
            "not a url",
        ] {
            let error = endpoint_url(url).unwrap_err().to_string();
            assert!(!error.contains("pw"), "{error}");
        }
    }

    #[test]
    fn connection_headers_cannot_be_forwarded() {
        let authorizer = HttpAuthorizer::new("http://127.0.0.1:1/").unwrap();
        for name in ["Host", "content-length", "Connection", "bad header"] {
            assert!(
                HttpAuthorizer::new("http://127.0.0.1:1/")
                    .unwrap()
                    .forward_header(name)
                    .is_err(),
                "{name}"
            );
        }
        let authorizer = authorizer.forward_header("X-Forwarded-For").unwrap();
        assert_eq!(authorizer.forwarded.len(), 3);
    }

    #[test]
    fn cookies_are_joined_and_only_forwarded_headers_count_in_the_key() {
        let authorizer = HttpAuthorizer::new("http://127.0.0.1:1/")
            .unwrap()
            .forward_header("x-forwarded-for")
            .unwrap();
        let request = parts(
            http::Request::get("/api/v1/sse?topic=a&topic=b")
                .header("cookie", "sid=1")
                .header("cookie", "theme=dark")
                .header("x-forwarded-for", "10.0.0.1")
                .header("user-agent", "test")
                .body(())
                .unwrap(),
        );
        let headers = authorizer.forwarded_headers(&request);
        assert_eq!(headers["cookie"], "sid=1; theme=dark");
        assert_eq!(headers.len(), 2, "{headers:?}");
        let question = Question::of(&request).to_json();
        assert_eq!(question, br#"{"user_id":null,"topics":["a","b"]}"#);
        let key = key_of(&headers, &question);
        let mut other = headers.clone();
        other.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        assert_ne!(key, key_of(&other, &question));
        assert_ne!(key, key_of(&headers, br#"{"user_id":null,"topics":["a"]}"#));
    }
}
