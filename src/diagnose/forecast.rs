//! test-fetch's "forecast" step: what the mail already waiting in the folder (IMAP) or the
//! maildrop (POP3) becomes once the daemon fetches it, told before it does:
//!
//! ```text
//! "INBOX" holds 1,234 mails, 1,102 of them older than 14 days: they will become tickets with
//! status closed and get no automatic reply; the other 132 will become tickets with status open
//! ```
//!
//! Each protocol reads the dates only (IMAP: INTERNALDATE and the Date header; POP3: the header
//! by TOP) and hands them to a [`Tally`], which judges each mail by the very rules the pass
//! applies: [`OldMail::is_old`] for `old_mail_status` / `old_mail_age`, and
//! [`reply::rules::too_old`](crate::ingest::reply::rules::too_old) for `auto_reply_max_age`.
//! Without `old_mail_*`, "old" means what the reply rule calls old, and the step names the keys
//! that would give such mail another status.
//!
//! What it cannot know without the store or the whole mail: a mail that answers a stored ticket
//! joins it instead of opening one, and an `[[account.rule]]` may set another status (the step
//! says so when the account has rules).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{AccountConfig, Config, Disposal, Pop3Action};
use crate::ingest::mail_rules::OldMail;
use crate::ingest::parse::parse;
use crate::ingest::reply::rules::too_old;
use crate::ingest::reply::ReplyPolicy;

/// What the account's config gives a new ticket, resolved as the daemon resolves it.
#[derive(Debug, Clone)]
pub(super) struct Outlook {
    /// `ticket_status`.
    status: String,
    /// `old_mail_status` with `old_mail_age`.
    old_mail: Option<OldMail>,
    /// `auto_reply_max_age`; also what "old" means when `old_mail_*` is not set.
    max_age: Duration,
    /// Whether new tickets get an automatic reply at all (`auto_reply` and an `[smtp]`).
    replies: bool,
    /// How many `[[account.rule]]`s the account has.
    rules: usize,
    /// POP3 `action = "keep"`: mails fetched before stay in the maildrop.
    keeps: bool,
}

impl Outlook {
    pub(super) fn of(config: &Config, account: &AccountConfig) -> Outlook {
        Outlook {
            status: account.ticket_status.clone(),
            old_mail: OldMail::for_account(account),
            max_age: account.auto_reply_max_age,
            // A template file that cannot be read keeps the daemon from starting the account;
            // check-config says so, the forecast need not.
            replies: matches!(ReplyPolicy::for_account(config, account), Ok(Some(_))),
            rules: account.rules.len(),
            keeps: matches!(account.disposal(), Ok(Disposal::Pop3(Pop3Action::Keep))),
        }
    }

    /// The forecast when the mails' dates cannot be read (`why`): the rule alone.
    pub(super) fn unread(&self, place: &str, total: u64, why: &str) -> String {
        let rule = match &self.old_mail {
            Some(old) => format!(
                "a mail older than {} by its Date will become a ticket with status {} and get \
                 no automatic reply, any other a ticket with status {}",
                age_words(old.age),
                old.status,
                self.status
            ),
            None => format!(
                "each will become a ticket with status {} (old_mail_status and old_mail_age \
                 give old mail another status and no automatic reply)",
                self.status
            ),
        };
        format!(
            "{place} holds {}; {why}, so their age is known only once they are fetched: {rule}",
            mails(total)
        )
    }

    /// An empty count of the mails in `place` (`"INBOX"`, `the maildrop`), judged at `now`.
    /// `total`: how many there are, when not every one is read; `None`: those read are all.
    pub(super) fn tally(&self, place: String, total: Option<u64>, now: DateTime<Utc>) -> Tally<'_> {
        Tally {
            outlook: self,
            place,
            total,
            read: 0,
            old: 0,
            may_reply: 0,
            now,
        }
    }
}

/// The mails of one folder, counted as their dates come in.
#[derive(Debug)]
pub(super) struct Tally<'a> {
    outlook: &'a Outlook,
    place: String,
    /// Every mail in the place; `None`: the ones read.
    total: Option<u64>,
    /// The mails whose dates were read (POP3 may read only the newest).
    read: u64,
    /// Of those: older than `old_mail_age` by [`OldMail::is_old`], or without `old_mail_*`
    /// older than `auto_reply_max_age` by the reply rule.
    old: u64,
    /// Of the others: not too old for an automatic reply.
    may_reply: u64,
    now: DateTime<Utc>,
}

