//! Replies through Graph's sendMail, as MIME (<https://learn.microsoft.com/en-us/graph/api/user-sendmail>,
//! <https://learn.microsoft.com/en-us/graph/outlook-send-mime-message>): the message goes as the
//! base64 of its bytes, so Message-ID, In-Reply-To, References, Auto-Submitted, Reply-To and the
//! sender's name stay exactly as composed.
//!
//! Each reply is sent from the mailbox of its From address (the account's own), or from `[smtp]
//! user` when that is set. Graph sends to the message's own To and Cc: every message of the
//! outbox names exactly its one recipient there (replies and alerts are composed per recipient).
//!
//! sendMail in MIME format always keeps a copy in Sent Items. With `save_to_sent_items = false`
//! the reply is made a draft instead (`POST /messages` in MIME format), marked
//! PidTagDeleteAfterSubmit ([MS-OXOMSG] 2.2.3.8: delete the message once it is sent) and sent:
//! three requests instead of one. A crash between them leaves an unsent draft in Drafts; the
//! outbox sends the reply again.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::client::{segment, Body, GraphClient};
use super::error::GraphError;
use crate::config::{MailProtocol, SmtpConfig};
use crate::oauth::TokenSource;
use crate::smtp::{Deliver, SendError};

/// PidTagDeleteAfterSubmit as a Graph extended property.
const DELETE_AFTER_SUBMIT: &str = "Boolean 0x0E01";

