//! Changing one `[[account]]` of the config text while keeping everything else as the admin
//! wrote it: comments, blank lines, key order and quoting of every key the change does not touch.
//! The accounts page turns its form into an [`AccountEdit`], [`apply`]s it to the file's text,
//! [`validate`]s the result with the same rules as check-config, and only then writes it with
//! [`super::file::write_atomically`].
//!
//! `toml_edit` keeps a document's formatting; what it does not decide on its own is written here:
//! a changed value keeps its old value's trailing comment, a new account goes after the last one,
//! and secrets kept in a file or an environment variable cannot be overwritten from the page.

mod fields;

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, TableLike};

use super::MAX_ACCOUNTS;

pub use fields::{validate, FieldIssues, Validated};

/// A value the form sets: the types account keys take.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&Value> for toml_edit::Value {
    fn from(value: &Value) -> Self {
        match value {
            Value::Str(s) => toml_edit::Value::from(s.as_str()),
            Value::Int(n) => toml_edit::Value::from(*n),
            Value::Bool(b) => toml_edit::Value::from(*b),
        }
    }
}

/// What happens to one key. Keys an edit does not mention are left exactly as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(Value),
    Remove,
}

/// The changes to one account. Keys are account keys such as `move_to`, or `oauth2.client_id`
/// for the `[account.oauth2]` table.
#[derive(Clone, PartialEq)]
pub struct AccountEdit {
    /// The account's name when the form was opened; `None` adds a new account.
    pub original_name: Option<String>,
    pub changes: Vec<(String, Change)>,
}

/// Shows the new password or client secret as `***`: an edit may end up in a log line.
impl fmt::Debug for AccountEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets = [SecretKind::Password.key(), SecretKind::ClientSecret.key()];
        let changes: Vec<(&str, &dyn fmt::Debug)> = self
            .changes
            .iter()
            .map(|(key, change)| match change {
                Change::Set(_) if secrets.contains(&key.as_str()) => {
                    (key.as_str(), &"***" as &dyn fmt::Debug)
                }
                _ => (key.as_str(), change as &dyn fmt::Debug),
            })
            .collect();
        f.debug_struct("AccountEdit")
            .field("original_name", &self.original_name)
            .field("changes", &changes)
            .finish()
    }
}

/// The edited text and where the edited account is in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub text: String,
    /// Position of the account among the file's `[[account]]` tables, from 0 (check-config calls
    /// it `account[position + 1]`).
    pub position: usize,
}

/// Which secret of an account: its login password or its OAuth client secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Password,
    ClientSecret,
}

impl SecretKind {
    /// The form key of the inline secret.
    pub fn key(self) -> &'static str {
        match self {
            SecretKind::Password => "password",
            SecretKind::ClientSecret => "oauth2.client_secret",
        }
    }

    /// The table the secret's keys are in (the account, or its oauth2 table) and their names.
    fn keys(self) -> (Option<&'static str>, [&'static str; 3]) {
        match self {
            SecretKind::Password => (None, ["password", "password_file", "password_env"]),
            SecretKind::ClientSecret => (
                Some("oauth2"),
                ["client_secret", "client_secret_file", "client_secret_env"],
            ),
        }
    }
}

/// Where a secret comes from, as the file says. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Not set.
    None,
    /// Written in the config file itself: the page may replace it.
    Inline,
    /// Read from this file (`*_file`): the page shows the path and cannot change it.
    File(PathBuf),
    /// Read from this environment variable (`*_env`): the page shows the name and cannot change it.
    Env(String),
}

/// Whether [`account_snippet`] shows inline secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// As they are in the file: the snippet can be pasted as it is.
    AsWritten,
    /// Inline `password` and `client_secret` values shown as "…".
    Blanked,
}

