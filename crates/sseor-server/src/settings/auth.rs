//! The authentication settings checked and applied: the JWT authorizer or the
//! application's login (the auth callout), the publish token and tickets.

use std::time::Duration;

use sseor::auth::{HttpAuthorizer, JwtAuthorizer};

use super::SettingsError;
use crate::cli::{self, Auth};

/// The longest a refusal of the application is reused: a user who has just logged in
/// comes back with a new cookie, but one whose session was repaired should not wait long.
const MAX_REFUSAL_CACHE_TTL: Duration = Duration::from_secs(2);

impl Auth {
    /// Whether streams need a credential.
    pub(crate) fn authenticates(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some() || self.auth_url.is_some()
    }

    /// How subscribers are authenticated, for the logs.
    pub(crate) fn name(&self) -> &'static str {
        match (&self.jwt_secret, &self.jwt_public_key, &self.auth_url) {
            (Some(_), _, _) => "jwt-hs256",
            (None, Some(_), _) => "jwt-public-key",
            (None, None, Some(_)) => "auth-callout",
            (None, None, None) => "none",
        }
    }

    /// `builder` with the authorizer, the publish token and the ticket lifetime.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> Result<sseor::Builder, SettingsError> {
        let mut builder = builder.ticket_ttl(self.ticket_ttl);
        if let Some(token) = &self.publish_token {
            builder = builder.publish_token(token.expose());
        }
        if let Some(callout) = self.callout()? {
            return Ok(builder.authorizer(callout));
        }
        Ok(match self.jwt()? {
            Some(jwt) => builder.authorizer(jwt),
            None => builder,
        })
    }

    /// The authorizer that asks the application, when its URL is set (clap has made sure
    /// that no JWT setting is).
    fn callout(&self) -> Result<Option<HttpAuthorizer>, SettingsError> {
        let Some(url) = &self.auth_url else {
            return Ok(None);
        };
        let invalid =
            |id: &str, why: String| SettingsError::Invalid(format!("{}{why}", cli::name(id)));
        if self.publish_token.is_none() {
            return Err(SettingsError::Invalid(format!(
                "{} needs {}: with the application's login, publishers need the publish \
                 token, since a login never publishes",
                cli::name("auth_url"),
                cli::name("publish_token")
            )));
        }
        let authorizer = match &self.auth_ca_file {
            None => HttpAuthorizer::new(url),
            Some(path) => {
                let shown = path.display();
                let pem = std::fs::read(path).map_err(|e| {
                    invalid("auth_ca_file", format!(": cannot read `{shown}`: {e}"))
                })?;
                HttpAuthorizer::with_root_certificates_pem(url, &pem)
            }
        };
        let named = match &self.auth_ca_file {
            None => cli::name("auth_url"),
            Some(path) => format!(
                "{} with {} `{}`",
                cli::name("auth_url"),
                cli::name("auth_ca_file"),
                path.display()
            ),
        };
        let mut authorizer = authorizer
            .map_err(|e| SettingsError::Invalid(format!("{named}: {e}")))?
            .timeout(self.auth_timeout)
            .cache_ttl(self.auth_cache_ttl)
            .refusal_cache_ttl(self.auth_cache_ttl.min(MAX_REFUSAL_CACHE_TTL));
        for name in &self.auth_forward_headers {
            authorizer = authorizer
                .forward_header(name.as_str())
                .map_err(|e| invalid("auth_forward_headers", format!(": {e}")))?;
        }
        Ok(Some(authorizer))
    }

    /// The JWT authorizer, when a secret or a public key is set (clap has made sure that
    /// not both are).
    fn jwt(&self) -> Result<Option<JwtAuthorizer>, SettingsError> {
        let invalid =
            |id: &str, why: String| SettingsError::Invalid(format!("{}{why}", cli::name(id)));
        let authorizer = if let Some(secret) = &self.jwt_secret {
            JwtAuthorizer::hs256(secret.expose())
                .map_err(|e| invalid("jwt_secret", format!(": {e}")))?
        } else if let Some(path) = &self.jwt_public_key {
            let shown = path.display();
            let pem = std::fs::read(path)
                .map_err(|e| invalid("jwt_public_key", format!(": cannot read `{shown}`: {e}")))?;
            JwtAuthorizer::public_key_pem(&pem)
                .map_err(|e| invalid("jwt_public_key", format!(" `{shown}`: {e}")))?
        } else {
            return Ok(None);
        };
        if self.jwt_topics_claim.is_empty() {
            let why = " is empty: name the claim that lists topics".to_owned();
            return Err(invalid("jwt_topics_claim", why));
        }
        if !is_cookie_name(&self.auth_cookie) {
            let why = format!(
                " `{}` is not a cookie name (letters, digits and `-_.` only)",
                self.auth_cookie
            );
            return Err(invalid("auth_cookie", why));
        }
        let mut authorizer = authorizer
            .topics_claim(self.jwt_topics_claim.clone())
            .cookie(self.auth_cookie.clone())
            .leeway(self.jwt_leeway);
        if let Some(issuer) = &self.jwt_issuer {
            authorizer = authorizer.issuer(issuer);
        }
        if let Some(audience) = &self.jwt_audience {
            authorizer = authorizer.audience(audience);
        }
        Ok(Some(authorizer))
    }
}

