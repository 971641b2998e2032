//! `mail2ticket quarantine list | retry | export` against the lab: a mail the store refuses is
//! quarantined by three real passes, then listed, fetched from the server byte for byte, and
//! released so that the next pass stores it.

mod common;

use common::{imap_account, mails, pop3_account, stderr, Lab, TestConfig};
use serde_json::Value;

/// A mail the store is made to refuse (by its subject): 8-bit Latin-1 text, a line that starts
/// with a dot (POP3 stuffs it on the wire) and CRLF line ends, as a server keeps them.
fn poison(to: &str) -> Vec<u8> {
    let mut raw = format!(
        "From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <juergen@customer.example.test>\r\nTo: {to}\r\n\
         Subject: poison\r\nMessage-ID: <poison@customer.example.test>\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(b"Die Rechnung ist falsch. Gr\xfc\xdfe\r\n.dot at the start\r\n");
    raw
}

/// The mails of the store's quarantine, as `quarantine list --json` gives them.
fn listed(cfg: &TestConfig) -> Vec<Value> {
    let out = cfg.run(&["quarantine", "list", "--json"]);
    assert!(
        out.status.success(),
        "quarantine list --json: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("quarantine list --json is a JSON array")
}

/// Runs passes until the refused mail is in quarantine (three failed attempts); returns it.
fn quarantined_by_three_passes(cfg: &TestConfig) -> Value {
    for pass in 1..=3 {
        let out = cfg.run(&["run", "--once"]);
        assert!(
            stderr(&out).contains("storing a mail failed"),
            "pass {pass} fails the mail: {}",
            stderr(&out)
        );
        let in_quarantine = listed(cfg).len();
        assert_eq!(in_quarantine, usize::from(pass == 3), "after pass {pass}");
    }
    listed(cfg).remove(0)
}

/// A mailbox holding a fine mail and the poison, an account on it (`account` makes its section
/// from the lab user), and the poison quarantined by three passes: the user, the poison's
/// bytes, the config and the poison as `quarantine list --json` shows it.
async fn a_poison_quarantined(
    prefix: &str,
    account: impl FnOnce(&Lab, &str) -> String,
) -> (String, Vec<u8>, TestConfig, Value) {
    let lab = Lab::get();
    let user = lab.fresh_user(prefix);
    let raw = poison(&user);
    let fine = mails::simple(&user, "fine", "fine@customer.example.test", "");
    lab.append(&user, "INBOX", &[fine, raw.clone()]).await;
    let cfg = TestConfig::new(&[account(lab, &user)], "");
    cfg.refuse_articles_with_subject("poison").await;
    let mail = quarantined_by_three_passes(&cfg);
    (user, raw, cfg, mail)
}

async fn failure_rows(cfg: &TestConfig) -> i64 {
    let store = cfg.open_store().await;
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM failures")
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.close().await;
    n
}

async fn marked(lab: &Lab, user: &str) -> usize {
    let mut s = lab.imap(user).await;
    s.select("INBOX").await.unwrap();
    let found = s.uid_search("KEYWORD $mail2ticket-failed").await.unwrap();
    s.logout().await.ok();
    found.len()
}

fn assert_lists_the_poison(mail: &Value, account: &str, key_prefix: &str, raw: &[u8]) {
    assert_eq!(mail["account"], account, "{mail}");
    assert!(
        mail["key"].as_str().unwrap().starts_with(key_prefix),
        "{mail}"
    );
    assert_eq!(mail["sender"], "juergen@customer.example.test", "{mail}");
    assert_eq!(mail["subject"], "poison", "{mail}");
    assert_eq!(mail["size"], raw.len() as u64, "{mail}");
    assert_eq!(mail["attempts"], 3, "{mail}");
    assert!(
        mail["error"].as_str().unwrap().contains("disk says no"),
        "the store's own words: {mail}"
    );
    let since = mail["since"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(since).expect("since is RFC 3339");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantined_imap_mail_is_listed_exported_byte_exact_and_retried_until_stored() {
    let lab = Lab::get();
    let (user, raw, cfg, mail) = a_poison_quarantined("quarantine-imap", |lab, user| {
        imap_account(
            lab,
            "support",
            user,
            "starttls",
            "action = \"move\"\nmove_to = \"Archive\"\n",
        )
    })
    .await;
    assert_lists_the_poison(&mail, "support", "imap:INBOX:", &raw);
    let key = mail["key"].as_str().unwrap().to_string();
    assert_eq!(marked(lab, &user).await, 1, "marked on the server");

    let out = cfg.run(&["quarantine", "list"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    for shown in [
        "ACCOUNT",
        "support",
        &key,
        "juergen@customer.example.test",
        "poison",
        "last error:",
        "disk says no",
    ] {
        assert!(table.contains(shown), "{shown:?} in the table:\n{table}");
    }

    let out = cfg.run(&["quarantine", "export", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout == raw,
        "the exact bytes and nothing else on stdout ({} bytes, expected {})",
        out.stdout.len(),
        raw.len()
    );
    let out = cfg.run(&["quarantine", "export", "imap:INBOX:1:999999"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("quarantine list"), "{}", stderr(&out));

    cfg.accept_articles_again().await;
    let out = cfg.run(&["quarantine", "retry", &key]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}{}", stderr(&out));
    assert!(
        said.contains(&key) && said.contains("released") && said.contains("next pass"),
        "{said}"
    );
    assert_eq!(marked(lab, &user).await, 0, "the keyword is off");
    assert_eq!(failure_rows(&cfg).await, 0, "the failure count is cleared");
    assert!(listed(&cfg).is_empty());

    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cfg.ticket_subjects(), ["fine", "poison"]);
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(lab.count(&user, "Archive").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantined_pop3_mail_is_listed_exported_and_retried_until_stored() {
    let lab = Lab::get();
    let (user, raw, cfg, mail) = a_poison_quarantined("quarantine-pop3", |lab, user| {
        pop3_account(lab, "returns", user, "ssl", "action = \"delete\"\n")
    })
    .await;
    assert_lists_the_poison(&mail, "returns", "pop3:", &raw);
    let key = mail["key"].as_str().unwrap().to_string();

    let out = cfg.run(&["quarantine", "export", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == raw, "RETR's bytes, unstuffed");
    assert_eq!(lab.count(&user, "INBOX").await, 1, "export deletes nothing");

    cfg.accept_articles_again().await;
    let out = cfg.run(&["quarantine", "retry", "--account", "returns"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}{}", stderr(&out));
    assert!(said.contains(&key) && said.contains("released"), "{said}");
    assert_eq!(failure_rows(&cfg).await, 0, "the failure count is cleared");
    assert!(listed(&cfg).is_empty());

    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cfg.ticket_subjects(), ["fine", "poison"]);
    assert_eq!(lab.count(&user, "INBOX").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn retrying_while_the_imap_server_is_unreachable_changes_nothing_and_says_what_to_do() {
    let lab = Lab::get();
    let (user, _, cfg, _) = a_poison_quarantined("quarantine-down", |lab, user| {
        imap_account(lab, "support", user, "none", "action = \"delete\"\n")
    })
    .await;
    cfg.accept_articles_again().await;

    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let closed = common::http::free_port();
    let port = format!("port = {}", lab.port("MAIL_LAB_IMAP_PORT"));
    common::write_private(&cfg.path, &text.replace(&port, &format!("port = {closed}")));
    let out = cfg.run(&["quarantine", "retry", "--all"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success(),
        "a mail not released fails the command"
    );
    assert!(
        said.contains("not released: cannot reach the server")
            && said.contains("Nothing was changed")
            && said.contains("mail2ticket test-fetch support"),
        "{said}"
    );
    assert_eq!(listed(&cfg).len(), 1, "still in quarantine");
    assert_eq!(marked(lab, &user).await, 1, "still marked");
}
