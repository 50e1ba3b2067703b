//! The command line as it is parsed in this process's environment: the deprecated names of
//! renamed variables, the variables read, and how a setting is named in an error line.

use std::ffi::OsStr;

use clap::{Arg, Command, CommandFactory};

use super::Cli;

/// A variable renamed to the `SSEOR_` prefix whose old name is still read, with a warning
/// at start; when both are set, the new name wins.
#[derive(Debug, Clone, Copy)]
pub struct Deprecated {
    /// The old name, such as `SERVER_HOST`.
    pub old: &'static str,
    /// The name to use, such as `SSEOR_HOST`.
    pub new: &'static str,
    /// The id of the setting in [`Cli`].
    arg: &'static str,
}

/// The renamed variables whose old names are still read.
pub const DEPRECATED: &[Deprecated] = &[
    Deprecated {
        old: "SERVER_HOST",
        new: "SSEOR_HOST",
        arg: "host",
    },
    Deprecated {
        old: "LOG_FORMAT",
        new: "SSEOR_LOG_FORMAT",
        arg: "log_format",
    },
];

impl Deprecated {
    /// Whether the value comes from the old name: it is set and the new one is not.
    pub fn in_use(&self) -> bool {
        std::env::var_os(self.old).is_some() && std::env::var_os(self.new).is_none()
    }

    /// Whether the old name is set but ignored, since the new one is set too.
    pub fn overridden(&self) -> bool {
        std::env::var_os(self.old).is_some() && std::env::var_os(self.new).is_some()
    }
}

/// Settings for which an empty variable counts as unset: a deployment's template often
/// leaves `SSEOR_TLS_CERT=` empty to mean plain HTTP (or `SSEOR_WEBHOOK_URL=` to mean no
/// webhook), and each of the pair requires the other.
const EMPTY_IS_UNSET: &[&str] = &["tls_cert", "tls_key", "webhook_url", "webhook_secret"];

/// The command line as parsed here: [`Cli`] reading a deprecated name when only it is
/// set (so that an error names the variable that was set), with every deprecated name in
/// the help.
pub fn command() -> Command {
    let mut command = Cli::command();
    for alias in DEPRECATED {
        command = command.mut_arg(alias.arg, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let arg = arg.help(format!("{help} [also read: {}, deprecated]", alias.old));
            if alias.in_use() {
                arg.env(alias.old)
            } else {
                arg
            }
        });
    }
    for id in EMPTY_IS_UNSET {
        command = command.mut_arg(*id, |arg| match arg.get_env().map(std::env::var_os) {
            Some(Some(value)) if value.is_empty() => arg.env(None),
            _ => arg,
        });
    }
    command
}

/// Every environment variable the server reads, taken from the command definition, then
/// the deprecated names still read.
pub fn environment_variables() -> Vec<String> {
    let command = Cli::command();
    let current = command.get_arguments().filter_map(Arg::get_env);
    current
        .map(OsStr::to_string_lossy)
        .map(|name| name.into_owned())
        .chain(DEPRECATED.iter().map(|alias| alias.old.to_owned()))
        .collect()
}

/// How an error line names the setting `id`: `--drain-period (SSEOR_DRAIN_PERIOD)`, with
/// the variable this process reads it from.
pub(crate) fn name(id: &str) -> String {
    let command = command();
    match command.get_arguments().find(|arg| arg.get_id() == id) {
        Some(arg) => describe(arg),
        None => id.to_owned(),
    }
}

/// `--flag (VARIABLE)`, or `--flag` alone for a flag without a variable.
pub(crate) fn describe(arg: &Arg) -> String {
    let flag = format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str()));
    match arg.get_env() {
        Some(env) => format!("{flag} ({})", env.to_string_lossy()),
        None => flag,
    }
}

/// Why a rule between settings holds, for the error line of a clap conflict or missing
/// requirement about the setting `id`.
pub(crate) fn reason(id: &str, conflict: bool) -> &'static str {
    match (id, conflict) {
        ("jwt_secret" | "jwt_public_key", true) => {
            "tokens are checked with one or the other, choose"
        }
        ("jwt_secret" | "jwt_public_key", false) => {
            "tokens are not checked without one, so an issuer or audience would be ignored"
        }
        ("auth_url", true) => {
            "streams are authorized by tokens or by the application's login, choose one"
        }
        ("auth_url", false) => "these settings are for the application's login (--auth-url)",
        ("tls_cert" | "tls_key", _) => "TLS needs both the certificate and its private key",
        ("webhook_secret", _) => "every webhook request is signed with the secret",
        ("webhook_url", _) => "a webhook secret without a URL signs nothing",
        _ => "these settings go together",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_well_formed_and_lists_every_variable() {
        command().debug_assert();
        let variables = environment_variables();
        for name in [
            "REDIS_URL",
            "SERVER_PORT",
            "LOG_LEVEL",
            "SSEOR_HOST",
            "SERVER_HOST",
        ] {
            assert!(variables.iter().any(|v| v == name), "{name}: {variables:?}");
        }
        let renamed = |v: &&String| !v.starts_with("SSEOR_");
        let unprefixed: Vec<_> = variables.iter().filter(renamed).collect();
        assert_eq!(
            unprefixed,
            [
                "SERVER_PORT",
                "LOG_LEVEL",
                "REDIS_URL",
                "SERVER_HOST",
                "LOG_FORMAT"
            ]
        );
    }

    #[test]
    fn a_setting_is_named_by_its_flag_and_variable() {
        assert_eq!(name("drain_period"), "--drain-period (SSEOR_DRAIN_PERIOD)");
        assert_eq!(name("port"), "--port (SERVER_PORT)");
    }
}
