//! `tickets find`: articles by sender, Message-ID, subject words and full text, newest first.
//!
//! Each criterion has an index (migration 0004): `articles_from` / `articles_from_domain` for
//! senders, `articles_message_id`, and the FTS5 table `articles_fts` for words. When words are
//! given, the FTS index drives the query in descending row id order, so a common word stops
//! after `limit` hits instead of ranking every match.
//!
//! PostgreSQL: the sender, Message-ID, account and time criteria work the same (indexes of its
//! migration 0004); words (`--subject`, TEXT) need SQLite's full-text index and are refused
//! with an error that says so, rather than answered by a slow scan of every article.

use std::str::FromStr;

use super::{Backend, SqlBuilder, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// `--from`: one address, or every address of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// Lower-cased full address.
    Address(String),
    /// Lower-cased domain, without `@`.
    Domain(String),
}

impl FromStr for Sender {
    type Err = String;

    /// `kunde@example.com` is one address; `example.com` or `@example.com` the whole domain.
    fn from_str(s: &str) -> Result<Sender, String> {
        let s = s.trim().to_lowercase();
        let s = s.strip_prefix('<').unwrap_or(&s);
        let s = s.strip_suffix('>').unwrap_or(s);
        match s.split_once('@') {
            _ if s.is_empty() => Err("an empty sender: give an address or a domain".into()),
            Some(("", domain)) if !domain.is_empty() => Ok(Sender::Domain(domain.to_string())),
            Some((_, domain)) if !domain.is_empty() => Ok(Sender::Address(s.to_string())),
            Some(_) => Err(format!(
                "`{s}` has no domain after @: give an address or a domain"
            )),
            None => Ok(Sender::Domain(s.to_string())),
        }
    }
}

/// What `tickets find` looks for; all given criteria must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindQuery {
    pub from: Option<Sender>,
    /// With or without angle brackets.
    pub message_id: Option<String>,
    /// Words that must all occur in the subject.
    pub subject: Option<String>,
    /// Words that must all occur in the subject or the body.
    pub text: Option<String>,
    pub account: Option<String>,
    /// Received at or after this moment.
    pub since: Option<DateTime<Utc>>,
    /// Received before this moment.
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
}

impl FindQuery {
    /// At least one criterion that an index answers (a bare `--account` would list everything).
    pub fn has_criterion(&self) -> bool {
        self.from.is_some() || self.message_id.is_some() || self.match_expression().is_some()
    }

    /// The FTS5 query for the subject and text words, or `None` when neither has a word.
    ///
    /// Every word is quoted as an FTS5 string, so what a person types (`order-4711`, `don't`,
    /// `AND`, `*`) is never read as query syntax; a word ending in `*` matches as a prefix.
    pub fn match_expression(&self) -> Option<String> {
        let subject = self.subject.as_deref().and_then(fts_words);
        let text = self.text.as_deref().and_then(fts_words);
        match (subject, text) {
            (None, None) => None,
            (Some(s), None) => Some(format!("subject : ({s})")),
            (None, Some(t)) => Some(format!("({t})")),
            (Some(s), Some(t)) => Some(format!("subject : ({s}) AND ({t})")),
        }
    }
}

