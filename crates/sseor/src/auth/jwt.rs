//! [`JwtAuthorizer`]: bearer JSON Web Tokens, HS256 with a shared secret or RS256/ES256
//! with a public key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsa::pkcs1::DecodeRsaPublicKey;

use base64::Engine;
use futures_util::future::BoxFuture;
use http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthReason, Authorizer, Grant, bearer_token};
use crate::{Error, Result};

/// The shortest HS256 secret accepted, in bytes: RFC 7518 (3.2) asks for a key at least as
/// long as the hash, 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

/// The smallest RSA key accepted, in bits (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// Checks the JSON Web Token of each request: its signature (HS256 with a shared secret,
/// or RS256 or ES256 with a public key), its `exp` (required), `nbf` (when present), and
/// `iss` and `aud` when configured.
///
/// * The user is the token's `sub` (required).
/// * The topics it may join are the claim `topics` (configurable with
///   [`topics_claim`](Self::topics_claim)): an array of strings, where `"*"` grants every
///   topic. Without the claim, no topic: the user's own events and broadcasts only.
/// * `"publish": true` lets it publish.
/// * The token is read from `Authorization: Bearer`, else from the cookie `sseor_token`
///   (see [`cookie`](Self::cookie)), else from `?token=`.
///
/// Only the configured algorithm is accepted: a token signed with another one, `none`
/// included, is refused, and so is an HS256 token signed with the text of the public key
/// (the "algorithm confusion" attack), since the key is never used as an HMAC secret.
///
/// ```
/// use jsonwebtoken::{EncodingKey, Header, encode};
/// use serde_json::json;
/// use sseor::auth::JwtAuthorizer;
///
/// let secret = "an HS256 secret of at least 32 bytes";
/// let authorizer = JwtAuthorizer::hs256(secret)?;
/// let exp = jsonwebtoken::get_current_timestamp() + 600;
/// let token = encode(
///     &Header::default(),
///     &json!({"sub": "user123", "exp": exp, "topics": ["prices"]}),
///     &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
/// ).unwrap();
/// let grant = authorizer.verify(&token)?;
/// assert_eq!(grant.user_id(), "user123");
/// assert!(grant.topics().contains("prices") && !grant.may_publish());
/// assert!(authorizer.verify("not.a.token").is_err());
/// # Ok::<(), sseor::Error>(())
/// ```
#[derive(Clone)]
pub struct JwtAuthorizer {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    topics_claim: String,
    cookie: String,
    leeway: Duration,
}