/// Why an edit could not be made. No variant carries a secret's value.
#[derive(Debug, Error, PartialEq)]
pub enum EditError {
    #[error("the config file is not valid TOML (line {line}): {message}; fix the file first")]
    Syntax { line: usize, message: String },
    #[error(
        "no [[account]] named {0:?} in the config file: it was renamed or removed there; \
         reload the page"
    )]
    NoSuchAccount(String),
    #[error("{MAX_ACCOUNTS} accounts are configured, the most there can be; remove one first")]
    TooManyAccounts,
    #[error(
        "accounts must be written as [[account]] tables for the page to edit them; \
         `{0}` is not (edit the file by hand instead)"
    )]
    NotEditable(String),
    #[error("`{0}` is not an account key the page can set")]
    BadKey(String),
    #[error(
        "the {key} of this account comes from {from} and cannot be changed here: change it \
         there, or edit the config file"
    )]
    SecretFromElsewhere {
        key: &'static str,
        /// Where it comes from, for the message: `password_file /run/...` or
        /// `password_env NAME`.
        from: String,
    },
}

/// A key of the form: in the account's own table, or in its `[account.oauth2]` table.
#[derive(Debug, Clone, Copy)]
enum Place<'k> {
    Account(&'k str),
    OAuth2(&'k str),
}

impl<'k> Place<'k> {
    fn parse(key: &'k str) -> Result<Place<'k>, EditError> {
        let bad = || EditError::BadKey(key.to_string());
        let simple = |k: &str| !k.is_empty() && !k.contains('.') && k != "oauth2";
        match key.split_once('.') {
            None if simple(key) => Ok(Place::Account(key)),
            Some(("oauth2", inner)) if simple(inner) => Ok(Place::OAuth2(inner)),
            _ => Err(bad()),
        }
    }
}

fn parse(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>().map_err(|e| EditError::Syntax {
        line: e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        }),
        // The message only, never the snippet of the line: that line may hold a password.
        message: e.message().trim_end().to_string(),
    })
}

/// The `[[account]]` tables, if the file has any.
fn accounts(doc: &DocumentMut) -> Result<Option<&ArrayOfTables>, EditError> {
    match doc.get("account") {
        None => Ok(None),
        Some(Item::ArrayOfTables(a)) => Ok(Some(a)),
        Some(_) => Err(EditError::NotEditable("account".into())),
    }
}

fn name_of(table: &Table) -> Option<&str> {
    table.get("name").and_then(Item::as_str)
}

/// Position of the account named `name` among the `[[account]]` tables.
fn find(doc: &DocumentMut, name: &str) -> Result<usize, EditError> {
    accounts(doc)?
        .and_then(|a| a.iter().position(|t| name_of(t) == Some(name)))
        .ok_or_else(|| EditError::NoSuchAccount(name.to_string()))
}

/// Applies `edit` to the config text. Only the keys it names change; a new account is appended
/// after the last `[[account]]` (and its sub-tables).
pub fn apply(text: &str, edit: &AccountEdit) -> Result<Edited, EditError> {
    let mut doc = parse(text)?;
    let places = edit
        .changes
        .iter()
        .map(|(key, change)| Ok((Place::parse(key)?, change)))
        .collect::<Result<Vec<_>, EditError>>()?;
    let position = match &edit.original_name {
        Some(name) => {
            let position = find(&doc, name)?;
            let account = account_mut(&mut doc, position);
            refuse_secrets_from_elsewhere(account, &places)?;
            for (place, change) in &places {
                change_key(account, *place, change)?;
            }
            position
        }
        None => add_account(&mut doc, &places)?,
    };
    Ok(Edited {
        text: doc.to_string(),
        position,
    })
}

fn account_mut(doc: &mut DocumentMut, position: usize) -> &mut Table {
    doc.get_mut("account")
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|a| a.get_mut(position))
        .expect("`find` returned the position of an existing [[account]]")
}

