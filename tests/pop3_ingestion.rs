//! POP3 ingestion against the real lab's Dovecot (plain, STLS and implicit TLS).

mod common;

use common::{mails, pop3_account, pop3_via, Lab, TestConfig};

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
    let mut expected: Vec<String> = set.iter().map(|m| m.subject.clone()).collect();
    expected.sort();
    assert_eq!(cfg.ticket_subjects(), expected, "one ticket per mail");
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

    // Another client deletes a mail: the store forgets its UIDL, so the table does not grow for
    // ever, and keeps the others'.
    lab.expunge(&user, "INBOX", 1).await;
    let after = cfg.run(&["run", "--once"]);
    assert!(after.status.success(), "{}", common::stderr(&after));
    let store = cfg.open_store().await;
    let known = store.processed("returns", "pop3:").await.unwrap();
    assert_eq!(
        known.len(),
        49,
        "the UIDL that left the server is forgotten"
    );
    store.close().await;
    assert_eq!(cfg.tickets().len(), 50, "its ticket stays");
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

// ------------------------------------------------------------ PIPELINING (RFC 2449)

/// `count` varied mails appended to the user's INBOX; their subjects, sorted.
async fn backlog(lab: &Lab, user: &str, count: usize) -> Vec<String> {
    let set: Vec<_> = (0..count).map(|i| mails::varied(i, user, "pipe")).collect();
    let raws: Vec<Vec<u8>> = set.iter().map(|m| m.raw.clone()).collect();
    lab.append(user, "INBOX", &raws).await;
    let mut subjects: Vec<String> = set.into_iter().map(|m| m.subject).collect();
    subjects.sort();
    subjects
}

/// What one `run --once` did to a backlog through [`common::proxy::pop3_watch`].
struct WatchedBacklog {
    watch: common::proxy::Pop3Watch,
    /// Subjects of the tickets made, sorted.
    tickets: Vec<String>,
    /// Subjects of the backlog's mails, sorted.
    expected: Vec<String>,
    left_in_inbox: u32,
}

/// A backlog of `count` mails fetched and deleted by one `run --once` through a proxy that
/// watches the commands (and hides PIPELINING from CAPA when asked).
async fn delete_backlog_watched(name: &str, count: usize, hide_pipelining: bool) -> WatchedBacklog {
    let lab = Lab::get();
    let user = lab.fresh_user(name);
    let expected = backlog(lab, &user, count).await;
    let watch =
        common::proxy::pop3_watch(lab.port("MAIL_LAB_POP3_PORT"), hide_pipelining, None).await;
    let cfg = TestConfig::new(
        &[pop3_via(
            lab,
            "returns",
            &user,
            watch.port,
            "action = \"delete\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    WatchedBacklog {
        watch,
        tickets: cfg.ticket_subjects(),
        expected,
        left_in_inbox: lab.count(&user, "INBOX").await,
    }
}

/// More than one batch (500), so the DELEs of one batch go out while the next is fetched.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_backlog_is_stored_once_and_deleted() {
    let run = delete_backlog_watched("pop3-pipelined", 520, false).await;
    let watch = &run.watch;
    assert!(
        watch.pipelined() > 520,
        "Dovecot offers PIPELINING, so RETR and DELE went out without waiting ({} of {} commands)",
        watch.pipelined(),
        watch.commands()
    );
    assert_eq!(run.tickets, run.expected, "every mail once");
    assert_eq!(run.left_in_inbox, 0, "and every mail deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_pipelining_in_capa_every_command_waits_for_its_reply() {
    let run = delete_backlog_watched("pop3-no-pipelining", 30, true).await;
    assert!(
        run.watch.commands() > 60,
        "RETR and DELE for each of 30 mails"
    );
    assert_eq!(
        run.watch.pipelined(),
        0,
        "no command before the previous reply"
    );
    assert_eq!(run.tickets, run.expected);
    assert_eq!(run.left_in_inbox, 0);
}

/// Another session deletes message 20 after this one listed it: Dovecot answers its RETR, in
/// the middle of the first window, with "-ERR Message 20 expunged.". The pass fails naming
/// that RETR, stores and deletes nothing; the next pass stores every other mail once.
#[tokio::test(flavor = "multi_thread")]
async fn a_mail_deleted_by_another_session_mid_window_fails_its_retr_and_loses_nothing() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-expunged");
    let mut expected = backlog(lab, &user, 40).await;
    let gone = mails::varied(19, &user, "pipe").subject;
    expected.retain(|s| *s != gone);
    let other_session = {
        let user = user.clone();
        Box::pin(async move { lab.expunge(&user, "INBOX", 20).await }) as _
    };
    let watch = common::proxy::pop3_watch(
        lab.port("MAIL_LAB_POP3_PORT"),
        false,
        Some(("RETR", other_session)),
    )
    .await;
    let account = |port| pop3_via(lab, "returns", &user, port, "action = \"delete\"\n");
    let cfg = TestConfig::new(&[account(watch.port)], "");

    let failed = cfg.run(&["run", "--once"]);
    let stderr = common::stderr(&failed);
    assert!(!failed.status.success(), "{stderr}");
    assert!(
        stderr.contains("RETR 20") && stderr.contains("expunged"),
        "the error names the command and what the server said: {stderr}"
    );
    assert!(watch.pipelined() > 0, "the RETRs were pipelined");
    assert!(cfg.tickets().is_empty(), "the failed batch is not stored");
    assert_eq!(
        lab.count(&user, "INBOX").await,
        39,
        "and stays on the server"
    );

    let next = cfg.run(&["run", "--once"]);
    assert!(next.status.success(), "{}", common::stderr(&next));
    assert_eq!(cfg.ticket_subjects(), expected, "every other mail, once");
    assert_eq!(lab.count(&user, "INBOX").await, 0);
}
