//! The one error of the settings, and how clap's errors become its one line.

use std::fmt;
use std::process::ExitCode;

use clap::Command;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::cli;

/// Why the server does not start with these settings.
#[derive(Debug)]
pub enum SettingsError {
    /// `--help` or `--version` was asked: clap prints it, and that is not a failure.
    Shown(clap::Error),
    /// A setting that cannot be used, in one line that names its flag and variable and
    /// never holds a secret.
    Invalid(String),
}

impl SettingsError {
    /// Prints what the error says where it belongs and gives the exit code: 0 after the
    /// help or the version on stdout, 2 after one line on stderr, like a bad flag.
    pub fn exit(&self) -> ExitCode {
        match self {
            Self::Shown(shown) => match shown.print() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            },
            Self::Invalid(line) => {
                eprintln!("sseor: {line}");
                ExitCode::from(2)
            }
        }
    }

    /// The error of a command line that clap refused, parsed by `command`.
    pub(crate) fn from_clap(error: clap::Error, command: &Command) -> Self {
        match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Self::Shown(error),
            ErrorKind::ArgumentConflict => {
                let both = settings_in(
                    &error,
                    command,
                    &[ContextKind::InvalidArg, ContextKind::PriorArg],
                );
                // The login excludes every token setting: its reason wins whichever came first.
                let about = match both.iter().find(|id| *id == "auth_url") {
                    Some(login) => login.as_str(),
                    None => both.first().map(String::as_str).unwrap_or_default(),
                };
                let named: Vec<String> = both.iter().map(|id| cli::name(id)).collect();
                Self::Invalid(format!(
                    "{} are both set: {}",
                    named.join(" and "),
                    cli::reason(about, true)
                ))
            }
            ErrorKind::MissingRequiredArgument => {
                let ids = settings_in(&error, command, &[ContextKind::InvalidArg]);
                let first = ids.first().map(String::as_str).unwrap_or_default();
                let named: Vec<String> = ids.iter().map(|id| cli::name(id)).collect();
                Self::Invalid(format!(
                    "{} must be set too: {}",
                    named.join(" or "),
                    cli::reason(first, false)
                ))
            }
            _ => Self::Invalid(first_line(&error, command)),
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shown(shown) => write!(f, "{}", shown.render()),
            Self::Invalid(line) => f.write_str(line),
        }
    }
}

impl std::error::Error for SettingsError {}

/// Clap's own message in one line, each flag followed by its variable, a secret's value
/// hidden, and the accepted values when there is a list:
/// "invalid value 'x' for --queue-bytes (SSEOR_QUEUE_BYTES): ...".
fn first_line(error: &clap::Error, command: &Command) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    if let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg)
        && let Some(arg) = arg_of(shown, command)
    {
        line = line.replace(&format!("'{shown}'"), &cli::describe(arg));
        if arg.is_hide_env_values_set()
            && let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue)
        {
            line = line.replace(&format!("'{value}'"), "'***'");
        }
    }
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue) {
        line.push_str(&format!(": expected one of {}", valid.join(", ")));
    }
    line
}

/// The ids of the settings that the error's contexts `kinds` show, in order.
fn settings_in(error: &clap::Error, command: &Command, kinds: &[ContextKind]) -> Vec<String> {
    let shown = kinds.iter().flat_map(|kind| match error.get(*kind) {
        Some(ContextValue::String(one)) => vec![one.clone()],
        Some(ContextValue::Strings(many)) => many.clone(),
        _ => Vec::new(),
    });
    shown
        .flat_map(|text| {
            // A group shows as `<--a <A>|--b <B>>`: every flag in it.
            text.split(['<', '>', '|', ' ', '\''])
                .filter(|part| part.starts_with("--"))
                .filter_map(|flag| arg_of(flag, command))
                .map(|arg| arg.get_id().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The argument that clap shows as `shown` (`--queue-bytes <QUEUE_BYTES>`).
fn arg_of<'a>(shown: &str, command: &'a Command) -> Option<&'a clap::Arg> {
    let flag = shown.split_whitespace().next()?.strip_prefix("--")?;
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(flag))
}
