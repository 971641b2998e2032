//! One mail must never stop a mailbox: a subject that used to panic the ticket-tag search, and a
//! deliberate panic while handling one mail (the debug build's test hook), over IMAP and POP3.

mod common;

use base64::Engine;
use common::{imap_account, mails, pop3_account, stderr, Lab, TestConfig};

/// RFC 2047 (UTF-8, base64) encoding of a subject.
fn encoded(subject: &str) -> String {
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(subject)
    )
}

const DELETE: &str = "action = \"delete\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_subject_that_changes_length_when_lower_cased_becomes_a_ticket_like_any_other() {
    let lab = Lab::get();
    let user = lab.fresh_user("kelvin");
    // The last char is U+212A KELVIN SIGN: lower-casing shrinks it from 3 bytes to 1.
    let hostile = encoded("İİ[Ticket#€\u{212A}");
    lab.append(
        &user,
        "INBOX",
        &[
            mails::simple(&user, &hostile, "kelvin@customer.example.test", ""),
            mails::simple(&user, "harmless", "harmless@customer.example.test", ""),
        ],
    )
    .await;
    let cfg = TestConfig::new(&[imap_account(lab, "acct", &user, "none", DELETE)], "");
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "run --once failed: {}", stderr(&out));
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 2, "both mails became tickets");
    assert!(
        tickets
            .iter()
            .any(|t| t["subject"] == "İİ[Ticket#€\u{212A}"),
        "{tickets:?}"
    );
    assert_eq!(lab.count(&user, "INBOX").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_with_sharp_s_in_the_subject_is_threaded_by_its_tag() {
    let lab = Lab::get();
    let user = lab.fresh_user("sharp-s");
    let cfg = TestConfig::new(&[imap_account(lab, "acct", &user, "none", DELETE)], "");
    lab.append(
        &user,
        "INBOX",
        &[mails::simple(
            &user,
            "Größe",
            "first@customer.example.test",
            "",
        )],
    )
    .await;
    assert!(cfg.run(&["run", "--once"]).status.success());
    let number = cfg.tickets()[0]["number"].as_str().unwrap().to_string();
    // No In-Reply-To or References: only the tag in the subject can thread it.
    let reply = encoded(&format!("AW: GRÖẞE [Ticket#{number}]"));
    lab.append(
        &user,
        "INBOX",
        &[mails::simple(
            &user,
            &reply,
            "reply@customer.example.test",
            "",
        )],
    )
    .await;
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "run --once failed: {}", stderr(&out));
    assert_eq!(cfg.tickets().len(), 1, "the reply joined the ticket");
    let shown = cfg.show(&number);
    assert_eq!(
        shown["articles"].as_array().map(Vec::len),
        Some(2),
        "{shown:#}"
    );
}

/// Three mails, the middle one panics whenever it is handled: the others become tickets on the
/// first pass, the panicking one fails each pass (`run --once` exits non-zero) and is quarantined
/// after the third; then passes succeed again and it stays on the server.
async fn a_panicking_mail_is_contained(protocol: &str) {
    let lab = Lab::get();
    let user = lab.fresh_user(&format!("panic-{protocol}"));
    let marker = format!("PANIC-HOOK-{}", std::process::id());
    lab.append(
        &user,
        "INBOX",
        &[
            mails::simple(&user, "before", "before@customer.example.test", ""),
            mails::simple(
                &user,
                &format!("boom {marker}"),
                "boom@customer.example.test",
                "",
            ),
            mails::simple(&user, "after", "after@customer.example.test", ""),
        ],
    )
    .await;
    let account = match protocol {
        "imap" => imap_account(lab, "acct", &user, "none", DELETE),
        _ => pop3_account(lab, "acct", &user, "none", DELETE),
    };
    let cfg = TestConfig::new(&[account], "");
    let run = || {
        common::mail2ticket_cmd(&cfg.path)
            .env(mail2ticket::ingest::panic_hook::ENV, &marker)
            .args(["run", "--once"])
            .output()
            .unwrap()
    };

    for pass in 1..=3 {
        let out = run();
        let log = stderr(&out);
        assert!(
            !out.status.success(),
            "pass {pass}: a mail was not stored, so run --once fails:\n{log}"
        );
        assert!(
            log.contains("storing a mail failed") && log.contains("panicked"),
            "pass {pass}: the panic is logged as that mail's failure:\n{log}"
        );
        assert_eq!(
            cfg.ticket_subjects(),
            ["after", "before"],
            "pass {pass}: the rest of the mailbox carried on"
        );
    }
    let out = run();
    assert!(
        out.status.success(),
        "after three failures the mail is quarantined and skipped: {}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(
        lab.count(&user, "INBOX").await,
        1,
        "the quarantined mail stays on the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_while_handling_one_imap_mail_fails_only_that_mail_and_quarantines_it() {
    a_panicking_mail_is_contained("imap").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_while_handling_one_pop3_mail_fails_only_that_mail_and_quarantines_it() {
    a_panicking_mail_is_contained("pop3").await;
}