/// The page writes a secret only where the file keeps it inline: one read from a file or an
/// environment variable is managed there (a systemd credential, a Docker secret), and writing
/// it into the config as well would give the account two sources.
fn refuse_secrets_from_elsewhere(
    account: &Table,
    places: &[(Place, &Change)],
) -> Result<(), EditError> {
    for kind in [SecretKind::Password, SecretKind::ClientSecret] {
        let (table, [inline, file, env]) = kind.keys();
        let touched = places.iter().any(|(place, change)| {
            let (in_table, key) = match *place {
                Place::Account(k) => (None, k),
                Place::OAuth2(k) => (Some("oauth2"), k),
            };
            in_table == table && key == inline && matches!(change, Change::Set(_))
        });
        if !touched {
            continue;
        }
        let source = match source_in(account, kind) {
            SecretSource::File(path) => format!("{file} {}", path.display()),
            SecretSource::Env(var) => format!("{env} {var}"),
            SecretSource::None | SecretSource::Inline => continue,
        };
        return Err(EditError::SecretFromElsewhere {
            key: kind.key(),
            from: source,
        });
    }
    Ok(())
}

/// The table a place is in: the account itself, or its oauth2 table (`create`d when missing,
/// right after the account's header so it belongs to it).
fn table_of<'t>(
    account: &'t mut Table,
    place: Place<'t>,
    create: bool,
) -> Result<Option<(&'t mut dyn TableLike, &'t str)>, EditError> {
    let key = match place {
        Place::Account(key) => return Ok(Some((account as &mut dyn TableLike, key))),
        Place::OAuth2(key) => key,
    };
    if !account.contains_key("oauth2") {
        if !create {
            return Ok(None);
        }
        let mut oauth2 = Table::new();
        // Sorted by position, a table with its account's position comes right after it (the
        // sort is stable and the account is visited first).
        oauth2.set_position(account.position());
        account.insert("oauth2", Item::Table(oauth2));
    }
    match account.get_mut("oauth2").and_then(Item::as_table_like_mut) {
        Some(table) => Ok(Some((table, key))),
        None => Err(EditError::NotEditable("oauth2".into())),
    }
}

fn change_key(account: &mut Table, place: Place, change: &Change) -> Result<(), EditError> {
    match change {
        Change::Remove => {
            if let Some((table, key)) = table_of(account, place, false)? {
                // The key goes with its decor: the comment lines above it and its trailing
                // comment describe it and nothing else.
                table.remove(key);
                // An empty [account.oauth2] would still be an oauth2 table to check-config,
                // refused next to auth = "password": the form removes all its keys to go back.
                if table.is_empty() && matches!(place, Place::OAuth2(_)) {
                    account.remove("oauth2");
                }
            }
        }
        Change::Set(value) => {
            let (table, key) = table_of(account, place, true)?.expect("created when missing");
            let mut new = toml_edit::Value::from(value);
            match table.get_mut(key) {
                Some(Item::Value(old)) => {
                    // Keep the old value's surroundings, its trailing comment above all.
                    *new.decor_mut() = old.decor().clone();
                    *old = new;
                }
                Some(_) => return Err(EditError::BadKey(key.to_string())),
                None => {
                    table.insert(key, Item::Value(new));
                }
            }
        }
    }
    Ok(())
}

