//! How browsers reach the server: HTTPS with HTTP/2 (`SSEOR_TLS_CERT`, `SSEOR_TLS_KEY`) and
//! cross-origin access (`SSEOR_CORS_ORIGINS`).
//!
//! There is deliberately no compression layer anywhere: a compressing proxy or layer holds
//! events back until its buffer fills, which breaks an event stream.

use std::time::Duration;

use axum::Router;
use http::{HeaderName, HeaderValue, Method, Uri, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::cli::{self, TlsCors};
use crate::settings::SettingsError;

/// How long a browser may cache the answer to a CORS preflight.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The checked transport settings.
pub(crate) struct Transport {
    tls: Option<sseor::TlsConfig>,
    cors: Option<CorsLayer>,
}

/// The origins of `--cors-origins`, each checked.
#[derive(Debug, Clone)]
pub(crate) struct Origins(Vec<HeaderValue>);

impl Origins {
    /// A comma-separated list of origins; empty entries are skipped.
    pub(crate) fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(parse_origin)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl Transport {
    /// Reads the certificate and key (clap has made sure that both or neither are set);
    /// the error names the settings, never a file's contents.
    pub(crate) fn load(args: &TlsCors) -> Result<Self, SettingsError> {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(sseor::TlsConfig::from_pem_files(cert, key).map_err(
                |error| {
                    let reason = match error {
                        sseor::Error::Tls(reason) => reason,
                        other => other.to_string(),
                    };
                    let named = format!("{} and {}", cli::name("tls_cert"), cli::name("tls_key"));
                    SettingsError::Invalid(format!("{named}: {reason}"))
                },
            )?),
            _ => None,
        };
        let origins = args.cors_origins.as_ref().map(|origins| &origins.0);
        let cors = origins
            .filter(|origins| !origins.is_empty())
            .map(|origins| cors_layer(origins.clone()));
        Ok(Self { tls, cors })
    }

    /// Whether the server speaks HTTPS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The manager's options with TLS, when configured.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> sseor::Builder {
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
            "`*` cannot be used, since credentials are allowed and \
             browsers refuse `*` with credentials; list the origins ({EXPECTED})"
        ));
    }
    let invalid = || format!("`{text}` is not an origin: {EXPECTED}");
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
            assert!(error.starts_with('`'), "{text}: {error}");
            assert!(!error.contains('\n'), "{text}: {error}");
        }
    }
}
