//! `mail2ticket oauth2 authorize NAME`: the device authorization grant (RFC 8628). It prints a
//! URL and a code, the admin approves in any browser on any machine, and the refresh token that
//! comes back is stored for the daemon. No redirect listener is needed, so it works over SSH.

use std::io::Write;
use std::process::ExitCode;

use oauth2::{
    DeviceCodeErrorResponse, DeviceCodeErrorResponseType, StandardDeviceAuthorizationResponse,
};
use oauth2::{RequestTokenError, Scope, TokenResponse};

use super::token::{classify, client, http_client};
use super::{token_file, OAuthError};
use crate::config::{AuthMethod, Config, Grant, MailProtocol, OAuth2Config};
use crate::secret::Secret;

/// What `NAME` names: an account, or `smtp` for `[smtp]`.
struct Target<'a> {
    name: &'a str,
    user: &'a str,
    oauth2: &'a OAuth2Config,
    protocol: MailProtocol,
}

fn target<'a>(config: &'a Config, name: &'a str) -> Result<Target<'a>, String> {
    let (user, auth, oauth2, protocol) = if name == "smtp" {
        let smtp = config
            .smtp
            .as_ref()
            .ok_or("there is no [smtp] section in the config")?;
        (
            smtp.user.as_deref().unwrap_or_default(),
            smtp.auth,
            smtp.oauth2.as_ref(),
            MailProtocol::Smtp,
        )
    } else {
        let account = config
            .accounts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
                format!(
                    "no account named {name:?}; the config has {names:?} (and `smtp` for [smtp])"
                )
            })?;
        (
            account.user.as_str(),
            account.auth,
            account.oauth2.as_ref(),
            account.protocol.into(),
        )
    };
    let table = if name == "smtp" {
        "[smtp]"
    } else {
        "this account"
    };
    let oauth2 = match (auth, oauth2) {
        (AuthMethod::Oauth2, Some(o)) => o,
        _ => {
            return Err(format!(
                "{table} does not use auth = \"oauth2\": nothing to authorize"
            ))
        }
    };
    if oauth2.grant != Grant::RefreshToken {
        return Err(format!(
            "{table} uses grant = \"{}\", which needs no authorization by a user; \
             `oauth2 authorize` is for grant = \"refresh_token\"",
            oauth2.grant.as_str()
        ));
    }
    Ok(Target {
        name,
        user,
        oauth2,
        protocol,
    })
}

pub async fn authorize(config: &Config, name: &str) -> ExitCode {
    match run(config, name).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &Config, name: &str) -> Result<(), String> {
    let t = target(config, name)?;
    let endpoint = t
        .oauth2
        .device_authorization_url()
        .ok_or("provider = \"custom\" needs device_authorization_url for `oauth2 authorize`")?;
    let http = http_client(config.daemon.network_timeout).map_err(|e| e.to_string())?;
    let client = client(t.oauth2).map_err(|e| e.to_string())?;
    let scopes = t.oauth2.scopes(t.protocol).into_iter().map(Scope::new);
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .map_err(|e| e.to_string())?
        .add_scopes(scopes)
        .request_async(&http)
        .await
        .map_err(|e| classify(&endpoint, t.name, e).to_string())?;

    let minutes = details.expires_in().as_secs() / 60;
    println!(
        "To let mail2ticket sign in to {} ({}), open",
        t.user, t.name
    );
    println!("  {}", details.verification_uri().as_str());
    println!(
        "in any browser, sign in as {} and enter the code {}",
        t.user,
        details.user_code().secret()
    );
    println!("Waiting up to {minutes} minutes for the approval ...");
    let _ = std::io::stdout().flush();

    let token_url = t.oauth2.token_url().unwrap_or_default();
    let answer = client
        .exchange_device_access_token(&details)
        .map_err(|e| e.to_string())?
        .request_async(&http, tokio::time::sleep, None)
        .await
        .map_err(|e| device_error(&token_url, t.name, e))?;
    let Some(refresh) = answer.refresh_token() else {
        return Err(format!(
            "the provider approved but sent no refresh token: the scope must allow offline use \
             (Microsoft: add offline_access to `scope`); the scopes asked for were {:?}",
            t.oauth2.scopes(t.protocol)
        ));
    };
    let path = t.oauth2.token_file(&config.store.path, t.name);
    token_file::write(&path, &Secret::new(refresh.secret().clone())).map_err(|e| e.to_string())?;
    println!(
        "Authorized. The refresh token is stored in {} (mode 0600); a running daemon uses it at \
         its next try.",
        path.display()
    );
    Ok(())
}

fn device_error<RE: std::error::Error + 'static>(
    endpoint: &str,
    name: &str,
    err: RequestTokenError<RE, DeviceCodeErrorResponse>,
) -> String {
    match err {
        RequestTokenError::ServerResponse(r) => match r.error() {
            DeviceCodeErrorResponseType::AccessDenied => format!(
                "the sign-in was declined in the browser; run `mail2ticket oauth2 authorize {name}` again to retry"
            ),
            DeviceCodeErrorResponseType::ExpiredToken => format!(
                "the code expired before it was approved; run `mail2ticket oauth2 authorize {name}` again"
            ),
            other => OAuthError::Refused {
                endpoint: endpoint.into(),
                code: other.as_ref().to_string(),
                description: r.error_description().cloned(),
            }
            .to_string(),
        },
        RequestTokenError::Request(e) => OAuthError::EndpointUnavailable {
            endpoint: endpoint.into(),
            detail: e.to_string(),
        }
        .to_string(),
        RequestTokenError::Parse(_, _) => OAuthError::EndpointUnavailable {
            endpoint: endpoint.into(),
            detail: "the answer is not an OAuth 2.0 token response".into(),
        }
        .to_string(),
        RequestTokenError::Other(text) => text,
    }
}
