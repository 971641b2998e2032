//! What commands print: the human-readable tables of `tickets` and `quarantine`, and the
//! ways out (JSON, raw bytes, an error line) with their exit codes.

use std::fmt::Write;
use std::process::ExitCode;

use crate::store::{
    ArticleHit, QuarantinedMail, TicketDetail, TicketSummary, TooLarge, TooLargeState,
};

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

pub fn ticket_table(list: &[TicketSummary]) -> String {
    if list.is_empty() {
        return "no tickets yet\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:<10} {:<8} {:>3}  {:<16}  {:<28} SUBJECT",
        "NUMBER", "ACCOUNT", "TYPE", "STATUS", "ART", "CREATED", "CUSTOMER"
    );
    for t in list {
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:<10} {:<8} {:>3}  {:<16}  {:<28} {}",
            t.number,
            clip(&t.account, 12),
            clip(&t.ticket_type, 10),
            clip(&t.status, 8),
            t.articles,
            t.created_at
                .get(..16)
                .unwrap_or(&t.created_at)
                .replace('T', " "),
            clip(&t.customer, 28),
            clip(&t.subject, 60)
        );
    }
    out
}

/// `tickets find`: one line per article, naming the ticket and the article as `tickets show
/// NUMBER --raw ARTICLE` takes them.
pub fn hit_table(hits: &[ArticleHit]) -> String {
    if hits.is_empty() {
        return "nothing found\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>3}  {:<12} {:<16}  {:<28} SUBJECT",
        "TICKET", "ART", "ACCOUNT", "RECEIVED", "FROM"
    );
    for h in hits {
        let _ = writeln!(
            out,
            "{:<8} {:>3}  {:<12} {:<16}  {:<28} {}",
            h.number,
            h.article,
            clip(&h.account, 12),
            h.received_at
                .get(..16)
                .unwrap_or(&h.received_at)
                .replace('T', " "),
            clip(&h.from, 28),
            clip(&h.subject, 60)
        );
    }
    out
}

/// What `tickets show` says of an article that holds only the header of a mail too large to
/// fetch: how large, and where the mail is or what became of it.
fn too_large_note(t: &TooLarge) -> String {
    let size = format!(
        "{} bytes, more than max_message_size: only the header is stored",
        t.size
    );
    let place = match &t.folder {
        Some(folder) => format!("account {}, folder {folder}", t.account),
        None => format!("account {}", t.account),
    };
    match (t.state, t.whole_article) {
        (TooLargeState::OnServer, _) => format!(
            "{size}; the mail stays on the server ({place}) until max_message_size allows it"
        ),
        (TooLargeState::FetchedWhole, Some(n)) => {
            format!("{size} here; the whole mail is article {n}")
        }
        (TooLargeState::FetchedWhole, None) => format!(
            "{size} here; the whole mail was stored later as a copy of a message stored whole \
             (see the ticket that holds it)"
        ),
        (TooLargeState::Gone, _) => format!(
            "{size}; the mail left the server ({place}) without being fetched whole (another \
             client moved or deleted it)"
        ),
    }
}

pub fn ticket_detail(t: &TicketDetail) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Ticket {}: {}", t.number, t.subject);
    let _ = writeln!(
        out,
        "  account {} · type {} · status {} · customer {} <{}> · created {}",
        t.account, t.ticket_type, t.status, t.customer_name, t.customer, t.created_at
    );
    for (i, a) in t.articles.iter().enumerate() {
        let kind = match a.completes {
            _ if a.bounce => "bounce of our automatic reply".to_string(),
            // Fetched once max_message_size allowed it.
            Some(header) => format!("the whole mail of article {header}"),
            None if a.followup => "follow-up".to_string(),
            None => "first mail".to_string(),
        };
        let _ = writeln!(
            out,
            "\n  Article {} ({kind}), received {}",
            i + 1,
            a.received_at
        );
        let _ = writeln!(out, "    From:       {} <{}>", a.from_name, a.from);
        let _ = writeln!(out, "    Subject:    {}", a.subject);
        let _ = writeln!(out, "    Message-ID: {}", a.message_id);
        if a.received_by.len() > 1 {
            let _ = writeln!(out, "    Received:   by {}", a.received_by.join(", "));
        }
        if let Some(problem) = &a.malformed {
            let _ = writeln!(out, "    Malformed:  {problem} (raw message kept)");
        }
        if let Some(rule) = &a.rule {
            let _ = writeln!(out, "    Rule:       {rule}");
        }
        if let Some(too_large) = &a.too_large {
            let _ = writeln!(out, "    Too large:  {}", too_large_note(too_large));
        }

        if !a.auto_reply.is_empty() {
            let _ = writeln!(out, "    Auto-reply: {}", a.auto_reply);
        }
        // Numbered as `--attachment ARTICLE N` takes them.
        for (n, att) in a.attachments.iter().enumerate() {
            let _ = writeln!(
                out,
                "    Attachment {}: {} ({}, {} bytes)",
                n + 1,
                att.filename,
                att.content_type,
                att.size
            );
        }
        for line in a.text.lines() {
            let _ = writeln!(out, "    | {line}");
        }
    }
    out
}

