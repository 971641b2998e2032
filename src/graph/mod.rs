//! Microsoft 365 mailboxes through Microsoft Graph (`protocol = "graph"`, and `[smtp] protocol =
//! "graph"`): for tenants where IMAP, POP3 and SMTP AUTH are switched off, and for shared
//! mailboxes, which have no password. The app signs in with its own identity (app-only OAuth 2.0,
//! application permissions Mail.ReadWrite and Mail.Send); see docs/oauth2.md.
//!
//! - [`client`]: requests as the app: the token, `$batch`, and throttling (429 and 503 with
//!   `Retry-After` hold back every request of that mailbox; at most 4 at a time per mailbox).
//! - [`error`]: what failed, of which kind, with what to do.
//! - [`folders`]: display-name paths ("Posteingang/Shop") to folder ids.
//! - [`source`]: the pass's [`Source`](crate::source::Source): the folder listed by delta query,
//!   mails fetched as MIME (`$value`), moved or deleted once their tickets are durable.
//! - [`send`]: replies through sendMail, as MIME, so their headers stay exactly ours.
//! - [`roles`]: the application permissions a token carries, for test-fetch and test-send.
//!
//! Reference: <https://learn.microsoft.com/en-us/graph/api/resources/mail-api-overview>.

pub mod client;
pub mod error;
pub mod folders;
pub mod roles;
pub mod send;
pub mod source;

pub use client::GraphClient;
pub use error::GraphError;