/// Appends a new `[[account]]` after the last one and returns its position.
fn add_account(doc: &mut DocumentMut, places: &[(Place, &Change)]) -> Result<usize, EditError> {
    let existing = accounts(doc)?.map_or(0, ArrayOfTables::len);
    if existing >= MAX_ACCOUNTS {
        return Err(EditError::TooManyAccounts);
    }
    let last_in_file = last_position(doc.as_table());
    let last_account = doc
        .get("account")
        .and_then(Item::as_array_of_tables)
        .and_then(|a| a.iter().filter_map(last_position).max());
    let mut account = Table::new();
    // Tables print in order of position, ties in document order: with the position of the last
    // account's last table, the new one comes right after it (the last [[account]] item is
    // visited before the new one), and before any table that follows the accounts.
    account.set_position(last_account.or(last_in_file));
    if last_account.is_none() || last_account == last_in_file {
        // The new account is the file's last table. What follows the last key of the file (often
        // commented-out keys of the account before) stays where it is: before the new header.
        let trailing = doc.trailing().as_str().unwrap_or_default().to_string();
        if !trailing.is_empty() {
            let line_end = if trailing.ends_with('\n') { "" } else { "\n" };
            // The blank line before the header that an untouched new table gets by default.
            account
                .decor_mut()
                .set_prefix(format!("{trailing}{line_end}\n"));
            doc.set_trailing("");
        }
    }
    for (place, change) in places {
        if let Change::Set(_) = change {
            change_key(&mut account, *place, change)?;
        }
    }
    let array = doc
        .entry("account")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or_else(|| EditError::NotEditable("account".into()))?;
    array.push(account);
    Ok(array.len() - 1)
}

/// The largest position of a table and the tables nested in it.
fn last_position(table: &Table) -> Option<isize> {
    let nested = table.iter().filter_map(|(_, item)| match item {
        Item::Table(t) => last_position(t),
        Item::ArrayOfTables(a) => a.iter().filter_map(last_position).max(),
        _ => None,
    });
    nested.chain(table.position()).max()
}

/// Where the named account's password or client secret comes from, as the file says.
pub fn secret_source(text: &str, name: &str, kind: SecretKind) -> Result<SecretSource, EditError> {
    let doc = parse(text)?;
    let position = find(&doc, name)?;
    let account = accounts(&doc)?
        .and_then(|a| a.get(position))
        .expect("`find` returned the position of an existing [[account]]");
    Ok(source_in(account, kind))
}

fn source_in(account: &Table, kind: SecretKind) -> SecretSource {
    let (table, [inline, file, env]) = kind.keys();
    let table: &dyn TableLike = match table {
        None => account,
        Some(sub) => match account.get(sub).and_then(Item::as_table_like) {
            Some(t) => t,
            None => return SecretSource::None,
        },
    };
    let text = |key| table.get(key).and_then(Item::as_str);
    // File and environment first: when a file also has the inline key (check-config refuses
    // that), the page must still not write over what is managed elsewhere.
    if let Some(path) = text(file) {
        SecretSource::File(PathBuf::from(path))
    } else if let Some(var) = text(env) {
        SecretSource::Env(var.to_string())
    } else if table.contains_key(inline) {
        SecretSource::Inline
    } else {
        SecretSource::None
    }
}

/// The named account as TOML to paste into the file by hand (with its `[account.oauth2]`
/// table), for a file the daemon cannot write.
pub fn account_snippet(text: &str, name: &str, secrets: Secrets) -> Result<String, EditError> {
    let doc = parse(text)?;
    let position = find(&doc, name)?;
    let mut account = accounts(&doc)?
        .and_then(|a| a.get(position))
        .expect("`find` returned the position of an existing [[account]]")
        .clone();
    // Comments above the header belong to whatever came before it in the file.
    account.decor_mut().clear();
    if secrets == Secrets::Blanked {
        for kind in [SecretKind::Password, SecretKind::ClientSecret] {
            let (table, [inline, ..]) = kind.keys();
            let table: Option<&mut dyn TableLike> = match table {
                None => Some(&mut account),
                Some(sub) => account.get_mut(sub).and_then(Item::as_table_like_mut),
            };
            if let Some(Item::Value(v)) = table.and_then(|t| t.get_mut(inline)) {
                let mut blank = toml_edit::Value::from("…");
                *blank.decor_mut() = v.decor().clone();
                *v = blank;
            }
        }
    }
    let mut snippet = DocumentMut::new();
    let mut array = ArrayOfTables::new();
    array.push(account);
    snippet.insert("account", Item::ArrayOfTables(array));
    Ok(snippet.to_string())
}

#[cfg(test)]
mod tests;
