//! What can go wrong on the way to a token, each case with its own kind: the caller must tell a
//! wrong client secret (fix the config) from a revoked authorization (authorize again) from a
//! token endpoint that is down (retry like any network error).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider does not accept the client id or secret.
    #[error(
        "the token endpoint {endpoint} refused the client (invalid_client{}): the client secret \
         is wrong or expired (Azure client secrets expire): create a new one and set \
         client_secret, client_secret_file or client_secret_env",
        said(.description)
    )]
    InvalidClient {
        endpoint: String,
        description: Option<String>,
    },
    /// The refresh token was revoked, expired, or belongs to another client.
    #[error(
        "the authorization for {name} was revoked or has expired (invalid_grant{}): \
         run `mail2ticket oauth2 authorize {name}`",
        said(.description)
    )]
    InvalidGrant {
        name: String,
        description: Option<String>,
    },
    /// A refresh_token grant without a stored refresh token.
    #[error(
        "no authorization yet for {name} ({} does not exist): run `mail2ticket oauth2 authorize {name}`",
        path.display()
    )]
    NoAuthorization { name: String, path: PathBuf },
    /// The token endpoint cannot be reached or answers with a server error: retried with backoff.
    #[error("the token endpoint {endpoint} is unavailable: {detail}")]
    EndpointUnavailable { endpoint: String, detail: String },
    /// Any other refusal by the provider (unauthorized_client, invalid_scope ...).
    #[error(
        "the token endpoint {endpoint} refused the request ({code}{}): check the app \
         registration, grant and scope",
        said(.description)
    )]
    Refused {
        endpoint: String,
        code: String,
        description: Option<String>,
    },
    /// The refresh token file cannot be read or written.
    #[error("refresh token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The provider issued a token, but the mail server refused the login with it (twice: the
    /// second time with a fresh token).
    #[error(
        "{server} refused the login of {user} with a token the provider issued (server said: \
         {server_text}); for Microsoft app-only sign-in this means the app's service principal \
         has no access to this mailbox: run New-ServicePrincipal and Add-MailboxPermission in \
         Exchange Online PowerShell (see docs/oauth2.md)"
    )]
    MailboxRefused {
        server: String,
        user: String,
        server_text: String,
    },
}

fn said(d: &Option<String>) -> String {
    match d {
        Some(d) if !d.trim().is_empty() => format!(": {}", d.trim()),
        _ => String::new(),
    }
}

impl OAuthError {
    /// A short, stable name for /healthz, the `errors` metric and test-fetch.
    pub fn kind(&self) -> &'static str {
        match self {
            OAuthError::InvalidClient { .. } => "oauth_invalid_client",
            OAuthError::InvalidGrant { .. } => "oauth_invalid_grant",
            OAuthError::NoAuthorization { .. } => "oauth_no_authorization",
            OAuthError::EndpointUnavailable { .. } => "oauth_endpoint_unavailable",
            OAuthError::Refused { .. } => "oauth_refused",
            OAuthError::TokenFile { .. } => "oauth_token_file",
            OAuthError::MailboxRefused { .. } => "oauth_mailbox_refused",
        }
    }

    /// Errors that only an admin can fix: retried rarely, never in a tight loop.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, OAuthError::EndpointUnavailable { .. })
    }
}
