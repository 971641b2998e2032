//! One [`TokenSource`] per account (and one for `[smtp]`): it asks the token endpoint for an
//! access token before a login needs one, keeps it, and asks again ahead of its expiry. A mutex
//! around the cache makes it one request at a time, so a rotating refresh token is never used
//! twice. A login refused with the cached token gets one fresh token ([`TokenSource::renew`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet,
    RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use tracing::{debug, info, warn};

use super::{token_file, OAuthError};
use crate::config::{Grant, MailProtocol, OAuth2Config};
use crate::secret::Secret;

/// Without `expires_in` in the answer a token is kept this long.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(300);
/// A token is renewed when this share of its lifetime is left (at most [`MAX_LEAD`] before).
const LEAD_DIVISOR: u32 = 4;
const MAX_LEAD: Duration = Duration::from_secs(300);

pub(crate) type Client =
    BasicClient<EndpointNotSet, EndpointMaybeSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet>;

/// What test-fetch shows about the last token: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub endpoint: String,
    pub grant: Grant,
    pub expires_in: Option<Duration>,
    /// The provider sent a new refresh token, stored before use.
    pub rotated: bool,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

#[derive(Default)]
struct Cache {
    current: Option<Cached>,
    /// A refresh token the provider called invalid_grant: not sent again until the file holds
    /// another one (after `mail2ticket oauth2 authorize`), so a revoked authorization stops
    /// the requests instead of repeating them every backoff.
    dead_refresh_token: Option<Secret>,
    last: Option<TokenInfo>,
}

pub struct TokenSource {
    /// The account's name, or "smtp": what `mail2ticket oauth2 authorize` takes.
    name: String,
    config: OAuth2Config,
    protocol: MailProtocol,
    token_file: PathBuf,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cache>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The HTTP client for token requests: no redirects (a redirected POST could carry the client
/// secret elsewhere) and a deadline for the whole request.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, OAuthError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| OAuthError::EndpointUnavailable {
            endpoint: "(none)".into(),
            detail: format!("cannot set up HTTPS: {e}"),
        })
}

/// The oauth2 client for a config; the secret goes in the form body, which Microsoft, Google
/// and RFC 6749 token endpoints all accept.
pub(crate) fn client(config: &OAuth2Config) -> Result<Client, OAuthError> {
    let bad_url = |url: String, e: oauth2::url::ParseError| OAuthError::Refused {
        endpoint: url,
        code: "invalid URL".into(),
        description: Some(e.to_string()),
    };
    let token_url = match config.token_url() {
        Some(u) => Some(TokenUrl::new(u.clone()).map_err(|e| bad_url(u, e))?),
        None => None,
    };
    let device_url = match config.device_authorization_url() {
        Some(u) => Some(DeviceAuthorizationUrl::new(u.clone()).map_err(|e| bad_url(u, e))?),
        None => None,
    };
    let mut client = BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri_option(token_url)
        .set_device_authorization_url_option(device_url);
    if let Some(secret) = &config.resolved_client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
    }
    Ok(client)
}

