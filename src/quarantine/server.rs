//! The server's side of a quarantined mail, on a connection signed in the way the poller signs
//! in (`AccountRuntime`, the protocols' `sign_in`) with the account's settings as the config
//! file has them now: the IMAP mark taken off, and the mail's bytes fetched.

use std::fmt;

use crate::account::AccountRuntime;
use crate::budget::MemoryBudget;
use crate::config::{AccountConfig, Config, Protocol};
use crate::imap::idle::logout;
use crate::imap::quarantine::{unmark, Unmarked, QUARANTINE_KEYWORD};
use crate::imap::source::{fetch_bodies, select, Selected};
use crate::imap::ImapConnection;
use crate::pop3::client::{Pop3Client, Pop3Error};
use crate::source::SourceKey;
use crate::store::QuarantinedMail;

/// Why the server could not do what was asked for a mail. Every kind says what was changed
/// (nothing, except where it says otherwise) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// The account of the mail is no longer in the config file.
    UnknownAccount { account: String },
    /// The key is of the other protocol than the account has now.
    OtherProtocol { account: String, now: Protocol },
    /// Signing in failed (the server is unreachable, the login refused, ...).
    SignIn { account: String, error: String },
    /// The folder's UIDVALIDITY is not the key's (`was`): its UID names another mail, or none.
    Renumbered {
        account: String,
        key: String,
        folder: String,
        uid: u32,
        was: u32,
        now: u32,
    },
    /// No mail with this key on the server any more.
    Gone,
    /// The server refused or failed a command.
    Server(String),
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trouble::UnknownAccount { account } => write!(
                f,
                "account {account:?} is not in the config file, so its server is not known: \
                 nothing was changed (add the account back to reach its mails)"
            ),
            Trouble::OtherProtocol { account, now } => {
                let now = match now {
                    Protocol::Imap => "IMAP",
                    Protocol::Pop3 => "POP3",
                    Protocol::Graph => "Microsoft Graph",
                };
                write!(
                    f,
                    "account {account:?} uses {now} now, which this mail was not fetched with: \
                     nothing was changed"
                )
            }
            Trouble::SignIn { account, error } => write!(
                f,
                "cannot reach the server: {error}. Nothing was changed and the mail stays \
                 quarantined: check the account with `mail2ticket test-fetch {account}`, \
                 then run this again"
            ),
            Trouble::Renumbered {
                account,
                key,
                folder,
                uid,
                was,
                now,
            } => write!(
                f,
                "the server renumbered the folder {folder:?} (UIDVALIDITY {now}, the key has \
                 {was}), so UID {uid} no longer names this mail; nothing was changed. If the \
                 mail is still there it carries the keyword {QUARANTINE_KEYWORD}: remove it in \
                 a mail program to have the mail fetched again, and delete this record \
                 (DELETE FROM failures WHERE account = '{account}' AND source_key = '{key}')"
            ),
            Trouble::Gone => write!(
                f,
                "the mail is no longer on the server (deleted or moved by someone else)"
            ),
            Trouble::Server(error) => {
                write!(f, "{error}; nothing was changed: run this again")
            }
        }
    }
}

/// A signed-in connection to one account's server, for its quarantined mails.
pub enum Connection {
    Imap(ImapFolder),
    Pop3(Pop3Client),
    /// Graph has no session: a client of the mailbox.
    Graph(crate::graph::GraphClient),
}

/// An IMAP connection and the folder it has selected.
pub struct ImapFolder {
    conn: Box<ImapConnection>,
    /// The folder's configured name and its UIDVALIDITY.
    selected: Option<(String, u32)>,
}

impl Connection {
    /// Signs in to the server of the mail's account, as the poller would.
    pub async fn open(config: &Config, mail: &QuarantinedMail) -> Result<Connection, Trouble> {
        let account = account_of(config, mail)?;
        let sign_in = |error: String| Trouble::SignIn {
            account: account.name.clone(),
            error,
        };
        let budget = MemoryBudget::new(config.daemon.memory_budget.0);
        let rt =
            AccountRuntime::new(config, account, &budget).map_err(|e| sign_in(format!("{e:#}")))?;
        match account.protocol {
            Protocol::Imap => {
                let conn = crate::imap::login::sign_in(&rt)
                    .await
                    .map_err(|e| sign_in(e.to_string()))?;
                Ok(Connection::Imap(ImapFolder {
                    conn: Box::new(conn),
                    selected: None,
                }))
            }
            Protocol::Pop3 => {
                let client = crate::pop3::login::sign_in(&rt)
                    .await
                    .map_err(|e| sign_in(e.to_string()))?;
                Ok(Connection::Pop3(client))
            }
            Protocol::Graph => crate::graph::source::client_for(&rt)
                .map(Connection::Graph)
                .map_err(|e| sign_in(e.to_string())),
        }
    }

