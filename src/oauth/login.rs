//! Signing in with a token: a login refused with the cached token (it may have just expired, or
//! been revoked at the provider) gets one fresh token and one more try; refused again, the token
//! is good at the provider but the mailbox will not take it, which the admin must fix there.

use std::future::Future;

use super::{OAuthError, TokenSource};
use crate::secret::Secret;

/// Why signing in failed: getting a token, or the login itself (not refused for the token).
#[derive(Debug)]
pub enum SignInError<E> {
    OAuth(OAuthError),
    Login(E),
}

impl<E> From<OAuthError> for SignInError<E> {
    fn from(e: OAuthError) -> Self {
        SignInError::OAuth(e)
    }
}

/// Runs `attempt` with a token, and once more with a renewed one if `refusal` says the server
/// refused the login (giving the server's words).
pub async fn sign_in<T, E, Fut>(
    source: &TokenSource,
    server: &str,
    user: &str,
    mut attempt: impl FnMut(Secret) -> Fut,
    refusal: impl Fn(&E) -> Option<String>,
) -> Result<T, SignInError<E>>
where
    Fut: Future<Output = Result<T, E>>,
{
    let token = source.token().await?;
    let first = match attempt(token.clone()).await {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if refusal(&first).is_none() {
        return Err(SignInError::Login(first));
    }
    tracing::info!(
        server,
        user,
        "login refused with the cached token: one more try with a new one"
    );
    let token = source.renew(&token).await?;
    match attempt(token).await {
        Ok(v) => Ok(v),
        Err(e) => match refusal(&e) {
            Some(server_text) => Err(SignInError::OAuth(OAuthError::MailboxRefused {
                server: server.to_string(),
                user: user.to_string(),
                server_text,
            })),
            None => Err(SignInError::Login(e)),
        },
    }
}
