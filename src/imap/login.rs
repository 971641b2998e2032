//! Signing in to the account's IMAP server: a password login, or with `auth = "oauth2"` the
//! account's token (renewed once if the server refuses it).

use super::{connect, connect_with, ImapConnection, ImapError};
use crate::account::AccountRuntime;
use crate::source::SourceError;

/// Connects and logs in, with a token when the account uses OAuth 2.0.
pub async fn sign_in(rt: &AccountRuntime) -> Result<ImapConnection, SourceError> {
    let a = &rt.account;
    let Some(tokens) = &rt.tokens else {
        return Ok(connect(a, rt.tls.clone(), rt.timeout).await?);
    };
    let server = format!("{}:{}", a.host, a.port());
    Ok(crate::oauth::login::sign_in(
        tokens,
        &server,
        &a.user,
        |token| async move { connect_with(a, rt.tls.clone(), rt.timeout, Some(&token)).await },
        |e| match e {
            ImapError::AuthRejected { server, .. } => Some(server.clone()),
            _ => None,
        },
    )
    .await?)
}
