//! The config file's shape: the names here are the user-facing contract (see config/example.toml).
//! Every table rejects unknown keys so a typo is an error, not a silently ignored setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::oauth::{AuthMethod, MailProtocol, OAuth2Config};
use crate::secret::Secret;

pub const MAX_ACCOUNTS: usize = 20;
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    pub tickets: Option<TicketsConfig>,
    pub smtp: Option<SmtpConfig>,
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountConfig>,
    /// The accounts page; off unless the section is there (see docs/web.md).
    pub web: Option<WebConfig>,
    /// Alerts to the shop owner; off unless the section is there (see docs/operations.md).
    pub alerts: Option<AlertsConfig>,
}

/// `[alerts]`: who hears of trouble that lasts (an account failing, the store, quarantined or
/// too large mails, an expiring client secret), by mail through `[smtp]` and/or a webhook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Alert mails go to these addresses, and only to these.
    #[serde(default)]
    pub to: Vec<String>,
    /// A failing state is reported once it has lasted this long.
    #[serde(default = "default_alert_after", with = "humantime_serde")]
    pub after: Duration,
    /// A JSON POST per alert, for when mail itself is broken. A secret: such URLs often carry
    /// the token of a push service (ntfy, a chat's incoming webhook).
    pub webhook: Option<Secret>,
    #[serde(default)]
    pub language: AlertLanguage,
    /// The alert mails' From; default the first active account's address.
    pub from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertLanguage {
    #[default]
    En,
    De,
}

fn default_alert_after() -> Duration {
    Duration::from_secs(15 * 60)
}

/// `[web]`: the accounts page, served on a listener of its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default = "default_web_listen")]
    pub listen: SocketAddr,
    /// The argon2 PHC string of the admin password (`mail2ticket web hash-password`).
    pub admin_password_hash: Option<Secret>,
    pub admin_password_hash_file: Option<PathBuf>,
    pub admin_password_hash_env: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Plain HTTP on an address other than loopback, for a reverse proxy that terminates TLS.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// A session unused this long is logged out.
    #[serde(default = "default_session_idle", with = "humantime_serde")]
    pub session_idle: Duration,
    /// Filled in by validation from whichever hash source is set.
    #[serde(skip)]
    pub resolved_admin_hash: Option<Secret>,
}

impl WebConfig {
    pub fn hash_source(&self) -> PasswordSource {
        PasswordSource {
            password: self.admin_password_hash.clone(),
            password_file: self.admin_password_hash_file.clone(),
            password_env: self.admin_password_hash_env.clone(),
        }
    }
    /// Whether the page is served over https by the daemon itself.
    pub fn tls(&self) -> bool {
        self.tls_cert_file.is_some()
    }
}

fn default_web_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8025))
}

fn default_session_idle() -> Duration {
    Duration::from_secs(30 * 60)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite file; empty when the store is PostgreSQL (exactly one of path / url).
    #[serde(default)]
    pub path: PathBuf,
    /// A `postgres://` URL: inline (best without its password: PGPASSFILE), in a file, or in
    /// an environment variable, like an account's password.
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
    pub url_env: Option<String>,
    /// Filled in by validation from whichever url source is set.
    #[serde(skip)]
    pub resolved_url: Option<Secret>,
    /// How many instances share this store; `several` turns on account leases (see
    /// docs/operations.md, "Several instances").
    #[serde(default)]
    pub instances: Instances,
}

/// `[store] instances`: whether other mail2ticket instances run the same config on this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Instances {
    /// This instance is the only one: every account is polled at once, no leases.
    #[default]
    One,
    /// Every instance runs the whole config; an account is polled only by the instance
    /// holding its lease.
    Several,
}

impl StoreConfig {
    /// A SQLite store at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            url: None,
            url_file: None,
            url_env: None,
            resolved_url: None,
            instances: Instances::default(),
        }
    }

    /// True when any of url / url_file / url_env is set.
    pub fn has_url(&self) -> bool {
        self.url.is_some() || self.url_file.is_some() || self.url_env.is_some()
    }

    pub fn url_source(&self) -> PasswordSource {
        PasswordSource {
            password: self.url.clone(),
            password_file: self.url_file.clone(),
            password_env: self.url_env.clone(),
        }
    }

    /// Where the store is, once validation resolved the URL.
    pub fn location(&self) -> StoreLocation {
        match &self.resolved_url {
            Some(url) => StoreLocation::Postgres(url.clone()),
            None => StoreLocation::Sqlite(self.path.clone()),
        }
    }
}

