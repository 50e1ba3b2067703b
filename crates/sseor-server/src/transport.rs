//! How browsers reach the server: HTTPS with HTTP/2 (`SSEOR_TLS_CERT`, `SSEOR_TLS_KEY`),
//! cross-origin access (`SSEOR_CORS_ORIGINS`), how long an idle connection is kept
//! (`SSEOR_HEADER_TIMEOUT`) and which host names are answered (`SSEOR_ALLOW_ANY_HOST`).
//!
//! There is deliberately no compression layer anywhere: a compressing proxy or layer holds
//! events back until its buffer fills, which breaks an event stream.

use std::ffi::OsString;
use std::time::Duration;

use axum::Router;
use clap::Args;
use http::{HeaderName, HeaderValue, Method, Uri, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache the answer to a CORS preflight.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// What the flags ask for, as given on the command line or in the environment.
#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    /// PEM file of the TLS certificate chain, the server's certificate first. With
    /// `--tls-key`, the server speaks HTTPS, and HTTP/2 to clients that offer it (browsers
    /// open at most 6 HTTP/1.1 connections per origin).
    #[arg(long, env = "SSEOR_TLS_CERT")]
    tls_cert: Option<OsString>,

    /// PEM file of the private key of the TLS certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SSEOR_TLS_KEY")]
    tls_key: Option<OsString>,

    /// Browser origins allowed to open streams and call the API from another site, with
    /// credentials: comma-separated exact origins such as
    /// `https://app.example.com,http://localhost:3000`. Unset: no CORS headers at all.
    #[arg(long, env = "SSEOR_CORS_ORIGINS")]
    cors_origins: Option<String>,

    /// How long a connection may go without a request before it is closed: the time for
    /// the first request head (after the TLS handshake), between requests on a kept-alive
    /// connection, and for an HTTP/2 connection to open a stream.
    #[arg(long, env = "SSEOR_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_header_timeout)]
    header_timeout: Duration,

    /// Answer requests for any host name. Without it, a server on loopback without
    /// authentication answers only `localhost`, `*.localhost`, `127.x.x.x` and `[::1]`
    /// (403 otherwise), so that a web page cannot reach it through DNS rebinding. For a
    /// reverse proxy on the same machine that forwards the public `Host`.
    #[arg(
        long,
        env = "SSEOR_ALLOW_ANY_HOST",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    allow_any_host: bool,
}

/// A header timeout: a duration, not zero (a connection must have time for a request).
fn parse_header_timeout(text: &str) -> Result<Duration, String> {
    match crate::config::parse_duration(text)? {
        timeout if timeout.is_zero() => Err(
            "must be longer than zero, such as 30s: a client needs time to send a request".into(),
        ),
        timeout => Ok(timeout),
    }
}

/// The checked transport settings.
pub(crate) struct Transport {
    tls: Option<sseor::TlsConfig>,
    cors: Option<CorsLayer>,
    header_timeout: Duration,
    allow_any_host: bool,
}

impl TransportArgs {
    /// Reads the certificate and key and checks the origins; the error is one line naming
    /// the setting, never a file's contents.
    pub(crate) fn load(&self) -> Result<Transport, String> {
        Ok(Transport {
            tls: self.tls()?,
            cors: self.cors()?,
            header_timeout: self.header_timeout,
            allow_any_host: self.allow_any_host,
        })
    }