/// Whether `name` can name a cookie: a token of RFC 6265, kept to a safe subset.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;
    use crate::settings::tests::refusal;

    const URL: &str = "http://127.0.0.1:8000/sseor-auth";
    const TOKEN: &str = "a-publish-token-long-enough";

    #[test]
    fn the_login_url_goes_with_the_publish_token_and_without_jwt() {
        let line = refusal(&["--auth-url", URL]);
        assert!(
            line.contains(
                "--auth-url (SSEOR_AUTH_URL) needs --publish-token (SSEOR_PUBLISH_TOKEN)"
            ) && line.contains("a login never publishes"),
            "{line}"
        );
        let both = ["--auth-url", URL, "--publish-token", TOKEN, "--jwt-secret"];
        let line = refusal(&[&both[..], &["0123456789abcdef0123456789abcdef"]].concat());
        assert!(
            line.contains("--auth-url (SSEOR_AUTH_URL)")
                && line.contains("--jwt-secret (SSEOR_JWT_SECRET)")
                && !line.contains("--jwt-public-key")
                && line.contains("choose one"),
            "{line}"
        );
        let line = refusal(&["--jwt-public-key", "k.pem", "--auth-url", URL]);
        assert!(line.ends_with("choose one"), "{line}");
        let line = refusal(&["--auth-forward-headers", "x-forwarded-for"]);
        assert!(
            line.starts_with("--auth-url (SSEOR_AUTH_URL) must be set too: these settings"),
            "{line}"
        );
        let settings = Settings::parse_from(["sseor", "--auth-url", URL, "--publish-token", TOKEN]);
        assert_eq!(settings.unwrap().authentication, "auth-callout");
    }

    #[test]
    fn bad_login_settings_are_refused_naming_the_setting() {
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), "not a certificate").unwrap();
        let not_pem = not_pem.path().to_str().unwrap();
        let not_pem_named = format!("--auth-ca-file (SSEOR_AUTH_CA_FILE) `{not_pem}`: invalid");
        let with = |more: &[&str]| {
            let base = ["--publish-token", TOKEN];
            refusal(&[&base[..], more].concat())
        };
        let cases: [(&[&str], &str); 7] = [
            (&["--auth-url", "ftp://app/"], "--auth-url (SSEOR_AUTH_URL)"),
            (
                &["--auth-url", "http://user:pw@app/"],
                "user name or password",
            ),
            (
                &["--auth-url", URL, "--auth-timeout", "0s"],
                "--auth-timeout",
            ),
            (
                &["--auth-url", URL, "--auth-cache-ttl", "soon"],
                "--auth-cache-ttl",
            ),
            (
                &["--auth-url", URL, "--auth-forward-headers", "Host"],
                "--auth-forward-headers (SSEOR_AUTH_FORWARD_HEADERS)",
            ),
            (
                &["--auth-url", URL, "--auth-ca-file", "/nonexistent/ca.pem"],
                "--auth-ca-file (SSEOR_AUTH_CA_FILE): cannot read",
            ),
            (
                &["--auth-url", URL, "--auth-ca-file", not_pem],
                &not_pem_named,
            ),
        ];
        for (args, expected) in cases {
            let line = with(args);
            assert!(line.contains(expected), "{args:?}: {line}");
            assert!(!line.contains(TOKEN) && !line.contains("pw@"), "{line}");
        }
    }
}
