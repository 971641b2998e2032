//! `tickets find`: articles by sender, Message-ID, subject words and full text, newest first.
//!
//! Each criterion has an index (migration 0004): `articles_from` / `articles_from_domain` for
//! senders, `message_id_hashes` (migration 0013) for Message-IDs, and the FTS5 table
//! `articles_fts` for words. When words are given, the FTS index drives the query in descending
//! row id order, so a common word stops after `limit` hits instead of ranking every match.
//!
//! A time window (`--since`/`--until`) with words becomes a row id range of the FTS index
//! ([`Store::article_ids_received`]): without it, a window holding fewer than `limit` hits made
//! the query read the word's whole posting list, and every hit's article row, to find out.
//!
//! PostgreSQL: the sender, Message-ID, account and time criteria work the same (indexes of its
//! migration 0004). Words use its text search instead of FTS5: the generated tsvector column
//! `articles.words` and its GIN index, and a GIN index of the subject words alone (its
//! migration 0008), their words folded by `search_text` as FTS5 folds them (its migration 0010).

use std::str::FromStr;

use super::message_ids::message_id_hash;
use super::{Backend, SqlBuilder, Store, StoreError};
use chrono::{DateTime, TimeDelta, Utc};
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

/// No criterion yet, and the default page: the start of a query built field by field.
impl Default for FindQuery {
    fn default() -> FindQuery {
        FindQuery {
            from: None,
            message_id: None,
            subject: None,
            text: None,
            account: None,
            since: None,
            until: None,
            limit: FindQuery::DEFAULT_LIMIT,
        }
    }
}

impl FindQuery {
    /// Articles per page unless asked otherwise (`tickets find --limit`).
    pub const DEFAULT_LIMIT: u32 = 50;

    /// At least one criterion that an index answers (a bare `--account` would list everything).
    pub fn has_criterion(&self) -> bool {
        self.from.is_some() || self.message_id.is_some() || self.has_words()
    }

    fn has_words(&self) -> bool {
        !self.subject_words().is_empty() || !self.text_words().is_empty()
    }

    fn subject_words(&self) -> Vec<Word<'_>> {
        words(self.subject.as_deref())
    }

    fn text_words(&self) -> Vec<Word<'_>> {
        words(self.text.as_deref())
    }

    /// The FTS5 query (SQLite) for the subject and text words, or `None` when neither has a
    /// word.
    ///
    /// Every word is quoted as an FTS5 string, so what a person types (`order-4711`, `don't`,
    /// `AND`, `*`) is never read as query syntax; a word ending in `*` matches as a prefix.
    pub fn fts5_expression(&self) -> Option<String> {
        let quoted = |words: Vec<Word>| {
            let w: Vec<String> = words
                .iter()
                .map(|w| {
                    let star = if w.prefix { "*" } else { "" };
                    format!("\"{}\"{star}", w.text.replace('"', "\"\""))
                })
                .collect();
            (!w.is_empty()).then(|| w.join(" "))
        };
        match (quoted(self.subject_words()), quoted(self.text_words())) {
            (None, None) => None,
            (Some(s), None) => Some(format!("subject : ({s})")),
            (None, Some(t)) => Some(format!("({t})")),
            (Some(s), Some(t)) => Some(format!("subject : ({s}) AND ({t})")),
        }
    }
}

/// The `to_tsquery('simple', …)` text for `words`, each as folded by the store's
/// `search_text` (the function the index was built with), or `None` when none has a letter
/// left: all words must occur.
///
/// Every word is one quoted lexeme, so what a person types is never read as query syntax;
/// PostgreSQL splits a quoted word that folding broke in two (`order 4711`) into a phrase, as
/// FTS5 does. A word ending in `*` matches as a prefix (`:*`).
fn tsquery(words: &[Word<'_>], folded: &[String]) -> Option<String> {
    let lexemes: Vec<String> = words
        .iter()
        .zip(folded)
        .filter(|(_, f)| !f.trim().is_empty())
        .map(|(w, f)| {
            let prefix = if w.prefix { ":*" } else { "" };
            let quoted = f.trim().replace('\\', "\\\\").replace('\'', "''");
            format!("'{quoted}'{prefix}")
        })
        .collect();
    (!lexemes.is_empty()).then(|| lexemes.join(" & "))
}

/// One word a person typed; `prefix` when it ended in `*`.
struct Word<'a> {
    text: &'a str,
    prefix: bool,
}

