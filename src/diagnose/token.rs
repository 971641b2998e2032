//! The "token" step of test-fetch and test-send for `auth = "oauth2"`: which endpoint and grant,
//! how long the token lives, or the provider's error code and description. Never the token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Fail, Report};
use crate::config::{MailProtocol, OAuth2Config};
use crate::oauth::{OAuthError, TokenSource};
use crate::secret::Secret;

/// Runs the step; `name` is the account's name or "smtp". Returns the token and its source,
/// for steps that make more requests with it (Graph's).
pub async fn token_step(
    report: &mut Report,
    name: &str,
    oauth2: &OAuth2Config,
    protocol: MailProtocol,
    store_path: &Path,
    timeout: Duration,
) -> Option<(Secret, Arc<TokenSource>)> {
    let step = if name == "smtp" {
        "SMTP token"
    } else {
        "token"
    };
    report
        .run(step, async {
            let source = TokenSource::new(name, oauth2, protocol, store_path, timeout)
                .map(Arc::new)
                .map_err(|e| fail(&e))?;
            let token = source.token().await.map_err(|e| fail(&e))?;
            let info = source.last().await;
            let expiry = match info.as_ref().and_then(|i| i.expires_in) {
                Some(d) => format!("expires in {} s", d.as_secs()),
                None => "no expiry given".to_string(),
            };
            let rotated = if info.is_some_and(|i| i.rotated) {
                "; the provider rotated the refresh token, the new one is stored"
            } else {
                ""
            };
            Ok((
                (token, source.clone()),
                format!(
                    "{} grant at {}: {expiry}{rotated}",
                    oauth2.grant.as_str(),
                    source.endpoint()
                ),
            ))
        })
        .await
}

fn fail(e: &OAuthError) -> Fail {
    Fail::new(e.to_string())
}

/// The hint for a login refused with a token the provider just issued.
pub const REFUSED_TOKEN_HINT: &str = "the provider issued the token but the mail server refused it: for Microsoft \
     app-only sign-in the app's service principal has no access to this mailbox (New-ServicePrincipal and \
     Add-MailboxPermission in Exchange Online PowerShell, see docs/oauth2.md); check `user` too";
