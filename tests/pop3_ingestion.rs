//! POP3 ingestion against the real lab's Dovecot (plain, STLS and implicit TLS).

mod common;

use common::{mails, pop3_account, Lab, TestConfig};

async fn fifty_mails_become_tickets_and_leave_the_maildrop(encryption: &str) {
    let lab = Lab::get();
    let user = lab.fresh_user(&format!("pop3-{encryption}"));
    let set: Vec<_> = (0..50)
        .map(|i| mails::varied(i, &user, encryption))
        .collect();
    lab.append(
        &user,
        "INBOX",
        &set.iter().map(|m| m.raw.clone()).collect::<Vec<_>>(),
    )
    .await;
    let cfg = TestConfig::new(
        &[pop3_account(
            lab,
            "returns",
            &user,
            encryption,
            "action = \"delete\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 50);
    let mut subjects: Vec<String> = tickets
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = set.iter().map(|m| m.subject.clone()).collect();
    subjects.sort();
    expected.sort();
    assert_eq!(subjects, expected);
    assert_eq!(lab.count(&user, "INBOX").await, 0, "the maildrop is empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_over_implicit_tls_deletes_after_storing() {
    fifty_mails_become_tickets_and_leave_the_maildrop("ssl").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_over_stls_deletes_after_storing() {
    fifty_mails_become_tickets_and_leave_the_maildrop("starttls").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_without_encryption_deletes_after_storing() {
    fifty_mails_become_tickets_and_leave_the_maildrop("none").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_mode_remembers_uidls_and_never_creates_a_second_ticket() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-keep");
    let set: Vec<Vec<u8>> = (0..50)
        .map(|i| mails::varied(i, &user, "keep").raw)
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[pop3_account(
            lab,
            "returns",
            &user,
            "starttls",
            "action = \"keep\"\n",
        )],
        "",
    );
    assert!(cfg.run(&["run", "--once"]).status.success());
    assert_eq!(cfg.tickets().len(), 50);
    assert_eq!(lab.count(&user, "INBOX").await, 50, "keep leaves the mails");
    let again = cfg.run(&["run", "--once"]);
    assert!(again.status.success(), "{}", common::stderr(&again));
    assert_eq!(cfg.tickets().len(), 50, "a second pass creates nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_bit_bodies_and_dot_lines_survive_byte_for_byte() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-8bit");
    let latin1 = mails::varied(2, &user, "8bit").raw;
    let utf8 = mails::varied(1, &user, "8bit").raw;
    let dotted = mails::varied(0, &user, "8bit").raw;
    let originals = vec![latin1, utf8, dotted];
    lab.append(&user, "INBOX", &originals).await;
    // What Dovecot serves is what was put into the maildrop.
    let served = lab.messages(&user, "INBOX").await;
    let cfg = TestConfig::new(
        &[pop3_account(
            lab,
            "returns",
            &user,
            "none",
            "action = \"delete\"\n",
        )],
        "",
    );
    assert!(cfg.run(&["run", "--once"]).status.success());
    let db = cfg.open_store().await;
    let tickets = db.list_tickets(&Default::default()).await.unwrap();
    assert_eq!(tickets.len(), 3);
    let mut raws = Vec::new();
    for t in &tickets {
        raws.extend(db.raw_articles(&t.number).await.unwrap());
    }
    for original in &served {
        assert!(
            raws.contains(original),
            "stored raw differs from the maildrop's message"
        );
    }
    assert!(served
        .iter()
        .any(|m| m.windows(6).any(|w| w == b"\r\n.lea")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_cut_before_quit_loses_nothing_and_doubles_nothing() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-cut");
    let set: Vec<Vec<u8>> = (0..10)
        .map(|i| mails::varied(i, &user, "cut").raw)
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let proxy = common::proxy::cut_on(lab.port("MAIL_LAB_POP3_PORT"), b"QUIT").await;
    let account = pop3_account(lab, "returns", &user, "none", "action = \"delete\"\n").replace(
        &format!("port = {}", lab.port("MAIL_LAB_POP3_PORT")),
        &format!("port = {}", proxy.port),
    );
    let cfg = TestConfig::new(&[account], "");

    let cut = cfg.run(&["run", "--once"]);
    assert!(!cut.status.success(), "the cut pass reports the failure");
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        cfg.tickets().len(),
        10,
        "tickets were stored before the cut"
    );
    assert_eq!(
        lab.count(&user, "INBOX").await,
        10,
        "without QUIT the server keeps the mails"
    );

    // The next pass goes straight to the server.
    std::fs::write(
        &cfg.path,
        std::fs::read_to_string(&cfg.path).unwrap().replace(
            &format!("port = {}", proxy.port),
            &format!("port = {}", lab.port("MAIL_LAB_POP3_PORT")),
        ),
    )
    .unwrap();
    let next = cfg.run(&["run", "--once"]);
    assert!(next.status.success(), "{}", common::stderr(&next));
    assert_eq!(cfg.tickets().len(), 10, "no duplicate tickets");
    assert_eq!(
        lab.count(&user, "INBOX").await,
        0,
        "the mails end up deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_that_cannot_be_stored_is_quarantined_and_kept_while_the_rest_carries_on() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-poison");
    let mut set: Vec<Vec<u8>> = (0..4)
        .map(|i| mails::varied(i, &user, "poison").raw)
        .collect();
    set.insert(
        1,
        mails::simple(&user, "poison", "poison-pop@customer.example.test", ""),
    );
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[pop3_account(
            lab,
            "returns",
            &user,
            "none",
            "action = \"delete\"\n",
        )],
        "",
    );
    cfg.refuse_articles_with_subject("poison").await;

    for _ in 0..3 {
        cfg.run(&["run", "--once"]);
    }
    assert_eq!(cfg.tickets().len(), 4, "the other mails were stored");
    assert_eq!(
        lab.count(&user, "INBOX").await,
        1,
        "only the poison mail stays"
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(
        !common::stderr(&out).contains("disk says no"),
        "a quarantined mail is skipped"
    );
    assert_eq!(lab.count(&user, "INBOX").await, 1, "and never deleted");
}
