//! Turning fetched mails into tickets, independent of the protocol that fetched them.

pub mod panic_hook;
pub mod parse;
pub mod testmail;
pub mod thread;