    fn tls(&self) -> Result<Option<sseor::TlsConfig>, String> {
        // Empty counts as unset, as `SSEOR_TLS_CERT=` in a deployment's environment means.
        let set = |path: &Option<OsString>| path.clone().filter(|path| !path.is_empty());
        match (set(&self.tls_cert), set(&self.tls_key)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => sseor::TlsConfig::from_pem_files(cert, key)
                .map(Some)
                .map_err(|error| match error {
                    sseor::Error::Tls(reason) => format!("SSEOR_TLS_CERT/SSEOR_TLS_KEY: {reason}"),
                    other => format!("SSEOR_TLS_CERT/SSEOR_TLS_KEY: {other}"),
                }),
            (Some(_), None) => Err(
                "SSEOR_TLS_CERT (--tls-cert) is set but SSEOR_TLS_KEY (--tls-key) is not: \
                 TLS needs both the certificate and its private key"
                    .into(),
            ),
            (None, Some(_)) => Err(
                "SSEOR_TLS_KEY (--tls-key) is set but SSEOR_TLS_CERT (--tls-cert) is not: \
                 TLS needs both the certificate and its private key"
                    .into(),
            ),
        }
    }

    fn cors(&self) -> Result<Option<CorsLayer>, String> {
        let Some(list) = &self.cors_origins else {
            return Ok(None);
        };
        let origins = list
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(parse_origin)
            .collect::<Result<Vec<_>, _>>()?;
        if origins.is_empty() {
            return Ok(None);
        }
        Ok(Some(cors_layer(origins)))
    }
}

impl Transport {
    /// Whether the server speaks HTTPS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The manager's options with TLS, when configured, and the connection rules.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> sseor::Builder {
        let builder = builder
            .header_timeout(self.header_timeout)
            .loopback_hosts_only(!self.allow_any_host);
        match &self.tls {
            Some(tls) => builder.tls(tls.clone()),
            None => builder,
        }
    }

    /// `app` answering CORS requests from the configured origins, when there are any.
    pub(crate) fn layer(&self, app: Router) -> Router {
        match &self.cors {
            Some(cors) => app.layer(cors.clone()),
            None => app,
        }
    }
}

/// CORS for `origins`: with credentials (cookies, `Authorization`), the methods and
/// request headers an `EventSource` and a publisher use.
fn cors_layer(origins: Vec<HeaderValue>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
            header::CACHE_CONTROL,
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}

/// An origin as a browser sends it: `scheme://host[:port]`, lowercase, nothing after.
fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    const EXPECTED: &str =
        "expected scheme://host[:port], such as https://app.example.com or http://localhost:3000";
    if text == "*" {
        return Err(format!(
            "SSEOR_CORS_ORIGINS: `*` cannot be used, since credentials are allowed and \
             browsers refuse `*` with credentials; list the origins ({EXPECTED})"
        ));
    }
    let invalid = || format!("SSEOR_CORS_ORIGINS: `{text}` is not an origin: {EXPECTED}");
    let uri: Uri = text.parse().map_err(|_| invalid())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(invalid());
    };
    // Nothing may follow the authority: no path, not even `/`, no query. A browser's
    // `Origin` never has one, so such an entry would never match.
    let after_scheme = text.split_once("://").map(|(_, rest)| rest);
    let port = authority
        .as_str()
        .strip_prefix(authority.host())
        .map(|rest| rest.strip_prefix(':').map(str::parse::<u16>));
    let valid = after_scheme == Some(authority.as_str())
        && !authority.host().is_empty()
        && matches!(port, Some(None | Some(Ok(_))));
    if !valid {
        return Err(invalid());
    }
    // Browsers send scheme and host in lowercase.
    let origin = format!("{scheme}://{authority}").to_ascii_lowercase();
    HeaderValue::from_str(&origin).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port() {
        for (text, origin) in [
            ("https://app.example.com", "https://app.example.com"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("HTTPS://App.Example.com", "https://app.example.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(parse_origin(text).unwrap(), origin, "{text}");
        }
        for text in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "https://app.example.com:99999",
            "https://app.example.com:port",
            "https://",
            "ftp//x",
            "https://a b.com",
        ] {
            let error = parse_origin(text).unwrap_err();
            assert!(error.starts_with("SSEOR_CORS_ORIGINS: "), "{text}: {error}");
            assert!(!error.contains('\n'), "{text}: {error}");
        }
    }
}
