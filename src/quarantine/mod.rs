//! `mail2ticket quarantine list | retry | export`: the mails whose storage failed
//! `QUARANTINE_AFTER` times and that every pass now skips, named from the store
//! ([`Store::quarantined`]), released for another try, or fetched from the server exactly as
//! they are (the store never got them).
//!
//! A release undoes what quarantining did, the server first: an IMAP mail loses its keyword
//! (`imap::quarantine::unmark`), then the store forgets its failures and, for POP3, the record
//! that kept it quarantined. So a release that fails half-way leaves the mail quarantined (or,
//! keyword off and count kept, tried once more), never skipped without a trace. The next pass
//! fetches the mail again; should it fail `QUARANTINE_AFTER` more times it is quarantined again.
//! POP3 needs no connection for that; IMAP signs in as the poller does (see `server`).

mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;

use crate::config::Config;
use crate::display::{fail, print_json, write_stdout};
use crate::imap::quarantine::{Unmarked, QUARANTINE_KEYWORD};
use crate::source::SourceKey;
use crate::store::{QuarantinedMail, Store, StoreError};

use server::Connection;
pub use server::Trouble;

/// Which quarantined mails a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// One mail by its source key (`--account` only where two accounts share the key).
    Key {
        key: SourceKey,
        account: Option<String>,
    },
    /// Every quarantined mail of an account.
    Account(String),
    All,
}

/// Why a command found no mail to work on.
#[derive(Debug)]
pub enum NotChosen {
    Store(StoreError),
    NoSuchKey(SourceKey),
    /// Several accounts have a quarantined mail with this key.
    Ambiguous {
        key: SourceKey,
        accounts: Vec<String>,
    },
}

impl fmt::Display for NotChosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotChosen::Store(e) => write!(f, "{e}"),
            NotChosen::NoSuchKey(key) => write!(
                f,
                "no mail with the key {key} is in quarantine (`mail2ticket quarantine list` \
                 shows those that are)"
            ),
            NotChosen::Ambiguous { key, accounts } => write!(
                f,
                "the accounts {} each have a mail with the key {key} in quarantine: say which \
                 with --account NAME",
                accounts.join(", ")
            ),
        }
    }
}

/// The quarantined mails `which` names. A key must name one; an account or all may name none.
pub async fn chosen(store: &Store, which: &Which) -> Result<Vec<QuarantinedMail>, NotChosen> {
    let account = match which {
        Which::Key { account, .. } => account.as_deref(),
        Which::Account(account) => Some(account.as_str()),
        Which::All => None,
    };
    let mut mails = store.quarantined(account).await.map_err(NotChosen::Store)?;
    if let Which::Key { key, .. } = which {
        mails.retain(|m| &m.key == key);
        match mails.len() {
            0 => return Err(NotChosen::NoSuchKey(key.clone())),
            1 => {}
            _ => {
                return Err(NotChosen::Ambiguous {
                    key: key.clone(),
                    accounts: mails.into_iter().map(|m| m.account).collect(),
                })
            }
        }
    }
    Ok(mails)
}

/// What a retry did for one mail.
#[derive(Debug)]
pub struct Retried {
    pub mail: QuarantinedMail,
    pub result: Result<Released, NotReleased>,
}

/// A mail released: the next pass fetches it again (or, gone, forgets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// IMAP: the keyword is off and the failures forgotten.
    Unmarked,
    /// IMAP: the mail carried no keyword (setting it had failed); the failures forgotten.
    WasNotMarked,
    /// IMAP: the mail is no longer in the folder; the failures forgotten.
    Gone,
    /// POP3: the store's quarantine and the failures forgotten.
    Forgotten,
}

impl fmt::Display for Released {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Released::Unmarked => write!(
                f,
                "released: the keyword {QUARANTINE_KEYWORD} is off and the failure count \
                 cleared; the next pass fetches it again"
            ),
            Released::WasNotMarked => write!(
                f,
                "released: it carried no keyword (marking it had failed), the failure count is \
                 cleared; the next pass fetches it again"
            ),
            Released::Gone => write!(
                f,
                "no longer on the server (deleted or moved by someone else): its failure \
                 record is removed"
            ),
            Released::Forgotten => write!(
                f,
                "released: the failure count and the quarantine record cleared; the next pass \
                 fetches it again"
            ),
        }
    }
}

/// A mail not released (or only half).
#[derive(Debug)]
pub enum NotReleased {
    /// The server could not take the mark off: nothing was changed.
    Server(Trouble),
    /// The store could not forget the failures; `unmarked`: the keyword is off already.
    Store { unmarked: bool, error: StoreError },
}

impl fmt::Display for NotReleased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReleased::Server(trouble) => write!(f, "not released: {trouble}"),
            NotReleased::Store {
                unmarked: true,
                error,
            } => write!(
                f,
                "the keyword is off, but the failure count could not be cleared ({error}): \
                 the next pass tries the mail once and quarantines it again should it fail; \
                 run this again once the store is writable"
            ),
            NotReleased::Store {
                unmarked: false,
                error,
            } => write!(
                f,
                "not released: the failure count could not be cleared ({error}); nothing was \
                 changed: run this again once the store is writable"
            ),
        }
    }
}

