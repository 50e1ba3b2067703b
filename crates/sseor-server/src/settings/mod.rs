//! The one validation pass: the parsed command line becomes [`Settings`], what the server
//! runs with, or a [`SettingsError`] that names the setting.

mod auth;
mod builder;
mod error;
mod webhook;

use std::ffi::OsString;
use std::net::SocketAddr;

use clap::FromArgMatches;

pub use error::SettingsError;

use crate::cli::{self, Cli, Listen, Logging};
use crate::transport::Transport;

/// What the server runs with: every setting checked, files read, nothing started.
pub struct Settings {
    /// The manager's options.
    pub(crate) builder: sseor::Builder,
    /// Where to listen.
    pub(crate) address: SocketAddr,
    /// TLS and CORS.
    pub(crate) transport: Transport,
    /// What is logged and how.
    pub(crate) logging: Logging,
    /// The broker's kind, for the logs.
    pub(crate) broker: &'static str,
    /// How subscribers are authenticated, for the logs.
    pub(crate) authentication: &'static str,
    /// Whether lifecycle changes are POSTed to a webhook, for the logs.
    pub(crate) webhook: &'static str,
    /// What to warn about once logging runs.
    warnings: Vec<String>,
}

impl Settings {
    /// The settings from this process's command line and environment.
    ///
    /// # Errors
    /// `--help` or `--version`, or a setting that cannot be used.
    pub fn load() -> Result<Self, SettingsError> {
        Self::parse_from(std::env::args_os())
    }

    /// The settings from `args` (the program's name first) and this process's
    /// environment.
    ///
    /// # Errors
    /// `--help` or `--version`, or a setting that cannot be used.
    pub fn parse_from(
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    ) -> Result<Self, SettingsError> {
        let command = cli::command();
        let refused = |error: clap::Error| SettingsError::from_clap(error, &command);
        let matches = command
            .clone()
            .try_get_matches_from(args)
            .map_err(refused)?;
        let cli = Cli::from_arg_matches(&matches).map_err(refused)?;
        Self::check(cli)
    }

    /// Checks what clap cannot, reads the files the settings name, and builds the
    /// manager's options.
    fn check(cli: Cli) -> Result<Self, SettingsError> {
        let builder = cli.shutdown.apply(sseor::Manager::builder())?;
        let transport = Transport::load(&cli.tls_cors)?;
        let builder = cli.auth.apply(builder)?;
        let builder = cli.limits.apply(builder)?;
        let builder = cli.webhook.apply(builder)?;
        let builder = cli
            .streams
            .apply(cli.broker.apply(cli.listen.apply(builder)));
        let mut warnings = deprecation_warnings();
        if !cli.auth.authenticates() {
            warnings.push(cli.listen.check_open(cli.auth.insecure)?);
        }
        Ok(Self {
            builder: transport.apply(builder),
            address: SocketAddr::new(cli.listen.host, cli.listen.port),
            transport,
            logging: cli.logging,
            broker: cli.broker.name(),
            authentication: cli.auth.name(),
            webhook: cli.webhook.name(),
            warnings,
        })
    }

    /// Logs what was found worth a warning; once logging runs.
    pub(crate) fn warn(&self) {
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }
}

impl Listen {
    /// `builder` with the rules of connections and host names.
    fn apply(&self, builder: sseor::Builder) -> sseor::Builder {
        builder
            .header_timeout(self.header_timeout)
            .loopback_hosts_only(!self.allow_any_host)
            .client_ip_header(self.client_ip_header.clone())
    }

    /// Without authentication, only loopback unless `insecure`; the warning to log.
    fn check_open(&self, insecure: bool) -> Result<String, SettingsError> {
        if !self.host.is_loopback() && !insecure {
            return Err(SettingsError::Invalid(format!(
                "{} {} is beyond loopback without authentication: set {}, {} or {}, listen \
                 on 127.0.0.1, or pass --insecure (SSEOR_INSECURE=true)",
                cli::name("host"),
                self.host,
                cli::name("jwt_secret"),
                cli::name("jwt_public_key"),
                cli::name("auth_url"),
            )));
        }
        Ok(format!(
            "no authentication configured (development): anyone who can reach {} can read \
             every user's events; set SSEOR_JWT_SECRET, SSEOR_JWT_PUBLIC_KEY or SSEOR_AUTH_URL",
            self.host
        ))
    }
}

/// A warning for each deprecated variable name set.
fn deprecation_warnings() -> Vec<String> {
    let used = cli::DEPRECATED.iter().filter(|alias| alias.in_use());
    let overridden = cli::DEPRECATED.iter().filter(|alias| alias.overridden());
    used.map(|alias| format!("{} is deprecated: rename it {}", alias.old, alias.new))
        .chain(overridden.map(|alias| {
            format!(
                "{} is deprecated and ignored, since {} is set",
                alias.old, alias.new
            )
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line a refused command line gives.
    pub(crate) fn refusal(args: &[&str]) -> String {
        let full = std::iter::once("sseor").chain(args.iter().copied());
        match Settings::parse_from(full) {
            Err(SettingsError::Invalid(line)) => line,
            Err(other) => panic!("{args:?}: not a refusal: {other}"),
            Ok(_) => panic!("{args:?}: accepted"),
        }
    }

    #[test]
    fn a_bad_value_is_one_line_naming_the_flag_and_the_variable() {
        let line = refusal(&["--queue-bytes", "lots"]);
        assert!(
            line.starts_with("invalid value 'lots' for --queue-bytes (SSEOR_QUEUE_BYTES)"),
            "{line}"
        );
        let line = refusal(&["--log-format", "xml"]);
        assert!(
            line.contains("--log-format") && line.contains("json"),
            "{line}"
        );
        for line in [line, refusal(&["--publish-token", "tok-xyz-123"])] {
            assert!(!line.contains('\n') && !line.contains("tok-xyz"), "{line}");
        }
        let line = refusal(&["--publish-token", "short"]);
        assert!(
            line.contains("'***'") && line.contains("too short"),
            "{line}"
        );
    }

    #[test]
    fn rules_between_settings_name_both_sides() {
        let line = refusal(&["--tls-cert", "c.pem"]);
        assert!(
            line.starts_with("--tls-key (SSEOR_TLS_KEY) must be set too"),
            "{line}"
        );
        let line = refusal(&["--jwt-secret", "x", "--jwt-public-key", "k.pem"]);
        assert!(
            line.contains("--jwt-secret (SSEOR_JWT_SECRET) and"),
            "{line}"
        );
        assert!(line.contains("both set"), "{line}");
        let line = refusal(&["--jwt-audience", "a"]);
        assert!(
            line.contains("--jwt-public-key (SSEOR_JWT_PUBLIC_KEY) must"),
            "{line}"
        );
        let line = refusal(&["--drain-period", "3s", "--shutdown-timeout", "2s"]);
        assert!(
            line.starts_with("--drain-period (SSEOR_DRAIN_PERIOD) 3s exceeds"),
            "{line}"
        );
        let line = refusal(&["--publish-burst", "5"]);
        assert!(
            line.contains("needs --publish-rate (SSEOR_PUBLISH_RATE)"),
            "{line}"
        );
    }

    #[test]
    fn help_and_version_are_shown_not_refused() {
        for flag in ["--help", "--version"] {
            let shown = Settings::parse_from(["sseor", flag]);
            assert!(matches!(shown, Err(SettingsError::Shown(_))), "{flag}");
        }
    }
}
