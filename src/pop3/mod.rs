//! POP3: the client (its commands, one per method), signing in, and the maildrop's part of the
//! ingestion pass.

pub mod client;
pub mod login;
pub mod source;