/// Releases `mails`, account by account on one connection each (IMAP), and says per mail what
/// was done. The accounts page runs this too.
pub async fn retry(config: &Config, store: &Store, mails: Vec<QuarantinedMail>) -> Vec<Retried> {
    let mut by_account: BTreeMap<String, Vec<QuarantinedMail>> = BTreeMap::new();
    for mail in mails {
        by_account
            .entry(mail.account.clone())
            .or_default()
            .push(mail);
    }
    let mut out = Vec::new();
    for mails in by_account.into_values() {
        // Opened at the first IMAP mail, and once: a server that cannot be reached is reported
        // for each of its mails without trying it again.
        let mut conn: Option<Result<Connection, Trouble>> = None;
        for mail in mails {
            let result = release(config, store, &mail, &mut conn).await;
            out.push(Retried { mail, result });
        }
        if let Some(Ok(conn)) = conn {
            conn.close().await;
        }
    }
    out
}

async fn release(
    config: &Config,
    store: &Store,
    mail: &QuarantinedMail,
    conn: &mut Option<Result<Connection, Trouble>>,
) -> Result<Released, NotReleased> {
    let released = match &mail.key {
        // Nothing marks these on the server: their quarantine is the store's alone.
        SourceKey::Pop3 { .. } | SourceKey::Graph { .. } => Released::Forgotten,
        SourceKey::Imap { .. } => {
            let opened = match conn {
                Some(opened) => opened,
                None => conn.insert(Connection::open(config, mail).await),
            };
            let unmarked = match opened {
                Ok(c) => c.unmark(mail).await,
                Err(trouble) => Err(trouble.clone()),
            };
            match unmarked.map_err(NotReleased::Server)? {
                Unmarked::Unmarked => Released::Unmarked,
                Unmarked::WasNotMarked => Released::WasNotMarked,
                Unmarked::Gone => Released::Gone,
            }
        }
    };
    match store.release_quarantined(&mail.account, &mail.key).await {
        Ok(_) => Ok(released),
        Err(error) => Err(NotReleased::Store {
            unmarked: released == Released::Unmarked,
            error,
        }),
    }
}

/// The mail's bytes from the server, exactly as the pass fetches them.
pub async fn raw(config: &Config, mail: &QuarantinedMail) -> Result<Vec<u8>, Trouble> {
    let mut conn = Connection::open(config, mail).await?;
    let raw = conn.raw(mail).await;
    conn.close().await;
    raw
}

/// `quarantine list [--account NAME] [--json]`.
pub async fn list_command(config: &Config, account: Option<&str>, json: bool) -> ExitCode {
    let store = match open_store(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let listed = store.quarantined(account).await;
    store.close().await;
    match listed {
        Ok(mails) if json => print_json(&mails),
        Ok(mails) => {
            print!("{}", crate::display::quarantine_table(&mails));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `quarantine retry KEY | --account NAME | --all`: one line per mail; exit 1 unless every
/// one was released.
pub async fn retry_command(config: &Config, which: Which) -> ExitCode {
    let store = match open_store(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = match chosen(&store, &which).await {
        Err(e) => fail(e),
        Ok(mails) if mails.is_empty() => {
            match &which {
                Which::Account(name) => println!("no mail of account {name:?} is in quarantine"),
                _ => println!("no mail is in quarantine"),
            }
            ExitCode::SUCCESS
        }
        Ok(mails) => {
            let retried = retry(config, &store, mails).await;
            for r in &retried {
                match &r.result {
                    Ok(released) => println!("{}  {}  {released}", r.mail.account, r.mail.key),
                    Err(not) => println!("{}  {}  {not}", r.mail.account, r.mail.key),
                }
            }
            if retried.iter().all(|r| r.result.is_ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    code
}

/// `quarantine export KEY [--account NAME] > mail.eml`: the bytes and nothing else on stdout.
pub async fn export_command(config: &Config, key: SourceKey, account: Option<String>) -> ExitCode {
    let store = match open_store(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let which = Which::Key {
        key: key.clone(),
        account,
    };
    let mails = chosen(&store, &which).await;
    store.close().await;
    // A key names exactly one mail, or is refused.
    let mail = match mails.map(|m| m.into_iter().next()) {
        Ok(Some(mail)) => mail,
        Ok(None) => return fail(NotChosen::NoSuchKey(key)),
        Err(e) => return fail(e),
    };
    match raw(config, &mail).await {
        Ok(bytes) => write_stdout(&bytes),
        Err(trouble) => fail(format!("{}: {trouble}", mail.key)),
    }
}

async fn open_store(config: &Config) -> Result<Store, ExitCode> {
    Store::open_at(&config.store.location()).await.map_err(fail)
}
