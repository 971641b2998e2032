//! The rules a config must satisfy beyond its shape. Every rule adds to one list instead of
//! returning early, so the admin sees every problem of the file in one run.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use toml::de::{DeTable, DeValue};

use super::model::*;
use super::oauth::AuthMethod;
use super::Severity;

mod alerts;
mod graph;
mod oauth;
mod rules;
mod web;
use crate::secret::Secret;

pub type Found = Vec<(Severity, Key, String)>;

/// A key path such as `account[2].move_to` (accounts are numbered from 1 as they appear in the
/// file), able to find its own position in the parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    section: &'static str,
    account: Option<usize>,
    /// A table inside the section or account, such as `oauth2`.
    table: Option<&'static str>,
    /// Which of an array of tables (`[[account.rule]]`), from 0 as they appear in the file.
    item: Option<usize>,
    field: Option<&'static str>,
}

impl Key {
    pub fn account(file_index: usize) -> Key {
        Key {
            section: "account",
            account: Some(file_index),
            table: None,
            item: None,
            field: None,
        }
    }
    fn section(section: &'static str) -> Key {
        Key {
            section,
            account: None,
            table: None,
            item: None,
            field: None,
        }
    }
    fn field(mut self, field: &'static str) -> Key {
        self.field = Some(field);
        self
    }
    fn table(mut self, table: &'static str) -> Key {
        self.table = Some(table);
        self
    }
    /// The `index`th table of an array of tables (`account[1].rule[2]`).
    fn item(mut self, table: &'static str, index: usize) -> Key {
        self.table = Some(table);
        self.item = Some(index);
        self
    }

    /// Byte offset of the key in the document: the field if present, else its table.
    pub fn locate(&self, doc: &DeTable) -> Option<usize> {
        let (section_key, section) = doc.iter().find(|(k, _)| k.get_ref() == self.section)?;
        let table = match (self.account, section.get_ref()) {
            (Some(i), DeValue::Array(items)) => items.get(i)?,
            (None, _) => section,
            _ => return Some(section_key.span().start),
        };
        let table = match (self.table, table.get_ref()) {
            (Some(name), DeValue::Table(t)) => match t.iter().find(|(k, _)| k.get_ref() == name) {
                Some((_, inner)) => inner,
                None => table,
            },
            _ => table,
        };
        let table = match (self.item, table.get_ref()) {
            (Some(i), DeValue::Array(items)) => items.get(i).unwrap_or(table),
            _ => table,
        };
        let fallback = table.span().start;
        let Some(field) = self.field else {
            return Some(fallback);
        };
        match table.get_ref() {
            DeValue::Table(t) => Some(
                t.iter()
                    .find(|(k, _)| k.get_ref() == field)
                    .map_or(fallback, |(k, _)| k.span().start),
            ),
            _ => Some(fallback),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.section)?;
        if let Some(i) = self.account {
            write!(f, "[{}]", i + 1)?;
        }
        if let Some(table) = self.table {
            write!(f, ".{table}")?;
        }
        if let Some(i) = self.item {
            write!(f, "[{}]", i + 1)?;
        }
        if let Some(field) = self.field {
            write!(f, ".{field}")?;
        }
        Ok(())
    }
}

/// The keys of a secret that may be given inline, in a file or in an environment variable.
#[derive(Clone, Copy)]
struct SecretKeys {
    inline: &'static str,
    file: &'static str,
    env: &'static str,
}

const PASSWORD: SecretKeys = SecretKeys {
    inline: "password",
    file: "password_file",
    env: "password_env",
};

const ADMIN_HASH: SecretKeys = SecretKeys {
    inline: "admin_password_hash",
    file: "admin_password_hash_file",
    env: "admin_password_hash_env",
};

const STORE_URL: SecretKeys = SecretKeys {
    inline: "url",
    file: "url_file",
    env: "url_env",
};

struct Checker<'a> {
    found: &'a mut Found,
}

