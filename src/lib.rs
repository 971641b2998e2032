//! mail2ticket: turns customer e-mail fetched by IMAP or POP3 into helpdesk tickets, exactly once.
#![forbid(unsafe_code)]

pub mod account;
pub mod alerts;
pub mod backoff;
pub mod budget;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod detect;
pub mod diagnose;
pub mod display;
pub mod health;
pub mod http;
pub mod imap;
pub mod ingest;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod password_hash;
pub mod poller;
pub mod pop3;
pub mod quarantine;
pub mod reload;
pub mod secret;
pub mod signals;
pub mod smtp;
pub mod source;
pub mod store;
pub mod supervisor;
pub mod template;
pub mod tls;
pub mod web;
pub mod when;