fn words(text: Option<&str>) -> Vec<Word<'_>> {
    text.unwrap_or_default()
        .split_whitespace()
        .map(|w| match w.strip_suffix('*') {
            Some(stem) => Word {
                text: stem,
                prefix: true,
            },
            None => Word {
                text: w,
                prefix: false,
            },
        })
        .filter(|w| !w.text.is_empty())
        .collect()
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

/// How far `received_at` may run against the article ids. Ids grow with commit order while
/// `received_at` is the moment of the fetch, so two accounts' passes can commit in the other
/// order (seconds to minutes apart), and a clock can be stepped back (NTP corrections are
/// seconds). A day covers those with room to spare; the exact `received_at` condition still
/// applies inside the range, so the margin only costs reading a day more of the index. A clock
/// set back by more than a day between two fetches can hide the articles of that stretch from
/// a word search with `--since`/`--until`; the other criteria and `tickets list` do not use the
/// range.
const RECEIVED_ORDER_SLACK: TimeDelta = TimeDelta::days(1);

/// Article ids `[from, to)` that can hold every article received in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IdRange {
    from: Option<i64>,
    to: Option<i64>,
}

impl Store {
    /// Articles matching every criterion of `query`, newest first, at most `query.limit`.
    pub async fn find_articles(&self, query: &FindQuery) -> Result<Vec<ArticleHit>, StoreError> {
        let words = query.has_words();
        let mut q = SqlBuilder::new(
            self.backend,
            "SELECT t.number AS number, \
             (SELECT COUNT(*) FROM articles b WHERE b.ticket_id = a.ticket_id AND b.id <= a.id) AS article, \
             a.account AS account, a.received_at AS received_at, a.from_email AS \"from\", \
             a.from_name AS from_name, a.subject AS subject, a.message_id AS message_id FROM ",
        );
        // The column the rows come in order of: FTS5's row id when it drives the query.
        let id = match (words, self.backend) {
            (true, Backend::Sqlite) => {
                q.push("articles_fts f JOIN articles a ON a.id = f.rowid");
                "f.rowid"
            }
            _ => {
                q.push("articles a");
                "a.id"
            }
        };
        q.push(" JOIN tickets t ON t.id = a.ticket_id WHERE 1 = 1");
        if words {
            match self.backend {
                Backend::Sqlite => {
                    q.push(" AND articles_fts MATCH ")
                        .push_bind(query.fts5_expression().unwrap_or_default());
                }
                Backend::Postgres => {
                    let (subject, text) = (query.subject_words(), query.text_words());
                    let folded = self
                        .search_text(subject.iter().chain(&text).map(|w| w.text))
                        .await?;
                    let (folded_subject, folded_text) = folded.split_at(subject.len());
                    let subject = tsquery(&subject, folded_subject);
                    let text = tsquery(&text, folded_text);
                    if subject.is_none() && text.is_none() {
                        // Only punctuation: no article has such a word.
                        return Ok(Vec::new());
                    }
                    // The expressions of the indexes of migration 0008, letter for letter.
                    if let Some(subject) = subject {
                        q.push(" AND to_tsvector('simple', search_text(a.subject)) @@ to_tsquery('simple', ")
                            .push_bind(subject)
                            .push(")");
                    }
                    if let Some(text) = text {
                        q.push(" AND a.words @@ to_tsquery('simple', ")
                            .push_bind(text)
                            .push(")");
                    }
                }
            }
            // FTS5 seeks a row id range in its posting lists instead of filtering every hit;
            // PostgreSQL gets the same range to scan the primary key by.
            let ids = self.article_ids_received(query.since, query.until).await?;
            if let Some(from) = ids.from {
                q.push(&format!(" AND {id} >= ")).push_bind(from);
            }
            if let Some(to) = ids.to {
                q.push(&format!(" AND {id} < ")).push_bind(to);
            }
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
            q.push(" AND a.id IN (SELECT article_id FROM message_id_hashes WHERE hash = ")
                .push_bind(message_id_hash(id))
                .push(") AND a.message_id = ")
                .push_bind(id.to_string());
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
        q.push(&format!(" ORDER BY {id} DESC LIMIT "))
            .push_bind(i64::from(query.limit));
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }

    /// `words` folded by PostgreSQL's `search_text` (migration 0010), the function its word
    /// indexes were built with, in one round trip: the query folds exactly as the index did.
    async fn search_text<'w>(
        &self,
        words: impl Iterator<Item = &'w str>,
    ) -> Result<Vec<String>, StoreError> {
        // A typed word holds no whitespace, so a newline keeps them apart (folding leaves it).
        let joined: Vec<&str> = words.collect();
        let folded: String = sqlx::query_scalar("SELECT search_text($1)")
            .bind(joined.join("\n"))
            .fetch_one(&self.pool)
            .await?;
        Ok(folded.split('\n').map(String::from).collect())
    }