/// Sorts the oauth2 crate's error into ours. Never shows a response body: a success answer that
/// failed to parse would carry a token.
pub(crate) fn classify<RE: std::error::Error + 'static>(
    endpoint: &str,
    name: &str,
    err: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> OAuthError {
    match err {
        RequestTokenError::ServerResponse(r) => {
            let description = r.error_description().cloned();
            match r.error() {
                BasicErrorResponseType::InvalidClient => OAuthError::InvalidClient {
                    endpoint: endpoint.into(),
                    description,
                },
                BasicErrorResponseType::InvalidGrant => OAuthError::InvalidGrant {
                    name: name.into(),
                    description,
                },
                BasicErrorResponseType::Extension(code)
                    if code == "temporarily_unavailable" || code == "server_error" =>
                {
                    OAuthError::EndpointUnavailable {
                        endpoint: endpoint.into(),
                        detail: format!(
                            "{code}{}",
                            description.map(|d| format!(": {d}")).unwrap_or_default()
                        ),
                    }
                }
                other => OAuthError::Refused {
                    endpoint: endpoint.into(),
                    code: other.as_ref().to_string(),
                    description,
                },
            }
        }
        RequestTokenError::Request(e) => OAuthError::EndpointUnavailable {
            endpoint: endpoint.into(),
            detail: error_chain(&e),
        },
        RequestTokenError::Parse(_, _) => OAuthError::EndpointUnavailable {
            endpoint: endpoint.into(),
            detail: "the answer is not an OAuth 2.0 token response (a proxy or an outage page?)"
                .into(),
        },
        RequestTokenError::Other(text) => OAuthError::EndpointUnavailable {
            endpoint: endpoint.into(),
            detail: text,
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl TokenSource {
    pub fn new(
        name: &str,
        config: &OAuth2Config,
        protocol: MailProtocol,
        store_path: &std::path::Path,
        timeout: Duration,
    ) -> Result<TokenSource, OAuthError> {
        Ok(TokenSource {
            name: name.to_string(),
            config: config.clone(),
            protocol,
            token_file: config.token_file(store_path, name),
            http: http_client(timeout)?,
            cache: tokio::sync::Mutex::new(Cache::default()),
        })
    }

    pub fn endpoint(&self) -> String {
        self.config.token_url().unwrap_or_default()
    }

    pub fn grant(&self) -> Grant {
        self.config.grant
    }

    /// What the last token request brought (for test-fetch).
    pub async fn last(&self) -> Option<TokenInfo> {
        self.cache.lock().await.last.clone()
    }

    /// A token valid for a while: the cached one, or a new one if it is due for renewal.
    pub async fn token(&self) -> Result<Secret, OAuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = &cache.current {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        self.fetch(&mut cache).await
    }

    /// The server refused `refused`: forget it and get a new one (unless another login already
    /// did while this one waited for the lock).
    pub async fn renew(&self, refused: &Secret) -> Result<Secret, OAuthError> {
        let mut cache = self.cache.lock().await;
        match &cache.current {
            Some(c) if c.token != *refused => return Ok(c.token.clone()),
            _ => cache.current = None,
        }
        self.fetch(&mut cache).await
    }

    async fn fetch(&self, cache: &mut Cache) -> Result<Secret, OAuthError> {
        let endpoint = self.endpoint();
        let result = self.request(cache, &endpoint).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        crate::metrics::oauth_token(&self.name, outcome);
        let (answer, rotated) = result?;
        let token = Secret::new(answer.access_token().secret().clone());
        let lifetime = answer.expires_in();
        let life = lifetime.unwrap_or(ASSUMED_LIFETIME);
        let lead = (life / LEAD_DIVISOR).min(MAX_LEAD);
        cache.current = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + life.saturating_sub(lead),
        });
        cache.last = Some(TokenInfo {
            endpoint,
            grant: self.config.grant,
            expires_in: lifetime,
            rotated,
        });
        debug!(account = %self.name, grant = self.config.grant.as_str(),
            expires_in_secs = lifetime.map(|d| d.as_secs()), rotated, "OAuth token obtained");
        Ok(token)
    }

    /// One grant request; a rotated refresh token is stored before this returns.
    async fn request(
        &self,
        cache: &mut Cache,
        endpoint: &str,
    ) -> Result<(BasicTokenResponse, bool), OAuthError> {
        let client = client(&self.config)?;
        let scopes = self
            .config
            .scopes(self.protocol)
            .into_iter()
            .map(Scope::new);
        let no_endpoint = |_| OAuthError::Refused {
            endpoint: "(none)".into(),
            code: "no token_url".into(),
            description: None,
        };
        match self.config.grant {
            Grant::ClientCredentials => {
                let answer = client
                    .exchange_client_credentials()
                    .map_err(no_endpoint)?
                    .add_scopes(scopes)
                    .request_async(&self.http)
                    .await
                    .map_err(|e| classify(endpoint, &self.name, e))?;
                Ok((answer, false))
            }
            Grant::RefreshToken => {
                let Some(stored) = token_file::read(&self.token_file)? else {
                    return Err(OAuthError::NoAuthorization {
                        name: self.name.clone(),
                        path: self.token_file.clone(),
                    });
                };
                if cache.dead_refresh_token.as_ref() == Some(&stored) {
                    return Err(OAuthError::InvalidGrant {
                        name: self.name.clone(),
                        description: Some(
                            "refused before; not sent again until it is replaced".into(),
                        ),
                    });
                }
                let refresh = RefreshToken::new(stored.expose().to_string());
                let answer = client
                    .exchange_refresh_token(&refresh)
                    .map_err(no_endpoint)?
                    .add_scopes(scopes)
                    .request_async(&self.http)
                    .await
                    .map_err(|e| classify(endpoint, &self.name, e));
                let answer = match answer {
                    Ok(a) => a,
                    Err(e) => {
                        if matches!(e, OAuthError::InvalidGrant { .. }) {
                            warn!(account = %self.name, "refresh token refused (invalid_grant): not used again");
                            cache.dead_refresh_token = Some(stored);
                        }
                        return Err(e);
                    }
                };
                let rotated = match answer.refresh_token() {
                    Some(new) if new.secret() != stored.expose() => {
                        token_file::write(&self.token_file, &Secret::new(new.secret().clone()))?;
                        info!(account = %self.name, file = %self.token_file.display(),
                            "rotated refresh token stored");
                        true
                    }
                    _ => false,
                };
                Ok((answer, rotated))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use oauth2::basic::BasicErrorResponse;
    use oauth2::StandardErrorResponse;

    use super::*;

    fn server(
        code: BasicErrorResponseType,
    ) -> RequestTokenError<std::io::Error, BasicErrorResponse> {
        RequestTokenError::ServerResponse(StandardErrorResponse::new(
            code,
            Some("AADSTS7000215: Invalid client secret provided.".into()),
            None,
        ))
    }

    #[test]
    fn provider_errors_keep_their_kind_and_words() {
        let e = classify(
            "https://t/token",
            "support",
            server(BasicErrorResponseType::InvalidClient),
        );
        assert_eq!(e.kind(), "oauth_invalid_client");
        assert!(
            e.to_string().contains("invalid_client: AADSTS7000215"),
            "{e}"
        );
        let e = classify(
            "https://t/token",
            "support",
            server(BasicErrorResponseType::InvalidGrant),
        );
        assert_eq!(e.kind(), "oauth_invalid_grant");
        assert!(
            e.to_string()
                .contains("run `mail2ticket oauth2 authorize support`"),
            "{e}"
        );
        let e = classify(
            "https://t/token",
            "support",
            server(BasicErrorResponseType::Extension(
                "temporarily_unavailable".into(),
            )),
        );
        assert!(!e.is_permanent(), "{e}");
        let e = classify(
            "https://t/token",
            "support",
            server(BasicErrorResponseType::InvalidScope),
        );
        assert_eq!(e.kind(), "oauth_refused");
        assert!(e.to_string().contains("(invalid_scope: "), "{e}");
    }
}
