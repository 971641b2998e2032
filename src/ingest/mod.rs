//! Turning fetched mails into tickets, independent of the protocol that fetched them.

pub mod order;
pub mod parse;
pub mod testmail;
pub mod thread;