    /// The article ids that can hold the articles received in `[since, until)`, widened by
    /// [`RECEIVED_ORDER_SLACK`] on both sides.
    async fn article_ids_received(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<IdRange, StoreError> {
        let from = match since {
            Some(t) => {
                self.first_article_received(t - RECEIVED_ORDER_SLACK)
                    .await?
            }
            None => None,
        };
        let to = match until {
            Some(t) => {
                self.first_article_received(t + RECEIVED_ORDER_SLACK)
                    .await?
            }
            None => None,
        };
        Ok(IdRange { from, to })
    }

    /// The lowest article id received at or after `t` if ids and `received_at` grew together
    /// (see [`RECEIVED_ORDER_SLACK`] for why they nearly do); one past the last id when none
    /// was. A binary search by primary key: about 20 point reads at a million articles, where
    /// an index on `received_at` would cost every ingested mail one more B-tree to update.
    async fn first_article_received(&self, t: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let bound = received_bound(t);
        // Two subqueries, not `SELECT MIN(id), MAX(id)`: SQLite reads a lone MIN or MAX from
        // the end of the key, but both in one SELECT scan the whole table (150 ms at a million
        // articles).
        let (min, max): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT (SELECT MIN(id) FROM articles), (SELECT MAX(id) FROM articles)")
                .fetch_one(&self.pool)
                .await?;
        let (Some(mut lo), Some(max)) = (min, max) else {
            return Ok(None);
        };
        // Invariant: every id below `lo` was received before `t`; `hi` is received at or
        // after `t`, or one past the end.
        let mut hi = max + 1;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let next: Option<(i64, String)> = sqlx::query_as(
                "SELECT id, received_at FROM articles WHERE id >= $1 ORDER BY id LIMIT 1",
            )
            .bind(mid)
            .fetch_optional(&self.pool)
            .await?;
            match next {
                Some((id, at)) if at < bound => lo = id + 1,
                _ => hi = mid,
            }
        }
        Ok(Some(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Incoming, TicketRules};

    fn rules() -> TicketRules {
        TicketRules::without_replies("support")
    }

    /// Mail `n` fetched `n` hours after `base`, give or take `jitter` (up to two hours).
    fn fetched(n: i64, base: DateTime<Utc>, jitter: bool) -> Incoming {
        let raw = format!(
            "From: k{n}@c.test\r\nSubject: Lieferung {n}\r\nMessage-ID: <m{n}@c.test>\r\n\r\nWo bleibt mein Paket {n}?\r\n"
        );
        Incoming {
            source_key: format!("imap:INBOX:1:{n}").parse().unwrap(),
            parsed: crate::ingest::parse::parse(raw.as_bytes()),
            raw: raw.into_bytes(),
            received_at: base
                + TimeDelta::hours(n)
                + TimeDelta::minutes(if jitter { (n % 5 - 2) * 60 } else { 0 }),
            arrived: None,
            extent: crate::ingest::Extent::Whole,
        }
    }

    fn new_year() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A store of years rewrites its words less often (migration 0012): a level of the
    /// full-text index is merged once it holds 16 segments, and always in steps, so no batch
    /// merges a whole level of a large store inside its transaction.
    #[tokio::test]
    async fn the_word_index_merges_sixteen_segments_at_a_time_and_in_steps() {
        let store = Store::open_in_memory().await.unwrap();
        let policy: Vec<(String, i64)> = sqlx::query_as(
            "SELECT k, v FROM articles_fts_config WHERE k IN ('automerge', 'crisismerge') ORDER BY k",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            policy,
            [
                ("automerge".to_string(), 16),
                ("crisismerge".to_string(), 64)
            ]
        );
    }

    #[tokio::test]
    async fn the_first_article_received_at_a_moment_is_found_by_its_id() {
        let store = Store::open_in_memory().await.unwrap();
        let base = new_year();
        assert_eq!(store.first_article_received(base).await.unwrap(), None);
        let mails: Vec<Incoming> = (0..100).map(|n| fetched(n, base, false)).collect();
        store.store_batch(&rules(), &mails).await.unwrap();
        // Mail n is article n + 1.
        for (hours, id) in [
            (-3, 1),
            (0, 1),
            (1, 2),
            (37, 38),
            (99, 100),
            (100, 101),
            (400, 101),
        ] {
            let t = base + TimeDelta::hours(hours);
            assert_eq!(
                store.first_article_received(t).await.unwrap(),
                Some(id),
                "{hours} h"
            );
        }
        let t = base + TimeDelta::hours(37) - TimeDelta::minutes(1);
        assert_eq!(store.first_article_received(t).await.unwrap(), Some(38));
    }

    #[tokio::test]
    async fn words_in_a_time_window_find_exactly_the_articles_received_in_it() {
        let store = Store::open_in_memory().await.unwrap();
        let base = new_year();
        let mails: Vec<Incoming> = (0..200).map(|n| fetched(n, base, true)).collect();
        store.store_batch(&rules(), &mails).await.unwrap();
        let find = |since: Option<i64>, until: Option<i64>| FindQuery {
            text: Some("paket".into()),
            since: since.map(|h| base + TimeDelta::hours(h)),
            until: until.map(|h| base + TimeDelta::hours(h)),
            limit: 1000,
            ..FindQuery::default()
        };
        let everything = store.find_articles(&find(None, None)).await.unwrap();
        assert_eq!(everything.len(), 200);
        for (since, until) in [
            (Some(0), Some(1)),
            (Some(40), Some(41)),
            (Some(41), None),
            (None, Some(60)),
            (Some(190), Some(300)),
            (Some(-5), Some(3)),
            (Some(500), None),
        ] {
            let q = find(since, until);
            let expected: Vec<&str> = everything
                .iter()
                .filter(|hit| {
                    let at: DateTime<Utc> = hit.received_at.parse().unwrap();
                    q.since.is_none_or(|s| at >= s) && q.until.is_none_or(|u| at < u)
                })
                .map(|hit| hit.message_id.as_str())
                .collect();
            let found = store.find_articles(&q).await.unwrap();
            let found: Vec<&str> = found.iter().map(|hit| hit.message_id.as_str()).collect();
            assert_eq!(found, expected, "window {since:?}..{until:?}");
        }
    }

    fn query(subject: Option<&str>, text: Option<&str>) -> FindQuery {
        FindQuery {
            subject: subject.map(String::from),
            text: text.map(String::from),
            ..FindQuery::default()
        }
    }

    fn words(subject: Option<&str>, text: Option<&str>) -> Option<String> {
        query(subject, text).fts5_expression()
    }

    /// The tsquery for these words, each folded as `search_text` would (here: by hand).
    fn tsquery_of(text: &str, folded: &[&str]) -> Option<String> {
        let folded: Vec<String> = folded.iter().map(|f| f.to_string()).collect();
        tsquery(&query(None, Some(text)).text_words(), &folded)
    }

    #[test]
    fn folded_words_are_quoted_lexemes_on_postgres() {
        assert_eq!(
            tsquery_of("Order-4711 it's", &["order 4711", "it s"]).unwrap(),
            "'order 4711' & 'it s'"
        );
        // Folding turns quotes and backslashes into spaces; were one left, it stays quoted.
        assert_eq!(tsquery_of("a'b", &["a'b\\"]).unwrap(), r"'a''b\\'");
        assert_eq!(
            tsquery_of("Rechnung liefer*", &["rechnung", "liefer"]).unwrap(),
            "'rechnung' & 'liefer':*"
        );
        assert_eq!(tsquery_of("& !", &["  ", " "]), None);
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
