//! Turning fetched mails into tickets, independent of the protocol that fetched them.

pub mod bounce;
pub mod customer;
pub mod extent;
pub mod incoming;
pub mod mail_rules;
pub mod order;
pub mod outcome;
pub mod panic_hook;
pub mod parse;
pub mod reply;
pub mod route;
pub mod same_message;
pub mod source_key;
pub mod testmail;
pub mod thread;
pub mod ticket_rules;

pub use extent::Extent;
pub use incoming::Incoming;
pub use route::{route, Decision, Known};
pub use source_key::SourceKey;
pub use ticket_rules::TicketRules;