/// Which database a store lives in: `[store] path` or `[store] url`.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A `postgres://` URL; it may carry a password, so it is a secret.
    Postgres(Secret),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    pub http_listen: Option<SocketAddr>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Global default for accounts that do not set their own.
    pub max_message_size: Option<ByteSize>,
    /// Deadline for every single network operation (connect, login, fetch of one batch ...).
    #[serde(default = "default_network_timeout", with = "humantime_serde")]
    pub network_timeout: Duration,
    /// Memory for the mail in flight across all accounts (see `crate::budget`).
    #[serde(default = "default_memory_budget")]
    pub memory_budget: ByteSize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            poll_interval: default_poll_interval(),
            http_listen: None,
            log_format: LogFormat::default(),
            max_message_size: None,
            network_timeout: default_network_timeout(),
            memory_budget: default_memory_budget(),
        }
    }
}

/// 256 MB: a few large mails at a time, or every account's batches of ordinary mail.
fn default_memory_budget() -> ByteSize {
    ByteSize(256 * 1024 * 1024)
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_network_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub statuses: Vec<String>,
    #[serde(default = "default_subject_tag")]
    pub subject_tag: String,
}

pub fn default_subject_tag() -> String {
    "Ticket#".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Implicit TLS from the first byte.
    Ssl,
    /// Plain connection upgraded by STARTTLS (IMAP, SMTP) or STLS (POP3); "tls" is the spelling
    /// of the settings screen this replaces.
    #[default]
    #[serde(alias = "tls")]
    Starttls,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
    /// Microsoft 365 through Microsoft Graph (HTTPS, app-only OAuth 2.0): for tenants where
    /// IMAP, POP3 and SMTP AUTH are off, and for shared mailboxes. See docs/oauth2.md.
    Graph,
}

impl Protocol {
    /// The usual port for an encryption mode: implicit TLS, or plain (with or without STARTTLS).
    pub fn default_port(self, encryption: Encryption) -> u16 {
        match (self, encryption) {
            (Protocol::Imap, Encryption::Ssl) => 993,
            (Protocol::Imap, _) => 143,
            (Protocol::Pop3, Encryption::Ssl) => 995,
            (Protocol::Pop3, _) => 110,
            // Graph is HTTPS at `graph_url`; host, port and encryption are not used.
            (Protocol::Graph, _) => 443,
        }
    }
}

/// The scopes of a mailbox's token follow its protocol.
impl From<Protocol> for MailProtocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Imap => MailProtocol::Imap,
            Protocol::Pop3 => MailProtocol::Pop3,
            Protocol::Graph => MailProtocol::Graph,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Move,
    Delete,
    Keep,
}

/// What happens to a mail on an IMAP server once its ticket is durable. IMAP has no "keep": a
/// kept mail would be fetched and checked on every pass for ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapAction {
    /// `to` is the folder as configured; the server's name for it is found at connect time.
    Move {
        to: String,
    },
    Delete,
}

/// What happens to a mail on a POP3 server once its ticket is durable. POP3 has no folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop3Action {
    Delete,
    Keep,
}

/// What happens to a mail in a Graph mailbox once its ticket is durable: as for IMAP, no "keep".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphAction {
    /// `to` is a display-name path ("Erledigt", "Posteingang/Shop"), resolved to a folder id at
    /// the first pass; nothing is created.
    Move { to: String },
    /// `DELETE` of the message: a soft delete, recoverable for the tenant's retention time.
    Delete,
}

/// The configured `action` resolved for the account's protocol: the IMAP code only ever sees an
/// [`ImapAction`], so a POP3 "keep" cannot reach it, and the other way round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposal {
    Imap(ImapAction),
    Pop3(Pop3Action),
    Graph(GraphAction),
}

