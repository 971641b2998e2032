//! POP3: the client (its commands, one per method, over its own transport, reply parsing,
//! authentication and pipelining), signing in, and the maildrop's part of the ingestion pass.

mod auth;
pub mod client;
pub mod error;
pub mod login;
mod pipeline;
mod response;
pub mod source;
mod transport;

#[cfg(test)]
mod test_server;