    /// Takes the quarantine mark off an IMAP mail (POP3 has no mark: its quarantine is the
    /// store's alone).
    pub async fn unmark(&mut self, mail: &QuarantinedMail) -> Result<Unmarked, Trouble> {
        match self {
            Connection::Pop3(_) => Err(other_protocol(mail, Protocol::Pop3)),
            Connection::Graph(_) => Err(other_protocol(mail, Protocol::Graph)),
            Connection::Imap(imap) => {
                let uid = imap.uid_of(mail).await?;
                unmark(&mut imap.conn, uid)
                    .await
                    .map_err(|e| Trouble::Server(e.to_string()))
            }
        }
    }

    /// The mail's bytes exactly as the server gives them to the pass.
    pub async fn raw(&mut self, mail: &QuarantinedMail) -> Result<Vec<u8>, Trouble> {
        match self {
            Connection::Imap(imap) => {
                let uid = imap.uid_of(mail).await?;
                let mut fetched = fetch_bodies(&mut imap.conn, &[uid])
                    .await
                    .map_err(|e| Trouble::Server(e.to_string()))?;
                fetched.pop().map(|m| m.raw).ok_or(Trouble::Gone)
            }
            Connection::Pop3(client) => {
                let SourceKey::Pop3 { uidl } = &mail.key else {
                    return Err(other_protocol(mail, Protocol::Pop3));
                };
                let server = |e: Pop3Error| Trouble::Server(e.to_string());
                let (msg, _) = client
                    .uidl()
                    .await
                    .map_err(server)?
                    .into_iter()
                    .find(|(_, u)| u == uidl)
                    .ok_or(Trouble::Gone)?;
                client.retr(msg).await.map_err(server)
            }
            Connection::Graph(client) => {
                let SourceKey::Graph { id } = &mail.key else {
                    return Err(other_protocol(mail, Protocol::Graph));
                };
                let url = client.url(&format!(
                    "{}/messages/{}/$value",
                    client.user_path(),
                    crate::graph::client::segment(id)
                ));
                client.get_bytes(&url).await.map_err(|e| match e.status() {
                    Some(404) => Trouble::Gone,
                    _ => Trouble::Server(e.to_string()),
                })
            }
        }
    }

    /// Signs out: IMAP LOGOUT; POP3 QUIT, which deletes nothing (no DELE was sent).
    pub async fn close(self) {
        match self {
            Connection::Imap(imap) => logout(*imap.conn).await,
            Connection::Pop3(client) => {
                let _ = client.quit().await;
            }
            Connection::Graph(_) => {}
        }
    }
}

impl ImapFolder {
    /// Selects the folder of the mail (unless it is selected already) and returns the mail's
    /// UID, once the folder is known to have the key's UIDVALIDITY still.
    async fn uid_of(&mut self, mail: &QuarantinedMail) -> Result<u32, Trouble> {
        let SourceKey::Imap {
            folder,
            uidvalidity,
            uid,
        } = &mail.key
        else {
            return Err(other_protocol(mail, Protocol::Imap));
        };
        let now = match &self.selected {
            Some((name, now)) if name == folder => *now,
            _ => {
                let Selected {
                    uidvalidity: now, ..
                } = select(&mut self.conn, folder)
                    .await
                    .map_err(|e| Trouble::Server(e.to_string()))?;
                self.selected = Some((folder.clone(), now));
                now
            }
        };
        if now != *uidvalidity {
            return Err(Trouble::Renumbered {
                account: mail.account.clone(),
                key: mail.key.to_string(),
                folder: folder.clone(),
                uid: *uid,
                was: *uidvalidity,
                now,
            });
        }
        Ok(*uid)
    }
}

fn account_of<'a>(
    config: &'a Config,
    mail: &QuarantinedMail,
) -> Result<&'a AccountConfig, Trouble> {
    let account = config
        .accounts
        .iter()
        .find(|a| a.name == mail.account)
        .ok_or_else(|| Trouble::UnknownAccount {
            account: mail.account.clone(),
        })?;
    let fits = matches!(
        (&mail.key, account.protocol),
        (SourceKey::Imap { .. }, Protocol::Imap)
            | (SourceKey::Pop3 { .. }, Protocol::Pop3)
            | (SourceKey::Graph { .. }, Protocol::Graph)
    );
    if fits {
        Ok(account)
    } else {
        Err(other_protocol(mail, account.protocol))
    }
}

fn other_protocol(mail: &QuarantinedMail, now: Protocol) -> Trouble {
    Trouble::OtherProtocol {
        account: mail.account.clone(),
        now,
    }
}