/// Where a password comes from; exactly one per account and for SMTP.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct PasswordSource {
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp` (the default) or `graph`: replies sent with Graph's sendMail, as MIME.
    #[serde(default)]
    pub protocol: SmtpProtocol,
    /// The SMTP server; not used with `protocol = "graph"`.
    #[serde(default)]
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub encryption: Encryption,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_network_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Domain of the Message-IDs of our automatic replies; default: the first account's domain.
    pub message_id_domain: Option<String>,
    #[serde(default)]
    pub auth: AuthMethod,
    pub oauth2: Option<OAuth2Config>,
    /// Graph: whether sent replies are kept in the sending mailbox's Sent Items, so the staff
    /// see them (Microsoft's default too).
    #[serde(default = "yes")]
    pub save_to_sent_items: bool,
    /// Filled in by validation from whichever password source is set.
    #[serde(skip)]
    pub resolved_password: Option<Secret>,
}

/// How `[smtp]` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpProtocol {
    #[default]
    Smtp,
    /// Microsoft Graph's sendMail, from the account's own mailbox or `[smtp] user`.
    Graph,
}

/// The usual SMTP port for an encryption mode (submissions, submission, SMTP).
pub fn smtp_default_port(encryption: Encryption) -> u16 {
    match encryption {
        Encryption::Ssl => 465,
        Encryption::Starttls => 587,
        Encryption::None => 25,
    }
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(smtp_default_port(self.encryption))
    }
    pub fn password_source(&self) -> PasswordSource {
        PasswordSource {
            password: self.password.clone(),
            password_file: self.password_file.clone(),
            password_env: self.password_env.clone(),
        }
    }
}

/// Who a ticket's customer is when a mail has a Reply-To (see `ingest::customer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerSource {
    /// The Reply-To person (name and address), else the From person: contact forms.
    #[default]
    ReplyTo,
    /// Always the From person.
    From,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub email: String,
    #[serde(default = "yes")]
    pub active: bool,
    pub protocol: Protocol,
    /// IMAP and POP3; a Graph mailbox is at `[account.oauth2] graph_url` instead.
    #[serde(default)]
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub encryption: Encryption,
    /// The login name; for Graph the mailbox (UPN or address, shared mailboxes included).
    pub user: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_folder")]
    pub folder: String,
    pub ticket_type: String,
    pub ticket_status: String,
    pub sender_name: Option<String>,
    pub reply_to: Option<String>,
    /// Who the customer is when a mail has a Reply-To.
    #[serde(default)]
    pub customer: CustomerSource,
    pub action: Action,
    pub move_to: Option<String>,
    #[serde(default)]
    pub auto_reply: bool,
    pub auto_reply_subject: Option<String>,
    pub auto_reply_body: Option<String>,
    pub auto_reply_template_file: Option<PathBuf>,
    #[serde(default = "default_auto_reply_limit")]
    pub auto_reply_limit: u32,
    #[serde(default = "default_auto_reply_max_age", with = "humantime_serde")]
    pub auto_reply_max_age: Duration,
    pub max_message_size: Option<ByteSize>,
    #[serde(default)]
    pub auth: AuthMethod,
    pub oauth2: Option<OAuth2Config>,
    /// `[[account.rule]]`, checked in order; the first that matches a mail applies.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// The status of a new ticket from a mail older than `old_mail_age` (first contact with a
    /// mailbox of years); both keys or neither.
    pub old_mail_status: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    pub old_mail_age: Option<Duration>,
    #[serde(skip)]
    pub resolved_password: Option<Secret>,
}

/// One `[[account.rule]]`: a test on one header and the attributes it sets. A rule never drops a
/// mail; it sets the new ticket's status or type and whether it gets an automatic reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Any header name, or `from` / `to` / `subject` (the decoded values).
    pub header: String,
    /// Matches when the header's value contains this text, ignoring case.
    pub contains: Option<String>,
    /// Matches when the header's value matches this regular expression (the `regex` crate's
    /// syntax: linear time, no look-around or back-references).
    pub matches: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub ticket_type: Option<String>,
    pub auto_reply: Option<bool>,
}

/// Longest compiled form of a rule's regular expression. The `regex` crate matches in linear
/// time whatever the pattern, so the only cost a pattern can run up is its size.
const RULE_REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The test of a rule, checked: what `contains` or `matches` says.
#[derive(Debug, Clone)]
pub enum RuleTest {
    /// The value contains this text, ignoring case.
    Contains(String),
    Matches(regex::Regex),
}

/// Why a rule cannot be used; check-config names it with the rule's key and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("set `contains` or `matches`")]
    NoTest,
    #[error("set `contains` or `matches`, not both")]
    TwoTests,
    #[error("is not a regular expression the daemon can use: {0}")]
    BadRegex(String),
    #[error("sets nothing: give it `status`, `type` or `auto_reply`")]
    SetsNothing,
    #[error("`header` is empty: name a header such as \"X-Spam-Flag\", or from, to, subject")]
    NoHeader,
}