impl Checker<'_> {
    fn error(&mut self, key: Key, message: impl Into<String>) {
        self.found.push((Severity::Error, key, message.into()));
    }
    fn warning(&mut self, key: Key, message: impl Into<String>) {
        self.found.push((Severity::Warning, key, message.into()));
    }

    fn address(&mut self, key: Key, value: &str) {
        if let Err(e) = lettre::Address::from_str(value.trim()) {
            self.error(
                key,
                format!("{value:?} is not a valid e-mail address ({e})"),
            );
        }
    }

    fn non_empty(&mut self, key: Key, value: &str) {
        if value.trim().is_empty() {
            self.error(key, "must not be empty");
        }
    }

    fn readable_file(&mut self, key: Key, path: &Path) {
        if let Err(e) = std::fs::metadata(path) {
            self.error(key, format!("cannot read {}: {e}", path.display()));
        }
    }

    /// Exactly one of path (SQLite) or url / url_file / url_env (PostgreSQL); the URL resolved
    /// into `resolved_url`. Messages show the URL with its password masked.
    fn store(&mut self, store: &mut StoreConfig) {
        let at = Key::section("store");
        let has_path = !store.path.as_os_str().is_empty();
        if !store.has_url() {
            if !has_path {
                self.error(
                    at.field("path"),
                    "must name the SQLite file (or set url for PostgreSQL instead)",
                );
            }
            return;
        }
        if has_path {
            self.error(
                at.field("url"),
                "set exactly one of path (a SQLite file) and url / url_file / url_env (PostgreSQL)",
            );
            return;
        }
        let Some(url) = self.secret(at.clone(), &STORE_URL, &store.url_source(), true) else {
            return;
        };
        let shown = crate::secret::masked_url(url.expose());
        let key = match (&store.url_file, &store.url_env) {
            (Some(_), _) => at.clone().field("url_file"),
            (_, Some(_)) => at.clone().field("url_env"),
            _ => at.clone().field("url"),
        };
        match url::Url::parse(url.expose()) {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
                if store.url.is_some() && (u.password().is_some() || shown.contains("password=")) {
                    self.warning(
                        at.field("url"),
                        "the database password is written in the config file: move the URL to \
                         url_file or url_env, or the password to PGPASSFILE",
                    );
                }
                store.resolved_url = Some(url);
            }
            Ok(u) => self.error(
                key,
                format!(
                    "{shown} is a {}: URL; the store takes postgres://user@host/database \
                     (for SQLite set path instead)",
                    u.scheme()
                ),
            ),
            Err(e) => self.error(
                key,
                format!("not a URL ({e}); write postgres://user@host:port/database"),
            ),
        }
    }

    /// Resolves exactly one of password / password_file / password_env.
    fn password(&mut self, at: Key, source: &PasswordSource, required: bool) -> Option<Secret> {
        self.secret(at, &PASSWORD, source, required)
    }

    /// Resolves exactly one of a secret's three keys (inline, file, environment variable).
    fn secret(
        &mut self,
        at: Key,
        keys: &SecretKeys,
        source: &PasswordSource,
        required: bool,
    ) -> Option<Secret> {
        let SecretKeys { inline, file, env } = *keys;
        let given = [
            source.password.is_some(),
            source.password_file.is_some(),
            source.password_env.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if given > 1 {
            self.error(
                at.field(inline),
                format!("set exactly one of {inline}, {file}, {env}"),
            );
            return None;
        }
        if given == 0 {
            if required {
                self.error(
                    at.field(inline),
                    format!(
                        "missing: set one of {inline}, {file} (e.g. a systemd credential) or {env}"
                    ),
                );
            }
            return None;
        }
        if let Some(p) = &source.password {
            return Some(p.clone());
        }
        if let Some(var) = &source.password_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => {
                    self.error(
                        at.field(env),
                        format!("environment variable {var} is not set or empty"),
                    );
                    None
                }
            };
        }
        let path = source.password_file.as_ref()?;
        let key = at.field(file);
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_world_readable(self, key.clone(), path);
                // Files written by `echo` end in a newline that is not part of the password.
                let password = text.trim_end_matches(['\r', '\n']);
                if password.is_empty() {
                    self.error(key, format!("{} is empty", path.display()));
                    None
                } else {
                    Some(Secret::new(password))
                }
            }
            Err(e) => {
                self.error(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }
}

