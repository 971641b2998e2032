//! Rules of `auth = "oauth2"` and its `[account.oauth2]` / `[smtp.oauth2]` table: what each
//! provider needs, so a setup mistake is named by check-config instead of by a failed login.

use std::path::Path;

use super::{Checker, Key};
use crate::config::{AuthMethod, Grant, OAuth2Config, PasswordSource, Provider};
use crate::secret::Secret;

/// Where the table sits and what it signs in to.
pub struct Place<'a> {
    pub at: Key,
    /// `account[N]` or `smtp`, as `[account.oauth2]` / `[smtp.oauth2]` is spelled in messages.
    pub table_name: &'static str,
    /// The name `mail2ticket oauth2 authorize NAME` takes.
    pub name: &'a str,
    pub store_path: &'a Path,
}

pub fn check(
    c: &mut Checker,
    place: &Place,
    auth: AuthMethod,
    oauth2: &mut Option<OAuth2Config>,
    passwords: &PasswordSource,
) {
    let at = &place.at;
    let table = place.table_name;
    let Some(o) = oauth2 else {
        if auth == AuthMethod::Oauth2 {
            c.error(
                at.clone().field("auth"),
                format!("auth = \"oauth2\" needs a [{table}.oauth2] table with provider, grant and client_id"),
            );
        }
        return;
    };
    let key = |f: &'static str| at.clone().table("oauth2").field(f);
    if table == "account" && place.name == "smtp" {
        c.error(
            at.clone().field("name"),
            "\"smtp\" names [smtp] in `mail2ticket oauth2 authorize smtp`: give this OAuth account another name",
        );
    }
    if auth == AuthMethod::Password {
        c.error(
            at.clone().table("oauth2"),
            "is set but auth is \"password\": set auth = \"oauth2\" to sign in with it, or remove the table",
        );
        return;
    }
    for (set, field) in [
        (passwords.password.is_some(), "password"),
        (passwords.password_file.is_some(), "password_file"),
        (passwords.password_env.is_some(), "password_env"),
    ] {
        if set {
            c.error(
                at.clone().field(field),
                "not used with auth = \"oauth2\" (the token replaces the password): remove it",
            );
        }
    }
    c.non_empty(key("client_id"), &o.client_id);
    o.resolved_client_secret = client_secret(c, &key, o);

    match (o.provider, o.grant) {
        (Provider::Microsoft, Grant::ClientCredentials) => match o.tenant.as_deref().map(str::trim) {
            None | Some("") => c.error(
                key("tenant"),
                "missing: Microsoft app-only sign-in (client_credentials) needs the tenant id or domain, e.g. \"contoso.onmicrosoft.com\"",
            ),
            Some(t) if ["common", "organizations", "consumers"].contains(&t.to_ascii_lowercase().as_str()) => c.error(
                key("tenant"),
                format!("{t:?} cannot issue app-only tokens: name your tenant id or domain, e.g. \"contoso.onmicrosoft.com\""),
            ),
            Some(_) => {}
        },
        (Provider::Google, Grant::ClientCredentials) => c.error(
            key("grant"),
            format!(
                "Google has no client_credentials grant for mail: use grant = \"refresh_token\" and run `mail2ticket oauth2 authorize {}`",
                place.name
            ),
        ),
        _ => {}
    }
    if o.provider != Provider::Microsoft && o.tenant.is_some() {
        c.warning(
            key("tenant"),
            "ignored: only provider = \"microsoft\" has tenants",
        );
    }
    if o.provider == Provider::Custom && o.token_url.is_none() {
        c.error(
            key("token_url"),
            "missing: provider = \"custom\" needs the token endpoint, e.g. \"https://login.example.com/oauth2/token\"",
        );
    }
    if o.grant == Grant::ClientCredentials && o.resolved_client_secret.is_none() {
        c.error(
            key("client_secret"),
            "missing: the client_credentials grant signs in with the app's secret; set one of client_secret, client_secret_file or client_secret_env",
        );
    }
    if o.provider == Provider::Google && o.resolved_client_secret.is_none() {
        c.error(
            key("client_secret"),
            "missing: Google's token endpoint wants the OAuth client's secret as well; set one of client_secret, client_secret_file or client_secret_env",
        );
    }
    for (field, url) in [
        ("token_url", &o.token_url),
        ("device_authorization_url", &o.device_authorization_url),
        ("graph_url", &o.graph_url),
    ] {
        if let Some(url) = url {
            if let Err(e) = endpoint_url(url) {
                c.error(key(field), e);
            }
        }
    }
    if o.scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
        c.error(
            key("scope"),
            "empty: leave scope out for the provider's default, or name the scopes separated by spaces",
        );
    }
    if o.grant == Grant::RefreshToken
        && o.token_file.is_none()
        && place.store_path.as_os_str().is_empty()
    {
        // The default lives beside the SQLite file; a PostgreSQL store has no folder here.
        c.error(
            key("token_file"),
            "set token_file: with [store] url there is no store folder to keep the refresh token in",
        );
    } else if o.grant == Grant::RefreshToken {
        let file = o.token_file(place.store_path, place.name);
        if !file.exists() {
            c.warning(
                key("grant"),
                format!(
                    "no authorization yet ({} does not exist): run `mail2ticket oauth2 authorize {}`",
                    file.display(),
                    place.name
                ),
            );
        }
    }
}

/// Exactly none or one of client_secret / client_secret_file / client_secret_env, resolved.
fn client_secret(
    c: &mut Checker,
    key: &dyn Fn(&'static str) -> Key,
    o: &OAuth2Config,
) -> Option<Secret> {
    let given = [
        o.client_secret.is_some(),
        o.client_secret_file.is_some(),
        o.client_secret_env.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    if given > 1 {
        c.error(
            key("client_secret"),
            "set at most one of client_secret, client_secret_file, client_secret_env",
        );
        return None;
    }
    if let Some(s) = &o.client_secret {
        return Some(s.clone());
    }
    if let Some(var) = &o.client_secret_env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                c.error(
                    key("client_secret_env"),
                    format!("environment variable {var} is not set or empty"),
                );
                None
            }
        };
    }
    let path = o.client_secret_file.as_ref()?;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            super::warn_if_world_readable(c, key("client_secret_file"), path);
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                c.error(
                    key("client_secret_file"),
                    format!("{} is empty", path.display()),
                );
                None
            } else {
                Some(Secret::new(secret))
            }
        }
        Err(e) => {
            c.error(
                key("client_secret_file"),
                format!("cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

/// Token endpoints are reached over HTTPS; plain HTTP only on this machine (a local proxy or a
/// test provider), since the request carries the client secret.
fn endpoint_url(url: &str) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !["127.0.0.1", "localhost", "[::1]"].contains(&host) {
            return Err(format!(
                "{url:?} is plain HTTP to another machine, which would send the client secret or a token unencrypted: use https://"
            ));
        }
        rest
    } else {
        return Err(format!("{url:?} is not an https:// URL"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert!(super::endpoint_url("https://login.example.com/token").is_ok());
        assert!(super::endpoint_url("http://127.0.0.1:8080/token").is_ok());
        assert!(super::endpoint_url("http://localhost/token").is_ok());
        assert!(super::endpoint_url("http://login.example.com/token").is_err());
        assert!(super::endpoint_url("ftp://x/").is_err());
        assert!(super::endpoint_url("https:///token").is_err());
    }
}