/// `quarantine list`: one line per mail, its last error on the line below.
pub fn quarantine_table(mails: &[QuarantinedMail]) -> String {
    if mails.is_empty() {
        return "no mail is in quarantine\n".into();
    }
    let unknown = |text: &str| if text.is_empty() { "?" } else { text }.to_string();
    let keys: Vec<String> = mails.iter().map(|m| m.key.to_string()).collect();
    let senders: Vec<String> = mails.iter().map(|m| unknown(&m.sender)).collect();
    let account_width = width(mails.iter().map(|m| m.account.as_str()), "ACCOUNT", 20);
    let key_width = width(keys.iter().map(String::as_str), "KEY", 40);
    let sender_width = width(senders.iter().map(String::as_str), "FROM", 40);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<account_width$}  {:<key_width$}  {:>9}  {:>5}  {:<16}  {:<sender_width$}  SUBJECT",
        "ACCOUNT", "KEY", "BYTES", "TRIES", "FAILING SINCE", "FROM"
    );
    for ((m, key), sender) in mails.iter().zip(&keys).zip(&senders) {
        // 0: recorded before the store kept the size.
        let size = match m.size {
            0 => "?".to_string(),
            n => n.to_string(),
        };
        let _ = writeln!(
            out,
            "{:<account_width$}  {:<key_width$}  {:>9}  {:>5}  {:<16}  {:<sender_width$}  {}",
            clip(&m.account, account_width),
            clip(key, key_width),
            size,
            m.attempts,
            m.since.format("%Y-%m-%d %H:%M"),
            clip(sender, sender_width),
            clip(&unknown(&m.subject), 60)
        );
        let _ = writeln!(
            out,
            "{:account_width$}  last error: {}",
            "",
            clip(&one_line(&m.error), 160)
        );
    }
    out
}

/// A column's width: its widest value or its heading, at most `cap` characters.
fn width<'a>(values: impl Iterator<Item = &'a str>, heading: &str, cap: usize) -> usize {
    values
        .map(|v| v.chars().count())
        .chain([heading.len()])
        .max()
        .unwrap_or(0)
        .min(cap)
}

/// An error text on one line without control characters (a store error may span several
/// lines, and a panic's message may quote the mail).
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn print_json<T: serde::Serialize>(value: &T) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Bytes for `> file`: exactly these, nothing before or after (no newline, no message).
pub fn write_stdout(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing to standard output failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `error: ...` on stderr, exit 1.
pub fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::SourceKey;

    #[test]
    fn a_quarantined_mail_takes_two_lines_whatever_its_error_holds() {
        let mail = QuarantinedMail {
            account: "support".into(),
            key: SourceKey::Pop3 { uidl: "u1".into() },
            sender: String::new(),
            subject: "Rechnung".into(),
            size: 0,
            error: "handling the mail panicked: \u{1b}[2J\nline two".into(),
            attempts: 3,
            since: chrono::DateTime::UNIX_EPOCH,
        };
        let table = quarantine_table(&[mail]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with("support  pop3:u1"), "{table}");
        assert!(lines[1].contains("  ?  "), "no sender known: {table}");
        assert!(
            lines[2].ends_with("last error: handling the mail panicked: [2J line two"),
            "{table}"
        );
        assert!(!table.contains('\u{1b}'));
    }
}