impl RuleConfig {
    /// The rule's test, once the rule is usable: a header, one test that compiles, something
    /// to set.
    pub fn test(&self) -> Result<RuleTest, RuleError> {
        if self.header.trim().is_empty() {
            return Err(RuleError::NoHeader);
        }
        if self.status.is_none() && self.ticket_type.is_none() && self.auto_reply.is_none() {
            return Err(RuleError::SetsNothing);
        }
        match (&self.contains, &self.matches) {
            (None, None) => Err(RuleError::NoTest),
            (Some(_), Some(_)) => Err(RuleError::TwoTests),
            (Some(text), None) => Ok(RuleTest::Contains(text.clone())),
            (None, Some(pattern)) => regex::RegexBuilder::new(pattern)
                .size_limit(RULE_REGEX_SIZE_LIMIT)
                .build()
                .map(RuleTest::Matches)
                .map_err(|e| RuleError::BadRegex(e.to_string())),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_folder() -> String {
    "INBOX".into()
}
fn default_auto_reply_limit() -> u32 {
    5
}
fn default_auto_reply_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl AccountConfig {
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(self.protocol.default_port(self.encryption))
    }
    pub fn password_source(&self) -> PasswordSource {
        PasswordSource {
            password: self.password.clone(),
            password_file: self.password_file.clone(),
            password_env: self.password_env.clone(),
        }
    }
    /// `protocol`, `action` and `move_to` as one typed value; `Err` names the combination that
    /// has no meaning (validation reports the same problems with their keys).
    pub fn disposal(&self) -> Result<Disposal, &'static str> {
        match (self.protocol, self.action) {
            // An empty name is refused by validation with its own message.
            (Protocol::Imap, Action::Move) => match &self.move_to {
                Some(to) => Ok(Disposal::Imap(ImapAction::Move { to: to.clone() })),
                None => Err("required when action = \"move\": without it nothing would be moved"),
            },
            (Protocol::Imap, Action::Delete) => Ok(Disposal::Imap(ImapAction::Delete)),
            (Protocol::Imap, Action::Keep) => Err(
                "IMAP accounts \"move\" or \"delete\"; \"keep\" would leave every mail in the folder for ever",
            ),
            (Protocol::Pop3, Action::Delete) => Ok(Disposal::Pop3(Pop3Action::Delete)),
            (Protocol::Pop3, Action::Keep) => Ok(Disposal::Pop3(Pop3Action::Keep)),
            (Protocol::Pop3, Action::Move) => {
                Err("POP3 cannot move: POP3 has no folders; use \"delete\" or \"keep\"")
            }
            (Protocol::Graph, Action::Move) => match &self.move_to {
                Some(to) => Ok(Disposal::Graph(GraphAction::Move { to: to.clone() })),
                None => Err("required when action = \"move\": without it nothing would be moved"),
            },
            (Protocol::Graph, Action::Delete) => Ok(Disposal::Graph(GraphAction::Delete)),
            (Protocol::Graph, Action::Keep) => Err(
                "Graph accounts \"move\" or \"delete\"; \"keep\" would leave every mail in the folder for ever",
            ),
        }
    }
    /// The resolved password; validation guarantees it is set on a loaded config.
    pub fn password(&self) -> Secret {
        self.resolved_password
            .clone()
            .unwrap_or_else(|| Secret::new(""))
    }
    /// The key that signs test-fetch's test mails: the password, or with OAuth the client
    /// secret (a public OAuth client has none; its client id is then the best there is).
    pub fn test_mail_key(&self) -> Secret {
        match (&self.resolved_password, &self.oauth2) {
            (Some(p), _) => p.clone(),
            (None, Some(o)) => o
                .resolved_client_secret
                .clone()
                .unwrap_or_else(|| Secret::new(o.client_id.clone())),
            (None, None) => Secret::new(""),
        }
    }
}

/// A size written as a number of bytes or a string such as "50MB", "512 KiB".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => parse_byte_size(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size {text:?}: expected e.g. \"50MB\" or a number of bytes")
    })?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {text:?}: use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Durations are written as humantime strings ("60s", "5m", "24h").
mod humantime_serde {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e}; write e.g. \"60s\", \"5m\" or \"24h\""
            ))
        })
    }

    /// For an optional duration: present means a valid duration.
    pub mod option {
        use std::time::Duration;

        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}
