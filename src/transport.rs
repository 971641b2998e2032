//! The one transport every automatic reply and alert mail goes through, as `[smtp] protocol`
//! says: an SMTP server ([`crate::smtp`]) or Microsoft Graph's sendMail ([`crate::graph::send`]).

use crate::config::{SmtpConfig, SmtpProtocol};
use crate::graph::send::GraphSender;
use crate::smtp::{Deliver, SendError, SmtpTransport};

#[derive(Debug, Clone)]
pub enum Transport {
    Smtp(SmtpTransport),
    Graph(std::sync::Arc<GraphSender>),
}

impl Transport {
    /// The transport of `[smtp]`; tokens are kept beside `store_path` (see [`crate::oauth`]).
    /// Must be called inside a Tokio runtime (the SMTP pool starts a task).
    pub fn for_config(
        config: &SmtpConfig,
        store_path: &std::path::Path,
    ) -> anyhow::Result<Transport> {
        Ok(match config.protocol {
            SmtpProtocol::Smtp => Transport::Smtp(SmtpTransport::for_config(config, store_path)?),
            SmtpProtocol::Graph => Transport::Graph(std::sync::Arc::new(GraphSender::for_config(
                config, store_path,
            )?)),
        })
    }
}

impl Deliver for Transport {
    async fn deliver(
        &self,
        envelope_from: &str,
        recipient: &str,
        message: &[u8],
    ) -> Result<(), SendError> {
        match self {
            Transport::Smtp(t) => t.deliver(envelope_from, recipient, message).await,
            Transport::Graph(g) => g.deliver(envelope_from, recipient, message).await,
        }
    }
}
