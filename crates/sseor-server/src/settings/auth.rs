//! The authentication settings checked and applied: the JWT authorizer, the publish token
//! and tickets.

use sseor::auth::JwtAuthorizer;

use super::SettingsError;
use crate::cli::{self, Auth};

impl Auth {
    /// Whether streams need a credential.
    pub(crate) fn authenticates(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some()
    }

    /// How subscribers are authenticated, for the logs.
    pub(crate) fn name(&self) -> &'static str {
        match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(_), _) => "jwt-hs256",
            (None, Some(_)) => "jwt-public-key",
            (None, None) => "none",
        }
    }

    /// `builder` with the authorizer, the publish token and the ticket lifetime.
    pub(crate) fn apply(&self, builder: sseor::Builder) -> Result<sseor::Builder, SettingsError> {
        let mut builder = builder.ticket_ttl(self.ticket_ttl);
        if let Some(token) = &self.publish_token {
            builder = builder.publish_token(token.expose());
        }
        Ok(match self.jwt()? {
            Some(jwt) => builder.authorizer(jwt),
            None => builder,
        })
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