impl Tally<'_> {
    /// One mail: the header fields read (at least its Date, if it has one) and, where the
    /// protocol says, when the server received it.
    pub(super) fn add(&mut self, header: &[u8], arrived: Option<DateTime<Utc>>) {
        // The same parser as ingestion, so a Date it cannot read is missing here too.
        let parsed = parse(header);
        let too_old_to_answer = too_old(parsed.date, self.outlook.max_age, self.now).is_some();
        let old = match &self.outlook.old_mail {
            Some(old_mail) => old_mail.is_old(&parsed, arrived, self.now),
            None => too_old_to_answer,
        };
        self.read += 1;
        if old {
            self.old += 1;
        } else if !too_old_to_answer {
            self.may_reply += 1;
        }
    }

    /// The step's detail.
    pub(super) fn describe(&self) -> String {
        let o = self.outlook;
        let (read, old) = (self.read, self.old);
        let total = self.total.unwrap_or(read).max(read);
        if total == 0 {
            return format!("{} holds no mail yet", self.place);
        }
        if read == 0 {
            return o.unread(&self.place, total, "no mail's header could be read");
        }
        let mut text = format!("{} holds {}", self.place, mails(total));
        if read < total {
            text.push_str(&format!(
                " (the headers of the newest {} were read: POP3 tells a mail's date only by \
                 its header)",
                thousands(read)
            ));
        }
        let young = read - old;
        // What the automatic reply does for a `group` of mails that includes every one that may
        // get it.
        let reply_words = |group: u64, all_of_them: bool| -> String {
            if !o.replies {
                return String::new();
            }
            let may = self.may_reply;
            if may == group {
                " and may get an automatic reply".into()
            } else if may == 0 {
                format!(
                    " and, being older than auto_reply_max_age ({}), get no automatic reply",
                    age_words(o.max_age)
                )
            } else {
                format!(
                    "; {} of {} not older than auto_reply_max_age ({}) may get an automatic reply",
                    thousands(may),
                    if all_of_them { "them" } else { "those" },
                    age_words(o.max_age)
                )
            }
        };
        // "none older than", "all older than", "1,102 of them older than".
        let older = |age: Duration| {
            let who = match (old, young) {
                (0, _) if read == 1 => "not",
                (0, _) => "none",
                (_, 0) if read == 1 => return format!("older than {}", age_words(age)),
                (_, 0) => "all",
                (old, _) => {
                    return format!("{} of them older than {}", thousands(old), age_words(age))
                }
            };
            format!("{who} older than {}", age_words(age))
        };
        match &o.old_mail {
            Some(old_mail) => {
                text.push_str(&format!(", {}: ", older(old_mail.age)));
                if old == 0 {
                    text.push_str(&becomes(young, &o.status));
                    text.push_str(&reply_words(young, true));
                } else {
                    text.push_str(&becomes(old, &old_mail.status));
                    text.push_str(" and get no automatic reply");
                    if young > 0 {
                        let other = if young == 1 {
                            "the other one will become a ticket".to_string()
                        } else {
                            format!("the other {} will become tickets", thousands(young))
                        };
                        text.push_str(&format!(
                            "; {other} with status {}{}",
                            o.status,
                            reply_words(young, false)
                        ));
                    }
                }
            }
            None => {
                text.push_str(&format!(", {}: ", older(o.max_age)));
                text.push_str(&becomes(read, &o.status));
                if old > 0 {
                    text.push_str(" like new mail");
                }
                text.push_str(&reply_words(read, true));
                if old > 0 {
                    text.push_str(
                        "; to give old mail another status and no automatic reply, set \
                         old_mail_status and old_mail_age (e.g. \"closed\" and \"14d\")",
                    );
                }
            }
        }
        if o.rules > 0 {
            text.push_str("; an [[account.rule]] that matches a mail sets its own status");
        }
        if o.keeps {
            text.push_str(
                "; mails fetched before stay as they are (action = \"keep\"): they make no new \
                 ticket",
            );
        }
        text
    }
}

/// "it will become a ticket with status open", "they will become tickets with status open".
fn becomes(n: u64, status: &str) -> String {
    if n == 1 {
        format!("it will become a ticket with status {status}")
    } else {
        format!("they will become tickets with status {status}")
    }
}

/// "1 mail", "1,234 mails".
fn mails(n: u64) -> String {
    if n == 1 {
        "1 mail".into()
    } else {
        format!("{} mails", thousands(n))
    }
}