#[cfg(unix)]
fn warn_if_world_readable(checker: &mut Checker, key: Key, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            checker.warning(
                key,
                format!(
                    "{} is readable by every user of this machine: chmod 600 it (or o-r)",
                    path.display()
                ),
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_: &mut Checker, _: Key, _: &Path) {}

/// The keys whose secret is written in the config file itself, rather than in a file or an
/// environment variable of its own: passwords, OAuth client secrets, a database URL with a
/// password. Whoever can read the file can read these (see `config::load`).
pub fn inline_secrets(config: &Config, file_indices: &[usize]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut oauth = |at: &Key, o: &Option<crate::config::OAuth2Config>| {
        if o.as_ref().is_some_and(|o| o.client_secret.is_some()) {
            keys.push(at.clone().table("oauth2").field("client_secret"));
        }
    };
    let smtp = Key::section("smtp");
    if let Some(s) = &config.smtp {
        oauth(&smtp, &s.oauth2);
    }
    for (account, &i) in config.accounts.iter().zip(file_indices) {
        oauth(&Key::account(i), &account.oauth2);
    }
    if config.smtp.as_ref().is_some_and(|s| s.password.is_some()) {
        keys.push(smtp.field("password"));
    }
    for (account, &i) in config.accounts.iter().zip(file_indices) {
        if account.password.is_some() {
            keys.push(Key::account(i).field("password"));
        }
    }
    let url_has_password = config.store.url.as_ref().is_some_and(|url| {
        url::Url::parse(url.expose()).is_ok_and(|u| u.password().is_some())
            || url.expose().contains("password=")
    });
    if url_has_password {
        keys.push(Key::section("store").field("url"));
    }
    if config.alerts.as_ref().is_some_and(|a| a.webhook.is_some()) {
        keys.push(Key::section("alerts").field("webhook"));
    }
    keys
}

/// The smallest `[daemon] memory_budget`: a batch of ordinary mail fits four times.
const MIN_MEMORY_BUDGET: u64 = 16 * 1024 * 1024;

/// Checks the whole config; `file_indices[n]` is the position in the file of `accounts[n]`, and
/// `accounts_in_file` also counts accounts that could not be read at all.
pub fn check(
    config: &mut Config,
    file_indices: &[usize],
    accounts_in_file: usize,
    found: &mut Found,
) {
    let mut c = Checker { found };

    c.store(&mut config.store);
    if config.daemon.poll_interval.as_secs() < 1 {
        c.error(
            Key::section("daemon").field("poll_interval"),
            "must be at least 1s",
        );
    }
    if config.daemon.memory_budget.0 < MIN_MEMORY_BUDGET {
        c.error(
            Key::section("daemon").field("memory_budget"),
            "must be at least 16MB: less would hold back even batches of ordinary mail",
        );
    }
    if config.daemon.network_timeout.as_secs() < 1 {
        c.error(
            Key::section("daemon").field("network_timeout"),
            "must be at least 1s",
        );
    }
    if let Some(tickets) = &config.tickets {
        if tickets.subject_tag.trim().is_empty() || tickets.subject_tag.contains([']', '[']) {
            c.error(
                Key::section("tickets").field("subject_tag"),
                "must be non-empty and without brackets, e.g. \"Ticket#\"",
            );
        }
    }

    if let Some(page) = &mut config.web {
        web::check(&mut c, page, config.daemon.http_listen);
    }
    if let Some(owner) = &config.alerts {
        alerts::check(&mut c, config, owner);
    }

    if let Some(smtp) = &mut config.smtp {
        let at = Key::section("smtp");
        match smtp.protocol {
            SmtpProtocol::Smtp => c.non_empty(at.clone().field("host"), &smtp.host),
            SmtpProtocol::Graph => graph::check_smtp(&mut c, &at, smtp),
        }
        if smtp.protocol == SmtpProtocol::Smtp && !smtp.save_to_sent_items {
            c.warning(
                at.clone().field("save_to_sent_items"),
                "ignored: only protocol = \"graph\" keeps copies of what it sends",
            );
        }
        let required = smtp.user.is_some() && smtp.auth == AuthMethod::Password;
        smtp.resolved_password = c.password(at.clone(), &smtp.password_source(), required);
        let place = oauth::Place {
            at: at.clone(),
            table_name: "smtp",
            name: "smtp",
            store_path: &config.store.path,
        };
        let passwords = smtp.password_source();
        oauth::check(&mut c, &place, smtp.auth, &mut smtp.oauth2, &passwords);
        if smtp.auth == AuthMethod::Oauth2
            && smtp.user.is_none()
            && smtp.protocol == SmtpProtocol::Smtp
        {
            c.error(
                at.clone().field("user"),
                "missing: auth = \"oauth2\" signs in as `user`, the mailbox the token is for",
            );
        }
        if smtp.user.is_none() && smtp.resolved_password.is_some() {
            c.error(
                at.clone().field("user"),
                "a password is set but no user: set `user` too",
            );
        }
        if let Some(ca) = &smtp.ca_file {
            c.readable_file(at.clone().field("ca_file"), ca);
        }
        if let Some(domain) = &smtp.message_id_domain {
            let valid = !domain.is_empty()
                && domain.len() <= 253
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                });
            if !valid {
                c.error(
                    at.clone().field("message_id_domain"),
                    format!("{domain:?} is not a domain name; write e.g. \"tickets.example.com\""),
                );
            }
        }
    }

    if accounts_in_file == 0 {
        c.error(
            Key::section("account"),
            "no [[account]] configured: add at least one",
        );
    }
    if accounts_in_file > MAX_ACCOUNTS {
        c.error(
            Key::account(MAX_ACCOUNTS),
            format!("{accounts_in_file} accounts configured; the limit is {MAX_ACCOUNTS}"),
        );
    }

    let has_smtp = config.smtp.is_some();
    let tickets = config.tickets.clone();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut emails: HashMap<String, usize> = HashMap::new();
    for (account, &i) in config.accounts.iter_mut().zip(file_indices) {
        let at = Key::account(i);
        let key = |f: &'static str| at.clone().field(f);
        c.non_empty(key("name"), &account.name);
        if let Some(first) = names.insert(account.name.clone(), i) {
            c.error(
                key("name"),
                format!(
                    "{:?} is already the name of account[{}]",
                    account.name,
                    first + 1
                ),
            );
        }
        c.address(key("email"), &account.email);
        if let Some(first) = emails.insert(account.email.trim().to_lowercase(), i) {
            c.error(
                key("email"),
                format!(
                    "{} is already the address of account[{}]",
                    account.email,
                    first + 1
                ),
            );
        }
        if let Some(reply_to) = &account.reply_to {
            c.address(key("reply_to"), reply_to);
        }
        match account.protocol {
            Protocol::Graph => graph::check_account(&mut c, &at, account),
            Protocol::Imap | Protocol::Pop3 => c.non_empty(key("host"), &account.host),
        }
        c.non_empty(key("user"), &account.user);
        c.non_empty(key("folder"), &account.folder);
        let password_login = account.auth == AuthMethod::Password;
        account.resolved_password =
            c.password(at.clone(), &account.password_source(), password_login);
        let place = oauth::Place {
            at: at.clone(),
            table_name: "account",
            name: &account.name,
            store_path: &config.store.path,
        };
        let passwords = account.password_source();
        oauth::check(
            &mut c,
            &place,
            account.auth,
            &mut account.oauth2,
            &passwords,
        );
        if let Some(ca) = &account.ca_file {
            c.readable_file(key("ca_file"), ca);
        }

        // The protocol/action rules live in one place, AccountConfig::disposal.
        if let Err(problem) = account.disposal() {
            let field = match (account.protocol, account.action, &account.move_to) {
                (Protocol::Imap | Protocol::Graph, Action::Move, None) => "move_to",
                _ => "action",
            };
            c.error(key(field), problem);
        }
        match (&account.move_to, account.action) {
            (Some(folder), Action::Move) if folder.trim().is_empty() => c.error(
                key("move_to"),
                "empty folder name: nothing would be moved; name the folder, e.g. \"Archive\"",
            ),
            (Some(folder), Action::Move) if folder == &account.folder => c.error(
                key("move_to"),
                format!(
                    "{folder:?} is the folder being read; moving there would fetch mails again"
                ),
            ),
            (Some(_), _) if account.action != Action::Move => {
                c.warning(key("move_to"), "ignored: only used when action = \"move\"")
            }
            _ => {}
        }
        if account.protocol == Protocol::Pop3 && account.folder != "INBOX" {
            c.warning(
                key("folder"),
                "ignored for POP3: a POP3 maildrop has no folders",
            );
        }

        rules::known_type(
            &mut c,
            key("ticket_type"),
            &account.ticket_type,
            tickets.as_ref(),
        );
        rules::known_status(
            &mut c,
            key("ticket_status"),
            &account.ticket_status,
            tickets.as_ref(),
        );
        rules::check(&mut c, &at, account, tickets.as_ref());

        if account.auto_reply && account.auto_reply_limit == 0 {
            c.warning(
                key("auto_reply_limit"),
                "0 suppresses every automatic reply; set auto_reply = false to say so, or a limit such as 5",
            );
        }
        if account.auto_reply && !has_smtp {
            c.error(
                key("auto_reply"),
                "needs an [smtp] section to send the replies through",
            );
        }
        if account.auto_reply_body.is_some() && account.auto_reply_template_file.is_some() {
            c.error(
                key("auto_reply_template_file"),
                "set auto_reply_body or auto_reply_template_file, not both",
            );
        }
        if let Some(subject) = &account.auto_reply_subject {
            if let Err(e) = crate::template::check(subject) {
                c.error(key("auto_reply_subject"), e);
            }
        }
        if let Some(body) = &account.auto_reply_body {
            if let Err(e) = crate::template::check(body) {
                c.error(key("auto_reply_body"), e);
            }
        }
        if let Some(path) = &account.auto_reply_template_file {
            match std::fs::read_to_string(path) {
                Ok(body) => {
                    if let Err(e) = crate::template::check(&body) {
                        c.error(
                            key("auto_reply_template_file"),
                            format!("{}: {e}", path.display()),
                        );
                    }
                }
                Err(e) => c.error(
                    key("auto_reply_template_file"),
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        if matches!(account.max_message_size, Some(ByteSize(0))) {
            c.error(key("max_message_size"), "must be larger than 0");
        }
    }
}
