//! The alert webhook: each queued body is POSTed as JSON to `[alerts] webhook`, by the outbox's
//! state machine (`delivery`), like a mail. The URL is read from the current config at each
//! send (a reload takes effect at once) and never written anywhere: such URLs carry a token.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::smtp::{Deliver, SendError};

/// Posts to the configured webhook.
pub struct WebhookDeliver {
    config: watch::Receiver<Arc<Config>>,
    http: reqwest::Client,
}

impl WebhookDeliver {
    pub fn new(config: watch::Receiver<Arc<Config>>) -> Result<WebhookDeliver, String> {
        Ok(WebhookDeliver {
            config,
            http: client()?,
        })
    }
}

/// No redirects (a redirect could carry the alert elsewhere) and a deadline per request.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| format!("cannot set up HTTPS for the webhook: {e}"))
}

/// POSTs `body` to `url`. Errors never show the URL.
pub async fn post(http: &reqwest::Client, url: &str, body: &[u8]) -> Result<(), SendError> {
    let server = || "the alert webhook".to_string();
    let answer = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| SendError::Transient {
            server: server(),
            detail: e.without_url().to_string(),
        })?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let detail = format!("it answered HTTP {status}");
    // 408, 429 and the 5xx are worth another try; another 4xx will not change.
    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        Err(SendError::Permanent {
            server: server(),
            detail,
        })
    } else {
        Err(SendError::Transient {
            server: server(),
            detail,
        })
    }
}

impl Deliver for WebhookDeliver {
    async fn deliver(&self, _from: &str, _to: &str, message: &[u8]) -> Result<(), SendError> {
        let url = self
            .config
            .borrow()
            .alerts
            .as_ref()
            .and_then(|a| a.webhook.clone());
        match url {
            Some(url) => post(&self.http, url.expose(), message).await,
            // Removed from the config: kept queued in case it comes back, given up as usual.
            None => Err(SendError::Transient {
                server: "the alert webhook".into(),
                detail: "[alerts] webhook is no longer configured".into(),
            }),
        }
    }
}
