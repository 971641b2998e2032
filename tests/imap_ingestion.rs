//! IMAP ingestion against the real lab (Dovecot over loopback, TLS verified against the lab CA).

mod common;

use std::time::Duration;

use common::{imap_account, mails, Lab, TestConfig};

const DONE: &str = "Erledigt/Geprüft";

fn move_to(folder: &str) -> String {
    format!("action = \"move\"\nmove_to = \"{folder}\"\n")
}

async fn ingests_fifty_varied_mails_and_moves_them(encryption: &str) {
    let lab = Lab::get();
    let user = lab.fresh_user(&format!("imap-{encryption}"));
    let tag = encryption.to_string();
    let set: Vec<_> = (0..50).map(|i| mails::varied(i, &user, &tag)).collect();
    lab.append(
        &user,
        "INBOX",
        &set.iter().map(|m| m.raw.clone()).collect::<Vec<_>>(),
    )
    .await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            encryption,
            &move_to(DONE),
        )],
        "",
    );

    let out = cfg.run(&["run", "--once"]);
    assert!(
        out.status.success(),
        "run --once failed: {}",
        common::stderr(&out)
    );

    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 50, "one ticket per mail");
    let mut subjects: Vec<String> = tickets
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = set.iter().map(|m| m.subject.clone()).collect();
    subjects.sort();
    expected.sort();
    assert_eq!(subjects, expected, "subjects are decoded");
    for t in &tickets {
        assert_eq!(t["type"], "question");
        assert_eq!(t["status"], "open");
        assert_eq!(t["customer"], "customer@example.test");
        assert_eq!(t["articles"], 1);
    }
    assert_eq!(lab.count(&user, "INBOX").await, 0, "INBOX is empty");
    assert_eq!(
        lab.count(&user, DONE).await,
        50,
        "every mail was moved once"
    );

    // Raw bytes are kept exactly (8-bit Latin-1 body, dot-leading line).
    let latin1 = tickets
        .iter()
        .find(|t| t["subject"] == "Größe falsch 2")
        .unwrap();
    let number = latin1["number"].as_str().unwrap();
    let detail = cfg.show(number);
    assert!(detail["articles"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Grüße"));
    let att = tickets
        .iter()
        .find(|t| t["subject"] == "Foto vom Schaden 4")
        .unwrap();
    let detail = cfg.show(att["number"].as_str().unwrap());
    assert_eq!(
        detail["articles"][0]["attachments"][0]["filename"],
        "Schäden übersicht.png"
    );

    let again = cfg.run(&["run", "--once"]);
    assert!(again.status.success(), "{}", common::stderr(&again));
    assert_eq!(cfg.tickets().len(), 50, "a second pass creates nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn ingests_fifty_varied_mails_over_implicit_tls() {
    ingests_fifty_varied_mails_and_moves_them("ssl").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ingests_fifty_varied_mails_over_starttls() {
    ingests_fifty_varied_mails_and_moves_them("starttls").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ingests_fifty_varied_mails_without_encryption() {
    ingests_fifty_varied_mails_and_moves_them("none").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_action_empties_the_inbox_and_keeps_the_tickets() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-delete");
    let set: Vec<Vec<u8>> = (0..10)
        .map(|i| mails::varied(i, &user, "del").raw)
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "starttls",
            "action = \"delete\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.tickets().len(), 10);
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(lab.count(&user, "Archive").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_move_folder_keeps_mails_and_tickets_until_it_exists() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-missing");
    let set: Vec<Vec<u8>> = (0..5)
        .map(|i| mails::varied(i, &user, "miss").raw)
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let folder = "Missing";
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "starttls",
            &move_to(folder),
        )],
        "",
    );

    let out = cfg.run(&["run", "--once"]);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "a failed move is a failed pass");
    assert!(
        err.contains("\"Missing\""),
        "the error names the folder: {err}"
    );
    assert_eq!(cfg.tickets().len(), 5, "tickets were created once");
    assert_eq!(
        lab.count(&user, "INBOX").await,
        5,
        "mails stay in INBOX, never deleted"
    );

    let second = cfg.run(&["run", "--once"]);
    assert!(!second.status.success());
    assert_eq!(
        cfg.tickets().len(),
        5,
        "retrying the move creates no tickets"
    );

    let mut s = lab.imap(&user).await;
    s.create(folder).await.unwrap();
    s.logout().await.ok();
    let third = cfg.run(&["run", "--once"]);
    assert!(third.status.success(), "{}", common::stderr(&third));
    assert_eq!(cfg.tickets().len(), 5);
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(lab.count(&user, folder).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_joins_the_ticket_of_the_mail_it_answers() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-followup");
    let first = mails::simple(
        &user,
        "Defekter Toaster",
        "first.toaster@customer.example.test",
        "",
    );
    lab.append(&user, "INBOX", &[first]).await;
    let cfg = support_moving_to_archive(lab, &user);
    assert!(cfg.run(&["run", "--once"]).status.success());

    let answer = mails::simple(
        &user,
        "Re: Defekter Toaster",
        "second.toaster@customer.example.test",
        "In-Reply-To: <first.toaster@customer.example.test>\r\n",
    );
    let tagged = mails::simple(
        &user,
        "Noch etwas [Ticket#10001]",
        "third@customer.example.test",
        "",
    );
    lab.append(&user, "INBOX", &[answer, tagged]).await;
    assert!(cfg.run(&["run", "--once"]).status.success());

    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "follow-ups create no ticket: {tickets:?}");
    assert_eq!(tickets[0]["number"], "10001");
    assert_eq!(tickets[0]["articles"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_message_arriving_twice_yields_one_ticket() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-dup");
    let m = mails::simple(&user, "Twice", "twice@customer.example.test", "");
    lab.append(&user, "INBOX", &[m.clone(), m]).await;
    let cfg = support_moving_to_archive(lab, &user);
    assert!(cfg.run(&["run", "--once"]).status.success());
    assert_eq!(cfg.tickets().len(), 1);
    assert_eq!(
        lab.count(&user, "Archive").await,
        2,
        "both copies leave the inbox"
    );
}

/// A copy that arrives after the first was stored and moved (a redelivery, a restored backup)
/// is found again: by sender and Message-ID, or by its bytes when it has no Message-ID.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_arriving_again_in_a_later_pass_yields_no_second_ticket() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-again");
    let with_id = mails::simple(&user, "With an id", "again@customer.example.test", "");
    let without_id = mails::simple(&user, "Without an id", "", "");
    let cfg = support_moving_to_archive(lab, &user);
    for pass in 1..=2 {
        lab.append(&user, "INBOX", &[with_id.clone(), without_id.clone()])
            .await;
        assert!(cfg.run(&["run", "--once"]).status.success(), "pass {pass}");
    }
    assert_eq!(cfg.ticket_subjects(), ["With an id", "Without an id"]);
    assert_eq!(
        lab.count(&user, "Archive").await,
        4,
        "every copy leaves the inbox"
    );
}

/// A shop plug-in's mails as they really come: one sender, one Subject, one Message-ID reused
/// for every mail, different bodies and MIME structure. Each `marker` is in one body only.
fn plugin_mail(to: &str, id: &str, marker: &str, shape: usize) -> Vec<u8> {
    let head = format!(
        "From: Shop Plugin <plugin@shop-plugin.example.test>\r\nTo: {to}\r\nSubject: Neue Bestellung\r\n\
         Message-ID: <{id}>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    );
    let body = match shape {
        0 => format!("Content-Type: text/plain; charset=utf-8\r\n\r\nBestellung {marker}\r\n"),
        1 => format!(
            "Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Bestellung <b>{marker}</b></p></body></html>\r\n"
        ),
        2 => format!(
            "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nBestellung {marker}\r\n--b1\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<p>Bestellung {marker}</p>\r\n--b1--\r\n"
        ),
        _ => format!(
            "Content-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n--b2\r\n\
             Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             Bestellung {marker} f=FCr Sie\r\n--b2\r\nContent-Type: application/pdf; name=\"rechnung.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"rechnung.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             JVBERi0xLjQK\r\n--b2--\r\n"
        ),
    };
    format!("{head}{body}").into_bytes()
}

/// Different mails that share a sender and a Message-ID are different mails: each is stored
/// with its own bytes, in one account and across two, while a true CC copy (delivered by
/// Postfix to both mailboxes, so its delivery header fields differ) is still one article.
#[tokio::test(flavor = "multi_thread")]
async fn different_mails_sharing_a_message_id_each_get_an_article() {
    let lab = Lab::get();
    let support = lab.fresh_user("imap-reused-id-a");
    let returns = lab.fresh_user("imap-reused-id-b");
    let id = format!(
        "order-notification.{}@shop-plugin.example.test",
        std::process::id()
    );
    let sender = "plugin@shop-plugin.example.test";
    // One mail to both mailboxes in one SMTP transaction: the true copy.
    lab.smtp_send_to_all(
        sender,
        &[&support, &returns],
        &plugin_mail(&support, &id, "CC-1", 0),
    )
    .await;
    for (i, marker) in ["A-2", "A-3", "A-4", "A-5"].iter().enumerate() {
        lab.smtp_send(sender, &support, &plugin_mail(&support, &id, marker, i))
            .await;
    }
    for (i, marker) in ["B-2", "B-3"].iter().enumerate() {
        lab.smtp_send(sender, &returns, &plugin_mail(&returns, &id, marker, i + 1))
            .await;
    }
    let wait = Duration::from_secs(30);
    assert_eq!(lab.wait_for_count(&support, "INBOX", 5, wait).await, 5);
    assert_eq!(lab.wait_for_count(&returns, "INBOX", 3, wait).await, 3);
    let cfg = TestConfig::new(
        &[
            imap_account(lab, "support", &support, "starttls", &move_to("Archive")),
            imap_account(lab, "returns", &returns, "starttls", &move_to("Archive")),
        ],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    // Seven different mails, seven articles; the CC copy is one of them, received by both.
    let mut texts = Vec::new();
    let mut received_by_both = 0;
    for ticket in cfg.tickets() {
        let detail = cfg.show(ticket["number"].as_str().unwrap());
        for article in detail["articles"].as_array().unwrap() {
            texts.push(article["text"].as_str().unwrap().to_string());
            if article["received_by"].as_array().unwrap().len() == 2 {
                received_by_both += 1;
            }
        }
    }
    assert_eq!(texts.len(), 7, "{texts:#?}");
    for marker in ["CC-1", "A-2", "A-3", "A-4", "A-5", "B-2", "B-3"] {
        let holding = texts.iter().filter(|t| t.contains(marker)).count();
        assert_eq!(holding, 1, "mail {marker} is stored once: {texts:#?}");
    }
    assert_eq!(
        received_by_both, 1,
        "the CC copy is recorded, not stored twice"
    );
    assert_eq!(lab.count(&support, "INBOX").await, 0);
    assert_eq!(lab.count(&returns, "INBOX").await, 0);
    assert_eq!(lab.count(&support, "Archive").await, 5);
    assert_eq!(lab.count(&returns, "Archive").await, 3);
}

/// Fail closed: a processed row whose outcome this version does not know (a newer version
/// wrote it, a label was renamed, the row is damaged) never moves or deletes the mail.
#[tokio::test(flavor = "multi_thread")]
async fn a_mail_recorded_with_an_unknown_outcome_stays_on_the_server() {
    let err = a_pass_after_changing_the_processed_row(
        "imap-unknown-outcome",
        "UPDATE processed SET outcome = 'written-by-version-9'",
    )
    .await;
    assert!(
        err.contains("written-by-version-9"),
        "the log names the label: {err}"
    );
    assert!(err.contains("outcome this version does not know"), "{err}");
}

/// Fail closed: a processed row whose source key this version cannot read (a newer version
/// wrote it, or it is damaged) could be any mail's, so no mail of the account moves.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_source_key_in_the_store_keeps_the_mails_on_the_server() {
    let err = a_pass_after_changing_the_processed_row(
        "imap-unreadable-key",
        "UPDATE processed SET source_key = source_key || 'x'",
    )
    .await;
    assert!(err.contains("which this version cannot read"), "{err}");
}

/// Stores one mail but leaves it in the folder, changes its `processed` row with `update`, and
/// runs a pass, which must fail closed: it fails, and the mail stays in the folder without a
/// second ticket. Returns the pass's log.
async fn a_pass_after_changing_the_processed_row(name: &str, update: &str) -> String {
    let lab = Lab::get();
    let user = lab.fresh_user(name);
    let mail = mails::simple(&user, name, "row@customer.example.test", "");
    lab.append(&user, "INBOX", &[mail]).await;
    let cfg = support_moving_to_archive(lab, &user);
    let text = store_but_leave_on_the_server(&cfg);
    assert_eq!(cfg.tickets().len(), 1);
    let store = cfg.open_store().await;
    let changed = sqlx::query(update).execute(store.pool()).await.unwrap();
    assert_eq!(changed.rows_affected(), 1);
    store.close().await;
    std::fs::write(&cfg.path, text).unwrap();

    let out = cfg.run(&["run", "--once"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(lab.count(&user, "INBOX").await, 1, "the mail stays");
    assert_eq!(lab.count(&user, "Archive").await, 0);
    assert_eq!(cfg.tickets().len(), 1, "and is not stored again");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused_with_a_clear_error() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-ca");
    let account = imap_account(lab, "support", &user, "ssl", &move_to("Archive"))
        .replace(&format!("ca_file = \"{}\"\n", lab.ca()), "");
    let cfg = TestConfig::new(&[account], "");
    let out = cfg.run(&["run", "--once"]);
    let err = common::stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("not trusted"), "{err}");
    assert!(!err.contains(lab.password()), "no password in errors");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_reported_as_a_rejected_login() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-pw");
    let account = imap_account(lab, "support", &user, "starttls", &move_to("Archive"))
        .replace(lab.password(), "WrongPassword99");
    let cfg = TestConfig::new(&[account], "");
    let out = cfg.run(&["run", "--once"]);
    let err = common::stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("login rejected for"), "{err}");
    assert!(!err.contains("WrongPassword99"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_mail_becomes_a_flagged_ticket_with_its_raw_bytes() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-bad");
    let garbage = b"\x01\x02 this is not a mail\r\n\xff\xfe\r\n".to_vec();
    lab.append(&user, "INBOX", std::slice::from_ref(&garbage))
        .await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            &move_to("Archive"),
        )],
        "",
    );
    assert!(cfg.run(&["run", "--once"]).status.success());
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1);
    let detail = cfg.show(tickets[0]["number"].as_str().unwrap());
    assert!(detail["articles"][0]["malformed"].is_string(), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_idle_a_mail_delivered_by_smtp_becomes_a_ticket_quickly() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-idle");
    let cfg = support_moving_to_archive(lab, &user);
    let mut daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    // Let the daemon connect and enter IDLE.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    lab.smtp_send(
        "customer@example.test",
        &user,
        &mails::simple(&user, "IDLE test", "idle@customer.example.test", ""),
    )
    .await;
    let mut found = false;
    while started.elapsed() < Duration::from_secs(20) {
        if cfg.tickets().len() == 1 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    daemon.kill();
    assert!(found, "the mail became a ticket while the daemon idled");
    eprintln!("SMTP submit → ticket: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn moves_mail_only_after_ticket_is_committed() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-cut-move");
    let set: Vec<Vec<u8>> = (0..20)
        .map(|i| mails::varied(i, &user, "cutmove").raw)
        .collect();
    lab.append(&user, "INBOX", &set).await;
    // The connection dies exactly when the move is sent: the tickets must already be durable.
    let proxy = common::proxy::cut_on(lab.port("MAIL_LAB_IMAP_PORT"), b"UID MOVE").await;
    let direct = format!("port = {}", lab.port("MAIL_LAB_IMAP_PORT"));
    let account = imap_account(lab, "support", &user, "none", &move_to("Archive"))
        .replace(&direct, &format!("port = {}", proxy.port));
    let cfg = TestConfig::new(&[account], "");

    let cut = cfg.run(&["run", "--once"]);
    assert!(!cut.status.success(), "the cut pass reports the failure");
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        cfg.tickets().len(),
        20,
        "tickets were committed before the move"
    );
    assert_eq!(
        lab.count(&user, "INBOX").await,
        20,
        "nothing left the inbox"
    );

    let text = std::fs::read_to_string(&cfg.path).unwrap();
    std::fs::write(
        &cfg.path,
        text.replace(&format!("port = {}", proxy.port), &direct),
    )
    .unwrap();
    let next = cfg.run(&["run", "--once"]);
    assert!(next.status.success(), "{}", common::stderr(&next));
    assert_eq!(
        cfg.tickets().len(),
        20,
        "the retry creates no second ticket"
    );
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(
        lab.count(&user, "Archive").await,
        20,
        "each mail moved once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_uidvalidity_change_neither_loses_nor_doubles_mail() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-uidvalidity");
    let set: Vec<Vec<u8>> = (0..5)
        .map(|i| mails::varied(i, &user, "uidv").raw)
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            &move_to("Archive"),
        )],
        "",
    );
    let text = store_but_leave_on_the_server(&cfg);
    assert_eq!(cfg.tickets().len(), 5);
    // The server renumbers the folder (new UIDVALIDITY): every mail looks new to a UID tracker.
    let store = cfg.open_store().await;
    let on_server = store.uidvalidity("support", "INBOX").await.unwrap();
    let on_server = on_server.expect("the first pass kept the folder's UIDVALIDITY");
    sqlx::query(
        "UPDATE processed SET source_key = replace(source_key, 'imap:INBOX:', 'imap:INBOX:9') ",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store
        .set_uidvalidity("support", "INBOX", on_server.wrapping_add(1))
        .await
        .unwrap();
    store.close().await;
    std::fs::write(&cfg.path, text).unwrap();
    let out = cfg.run(&["run", "--once"]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("UIDVALIDITY changed"),
        "the change is said: {err}"
    );
    assert_eq!(
        cfg.tickets().len(),
        5,
        "known bytes are recognised, no second ticket"
    );
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(lab.count(&user, "Archive").await, 5);
    let store = cfg.open_store().await;
    assert_eq!(
        store.uidvalidity("support", "INBOX").await.unwrap(),
        Some(on_server),
        "the store keeps the folder's new UIDVALIDITY"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_over_max_message_size_stays_on_the_server_with_a_ticket_of_its_header() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-size");
    let small = mails::simple(&user, "small", "small@customer.example.test", "");
    let mut big = mails::simple(&user, "big", "big@customer.example.test", "");
    big.extend(std::iter::repeat_n(b'x', 4000).chain(*b"\r\n"));
    lab.append(&user, "INBOX", &[small, big]).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            &format!("{}max_message_size = \"2KB\"\n", move_to("Archive")),
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("larger than max_message_size"), "{err}");
    // Its header opened a ticket of its own (tests/too_large.rs follows it to the end).
    assert_eq!(cfg.tickets().len(), 2);
    assert_eq!(lab.count(&user, "INBOX").await, 1, "the big mail stays");
    assert_eq!(lab.count(&user, "Archive").await, 1, "the small one moved");
    let again = cfg.run(&["run", "--once"]);
    assert!(
        !common::stderr(&again).contains("larger than max_message_size"),
        "logged once"
    );
    assert_eq!(cfg.tickets().len(), 2);
    assert_eq!(lab.count(&user, "INBOX").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_test_mail_header_does_not_make_a_mail_disappear() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-forged");
    let forged = mails::simple(
        &user,
        "Looks like a test",
        "forged@customer.example.test",
        "X-Mail2ticket-Test: 2026-11-28T10:00:00.000Z; sig=0123456789abcdef0123456789abcdef\r\n",
    );
    lab.append(&user, "INBOX", &[forged]).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"delete\"\n",
        )],
        "",
    );
    assert!(cfg.run(&["run", "--once"]).status.success());
    assert_eq!(
        cfg.tickets().len(),
        1,
        "only a marker signed with the account's key is a test mail"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_that_cannot_be_stored_is_quarantined_and_the_rest_carries_on() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-poison");
    let mut set: Vec<Vec<u8>> = (0..4)
        .map(|i| mails::varied(i, &user, "poison").raw)
        .collect();
    set.insert(
        2,
        mails::simple(&user, "poison", "poison@customer.example.test", ""),
    );
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            &move_to("Archive"),
        )],
        "",
    );
    cfg.refuse_articles_with_subject("poison").await;

    for _ in 0..3 {
        cfg.run(&["run", "--once"]);
    }
    assert_eq!(
        cfg.tickets().len(),
        4,
        "the other mails were stored on the first pass"
    );
    assert_eq!(lab.count(&user, "Archive").await, 4);
    let mut s = lab.imap(&user).await;
    s.select("INBOX").await.unwrap();
    let flagged: Vec<_> = s
        .uid_search("KEYWORD $mail2ticket-failed")
        .await
        .unwrap()
        .into_iter()
        .collect();
    s.logout().await.ok();
    assert_eq!(
        flagged.len(),
        1,
        "the poison mail is marked after three failures"
    );

    let out = cfg.run(&["run", "--once"]);
    assert!(
        !common::stderr(&out).contains("disk says no"),
        "a quarantined mail is skipped"
    );
    assert_eq!(
        lab.count(&user, "INBOX").await,
        1,
        "and stays on the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_in_the_same_batch_joins_the_ticket_opened_just_before_it() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-batch-thread");
    let first = mails::simple(&user, "Kaputt", "batch-first@customer.example.test", "");
    let second = mails::simple(
        &user,
        "Anderes Thema",
        "batch-other@customer.example.test",
        "",
    );
    let answer = mails::simple(
        &user,
        "Re: Kaputt",
        "batch-answer@customer.example.test",
        "In-Reply-To: <batch-first@customer.example.test>\r\n",
    );
    let third = mails::simple(
        &user,
        "Drittes Thema",
        "batch-third@customer.example.test",
        "",
    );
    lab.append(&user, "INBOX", &[first, second, answer, third])
        .await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            &move_to("Archive"),
        )],
        "",
    );
    assert!(cfg.run(&["run", "--once"]).status.success());
    let tickets = cfg.tickets();
    // `tickets list` shows the newest first: reversed, in the order they were opened.
    let summary: Vec<(String, String, i64)> = tickets
        .iter()
        .rev()
        .map(|t| {
            (
                t["number"].as_str().unwrap().to_string(),
                t["subject"].as_str().unwrap().to_string(),
                t["articles"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("10001".to_string(), "Kaputt".to_string(), 2),
            ("10002".to_string(), "Anderes Thema".to_string(), 1),
            ("10003".to_string(), "Drittes Thema".to_string(), 1),
        ],
        "numbers run on, and the answer joined the ticket written in bulk just before it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mail_that_left_the_server_is_recorded_as_gone_across_batches() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-gone");
    // Three batches (500 mails at most each): what the first two moved is recorded with the
    // next batch's commit, what the last moved on its own.
    let total = 1100;
    let set: Vec<Vec<u8>> = (0..total)
        .map(|i| mails::simple(&user, &format!("Gone {i}"), &format!("gone-{i}-{user}"), ""))
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = support_moving_to_archive(lab, &user);

    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(lab.count(&user, "Archive").await, total as u32);
    let store = cfg.open_store().await;
    let (processed, gone): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(disposed_at) FROM processed")
            .fetch_one(store.pool())
            .await
            .unwrap();
    store.close().await;
    assert_eq!((processed, gone), (total as i64, total as i64));
}

/// The account most tests here use: `support` over STARTTLS, moving stored mail to Archive.
/// Leaves the mails of an account moving to "Archive" as a crash right after the commit would:
/// one pass stores them, but its move fails (the folder it names does not exist), so they stay
/// on the server. Returns the config's text, to be written back for the next pass.
fn store_but_leave_on_the_server(cfg: &TestConfig) -> String {
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    std::fs::write(
        &cfg.path,
        text.replace("move_to = \"Archive\"", "move_to = \"NotThere\""),
    )
    .unwrap();
    assert!(!cfg.run(&["run", "--once"]).status.success());
    text
}

fn support_moving_to_archive(lab: &Lab, user: &str) -> TestConfig {
    TestConfig::new(
        &[imap_account(
            lab,
            "support",
            user,
            "starttls",
            &move_to("Archive"),
        )],
        "",
    )
}

/// One `run --once` through [`common::proxy::odd_untagged`]: a server that answers with untagged
/// responses async-imap's parser cannot read (`* 1 EXPUNGED`, `*  1 EXISTS`, `* FOO bar`) and
/// with lower-case ones. They are skipped, each command is judged by its tagged status, and
/// the pass neither fails nor says the mails stayed.
async fn passes_through_odd_untagged_responses(prefix: &str, action: &str, moved_to: Option<&str>) {
    let lab = Lab::get();
    let user = lab.fresh_user(prefix);
    let set: Vec<_> = (0..12).map(|i| mails::varied(i, &user, prefix)).collect();
    let raw: Vec<Vec<u8>> = set.iter().map(|m| m.raw.clone()).collect();
    lab.append(&user, "INBOX", &raw).await;
    let proxy = common::proxy::odd_untagged(lab.port("MAIL_LAB_IMAP_PORT")).await;
    let account = imap_account(lab, "support", &user, "none", action).replace(
        &format!("port = {}", lab.port("MAIL_LAB_IMAP_PORT")),
        &format!("port = {}", proxy.port),
    );
    let cfg = TestConfig::new(&[account], "");

    // The proxy runs on this runtime: keep its workers free while the pass runs.
    let out = tokio::task::block_in_place(|| cfg.run(&["run", "--once"]));
    let err = common::stderr(&out);
    assert!(out.status.success(), "run --once failed: {err}");
    assert!(!err.contains("stay"), "nothing stayed: {err}");
    let mut expected: Vec<String> = set.iter().map(|m| m.subject.clone()).collect();
    expected.sort();
    assert_eq!(cfg.ticket_subjects(), expected, "every mail stored once");
    assert_eq!(lab.count(&user, "INBOX").await, 0, "every mail left INBOX");
    if let Some(folder) = moved_to {
        assert_eq!(lab.count(&user, folder).await, 12, "moved once each");
    }
    let store = cfg.open_store().await;
    let (processed, gone): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(disposed_at) FROM processed")
            .fetch_one(store.pool())
            .await
            .unwrap();
    store.close().await;
    assert_eq!((processed, gone), (12, 12), "the store knows they left");
    // The odd lines really reached the client: one `* n EXPUNGED` per mail, and more.
    let sent = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(sent(&proxy.expunged), 12);
    assert!(
        sent(&proxy.unreadable) > 12 * 4,
        "{}",
        sent(&proxy.unreadable)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_line_the_parser_does_not_know_neither_fails_nor_misreports_a_move() {
    passes_through_odd_untagged_responses("odd-move", &move_to("Archive"), Some("Archive")).await;
}

/// UID STORE, then UID EXPUNGE.
#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_line_the_parser_does_not_know_neither_fails_nor_misreports_a_delete() {
    passes_through_odd_untagged_responses("odd-delete", "action = \"delete\"\n", None).await;
}

/// Without UIDPLUS (the lab's nouidplus-* users): UID STORE, UID SEARCH DELETED, then EXPUNGE.
#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_line_the_parser_does_not_know_neither_fails_nor_misreports_a_plain_expunge() {
    passes_through_odd_untagged_responses("nouidplus-odd", "action = \"delete\"\n", None).await;
}
