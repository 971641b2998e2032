//! IMAP: connecting (TLS, STARTTLS without silent downgrade), and the ingestion pass.

pub mod connect;
pub mod dispose;
pub mod idle;
pub mod names;
pub mod oauth;
pub mod pass;
pub mod utf7;

pub use connect::{connect, connect_with, ImapConnection, ImapError};
