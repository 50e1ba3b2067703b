//! Parsers of single values. Each refuses with a reason only; the error line puts the flag,
//! the variable and the value (unless secret) in front of it.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// The shortest publish token accepted, in characters.
const MIN_PUBLISH_TOKEN_LEN: usize = 16;

/// The longest stream ticket lifetime accepted: a ticket is meant to be used at once.
const MAX_TICKET_TTL: Duration = Duration::from_secs(600);

/// A duration in humantime's syntax (`500ms`, `15s`, `2m`, `1h`, `1h 30m`), or a bare
/// number of seconds (`3`, `0.5`), which the server has always accepted.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 500ms, 15s or 2m ({e})"))
}

/// A duration above zero, for the timeouts that would refuse everything at zero.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        zero if zero.is_zero() => Err("must be above zero, such as 10s".into()),
        duration => Ok(duration),
    }
}

/// A stream ticket's lifetime: from 1 s to 10 min.
pub(crate) fn ticket_ttl(text: &str) -> Result<Duration, String> {
    let ttl = duration(text)?;
    if ttl < Duration::from_secs(1) || ttl > MAX_TICKET_TTL {
        return Err(format!(
            "must be between 1s and {}s: a ticket is meant to be used at once",
            MAX_TICKET_TTL.as_secs()
        ));
    }
    Ok(ttl)
}

/// A whole number above 0.
pub(crate) fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(number) => Ok(number),
        Err(e) => Err(format!("`{text}` is not a whole number: {e}")),
    }
}

/// A number from 0 to 1.
pub(crate) fn fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(number) if (0.0..=1.0).contains(&number) => Ok(number),
        _ => Err(format!("`{text}` is not a number from 0 to 1, such as 0.5")),
    }
}

/// An HTTP header name, such as `X-Forwarded-For`.
pub(crate) fn header_name(text: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(text.trim().as_bytes())
        .map_err(|_| format!("`{text}` is not an HTTP header name, such as X-Forwarded-For"))
}

/// The URL of the application's authorization endpoint: `http://` or `https://`. What
/// else it must be is checked where it is used.
pub(crate) fn auth_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return Err("must start with http:// or https://".into());
    }
    Ok(text.to_owned())
}

/// A log filter in tracing's syntax, checked here so that a typo stops the start before
/// anything is logged; kept as text, since a filter cannot be cloned.
pub(crate) fn log_filter(text: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// A secret from the command line or the environment; its debug output hides it, and an
/// error about it never repeats it (see `hide_env_values` on its flag).
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    /// Any text, as a secret.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        Ok(Self(text.to_owned()))
    }

    /// A publish token: at least 16 characters.
    pub(crate) fn publish_token(text: &str) -> Result<Self, String> {
        if text.chars().count() < MIN_PUBLISH_TOKEN_LEN {
            return Err(format!(
                "too short: use at least {MIN_PUBLISH_TOKEN_LEN} random characters"
            ));
        }
        Self::parse(text)
    }

    /// A webhook's signing secret: at least [`sseor::webhook::MIN_SECRET_LEN`] bytes.
    pub(crate) fn webhook_secret(text: &str) -> Result<Self, String> {
        let least = sseor::webhook::MIN_SECRET_LEN;
        if text.len() < least {
            return Err(format!(
                "too short: use at least {least} random bytes, such as `openssl rand -hex 32`"
            ));
        }
        Self::parse(text)
    }

    /// The secret itself, for the one place that needs it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        for text in ["soon", "-1", "5 lightyears", ""] {
            assert!(duration(text).is_err(), "{text}");
        }
        assert!(positive_duration("0s").is_err());
        assert!(ticket_ttl("0s").is_err() && ticket_ttl("11m").is_err());
        assert_eq!(ticket_ttl("10m"), Ok(MAX_TICKET_TTL));
    }

    #[test]
    fn numbers_headers_filters_and_tokens_are_checked() {
        assert!(fraction("1.5").is_err() && fraction("-0.1").is_err());
        assert_eq!(fraction("0.5"), Ok(0.5));
        assert!(positive("0").is_err() && positive("1MB").is_err());
        assert!(header_name("X Forwarded").is_err());
        assert!(log_filter("[[[").is_err());
        assert_eq!(
            log_filter("sseor=debug,warn").as_deref(),
            Ok("sseor=debug,warn")
        );
        assert!(Secret::publish_token("tok-xyz-123").is_err());
        assert_eq!(format!("{:?}", Secret::parse("s3cret").unwrap()), "***");
    }
}