/// `1234567` as "1,234,567".
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// An age as the admin wrote it, in the largest whole unit: "14 days", "36 hours", "90 seconds".
fn age_words(age: Duration) -> String {
    let secs = age.as_secs();
    let (n, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(unit, _)| secs > 0 && secs.is_multiple_of(*unit))
        .map_or((secs, "second"), |(size, unit)| (secs / size, unit));
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
    }

    fn outlook(old_mail: bool, replies: bool) -> Outlook {
        Outlook {
            status: "open".into(),
            old_mail: old_mail.then(|| OldMail {
                age: Duration::from_secs(14 * 86_400),
                status: "closed".into(),
            }),
            max_age: Duration::from_secs(86_400),
            replies,
            rules: 0,
            keeps: false,
        }
    }

    fn header(days_ago: i64) -> Vec<u8> {
        let date = now() - chrono::Duration::days(days_ago) + chrono::Duration::minutes(1);
        format!("Date: {}\r\n\r\n", date.to_rfc2822()).into_bytes()
    }

    /// `days` ago each: the forecast's words.
    fn forecast(outlook: &Outlook, days: &[i64]) -> String {
        let mut tally = outlook.tally("\"INBOX\"".into(), None, now());
        for d in days {
            tally.add(&header(*d), None);
        }
        tally.describe()
    }

    #[test]
    fn numbers_get_thousands_separators() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234, "1,234"),
            (123_456, "123,456"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }

    #[test]
    fn ages_read_in_their_largest_whole_unit() {
        for (secs, text) in [
            (14 * 86_400, "14 days"),
            (86_400, "1 day"),
            (36 * 3_600, "36 hours"),
            (90 * 60, "90 minutes"),
            (90, "90 seconds"),
            (0, "0 seconds"),
        ] {
            assert_eq!(age_words(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn old_mail_configured_names_both_groups_and_the_replies() {
        let days = [400, 30, 20, 3, 0];
        assert_eq!(
            forecast(&outlook(true, false), &days),
            "\"INBOX\" holds 5 mails, 3 of them older than 14 days: they will become tickets \
             with status closed and get no automatic reply; the other 2 will become tickets \
             with status open"
        );
        assert_eq!(
            forecast(&outlook(true, true), &days),
            "\"INBOX\" holds 5 mails, 3 of them older than 14 days: they will become tickets \
             with status closed and get no automatic reply; the other 2 will become tickets \
             with status open; 1 of those not older than auto_reply_max_age (1 day) may get an \
             automatic reply"
        );
        assert_eq!(
            forecast(&outlook(true, true), &[400, 30]),
            "\"INBOX\" holds 2 mails, all older than 14 days: they will become tickets with \
             status closed and get no automatic reply"
        );
        assert_eq!(
            forecast(&outlook(true, true), &[0, 0]),
            "\"INBOX\" holds 2 mails, none older than 14 days: they will become tickets with \
             status open and may get an automatic reply"
        );
        assert_eq!(
            forecast(&outlook(true, true), &[3]),
            "\"INBOX\" holds 1 mail, not older than 14 days: it will become a ticket with \
             status open and, being older than auto_reply_max_age (1 day), get no automatic \
             reply"
        );
    }

    #[test]
    fn without_old_mail_the_forecast_names_the_keys_that_change_it() {
        assert_eq!(
            forecast(&outlook(false, true), &[400, 3, 0]),
            "\"INBOX\" holds 3 mails, 2 of them older than 1 day: they will become tickets \
             with status open like new mail; 1 of them not older than auto_reply_max_age \
             (1 day) may get an automatic reply; to give old mail another status and no \
             automatic reply, set old_mail_status and old_mail_age (e.g. \"closed\" and \"14d\")"
        );
        assert_eq!(
            forecast(&outlook(false, false), &[400, 3]),
            "\"INBOX\" holds 2 mails, all older than 1 day: they will become tickets with \
             status open like new mail; to give old mail another status and no automatic \
             reply, set old_mail_status and old_mail_age (e.g. \"closed\" and \"14d\")"
        );
        assert_eq!(
            forecast(&outlook(false, true), &[0, 0]),
            "\"INBOX\" holds 2 mails, none older than 1 day: they will become tickets with \
             status open and may get an automatic reply"
        );
        assert_eq!(
            forecast(&outlook(false, true), &[]),
            "\"INBOX\" holds no mail yet"
        );
    }

    #[test]
    fn mails_are_judged_by_the_rules_of_the_pass() {
        let o = outlook(true, true);
        let mut tally = o.tally("\"INBOX\"".into(), None, now());
        let long_ago = Some(now() - chrono::Duration::days(100));
        // A Date of 1970 is absurd: the server's INTERNALDATE decides, as in the pass.
        tally.add(b"Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n\r\n", long_ago);
        tally.add(
            b"Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n\r\n",
            Some(now()),
        );
        // No Date at all: INTERNALDATE too; without one the mail counts as new.
        tally.add(b"\r\n", long_ago);
        tally.add(b"\r\n", None);
        assert_eq!((tally.read, tally.old, tally.may_reply), (4, 2, 1));
    }

    #[test]
    fn rules_keep_and_partly_read_maildrops_are_said() {
        let mut o = outlook(true, false);
        o.rules = 2;
        o.keeps = true;
        let mut tally = o.tally("the maildrop".into(), Some(12_000), now());
        tally.add(&header(30), None);
        tally.add(&header(0), None);
        assert_eq!(
            tally.describe(),
            "the maildrop holds 12,000 mails (the headers of the newest 2 were read: POP3 tells \
             a mail's date only by its header), 1 of them older than 14 days: it will become a \
             ticket with status closed and get no automatic reply; the other one will become a \
             ticket with status open; an [[account.rule]] that matches a mail sets its own \
             status; mails fetched before stay as they are (action = \"keep\"): they make no \
             new ticket"
        );
    }
}
