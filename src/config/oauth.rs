//! The `[account.oauth2]` and `[smtp.oauth2]` tables: how a mailbox signs in with OAuth 2.0
//! instead of a password. The provider decides the endpoints and the default scope, so a
//! Microsoft 365 or Google mailbox needs only its client and (for Microsoft app-only) its tenant.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// How a mailbox (or `[smtp]`) logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    #[default]
    Password,
    /// SASL XOAUTH2 / OAUTHBEARER with a bearer token from `[….oauth2]`.
    Oauth2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Microsoft,
    Google,
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The app's own identity (Microsoft app-only): no user, no refresh token.
    ClientCredentials,
    /// A refresh token left by `mail2ticket oauth2 authorize`, rotated as the provider wishes.
    RefreshToken,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken => "refresh_token",
        }
    }
}

/// Which protocol a token is for: Microsoft's delegated scopes differ per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailProtocol {
    Imap,
    Pop3,
    Smtp,
    /// Microsoft Graph (a `protocol = "graph"` mailbox, or `[smtp]` sending through sendMail).
    Graph,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub provider: Provider,
    /// Microsoft: the tenant id or domain (e.g. "contoso.onmicrosoft.com").
    pub tenant: Option<String>,
    pub grant: Grant,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    pub token_url: Option<String>,
    pub device_authorization_url: Option<String>,
    /// Microsoft Graph's base URL for `protocol = "graph"`; default [`GRAPH_URL`]. `http` only
    /// on loopback, as the OAuth endpoints.
    pub graph_url: Option<String>,
    /// Space-separated; default per provider, grant and protocol (see [`OAuth2Config::scopes`]).
    pub scope: Option<String>,
    /// Where the refresh token lives; default `<store dir>/oauth2/<account>.token`.
    pub token_file: Option<PathBuf>,
    /// When the client secret expires (a TOML date, `2027-03-01`): alerts warn 14 and 3 days
    /// ahead. Entra shows it beside the secret.
    #[serde(default, deserialize_with = "toml_date")]
    pub client_secret_expires: Option<chrono::NaiveDate>,
    /// Filled in by validation from whichever client secret source is set.
    #[serde(skip)]
    pub resolved_client_secret: Option<Secret>,
}

/// A TOML local date (`2027-03-01`, unquoted) or the same text quoted.
fn toml_date<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono::NaiveDate>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Date(toml::value::Datetime),
        Text(String),
    }
    let text = match Written::deserialize(d)? {
        Written::Date(date) => date.to_string(),
        Written::Text(text) => text,
    };
    chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not a date: write the day the secret expires, e.g. 2027-03-01"
            ))
        })
}

const MICROSOFT_LOGIN: &str = "https://login.microsoftonline.com";

/// Microsoft Graph v1.0, where a `protocol = "graph"` mailbox lives.
pub const GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";

/// What an app-only Graph token asks for: every application permission granted to the app.
const GRAPH_APP_SCOPE: &str = "https://graph.microsoft.com/.default";

impl OAuth2Config {
    /// Microsoft's tenant for delegated sign-in when none is given: any work or school account.
    fn tenant_or_default(&self) -> &str {
        self.tenant.as_deref().unwrap_or("organizations")
    }

    pub fn token_url(&self) -> Option<String> {
        match self.provider {
            Provider::Microsoft => Some(format!(
                "{MICROSOFT_LOGIN}/{}/oauth2/v2.0/token",
                self.tenant_or_default()
            )),
            Provider::Google => Some("https://oauth2.googleapis.com/token".into()),
            Provider::Custom => self.token_url.clone(),
        }
        .map(|default| self.token_url.clone().unwrap_or(default))
    }

    pub fn device_authorization_url(&self) -> Option<String> {
        match self.provider {
            Provider::Microsoft => Some(format!(
                "{MICROSOFT_LOGIN}/{}/oauth2/v2.0/devicecode",
                self.tenant_or_default()
            )),
            Provider::Google => Some("https://oauth2.googleapis.com/device/code".into()),
            Provider::Custom => self.device_authorization_url.clone(),
        }
        .map(|default| self.device_authorization_url.clone().unwrap_or(default))
    }

    /// The Graph base URL without a trailing slash: `graph_url`, else [`GRAPH_URL`].
    pub fn graph_url(&self) -> String {
        self.graph_url
            .as_deref()
            .unwrap_or(GRAPH_URL)
            .trim_end_matches('/')
            .to_string()
    }

    /// The scopes to ask for: `scope` if set, else the provider's for this grant and protocol.
    pub fn scopes(&self, protocol: MailProtocol) -> Vec<String> {
        if let Some(scope) = &self.scope {
            return scope.split_whitespace().map(str::to_string).collect();
        }
        let defaults: &[&str] = match (self.provider, self.grant, protocol) {
            // Graph's app-only tokens, from Microsoft or a stand-in of it (the lab's).
            (
                Provider::Microsoft | Provider::Custom,
                Grant::ClientCredentials,
                MailProtocol::Graph,
            ) => &[GRAPH_APP_SCOPE],
            (Provider::Microsoft, Grant::RefreshToken, MailProtocol::Graph) => &[
                "https://graph.microsoft.com/Mail.ReadWrite",
                "https://graph.microsoft.com/Mail.Send",
                "offline_access",
            ],
            // App-only tokens carry the app roles granted to the app; ".default" asks for all.
            (Provider::Microsoft, Grant::ClientCredentials, _) => {
                &["https://outlook.office365.com/.default"]
            }
            (Provider::Microsoft, Grant::RefreshToken, MailProtocol::Imap) => &[
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "offline_access",
            ],
            (Provider::Microsoft, Grant::RefreshToken, MailProtocol::Pop3) => &[
                "https://outlook.office.com/POP.AccessAsUser.All",
                "offline_access",
            ],
            (Provider::Microsoft, Grant::RefreshToken, MailProtocol::Smtp) => {
                &["https://outlook.office.com/SMTP.Send", "offline_access"]
            }
            (Provider::Google, _, _) => &["https://mail.google.com/"],
            (Provider::Custom, _, _) => &[],
        };
        defaults.iter().map(|s| s.to_string()).collect()
    }

    /// The refresh token file: `token_file`, else `<store dir>/oauth2/<name>.token`.
    pub fn token_file(&self, store_path: &Path, name: &str) -> PathBuf {
        self.token_file.clone().unwrap_or_else(|| {
            store_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("oauth2")
                .join(format!("{name}.token"))
        })
    }
}
