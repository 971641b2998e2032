//! Turning fetched mails into tickets, independent of the protocol that fetched them.

pub mod bounce;
pub mod customer;
pub mod order;
pub mod outcome;
pub mod panic_hook;
pub mod parse;
pub mod same_message;
pub mod testmail;
pub mod thread;
