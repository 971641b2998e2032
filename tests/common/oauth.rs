//! The lab's OAuth 2.0 provider (scripts/mail-lab.d/token-server.py) seen from a test: register
//! a client for a mailbox, take tokens, read its counters. Dovecot asks this provider about every
//! bearer login, so a token it issues opens exactly the mailbox it was issued for.
//!
//! A few lines of HTTP/1.1 by hand: the provider is a loopback fixture answering small JSON
//! bodies, and no HTTP client crate is otherwise needed by the project.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Lab;

pub struct TokenProvider {
    port: u16,
}

impl TokenProvider {
    pub fn of(lab: &Lab) -> TokenProvider {
        TokenProvider {
            port: lab.port("MAIL_LAB_OAUTH_PORT"),
        }
    }

    /// The provider's base URL, as an account's `token_url` would name it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Registers (or replaces) a confidential client whose tokens open `username`'s mailbox and
    /// live `ttl_secs` seconds.
    pub async fn register(&self, client_id: &str, secret: &str, username: &str, ttl_secs: u64) {
        let (status, body) = self
            .post_json(
                "/admin/client",
                &json!({"client_id": client_id, "client_secret": secret,
                        "username": username, "ttl": ttl_secs}),
            )
            .await;
        assert_eq!(status, 200, "registering a client: {body}");
    }

    /// A token by the client-credentials grant; panics unless the provider issues one.
    pub async fn client_credentials(&self, client_id: &str, secret: &str) -> String {
        let (status, body) = self
            .post_form(
                "/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                ],
            )
            .await;
        assert_eq!(status, 200, "client_credentials grant: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// The provider's counters: grants per client and grant type, introspections.
    pub async fn stats(&self) -> Value {
        let (status, body) = self.request("GET", "/admin/stats", "", "").await;
        assert_eq!(status, 200);
        body
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        self.request(
            "POST",
            path,
            "application/x-www-form-urlencoded",
            &body.join("&"),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, "application/json", &body.to_string())
            .await
    }

    async fn request(&self, method: &str, path: &str, kind: &str, body: &str) -> (u16, Value) {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the lab's token provider on port {} does not answer ({e}): run `scripts/mail-lab up`",
                    self.port
                )
            });
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(body.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8(answer).expect("UTF-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).expect("JSON body"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The XOAUTH2 initial response (Google's and Microsoft's SASL mechanism), before base64.
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// Turns a lab account section (from `imap_account`/`pop3_account`) into one that signs in with
/// OAuth 2.0 at the lab's provider: the password goes, `auth = "oauth2"` and the table come in.
/// `oauth2_extra` are more keys of the table (e.g. a `token_file`).
pub fn oauth_account(
    lab: &Lab,
    provider: &TokenProvider,
    section: String,
    grant: &str,
    client_id: &str,
    secret: &str,
    oauth2_extra: &str,
) -> String {
    let without_password = section.replace(&format!("password = \"{}\"\n", lab.password()), "");
    format!(
        "{without_password}auth = \"oauth2\"\n{}",
        oauth2_table("account", provider, grant, client_id, secret, oauth2_extra)
    )
}

/// An `[account.oauth2]` / `[smtp.oauth2]` table for the lab's provider.
pub fn oauth2_table(
    owner: &str,
    provider: &TokenProvider,
    grant: &str,
    client_id: &str,
    secret: &str,
    extra: &str,
) -> String {
    format!(
        "[{owner}.oauth2]\nprovider = \"custom\"\ngrant = \"{grant}\"\nclient_id = \"{client_id}\"\n\
         client_secret = \"{secret}\"\ntoken_url = \"{url}/token\"\ndevice_authorization_url = \"{url}/devicecode\"\n{extra}\n",
        url = provider.url()
    )
}

/// `[smtp]` on the lab's submission port (STARTTLS) signing in as `user` with a token.
pub fn oauth_smtp(
    lab: &Lab,
    provider: &TokenProvider,
    user: &str,
    client_id: &str,
    secret: &str,
) -> String {
    format!(
        "[smtp]\nhost = \"localhost\"\nport = {}\nencryption = \"starttls\"\nca_file = \"{}\"\ntimeout = \"10s\"\n\
         message_id_domain = \"tickets.example.test\"\nuser = \"{user}\"\nauth = \"oauth2\"\n{}",
        lab.port("MAIL_LAB_SUBMISSION_PORT"),
        lab.ca(),
        oauth2_table("smtp", provider, "client_credentials", client_id, secret, "")
    )
}

/// Everything in `text` that looks like a token of the lab's provider or a SASL bearer message
/// (plain or base64): a secret that must never be logged.
pub fn leaked_secrets(text: &str, secrets: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = secrets
        .iter()
        .filter(|s| text.contains(*s))
        .map(|s| s.to_string())
        .collect();
    for marker in ["at-", "rt-"] {
        for (i, _) in text.match_indices(marker) {
            let token: String = text[i + 3..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            // The provider's tokens carry 32 random characters; words such as "at-least" are short.
            if token.len() >= 30 {
                found.push(format!("{marker}{token}"));
            }
        }
    }
    // base64 of "user=" (XOAUTH2) and "n,a=" (OAUTHBEARER), and the plain bearer marker.
    for marker in ["dXNlcj1", "bixhPS", "auth=Bearer"] {
        if text.contains(marker) {
            found.push(marker.to_string());
        }
    }
    found
}

impl TokenProvider {
    /// A refresh token for `client_id` opening `username`'s mailbox, as an approved device flow
    /// leaves behind.
    pub async fn refresh_token(&self, client_id: &str, username: &str) -> String {
        let (status, body) = self
            .post_json(
                "/admin/refresh",
                &json!({"client_id": client_id, "username": username}),
            )
            .await;
        assert_eq!(status, 200, "issuing a refresh token: {body}");
        body["refresh_token"].as_str().unwrap().to_string()
    }

    /// How many tokens `client_id` got by `grant`.
    pub async fn grants(&self, client_id: &str, grant: &str) -> u64 {
        self.stats().await["grants"][client_id][grant]
            .as_u64()
            .unwrap_or(0)
    }
}