#[derive(Debug, thiserror::Error)]
pub enum GraphSendSetupError {
    #[error("[smtp] protocol = \"graph\" needs auth = \"oauth2\" and an [smtp.oauth2] table")]
    NoOAuth,
    #[error("[smtp] OAuth 2.0 setup failed: {0}")]
    OAuth(#[from] crate::oauth::OAuthError),
    #[error("[smtp] TLS setup failed: {0}")]
    Tls(String),
}

/// Sends through Graph, one client (and so one throttling gate) per sending mailbox.
pub struct GraphSender {
    http: reqwest::Client,
    base: String,
    tokens: Arc<TokenSource>,
    /// `[smtp] user`: every reply from this mailbox; else from the reply's From.
    mailbox: Option<String>,
    save_to_sent_items: bool,
    clients: std::sync::Mutex<HashMap<String, GraphClient>>,
}

impl std::fmt::Debug for GraphSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSender")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl GraphSender {
    pub fn for_config(
        config: &SmtpConfig,
        store_path: &std::path::Path,
    ) -> Result<GraphSender, GraphSendSetupError> {
        let oauth = config.oauth2.as_ref().ok_or(GraphSendSetupError::NoOAuth)?;
        let tokens = TokenSource::new(
            "smtp",
            oauth,
            MailProtocol::Graph,
            store_path,
            config.timeout,
        )?;
        let tls = crate::tls::client_config(config.ca_file.as_deref())
            .map_err(|e| GraphSendSetupError::Tls(e.to_string()))?;
        let http = super::client::http_client(&tls, config.timeout)
            .map_err(|e| GraphSendSetupError::Tls(e.to_string()))?;
        Ok(GraphSender {
            http,
            base: oauth.graph_url(),
            tokens: Arc::new(tokens),
            mailbox: config.user.clone(),
            save_to_sent_items: config.save_to_sent_items,
            clients: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Graph's host, for messages.
    pub fn server(&self) -> String {
        format!("Microsoft Graph ({})", self.base)
    }

    /// The client of the mailbox a message is sent from.
    fn client(&self, from: &str) -> GraphClient {
        let mailbox = self.mailbox.clone().unwrap_or_else(|| from.to_string());
        let mut clients = self.clients.lock().expect("clients lock");
        clients
            .entry(mailbox.to_lowercase())
            .or_insert_with(|| {
                GraphClient::new(self.http.clone(), &self.base, &mailbox, self.tokens.clone())
            })
            .clone()
    }
}

/// Sends `message` as it is from `client`'s mailbox, keeping a copy in its Sent Items or not.
pub async fn send_mime(
    client: &GraphClient,
    message: &[u8],
    save_to_sent_items: bool,
) -> Result<(), GraphError> {
    let user = client.user_path();
    if save_to_sent_items {
        let url = client.url(&format!("{user}/sendMail"));
        client
            .send_json(reqwest::Method::POST, &url, Body::Mime(message.to_vec()))
            .await?;
        return Ok(());
    }
    let url = client.url(&format!("{user}/messages"));
    let draft = client
        .send_json(reqwest::Method::POST, &url, Body::Mime(message.to_vec()))
        .await?;
    let id = draft["id"].as_str().ok_or_else(|| GraphError::Unexpected {
        what: "creating a draft".into(),
        detail: "no id".into(),
    })?;
    let url = client.url(&format!("{user}/messages/{}", segment(id)));
    client
        .send_json(
            reqwest::Method::PATCH,
            &url,
            Body::Json(json!({
                "singleValueExtendedProperties": [{"id": DELETE_AFTER_SUBMIT, "value": "true"}]
            })),
        )
        .await?;
    let url = client.url(&format!("{user}/messages/{}/send", segment(id)));
    client
        .send_json(reqwest::Method::POST, &url, Body::None)
        .await?;
    Ok(())
}

/// Sorts a Graph failure for the outbox: what a retry can fix, what it cannot, and a refused
/// app (a missing permission, a mailbox outside the app's scope), which pauses the sender.
pub fn classify(server: &str, e: GraphError) -> SendError {
    let detail = e.to_string();
    match &e {
        GraphError::Api { status: 400, .. } => SendError::Permanent {
            server: server.into(),
            detail,
        },
        GraphError::Api {
            status: 401 | 403 | 404,
            ..
        }
        | GraphError::Token(_) => SendError::LoginRejected {
            server: server.into(),
            detail,
        },
        _ => SendError::Transient {
            server: server.into(),
            detail,
        },
    }
}

/// The addresses of the message's To and Cc headers (lower case).
fn header_recipients(message: &[u8]) -> Vec<String> {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for list in [parsed.to(), parsed.cc()].into_iter().flatten() {
        for addr in list.iter() {
            if let Some(a) = addr.address() {
                out.push(a.to_lowercase());
            }
        }
    }
    out
}

impl Deliver for GraphSender {
    async fn deliver(
        &self,
        envelope_from: &str,
        recipient: &str,
        message: &[u8],
    ) -> Result<(), SendError> {
        // Graph sends to the message's own recipients, not to an envelope: a message that does
        // not name its recipient, or names more, would go to the wrong people.
        let named = header_recipients(message);
        if named != [recipient.to_lowercase()] {
            return Err(SendError::Unusable(format!(
                "Graph sends to the message's To and Cc, which name {named:?}, not only {recipient:?}"
            )));
        }
        let client = self.client(envelope_from);
        send_mime(&client, message, self.save_to_sent_items)
            .await
            .map_err(|e| classify(&self.server(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipients_are_read_from_to_and_cc() {
        let mail =
            b"From: support@shop.example\r\nTo: Kundin <K@Example.test>\r\nSubject: x\r\n\r\nbody";
        assert_eq!(header_recipients(mail), vec!["k@example.test"]);
    }

    #[test]
    fn a_refused_app_pauses_the_sender_and_a_bad_message_is_not_retried() {
        let api = |status| GraphError::Api {
            status,
            code: "x".into(),
            message: "y".into(),
            mailbox: "m".into(),
        };
        assert!(matches!(
            classify("g", api(403)),
            SendError::LoginRejected { .. }
        ));
        assert!(classify("g", api(400)).is_permanent());
        assert!(matches!(
            classify("g", api(500)),
            SendError::Transient { .. }
        ));
    }
}
