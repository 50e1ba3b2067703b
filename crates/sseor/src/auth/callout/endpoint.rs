//! The application's endpoint as an HTTP client sees it: one `POST` with a deadline, over
//! kept-alive connections (HTTP/1.1, plain or TLS).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::{Error, Result};

/// The most bytes of an answer read: a decision is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long a connection to the application is kept for the next callout.
const IDLE_CONNECTION: Duration = Duration::from_secs(30);

/// Why a callout gave no decision; the text of each is for the logs (never a credential).
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// No answer within the timeout.
    TimedOut(Duration),
    /// No connection, or the connection failed.
    Unreachable(String),
    /// An answer that is not a decision: another status, or a body that does not parse.
    BadAnswer(String),
}

impl Failure {
    /// What the client is told: which kind of failure, nothing about the endpoint.
    pub(super) fn client_message(&self) -> &'static str {
        match self {
            Self::TimedOut(_) => {
                "the application that checks logins did not answer in time; retry later"
            }
            Self::Unreachable(_) => {
                "the application that checks logins cannot be reached; retry later"
            }
            Self::BadAnswer(_) => {
                "the application that checks logins answered with an error; retry later"
            }
        }
    }

    /// What the operator is told.
    pub(super) fn detail(&self) -> String {
        match self {
            Self::TimedOut(timeout) => format!("no answer within {} ms", timeout.as_millis()),
            Self::Unreachable(why) => format!("unreachable: {why}"),
            Self::BadAnswer(why) => format!("not a decision: {why}"),
        }
    }
}

/// Which certificate authorities an `https://` endpoint's certificate may chain to.
pub(super) enum Roots {
    /// The system's.
    Native,
    /// These, and no other.
    Pem(Vec<u8>),
}

/// The application's authorization endpoint.
pub(super) struct Endpoint {
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Endpoint {
    /// The endpoint at `url` (`http://` or `https://`), answering within `timeout`.
    pub(super) fn new(url: &Uri, roots: &Roots, timeout: Duration) -> Result<Self> {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let https = url.scheme_str() == Some("https");
        let tls = HttpsConnectorBuilder::new().with_tls_config(tls_config(roots, https)?);
        let connector = tls.https_or_http().enable_http1().wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_CONNECTION)
            .build(connector);
        Ok(Self {
            url: url.clone(),
            client,
            timeout,
        })
    }

    /// The same endpoint, answering within `timeout`.
    pub(super) fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            url: self.url.clone(),
            client: self.client.clone(),
            timeout,
        }
    }

    /// The timeout of a callout.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `POST`s the JSON `body` with `headers`: the status and body of the answer.
    pub(super) async fn post(
        &self,
        mut headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let json = HeaderValue::from_static("application/json");
        headers.insert(header::CONTENT_TYPE, json.clone());
        headers.insert(header::ACCEPT, json);
        let mut request = http::Request::post(self.url.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        *request.headers_mut() = headers;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::Unreachable(chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| Failure::BadAnswer(format!("its body could not be read: {e}")))?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(Failure::TimedOut(self.timeout)))
    }
}

/// The TLS settings of the client: only what `https` endpoints need is loaded.
fn tls_config(roots: &Roots, https: bool) -> Result<rustls::ClientConfig> {
    let invalid = |why: String| Error::InvalidAuthConfig(format!("the authorization URL's {why}"));
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Native if https => {
            let found = rustls_native_roots();
            if found.is_empty() {
                return Err(invalid(
                    "certificate cannot be checked: the system has no root certificates; give \
                     the CA"
                        .into(),
                ));
            }
            store.extend(found);
        }
        Roots::Native => {}
        Roots::Pem(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| invalid(format!("CA is not a PEM certificate: {e}")))?;
                store
                    .add(cert)
                    .map_err(|e| invalid(format!("CA certificate is not usable: {e}")))?;
            }
            if store.is_empty() {
                return Err(invalid("CA holds no certificate".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS settings cannot be used: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// The system's root certificates, those that parse.
fn rustls_native_roots() -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    let mut store = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    store.add_parsable_certificates(found.certs);
    store.roots
}

/// An error and its sources, in one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
