//! Loading the TOML config: parse, deserialize section by section so that one bad key does not
//! hide the others, then validate everything and report every problem at once with its key path
//! and line:column.

pub mod edit;
pub mod file;
mod model;
mod oauth;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

pub use model::*;
pub use oauth::*;

/// Exit code for a bad config (EX_CONFIG from sysexits.h); the systemd unit names it in
/// `RestartPreventExitStatus=` so a broken config does not restart-loop.
pub const EXIT_CONFIG: u8 = 78;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/mail2ticket/config.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem with the config, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub severity: Severity,
    pub key: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}: {level}: {}: {}",
            self.line, self.column, self.key, self.message
        )
    }
}

/// Everything that is wrong with a config file.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .count();
        writeln!(
            f,
            "{}: {errors} error(s) in the config",
            self.path.display()
        )?;
        for issue in &self.issues {
            writeln!(f, "{}:{issue}", self.path.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A loaded, validated config plus the warnings it raised.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigIssue>,
    /// Where the file holds a secret itself (see `validate::inline_secrets`): a file others
    /// can read gets a warning per key when it is loaded from disk.
    pub inline_secrets: Vec<ConfigIssue>,
}

/// Resolves the config path: `--config`, else `$MAIL2TICKET_CONFIG`, else the default.
pub fn resolve_path(cli: Option<PathBuf>) -> PathBuf {
    cli.or_else(|| std::env::var_os("MAIL2TICKET_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        issues: vec![ConfigIssue {
            severity: Severity::Error,
            key: "(file)".into(),
            line: 0,
            column: 0,
            message: format!(
                "cannot read the config file: {e}; pass --config PATH or set MAIL2TICKET_CONFIG"
            ),
        }],
    })?;
    let mut loaded = parse(&text).map_err(|issues| ConfigError {
        path: path.to_owned(),
        issues,
    })?;
    if let Some(mode) = readable_by_others(path) {
        let shown = path.display();
        let warnings = loaded.inline_secrets.iter().map(|at| ConfigIssue {
            severity: Severity::Warning,
            message: format!(
                "this secret is written in {shown}, whose mode {mode:04o} lets every user of \
                 this machine read it: chmod 600 {shown}, or move the secret to its own file \
                 (the *_file key, e.g. a systemd credential or Docker secret) or an environment \
                 variable (*_env)"
            ),
            ..at.clone()
        });
        loaded.warnings.extend(warnings);
        loaded.warnings.sort_by_key(|i| (i.line, i.column));
    }
    Ok(loaded)
}

/// The file's permission bits when users other than its owner and group may read it. Only a
/// warning, never a refusal: a container's mounted file may have a mode its admin cannot change.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o004 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> Option<u32> {
    None
}

/// Parses and validates config text. Errors and warnings come back sorted by position.
pub fn parse(text: &str) -> Result<Loaded, Vec<ConfigIssue>> {
    let doc = Document { text };
    let mut issues = Vec::new();
    let table = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            issues.push(doc.issue_at(
                Severity::Error,
                "(syntax)",
                e.span().map(|s| s.start),
                e.message(),
            ));
            return Err(issues);
        }
    };
    let read = deserialize_sections(&doc, table.get_ref(), &mut issues);
    let mut config = read.config;
    let mut found = Vec::new();
    validate::check(
        &mut config,
        &read.file_indices,
        read.accounts_in_file,
        &mut found,
    );
    for (severity, key, message) in found {
        let offset = key.locate(table.get_ref());
        issues.push(doc.issue_at(severity, &key.to_string(), offset, &message));
    }
    issues.sort_by_key(|i| (i.line, i.column));
    if read.complete && issues.iter().all(|i| i.severity == Severity::Warning) {
        let inline_secrets = validate::inline_secrets(&config, &read.file_indices)
            .into_iter()
            .map(|key| {
                let offset = key.locate(table.get_ref());
                doc.issue_at(Severity::Warning, &key.to_string(), offset, "")
            })
            .collect();
        Ok(Loaded {
            config,
            warnings: issues,
            inline_secrets,
        })
    } else {
        Err(issues)
    }
}

struct Document<'a> {
    text: &'a str,
}

