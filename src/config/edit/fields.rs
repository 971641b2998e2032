//! Check-config's issues placed beside the form field they are about, so the page can show every
//! rule next to its input before anything is written.

use std::collections::BTreeMap;

use toml_edit::{Item, TableLike};

use crate::config::{line_column, parse, ConfigIssue, Loaded};

/// The issues of an edited config, sorted by where the page shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldIssues {
    /// About one key of the edited account, by form key (`move_to`, `oauth2.client_id`). A key
    /// may be one the form has no input for (an unknown key written by hand): show those with
    /// the account.
    pub fields: BTreeMap<String, Vec<ConfigIssue>>,
    /// About the edited account as a whole.
    pub account: Vec<ConfigIssue>,
    /// About the rest of the file; each one's `Display` says its line and key.
    pub other: Vec<ConfigIssue>,
}

impl FieldIssues {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.account.is_empty() && self.other.is_empty()
    }

    /// The issues of a form key, if any.
    pub fn of(&self, key: &str) -> &[ConfigIssue] {
        self.fields.get(key).map_or(&[], Vec::as_slice)
    }
}

/// A config that passed check-config, with its warnings placed like [`FieldIssues`].
#[derive(Debug, Clone)]
pub struct Validated {
    pub loaded: Loaded,
    pub warnings: FieldIssues,
}

/// Runs check-config's rules on the edited text. `position` is the edited account's place
/// among the `[[account]]` tables ([`super::Edited::position`]). `Err` holds errors and
/// warnings alike: a config with any error is not written.
pub fn validate(text: &str, position: usize) -> Result<Validated, FieldIssues> {
    match parse(text) {
        Ok(loaded) => {
            let warnings = place(text, position, loaded.warnings.clone());
            Ok(Validated { loaded, warnings })
        }
        Err(issues) => Err(place(text, position, issues)),
    }
}

/// The edited account's tables in the spanned document, to find keys and their lines.
struct Account<'d> {
    text: &'d str,
    table: &'d dyn TableLike,
}

impl Account<'_> {
    fn oauth2(&self) -> Option<&dyn TableLike> {
        self.table.get("oauth2").and_then(Item::as_table_like)
    }

    /// The key written on `line` of `table`, if one is.
    fn key_on_line(&self, table: &dyn TableLike, line: usize) -> Option<String> {
        table.iter().find_map(|(name, _)| {
            let span = table.get_key_value(name)?.0.span()?;
            (line_column(self.text, span.start).0 == line).then(|| name.to_string())
        })
    }

    fn text_of(&self, key: &str) -> Option<&str> {
        self.table.get(key).and_then(Item::as_str)
    }

    /// Line and column of one of the account's own keys.
    fn locate(&self, key: &str) -> Option<(usize, usize)> {
        let span = self.table.get_key_value(key)?.0.span()?;
        Some(line_column(self.text, span.start))
    }
}

fn place(text: &str, position: usize, issues: Vec<ConfigIssue>) -> FieldIssues {
    let doc = toml_edit::Document::parse(text).ok();
    let accounts = doc
        .as_ref()
        .and_then(|d| d.get("account"))
        .and_then(Item::as_array_of_tables);
    let ours = accounts
        .and_then(|a| a.get(position))
        .map(|table| Account { text, table });
    let prefix = format!("account[{}]", position + 1);
    let mut placed = FieldIssues::default();
    for issue in issues {
        let rest = issue.key.strip_prefix(&prefix);
        let field = match rest {
            Some("") => ours.as_ref().and_then(|a| whole_account(a, &issue)),
            Some(rest) => match rest.strip_prefix('.') {
                Some(field) => Some(
                    ours.as_ref()
                        .map_or(field.to_string(), |a| field_of(a, field, &issue)),
                ),
                // `account[12]` when editing `account[1]`.
                None => {
                    placed.other.push(issue);
                    continue;
                }
            },
            None => {
                match ours
                    .as_ref()
                    .and_then(|a| clash(a, &prefix, accounts, &issue))
                {
                    Some((field, moved)) => {
                        placed.fields.entry(field.into()).or_default().push(moved)
                    }
                    None => placed.other.push(issue),
                }
                continue;
            }
        };
        match field {
            Some(field) => placed.fields.entry(field).or_default().push(issue),
            None => placed.account.push(issue),
        }
    }
    placed
}

/// The serde error `missing field `x``: the only way to learn which key is missing.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// An issue check-config puts on the account itself: a value the deserializer rejected (also
/// one in the oauth2 table), or a missing key.
fn whole_account(account: &Account, issue: &ConfigIssue) -> Option<String> {
    let in_oauth2 = || {
        let key = account.key_on_line(account.oauth2()?, issue.line)?;
        Some(format!("oauth2.{key}"))
    };
    account
        .key_on_line(account.table, issue.line)
        .or_else(in_oauth2)
        .or_else(|| missing_field(&issue.message).map(str::to_string))
}

/// The form key of `account[n].<field>`: check-config names the oauth2 table's problems
/// `oauth2` (a bad value in it) or by the bare key (an unknown key in it).
fn field_of(account: &Account, field: &str, issue: &ConfigIssue) -> String {
    let oauth2 = account.oauth2();
    if field == "oauth2" {
        let inner = oauth2
            .and_then(|o| account.key_on_line(o, issue.line))
            .or_else(|| missing_field(&issue.message).map(str::to_string));
        return match inner {
            Some(inner) => format!("oauth2.{inner}"),
            None => field.to_string(),
        };
    }
    let in_oauth2 = !field.contains('.')
        && !account.table.contains_key(field)
        && oauth2.is_some_and(|o| o.contains_key(field));
    if in_oauth2 {
        format!("oauth2.{field}")
    } else {
        field.to_string()
    }
}

/// Check-config reports a name or address used twice on the later account. When the edited
/// account is the earlier one, the problem is still the edit's: it goes beside its field.
fn clash(
    ours: &Account,
    prefix: &str,
    accounts: Option<&toml_edit::ArrayOfTables>,
    issue: &ConfigIssue,
) -> Option<(&'static str, ConfigIssue)> {
    let (n, field) = issue
        .key
        .strip_prefix("account[")?
        .split_once("].")
        .and_then(|(n, field)| Some((n.parse::<usize>().ok()?, field)))?;
    let (field, what): (&'static str, _) = match field {
        "name" => ("name", "name"),
        "email" => ("email", "address"),
        _ => return None,
    };
    let theirs = accounts?.get(n.checked_sub(1)?)?.get(field)?.as_str()?;
    let mine = ours.text_of(field)?;
    let same = match field {
        "email" => mine.trim().to_lowercase() == theirs.trim().to_lowercase(),
        _ => mine == theirs,
    };
    if !same {
        return None;
    }
    let (line, column) = ours.locate(field).unwrap_or((issue.line, issue.column));
    let moved = ConfigIssue {
        key: format!("{prefix}.{field}"),
        line,
        column,
        message: format!("{mine:?} is also the {what} of account[{n}]"),
        ..issue.clone()
    };
    Some((field, moved))
}
