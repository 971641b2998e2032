//! OAuth 2.0 sign-in for mailboxes and for `[smtp]`: tokens from the provider's token endpoint
//! ([`token`]), the refresh token kept on disk ([`token_file`]), the SASL strings that carry a
//! token to the mail server ([`sasl`]), the device authorization grant behind
//! `mail2ticket oauth2 authorize` ([`device`]), and the errors, each of its own kind ([`error`]).
//!
//! The module is `oauth`, not `oauth2`, so that it never shadows the `oauth2` crate it uses.

pub mod device;
pub mod error;
pub mod login;
pub mod sasl;
pub mod token;
pub mod token_file;

pub use error::OAuthError;
pub use token::{TokenInfo, TokenSource};