impl Document<'_> {
    fn issue_at(
        &self,
        severity: Severity,
        key: &str,
        offset: Option<usize>,
        message: &str,
    ) -> ConfigIssue {
        let (line, column) = offset.map(|o| line_column(self.text, o)).unwrap_or((1, 1));
        ConfigIssue {
            severity,
            key: key.to_string(),
            line,
            column,
            message: message.trim_end().to_string(),
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// What could be read from the file, section by section.
struct ReadSections {
    config: Config,
    /// For each entry of `config.accounts`, its position among the file's [[account]] tables.
    file_indices: Vec<usize>,
    accounts_in_file: usize,
    /// False when any section or account could not be deserialized.
    complete: bool,
}

/// Deserializes each section (and each account) on its own so every unknown key or bad value in
/// the file is reported, not only the first. Semantic checks then still run on whatever could be
/// read, so one run shows every problem.
/// The key of a table whose value spans `offset`.
fn field_at(table: &Spanned<DeValue>, offset: usize) -> Option<String> {
    let DeValue::Table(t) = table.get_ref() else {
        return None;
    };
    t.iter()
        .find(|(_, v)| v.span().contains(&offset))
        .map(|(k, _)| k.get_ref().to_string())
}

fn deserialize_sections(
    doc: &Document,
    table: &DeTable,
    issues: &mut Vec<ConfigIssue>,
) -> ReadSections {
    fn section<T: for<'de> Deserialize<'de>>(
        doc: &Document,
        key: &str,
        value: &Spanned<DeValue>,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span_start = e.span().map(|s| s.start).or(Some(value.span().start));
                let message = e.message();
                // Name the offending key itself: `account[3].colour`, not just `account[3]`.
                let full_key = match message.strip_prefix("unknown field `") {
                    Some(rest) => format!("{key}.{}", rest.split('`').next().unwrap_or_default()),
                    // A bad value (`customer = "reply-to"`): the key whose value the error is in.
                    None => match span_start.and_then(|at| field_at(value, at)) {
                        Some(field) => format!("{key}.{field}"),
                        None => key.to_string(),
                    },
                };
                issues.push(doc.issue_at(Severity::Error, &full_key, span_start, message));
                None
            }
        }
    }

    let mut ok = true;
    let mut store = None;
    let mut daemon = Some(DaemonConfig::default());
    let mut tickets = None;
    let mut smtp = None;
    let mut web = None;
    let mut alerts = None;
    let mut accounts = Vec::new();
    let mut account_count = 0;
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "store" => {
                store = section::<StoreConfig>(doc, "store", value, issues);
                ok &= store.is_some();
                if store
                    .as_ref()
                    .is_some_and(|s| s.path.as_os_str().is_empty() && !s.has_url())
                {
                    ok = false;
                    issues.push(doc.issue_at(
                        Severity::Error,
                        "store.path",
                        Some(value.span().start),
                        "must name the SQLite file (or set url for PostgreSQL instead)",
                    ));
                }
            }
            "daemon" => {
                daemon = section::<DaemonConfig>(doc, "daemon", value, issues);
                ok &= daemon.is_some();
            }
            "tickets" => {
                tickets = section::<TicketsConfig>(doc, "tickets", value, issues);
                ok &= tickets.is_some();
            }
            "smtp" => {
                smtp = section::<SmtpConfig>(doc, "smtp", value, issues);
                ok &= smtp.is_some();
            }
            "web" => {
                web = section::<WebConfig>(doc, "web", value, issues);
                ok &= web.is_some();
            }
            "alerts" => {
                alerts = section::<AlertsConfig>(doc, "alerts", value, issues);
                ok &= alerts.is_some();
            }
            "account" => match value.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        account_count += 1;
                        let key = validate::Key::account(i).to_string();
                        match section::<AccountConfig>(doc, &key, item, issues) {
                            Some(a) => accounts.push((i, a)),
                            None => ok = false,
                        }
                    }
                }
                _ => {
                    ok = false;
                    issues.push(doc.issue_at(
                        Severity::Error,
                        "account",
                        Some(value.span().start),
                        "accounts are written as [[account]] tables",
                    ));
                }
            },
            other => {
                ok = false;
                issues.push(doc.issue_at(
                    Severity::Error,
                    other,
                    Some(key.span().start),
                    &format!(
                        "unknown section `{other}`; expected one of store, daemon, tickets, smtp, web, alerts, account"
                    ),
                ));
            }
        }
    }
    if !table.contains_key("store") {
        ok = false;
        issues.push(doc.issue_at(
            Severity::Error,
            "store",
            Some(0),
            "missing [store] section: add `[store]` with `path = \"/var/lib/mail2ticket/tickets.db\"`",
        ));
    }
    let (file_indices, accounts) = accounts.into_iter().unzip();
    ReadSections {
        config: Config {
            store: store.unwrap_or_else(|| StoreConfig::sqlite(PathBuf::new())),
            daemon: daemon.unwrap_or_default(),
            tickets,
            smtp,
            accounts,
            web,
            alerts,
        },
        file_indices,
        accounts_in_file: account_count,
        complete: ok,
    }
}
