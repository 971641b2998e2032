//! The ingestion pass, the same for every protocol: list the mails, skip what is recorded as
//! skipped, fetch new mails in batches, parse them off the async threads, store each batch in one
//! durable commit (mail by mail with quarantine when the batch fails), and only then let the
//! committed mails leave the server. See [`pass`] for the order of things, [`Source`] for what a
//! protocol provides.

pub mod error;
pub mod holding;
pub mod pass;
pub mod report;

use std::collections::HashMap;
use std::future::Future;

pub use crate::ingest::SourceKey;
pub use error::{ErrorKind, SourceError};
pub use holding::Holding;
pub use pass::{run_pass, PassContext};
pub use report::PassReport;

use crate::config::Protocol;
use crate::store::ProcessedState;

/// One mail as the listing shows it.
#[derive(Debug, Clone)]
pub struct Listed<Id> {
    pub id: Id,
    pub key: SourceKey,
    pub size: u64,
    /// Marked on the server as quarantined (an IMAP keyword); POP3 keeps that in the store.
    pub quarantined: bool,
}

/// The mails on the server at the start of a pass.
pub struct Listing<Id> {
    /// What every source key of this listing starts with (the store lists processed keys by it).
    pub prefix: String,
    /// IMAP: the folder's UIDVALIDITY, which the pass keeps in the store to say when it changed.
    pub validity: Option<FolderValidity>,
    pub mails: Vec<Listed<Id>>,
}

/// A folder's UIDVALIDITY as the server gave it at SELECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderValidity {
    /// The configured folder name (the one in the source keys).
    pub folder: String,
    pub uidvalidity: u32,
}

/// What marking a quarantined mail on the server did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantine {
    /// Marked (an IMAP keyword): the listing shows it quarantined from now on.
    Marked,
    /// The server did not take the mark: the mail is tried again next pass.
    NotMarked,
    /// The protocol has nothing to mark a mail with (POP3): the store is to remember it.
    Unmarkable,
}

/// What ending a pass left for the store's books.
#[derive(Debug, Default)]
pub struct Finished {
    /// Mails that left the server now (POP3: the DELEs that QUIT committed).
    pub gone: Vec<SourceKey>,
    /// Keys the store no longer needs (POP3 keep mode: UIDLs no longer on the server, so the
    /// table does not grow for ever).
    pub forget: Vec<SourceKey>,
}

/// One fetched mail.
#[derive(Debug)]
pub struct FetchedMail<Id> {
    pub id: Id,
    pub raw: Vec<u8>,
    /// When the server received it, where the protocol says (IMAP's INTERNALDATE; POP3 has
    /// nothing of the kind). What the old-mail rule goes by when the mail's Date is absurd.
    pub arrived: Option<chrono::DateTime<chrono::Utc>>,
}

/// Fetched mails.
pub type Fetched<Id> = Vec<FetchedMail<Id>>;

/// The most of a mail's header [`Source::fetch_headers`] fetches. A header is rarely more than
/// a few dozen kilobytes; one that is longer is cut here, so that a hostile mail cannot make a
/// header as costly as the mail that was too large to fetch.
pub const HEADER_LIMIT: u64 = 128 * 1024;

/// What a protocol does for the pass: its own commands, nothing of the pipeline and nothing of
/// the store. It returns facts (the listing, the mails gone, whether a mark took) and the pass
/// keeps the books.
pub trait Source {
    /// How the protocol names a mail within this session (an IMAP UID; a POP3 message number
    /// with its UIDL).
    type Id: Clone + Send + Sync + 'static;

    const PROTOCOL: Protocol;

    /// Every mail in the folder or maildrop.
    fn list(&mut self) -> impl Future<Output = Result<Listing<Self::Id>, SourceError>> + Send;

    /// The raw bytes of `ids`; a mail that vanished meanwhile is simply absent.
    fn fetch(
        &mut self,
        ids: &[Self::Id],
    ) -> impl Future<Output = Result<Fetched<Self::Id>, SourceError>> + Send;

    /// The header alone of each of `ids`, at most [`HEADER_LIMIT`] bytes of it, with the empty
    /// line that ends it: for mails too large to fetch whole. A mail that vanished meanwhile is
    /// simply absent.
    fn fetch_headers(
        &mut self,
        ids: &[Self::Id],
    ) -> impl Future<Output = Result<Fetched<Self::Id>, SourceError>> + Send;

    /// Whether the server gives a mail's header alone (a POP3 server without TOP does not).
    fn fetches_headers(&self) -> bool;

    /// Moves or deletes mails whose tickets are committed. Only [`pass::dispose_committed`]
    /// calls it. Returns the mails that are gone now (POP3's go at [`Source::finish`]); trouble
    /// that leaves the mails in place for the next pass is put in `report`.
    fn dispose(
        &mut self,
        ids: &[Self::Id],
        report: &mut PassReport,
    ) -> impl Future<Output = Result<Vec<Self::Id>, SourceError>> + Send;

    /// Marks a mail whose storage failed too often so that it is skipped from now on
    /// (`attempts` is for the log).
    fn quarantine(
        &mut self,
        mail: &Self::Id,
        attempts: u32,
    ) -> impl Future<Output = Result<Quarantine, SourceError>> + Send;

    /// Whether [`Source::finish`] forgets the keys no longer on the server (POP3 with `action =
    /// "keep"`, whose record is then no larger than the maildrop): it is then given every key
    /// the store holds under the listing's prefix, not only the listed ones.
    fn forgets_gone_keys(&self) -> bool {
        false
    }

    /// Ends the pass (POP3: QUIT commits the deletions). `processed` is what the store knew at
    /// the start: the listed mails' records and the mails held by their header, or every record
    /// under the listing's prefix where the source forgets gone keys. Returns what the pass is to
    /// write in the store's books.
    fn finish(
        self,
        processed: &HashMap<SourceKey, ProcessedState>,
    ) -> impl Future<Output = Result<Finished, SourceError>> + Send;

    /// The source key of a listed mail.
    fn key(&self, id: &Self::Id) -> SourceKey;
}