impl std::fmt::Debug for JwtAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthorizer")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("topics_claim", &self.topics_claim)
            .field("cookie", &self.cookie)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl JwtAuthorizer {
    /// Tokens signed with HS256 and `secret`.
    ///
    /// # Errors
    /// [`Error::InvalidAuthConfig`] when the secret is shorter than [`MIN_SECRET_LEN`]
    /// bytes.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::InvalidAuthConfig(format!(
                "the JWT secret is {} bytes long; HS256 needs at least {MIN_SECRET_LEN}",
                secret.len()
            )));
        }
        let key = DecodingKey::from_secret(secret)
            .map_err(|e| Error::InvalidAuthConfig(format!("the JWT secret: {e}")))?;
        Ok(Self::new(key, Algorithm::HS256))
    }

    /// Tokens signed with the private half of `pem`, a PEM public key
    /// (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`): RS256 for an RSA key (2048 bits
    /// or more), ES256 for a P-256 EC key.
    ///
    /// # Errors
    /// [`Error::InvalidAuthConfig`] when `pem` is not a PEM public key, or a key of
    /// another type, curve or size.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidAuthConfig(format!("the JWT public key {why}"));
        let block = pem::parse(pem).map_err(|_| invalid("is not a PEM file"))?;
        if !matches!(block.tag(), "PUBLIC KEY" | "RSA PUBLIC KEY") {
            return Err(invalid(
                "is not a public key: expected `-----BEGIN PUBLIC KEY-----` (a private key or \
                 a certificate does not do)",
            ));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            // The decoder parses the key only when it verifies a token: parse it now.
            let bits = key
                .try_get_as_bytes()
                .ok()
                .and_then(|der| rsa::PublicKey::from_pkcs1_der(der).ok())
                .map(|rsa| rsa::traits::PublicKeyParts::size(&rsa) * 8)
                .ok_or_else(|| invalid("is not a valid RSA key"))?;
            if bits < MIN_RSA_BITS {
                return Err(invalid(&format!(
                    "is a {bits}-bit RSA key; RS256 needs at least {MIN_RSA_BITS} bits"
                )));
            }
            return Ok(Self::new(key, Algorithm::RS256));
        }
        let key = DecodingKey::from_ec_pem(pem)
            .map_err(|_| invalid("is neither an RSA nor an EC key"))?;
        let p256 = key
            .try_get_as_bytes()
            .is_ok_and(|point| p256::PublicKey::from_sec1_bytes(point).is_ok());
        if !p256 {
            return Err(invalid("is not a P-256 EC key (ES256)"));
        }
        Ok(Self::new(key, Algorithm::ES256))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let leeway = Duration::from_secs(5);
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        Self {
            key,
            algorithm,
            validation,
            topics_claim: "topics".into(),
            cookie: "sseor_token".into(),
            leeway,
        }
    }

    /// Requires `iss` to be `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Requires `aud` to name `audience`. Without it, a token that has an `aud` is refused:
    /// it is meant for someone else.
    #[must_use]
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// The claim that lists the topics a token may join (default `topics`).
    #[must_use]
    pub fn topics_claim(mut self, name: impl Into<String>) -> Self {
        self.topics_claim = name.into();
        self
    }

    /// The cookie a token may come in (default `sseor_token`).
    #[must_use]
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = name.into();
        self
    }

    /// How far clocks may disagree (default 5 s, whole seconds): a token is accepted up to
    /// this long after its `exp` and before its `nbf`, and a stream opened with it ends at
    /// `exp` plus this.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Duration::from_secs(leeway.as_secs());
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// The algorithm tokens must be signed with: `HS256`, `RS256` or `ES256`.
    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "HS256",
        }
    }

    /// The grant of `token`.
    ///
    /// # Errors
    /// [`Error::Auth`] with the reason the token is refused (`malformed`, `expired`,
    /// `not_yet_valid`, `bad_signature`, `bad_algorithm`, `bad_issuer`, `bad_audience`).
    pub fn verify(&self, token: &str) -> Result<Grant> {
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| self.refusal(token, e.kind()))?
            .claims;
        self.grant(&claims)
    }

    fn grant(&self, claims: &Map<String, Value>) -> Result<Grant> {
        let malformed = |message: String| Error::auth(AuthReason::Malformed, message);
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the token's `sub` is not a string".into()))?;
        let mut grant = Grant::user(sub)
            .map_err(|_| malformed("the token's `sub` is not a valid user id".into()))?;
        grant = match claims.get(&self.topics_claim) {
            None | Some(Value::Null) => grant,
            Some(Value::Array(topics)) => {
                let topics: Option<Vec<&str>> = topics.iter().map(Value::as_str).collect();
                let topics = topics.ok_or_else(|| {
                    malformed(format!(
                        "the claim `{}` is not an array of strings",
                        self.topics_claim
                    ))
                })?;
                if topics.contains(&"*") {
                    grant.with_all_topics()
                } else {
                    grant.with_topics(topics)
                }
            }
            Some(_) => {
                return Err(malformed(format!(
                    "the claim `{}` is not an array of strings",
                    self.topics_claim
                )));
            }
        };
        grant = match claims.get("publish") {
            None | Some(Value::Null) => grant,
            Some(Value::Bool(publish)) => grant.with_publish(*publish),
            Some(_) => return Err(malformed("the claim `publish` is not a boolean".into())),
        };
        // `exp` is required and was checked by the decoder, in whole seconds: a token is
        // refused from the very moment its stream would be closed.
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0);
        let expires_at = UNIX_EPOCH + Duration::from_secs_f64(exp.clamp(0.0, 1e12)) + self.leeway;
        if SystemTime::now() >= expires_at {
            return Err(Error::auth(AuthReason::Expired, "the token has expired"));
        }
        Ok(grant.expiring_at(expires_at))
    }

    /// The refusal for a token the decoder did not accept; never echoes the token.
    fn refusal(&self, token: &str, kind: &ErrorKind) -> Error {
        let (reason, message) = match kind {
            ErrorKind::ExpiredSignature => (AuthReason::Expired, "the token has expired".into()),
            ErrorKind::ImmatureSignature => (
                AuthReason::NotYetValid,
                "the token is not valid yet (`nbf`)".into(),
            ),
            ErrorKind::InvalidSignature => (
                AuthReason::BadSignature,
                "the token's signature does not verify".into(),
            ),
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => self.wrong_algorithm(),
            ErrorKind::InvalidIssuer => (
                AuthReason::BadIssuer,
                "the token's `iss` is not accepted".into(),
            ),
            ErrorKind::InvalidAudience => (
                AuthReason::BadAudience,
                "the token's `aud` is not accepted".into(),
            ),
            ErrorKind::MissingRequiredClaim(claim) => (
                AuthReason::Malformed,
                format!("the token has no `{claim}` claim"),
            ),
            ErrorKind::InvalidClaimFormat(claim) => (
                AuthReason::Malformed,
                format!("the token's `{claim}` claim is malformed"),
            ),
            // An `alg` the decoder does not even know (`none`) fails as a header that does
            // not parse: tell it apart from a token that is garbage.
            _ if header_names_another_algorithm(token, self.algorithm()) => self.wrong_algorithm(),
            _ => (
                AuthReason::Malformed,
                "the token is not a well-formed JWT".into(),
            ),
        };
        Error::auth(reason, message)
    }

    fn wrong_algorithm(&self) -> (AuthReason, String) {
        (
            AuthReason::BadAlgorithm,
            format!(
                "the token is not signed with {}, the only algorithm accepted",
                self.algorithm()
            ),
        )
    }
}

/// Whether the token's header parses and names an algorithm other than `expected`.
fn header_names_another_algorithm(token: &str, expected: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
        .and_then(|header| header.get("alg").and_then(Value::as_str).map(str::to_owned))
        .is_some_and(|alg| alg != expected)
}

impl Authorizer for JwtAuthorizer {
    fn authorize<'a>(&'a self, request: &'a Parts) -> BoxFuture<'a, Result<Grant>> {
        let grant = match bearer_token(request, &self.cookie) {
            Some(token) => self.verify(&token),
            None => Err(Error::auth(
                AuthReason::Missing,
                super::missing_token_message(request, &self.cookie),
            )),
        };
        Box::pin(async move { grant })
    }
}
