//! The lifecycle webhook's settings checked and applied.

use sseor::webhook::Webhook;

use super::SettingsError;
use crate::cli::{self, Webhook as WebhookSettings};

impl WebhookSettings {
    /// `builder` with the webhook, when a URL is set (clap has made sure that its secret
    /// is too, and long enough).
    pub(crate) fn apply(&self, builder: sseor::Builder) -> Result<sseor::Builder, SettingsError> {
        let (Some(url), Some(secret)) = (&self.webhook_url, &self.webhook_secret) else {
            return Ok(builder);
        };
        // The error names neither the URL (it may hold a credential) nor the secret.
        let webhook = Webhook::new(url, secret.expose())
            .map_err(|e| SettingsError::Invalid(format!("{}: {e}", cli::name("webhook_url"))))?
            .timeout(self.webhook_timeout);
        Ok(builder.webhook(webhook))
    }

    /// Whether lifecycle changes are POSTed, for the logs.
    pub(crate) fn name(&self) -> &'static str {
        if self.webhook_url.is_some() {
            "on"
        } else {
            "off"
        }
    }
}
