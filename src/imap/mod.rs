//! IMAP: connecting (TLS, STARTTLS without silent downgrade), signing in, the folder's part of
//! the ingestion pass, disposal, the quarantine mark, and waiting in IDLE.

pub mod connect;
pub mod dispose;
pub mod error;
pub mod flagged_wait;
pub mod idle;
pub mod login;
pub mod names;
pub mod oauth;
pub mod quarantine;
pub mod source;
pub mod uid_set;
pub mod utf7;
pub mod wire;

pub use error::ImapError;
pub use login::{connect, connect_with, ImapConnection};
pub use wire::ImapSession;
