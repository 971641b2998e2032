//! POP3's part of the ingestion pass ([`crate::source::pass`]): UIDL tells mails apart (a server
//! without UIDL is refused), RETR fetches (`TOP n 0` the header alone of a mail too large to
//! fetch), DELE marks a committed mail, and QUIT at the end commits the deletions. If the connection drops before QUIT the server keeps the mails; the
//! next pass finds their UIDLs in the store and deletes them without new tickets.

use std::collections::{HashMap, HashSet};

use super::client::{Pop3Client, Pop3Error};
use crate::config::{Pop3Action, Protocol};
use crate::source::{
    ErrorKind, Fetched, FetchedMail, Finished, Listed, Listing, PassReport, Quarantine, Source,
    SourceError, SourceKey, HEADER_LIMIT,
};
use crate::store::ProcessedState;

impl From<Pop3Error> for SourceError {
    fn from(e: Pop3Error) -> SourceError {
        let kind = match &e {
            Pop3Error::Connect(_) => ErrorKind::Connect,
            Pop3Error::StartTlsNotOffered => ErrorKind::Tls,
            Pop3Error::AuthRejected { server_text, .. } => ErrorKind::LoginRejected {
                server_said: server_text.clone(),
            },
            Pop3Error::LoginDelay { delay, .. } => ErrorKind::LoginTooEarly { delay: *delay },
            Pop3Error::Timeout { .. } => ErrorKind::Timeout,
            Pop3Error::Closed { .. } | Pop3Error::ConnectionBroken { .. } | Pop3Error::Io(_) => {
                ErrorKind::Connection
            }
            Pop3Error::Protocol { .. }
            | Pop3Error::UidlNotSupported
            | Pop3Error::InvalidInput(_) => ErrorKind::Protocol,
        };
        SourceError::new(kind, e)
    }
}

/// A mail in this session: its message number (valid until QUIT) and its UIDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Mail {
    pub msg: u32,
    pub uidl: String,
}

/// One pass over the maildrop of a signed-in session.
pub struct Pop3Source {
    client: Pop3Client,
    action: Pop3Action,
    /// The keys of every mail the listing showed.
    on_server: HashSet<SourceKey>,
    /// Marked with DELE: deleted when QUIT commits.
    marked: Vec<SourceKey>,
}

impl Pop3Source {
    pub fn new(client: Pop3Client, action: Pop3Action) -> Pop3Source {
        Pop3Source {
            client,
            action,
            on_server: HashSet::new(),
            marked: Vec::new(),
        }
    }
}

impl Source for Pop3Source {
    type Id = Pop3Mail;

    const PROTOCOL: Protocol = Protocol::Pop3;

    async fn list(&mut self) -> Result<Listing<Pop3Mail>, SourceError> {
        let uidls = self.client.uidl().await?;
        let sizes: HashMap<u32, u64> = self.client.list().await?.into_iter().collect();
        let mails: Vec<Listed<Pop3Mail>> = uidls
            .into_iter()
            .map(|(msg, uidl)| {
                let id = Pop3Mail { msg, uidl };
                Listed {
                    key: self.key(&id),
                    size: sizes.get(&msg).copied().unwrap_or(0),
                    id,
                    // POP3 has no flags: the store remembers quarantined mails.
                    quarantined: false,
                }
            })
            .collect();
        self.on_server = mails.iter().map(|m| m.key.clone()).collect();
        Ok(Listing {
            prefix: SourceKey::POP3_PREFIX.to_string(),
            validity: None,
            mails,
        })
    }

    /// RETR for the batch, pipelined where the server offers it. Any failure fails the batch:
    /// none of it is stored, so all of it stays on the server for the next pass.
    async fn fetch(&mut self, mails: &[Pop3Mail]) -> Result<Fetched<Pop3Mail>, SourceError> {
        let bodies = self.client.retr_all(&numbers(mails)).await.all()?;
        // `all` answers every message, in order.
        Ok(mails
            .iter()
            .cloned()
            .zip(bodies)
            .map(|(id, (_, raw))| FetchedMail {
                id,
                raw,
                arrived: None,
            })
            .collect())
    }

    /// `TOP n 0` for the batch, pipelined where the server offers it; as [`Source::fetch`], any
    /// failure fails the batch.
    async fn fetch_headers(
        &mut self,
        mails: &[Pop3Mail],
    ) -> Result<Fetched<Pop3Mail>, SourceError> {
        let limit = usize::try_from(HEADER_LIMIT).unwrap_or(usize::MAX);
        let headers = self
            .client
            .headers_all(&numbers(mails), limit)
            .await
            .all()?;
        Ok(mails
            .iter()
            .cloned()
            .zip(headers)
            .map(|(id, (_, raw))| FetchedMail {
                id,
                raw,
                arrived: None,
            })
            .collect())
    }

    fn fetches_headers(&self) -> bool {
        self.client.offers_top()
    }

    fn forgets_gone_keys(&self) -> bool {
        self.action == Pop3Action::Keep
    }

    /// DELE (with `action = "delete"`), pipelined where the server offers it: the mails go when
    /// QUIT commits, in [`Source::finish`]. Only mails the server accepted the DELE for count as
    /// marked; after a refused one the pass ends without QUIT, so none is deleted.
    async fn dispose(
        &mut self,
        mails: &[Pop3Mail],
        _report: &mut PassReport,
    ) -> Result<Vec<Pop3Mail>, SourceError> {
        if self.action == Pop3Action::Delete {
            let replies = self.client.dele_all(&numbers(mails)).await;
            let accepted: HashSet<u32> = replies.accepted.iter().map(|(msg, _)| *msg).collect();
            let marked: Vec<SourceKey> = mails
                .iter()
                .filter(|m| accepted.contains(&m.msg))
                .map(|m| self.key(m))
                .collect();
            self.marked.extend(marked);
            if let Some(e) = replies.failure {
                return Err(e.into());
            }
        }
        Ok(Vec::new())
    }

    /// POP3 has no flags to mark the mail on the server: the pass has the store remember it.
    async fn quarantine(
        &mut self,
        _mail: &Pop3Mail,
        _attempts: u32,
    ) -> Result<Quarantine, SourceError> {
        Ok(Quarantine::Unmarkable)
    }

    /// QUIT commits the DELEs (RFC 1939 UPDATE state). With `action = "keep"` the store is to
    /// forget the UIDLs that left the server, so its table does not grow for ever.
    async fn finish(
        self,
        processed: &HashMap<SourceKey, ProcessedState>,
    ) -> Result<Finished, SourceError> {
        let forget = match self.action {
            Pop3Action::Keep => processed
                .keys()
                .filter(|k| !self.on_server.contains(*k))
                .cloned()
                .collect(),
            Pop3Action::Delete => Vec::new(),
        };
        self.client.quit().await?;
        Ok(Finished {
            gone: self.marked,
            forget,
        })
    }

    fn key(&self, mail: &Pop3Mail) -> SourceKey {
        SourceKey::Pop3 {
            uidl: mail.uidl.clone(),
        }
    }
}

fn numbers(mails: &[Pop3Mail]) -> Vec<u32> {
    mails.iter().map(|m| m.msg).collect()
}
