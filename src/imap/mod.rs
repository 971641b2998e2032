//! IMAP: connecting (TLS, STARTTLS without silent downgrade), signing in, the folder's part of
//! the ingestion pass, disposal, and waiting in IDLE.

pub mod connect;
pub mod dispose;
pub mod idle;
pub mod login;
pub mod names;
pub mod oauth;
pub mod source;
pub mod uid_set;
pub mod utf7;

pub use connect::{connect, connect_with, ImapConnection, ImapError};
