//! An account's `[[account.rule]]`s and its old-mail status: attributes a mail's new ticket gets
//! from what the mail says, applied by [`super::route`]. They set the status, the type and
//! whether the automatic reply goes out; they never decide whether a mail is kept.

use std::fmt;
use std::time::Duration;

use super::parse::{header_texts, ParsedMail};
use crate::config::{AccountConfig, RuleConfig, RuleError, RuleTest as Test};
use chrono::{DateTime, Utc};

/// One rule, checked: its test compiled.
#[derive(Debug, Clone)]
pub struct MailRule {
    /// Its position among the account's rules, from 1, as the admin counts them in the file.
    pub number: usize,
    pub header: String,
    pub test: Test,
    pub status: Option<String>,
    pub ticket_type: Option<String>,
    pub auto_reply: Option<bool>,
}

impl MailRule {
    /// The rule of `config`, the `number`th of its account.
    pub fn new(number: usize, config: &RuleConfig) -> Result<MailRule, RuleError> {
        Ok(MailRule {
            number,
            header: config.header.trim().to_string(),
            test: config.test()?,
            status: config.status.clone(),
            ticket_type: config.ticket_type.clone(),
            auto_reply: config.auto_reply,
        })
    }

    /// Whether the mail's header (any of its occurrences) passes the test.
    pub fn applies_to(&self, parsed: &ParsedMail, raw: &[u8]) -> bool {
        header_values(&self.header, parsed, raw)
            .iter()
            .any(|value| match &self.test {
                Test::Contains(text) => value.to_lowercase().contains(&text.to_lowercase()),
                Test::Matches(re) => re.is_match(value),
            })
    }
}

/// `rule 2 (X-Spam-Flag contains "YES")`: how a rule is named where it is recorded.
impl fmt::Display for MailRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (how, what) = match &self.test {
            Test::Contains(text) => ("contains", text.as_str()),
            Test::Matches(re) => ("matches", re.as_str()),
        };
        write!(f, "rule {} ({} {how} {what:?})", self.number, self.header)
    }
}

/// Two rules are the same when they read the same (a regex compares by its pattern): a reload
/// restarts an account only when its rules changed.
impl PartialEq for MailRule {
    fn eq(&self, other: &MailRule) -> bool {
        self.to_string() == other.to_string()
            && self.status == other.status
            && self.ticket_type == other.ticket_type
            && self.auto_reply == other.auto_reply
    }
}

/// The values a rule's header name stands for. `from`, `to` and `subject` are the parsed values
/// (decoded, as the ticket shows them; `from` is `Name <address>`); any other name is read from
/// the raw header, every occurrence (see [`header_texts`]).
fn header_values(name: &str, parsed: &ParsedMail, raw: &[u8]) -> Vec<String> {
    match name.to_ascii_lowercase().as_str() {
        "from" => vec![format!("{} <{}>", parsed.from_name, parsed.from_email)],
        "to" => vec![parsed.to.clone()],
        "subject" => vec![parsed.subject.clone()],
        _ => header_texts(raw, name),
    }
}

/// `old_mail_status` with `old_mail_age`: a new ticket from a mail older than `age` gets
/// `status`, and no automatic reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldMail {
    pub age: Duration,
    pub status: String,
}

impl OldMail {
    /// The account's `old_mail_status` with its `old_mail_age`; `None` unless both are set
    /// (check-config refuses one without the other).
    pub fn for_account(account: &AccountConfig) -> Option<OldMail> {
        match (&account.old_mail_status, account.old_mail_age) {
            (Some(status), Some(age)) => Some(OldMail {
                age,
                status: status.clone(),
            }),
            _ => None,
        }
    }

    /// Whether the mail is older than `age` at `now`: by its Date, or by when the server
    /// received it (`arrived`: IMAP's INTERNALDATE) when the Date is missing or absurd. With
    /// neither (POP3 and no usable Date) it counts as new: its ticket keeps the usual status,
    /// where the staff see it.
    pub fn is_old(
        &self,
        parsed: &ParsedMail,
        arrived: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        let usable_date = parsed.date.filter(|date| plausible(*date, now));
        let Some(written) = usable_date.or(arrived) else {
            return false;
        };
        now.signed_duration_since(written)
            .to_std()
            .is_ok_and(|age| age > self.age)
    }
}

/// A Date no mail program writes by mistake of the clock alone: not before 1990 (a Date of 1970
/// is a zero timestamp) and not more than a day ahead.
fn plausible(date: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let earliest = DateTime::from_timestamp(631_152_000, 0).unwrap_or_default(); // 1990-01-01
    date >= earliest && date <= now + chrono::Duration::days(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn rule(header: &str, contains: &str) -> MailRule {
        let config = RuleConfig {
            header: header.into(),
            contains: Some(contains.into()),
            matches: None,
            status: Some("spam".into()),
            ticket_type: None,
            auto_reply: None,
        };
        MailRule::new(1, &config).unwrap()
    }

    const MAIL: &[u8] = b"From: Kunde <k@kunde.example>\r\nTo: support@shop.test\r\n\
        Cc: Einkauf <einkauf@shop.test>,\r\n returns@shop.test\r\nReply-To: <form@kunde.example>\r\n\
        X-Spam-Flag: YES\r\nX-Category: =?UTF-8?Q?R=C3=BCcksendung?=\r\nSubject: Frage\r\n\r\nText\r\n";

    #[test]
    fn any_header_is_tested_whatever_its_case_and_kind() {
        let parsed = parse(MAIL);
        for (header, text) in [
            ("x-spam-flag", "yes"),
            ("X-SPAM-FLAG", "YES"),
            // Address headers, by their text as written (folding undone).
            ("Cc", "<einkauf@shop.test>, returns@shop.test"),
            ("reply-to", "form@kunde.example"),
            // Encoded words decoded.
            ("X-Category", "Rücksendung"),
            ("from", "Kunde <k@kunde.example>"),
        ] {
            assert!(
                rule(header, text).applies_to(&parsed, MAIL),
                "{header} contains {text}"
            );
        }
        assert!(!rule("X-Missing", "").applies_to(&parsed, MAIL));
        assert!(!rule("X-Spam-Flag", "no").applies_to(&parsed, MAIL));
    }
}