fn fts_words(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .filter_map(|w| {
            let (w, prefix) = match w.strip_suffix('*') {
                Some(stem) => (stem, "*"),
                None => (w, ""),
            };
            (!w.is_empty()).then(|| format!("\"{}\"{prefix}", w.replace('"', "\"\"")))
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// One article found: which ticket, which article of it, where and when it came in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct ArticleHit {
    /// The ticket number.
    pub number: String,
    /// Its position in the ticket, from 1 (as `tickets show` numbers them; `--raw` takes it).
    pub article: i64,
    pub account: String,
    pub received_at: String,
    pub from: String,
    pub from_name: String,
    pub subject: String,
    pub message_id: String,
}

/// A bound in the form `received_at` is stored in (RFC 3339, whole seconds, `Z`).
fn received_bound(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    /// Articles matching every criterion of `query`, newest first, at most `query.limit`.
    pub async fn find_articles(&self, query: &FindQuery) -> Result<Vec<ArticleHit>, StoreError> {
        let fts = query.match_expression();
        if fts.is_some() && self.backend == Backend::Postgres {
            return Err(StoreError::Unsupported(
                "tickets find: searching words (--subject, TEXT) needs the full-text index of a \
                 SQLite store; on PostgreSQL search by --from, --message-id, --account, \
                 --since and --until, or use PostgreSQL's own text search on the articles table \
                 (docs/schema.md)"
                    .into(),
            ));
        }
        let mut q = SqlBuilder::new(
            "SELECT t.number AS number, \
             (SELECT COUNT(*) FROM articles b WHERE b.ticket_id = a.ticket_id AND b.id <= a.id) AS article, \
             a.account AS account, a.received_at AS received_at, a.from_email AS \"from\", \
             a.from_name AS from_name, a.subject AS subject, a.message_id AS message_id FROM ",
        );
        q.push(if fts.is_some() {
            "articles_fts f JOIN articles a ON a.id = f.rowid"
        } else {
            "articles a"
        });
        q.push(" JOIN tickets t ON t.id = a.ticket_id WHERE 1 = 1");
        if let Some(expr) = &fts {
            q.push(" AND articles_fts MATCH ").push_bind(expr.clone());
        }
        // These expressions are those of the indexes in migration 0004, letter for letter.
        match &query.from {
            Some(Sender::Address(addr)) => {
                q.push(" AND lower(a.from_email) = ")
                    .push_bind(addr.clone());
            }
            Some(Sender::Domain(domain)) => {
                q.push(match self.backend {
                    Backend::Sqlite => {
                        " AND lower(substr(a.from_email, instr(a.from_email, '@') + 1)) = "
                    }
                    // PostgreSQL calls instr strpos.
                    Backend::Postgres => {
                        " AND lower(substr(a.from_email, strpos(a.from_email, '@') + 1)) = "
                    }
                })
                .push_bind(domain.clone());
            }
            None => {}
        }
        if let Some(id) = &query.message_id {
            let id = id.trim();
            let id = id.strip_prefix('<').unwrap_or(id);
            let id = id.strip_suffix('>').unwrap_or(id);
            q.push(" AND a.message_id = ").push_bind(id.to_string());
        }
        if let Some(account) = &query.account {
            q.push(" AND a.account = ").push_bind(account.clone());
        }
        if let Some(since) = query.since {
            q.push(" AND a.received_at >= ")
                .push_bind(received_bound(since));
        }
        if let Some(until) = query.until {
            q.push(" AND a.received_at < ")
                .push_bind(received_bound(until));
        }
        q.push(if fts.is_some() {
            " ORDER BY f.rowid DESC LIMIT "
        } else {
            " ORDER BY a.id DESC LIMIT "
        })
        .push_bind(i64::from(query.limit));
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(subject: Option<&str>, text: Option<&str>) -> Option<String> {
        FindQuery {
            from: None,
            message_id: None,
            subject: subject.map(String::from),
            text: text.map(String::from),
            account: None,
            since: None,
            until: None,
            limit: 50,
        }
        .match_expression()
    }

    #[test]
    fn typed_words_are_quoted_so_nothing_is_query_syntax() {
        assert_eq!(
            words(None, Some("order-4711 don't AND \"x")).unwrap(),
            r#"("order-4711" "don't" "AND" """x")"#
        );
    }

    #[test]
    fn a_trailing_star_searches_a_prefix() {
        assert_eq!(words(None, Some("liefer*")).unwrap(), r#"("liefer"*)"#);
        assert_eq!(words(None, Some("*")), None);
    }

    #[test]
    fn subject_words_are_limited_to_the_subject_column() {
        assert_eq!(
            words(Some("Rechnung"), Some("falsch")).unwrap(),
            r#"subject : ("Rechnung") AND ("falsch")"#
        );
        assert_eq!(words(Some("  "), None), None);
    }

    #[test]
    fn a_sender_is_an_address_or_a_domain() {
        assert_eq!(
            "Kunde@Example.COM".parse::<Sender>(),
            Ok(Sender::Address("kunde@example.com".into()))
        );
        assert_eq!(
            "@example.com".parse::<Sender>(),
            Ok(Sender::Domain("example.com".into()))
        );
        assert_eq!(
            "example.com".parse::<Sender>(),
            Ok(Sender::Domain("example.com".into()))
        );
        assert!("kunde@".parse::<Sender>().is_err());
        assert!("".parse::<Sender>().is_err());
    }
}
