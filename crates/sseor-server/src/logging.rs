//! Logs on stdout through `tracing`, as text or JSON.

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, Logging};

impl Logging {
    /// Starts logging. The filter was checked when parsed, so nothing of it is dropped.
    pub(crate) fn init(&self) {
        let filter = EnvFilter::builder().parse_lossy(&self.log_level);
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
        match self.log_format {
            LogFormat::Text => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
    }
}
