//! Servers that are not Dovecot as it is usually set up, imitated by the lab's Dovecot (per-user
//! traits, see scripts/mail-lab) or by a small proxy in front of it: no MOVE and no UIDPLUS
//! (GNU Mailutils), folders under "INBOX." with separator "." (Courier, Debian's Cyrus), IDLE that
//! never pushes, and POP3 LOGIN-DELAY (Cyrus).

mod common;

use common::diag::{run_json, smtp_section, LabSmtp};
use common::{imap_account, mails, pop3_account, pop3_via, Lab, TestConfig};
use futures::TryStreamExt;

fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name:?}: {report:#}"))
}

fn detail(report: &serde_json::Value, name: &str) -> String {
    step(report, name)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// UIDs in `folder` that carry \Deleted.
async fn deleted_uids(lab: &Lab, user: &str, folder: &str) -> Vec<u32> {
    let mut s = lab.imap(user).await;
    s.examine(folder).await.unwrap();
    let mut uids: Vec<u32> = s.uid_search("DELETED").await.unwrap().into_iter().collect();
    uids.sort_unstable();
    s.logout().await.ok();
    uids
}

/// Sets or clears \Deleted on every mail of INBOX whose subject contains `subject`, as another
/// client would.
async fn flag_deleted_by_subject(lab: &Lab, user: &str, subject: &str, on: bool) {
    let mut s = lab.imap(user).await;
    s.select("INBOX").await.unwrap();
    let uids = s
        .uid_search(format!("SUBJECT \"{subject}\""))
        .await
        .unwrap();
    assert!(!uids.is_empty(), "no mail with subject {subject:?}");
    let set: Vec<String> = uids.iter().map(u32::to_string).collect();
    let change = if on {
        "+FLAGS (\\Deleted)"
    } else {
        "-FLAGS (\\Deleted)"
    };
    s.uid_store(set.join(","), change)
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    s.logout().await.ok();
}

// ------------------------------------------------------------ no MOVE, no UIDPLUS

#[tokio::test(flavor = "multi_thread")]
async fn without_move_and_uidplus_stored_mails_are_copied_and_expunged() {
    let lab = Lab::get();
    let user = lab.fresh_user("nouidplus-move");
    let set: Vec<Vec<u8>> = (0..6).map(|i| mails::varied(i, &user, "nm").raw).collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "starttls",
            "action = \"move\"\nmove_to = \"Archive\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.tickets().len(), 6);
    assert_eq!(lab.count(&user, "INBOX").await, 0, "INBOX is empty");
    assert_eq!(
        lab.count(&user, "Archive").await,
        6,
        "each mail copied once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_uidplus_another_clients_deleted_mail_is_never_expunged() {
    let lab = Lab::get();
    let user = lab.fresh_user("nouidplus-guard");
    let ours: Vec<Vec<u8>> = (0..3).map(|i| mails::varied(i, &user, "ng").raw).collect();
    lab.append(&user, "INBOX", &ours).await;
    // A mail the daemon does not take (over max_message_size: a ticket of its header, the mail
    // stays) that another client flagged.
    let big = mails::simple(
        &user,
        "Too big for the helpdesk",
        "big@customer.example.test",
        &format!("X-Padding: {}\r\n", "x".repeat(40_000)),
    );
    lab.append(&user, "INBOX", &[big]).await;
    flag_deleted_by_subject(lab, &user, "Too big for the helpdesk", true).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"delete\"\nmax_message_size = \"20KB\"\n",
        )],
        "",
    );

    let first = cfg.run(&["run", "--once"]);
    let log = common::stderr(&first);
    assert!(first.status.success(), "{log}");
    assert_eq!(cfg.tickets().len(), 4);
    assert_eq!(
        lab.count(&user, "INBOX").await,
        4,
        "nothing expunged while someone else's mail is flagged"
    );
    assert_eq!(
        deleted_uids(lab, &user, "INBOX").await.len(),
        4,
        "ours are flagged, waiting"
    );
    assert!(
        log.contains("no UIDPLUS") && log.contains("1 mail(s) another client flagged"),
        "says why: {log}"
    );

    let second = cfg.run(&["run", "--once"]);
    assert!(second.status.success(), "{}", common::stderr(&second));
    assert_eq!(cfg.tickets().len(), 4, "no second ticket while waiting");
    assert_eq!(lab.count(&user, "INBOX").await, 4);

    // The other client changes its mind: now the \Deleted set is exactly ours.
    flag_deleted_by_subject(lab, &user, "Too big for the helpdesk", false).await;
    let third = cfg.run(&["run", "--once"]);
    assert!(third.status.success(), "{}", common::stderr(&third));
    assert_eq!(cfg.tickets().len(), 4);
    let left = lab.messages(&user, "INBOX").await;
    assert_eq!(left.len(), 1, "only the other client's mail is left");
    assert!(String::from_utf8_lossy(&left[0]).contains("Too big for the helpdesk"));
}

#[tokio::test(flavor = "multi_thread")]
async fn test_fetch_says_how_mail_leaves_a_server_without_uidplus() {
    let lab = Lab::get();
    let user = lab.fresh_user("nouidplus-diag");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "acct",
            &user,
            "ssl",
            "action = \"move\"\nmove_to = \"Archive\"\n",
        )],
        &smtp_section(lab, LabSmtp::Plain, &user, lab.password()),
    );
    let (out, report) = run_json(&cfg, &["test-fetch", "acct", "--wait", "30"]);
    assert!(out.status.success(), "{report:#}");
    let caps = detail(&report, "capabilities");
    assert!(
        caps.contains("MOVE no") && caps.contains("UIDPLUS no"),
        "{caps}"
    );
    let disposal = detail(&report, "disposal");
    assert!(
        disposal.contains("copied to \"Archive\"")
            && disposal.contains("EXPUNGE only while no other mail in the folder is flagged"),
        "{disposal}"
    );
    let arrives = detail(&report, "test mail arrives");
    assert!(arrives.contains("copied to \"Archive\""), "{arrives}");

    let run = cfg.run(&["run", "--once"]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    assert_eq!(lab.count(&user, "INBOX").await, 0, "what test-fetch said");
    assert_eq!(lab.count(&user, "Archive").await, 1);
}

// ------------------------------------------------------------ separator and namespace

#[tokio::test(flavor = "multi_thread")]
async fn slash_in_move_to_maps_to_the_servers_separator_and_namespace() {
    let lab = Lab::get();
    let user = lab.fresh_user("dotns-move");
    let server_name = "INBOX.Erledigt.Geprüft";
    let mut s = lab.imap(&user).await;
    s.create(mail2ticket::imap::utf7::encode(server_name))
        .await
        .unwrap();
    s.logout().await.ok();
    let set: Vec<Vec<u8>> = (0..4).map(|i| mails::varied(i, &user, "ns").raw).collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "ssl",
            "action = \"move\"\nmove_to = \"Erledigt/Geprüft\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.tickets().len(), 4);
    assert_eq!(lab.count(&user, "INBOX").await, 0);
    assert_eq!(lab.count(&user, server_name).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_own_folder_name_is_used_unchanged() {
    let lab = Lab::get();
    let user = lab.fresh_user("dotns-own");
    let set: Vec<Vec<u8>> = (0..2).map(|i| mails::varied(i, &user, "own").raw).collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "ssl",
            "action = \"move\"\nmove_to = \"INBOX.Archive\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(lab.count(&user, "INBOX.Archive").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_fetch_explains_the_folder_name_mapping() {
    let lab = Lab::get();
    let user = lab.fresh_user("dotns-diag");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "acct",
            &user,
            "ssl",
            "action = \"move\"\nmove_to = \"Erledigt/Geprüft\"\n",
        )],
        &smtp_section(lab, LabSmtp::Plain, &user, lab.password()),
    );
    let (out, report) = run_json(&cfg, &["test-fetch", "acct", "--wait", "30"]);
    assert!(!out.status.success(), "the folder is missing: {report:#}");
    let names = detail(&report, "folder names");
    assert!(
        names.contains("\"Erledigt/Geprüft\" is \"INBOX.Erledigt.Geprüft\" on this server")
            && names.contains("separator \".\"")
            && names.contains("personal folders under \"INBOX.\""),
        "{names}"
    );
    let missing = step(&report, "move_to folder");
    assert_eq!(missing["ok"], false);
    let text = format!(
        "{} {}",
        missing["detail"].as_str().unwrap(),
        missing["hint"].as_str().unwrap()
    );
    assert!(
        text.contains("\"INBOX.Erledigt.Geprüft\" does not exist"),
        "names the server's folder: {text}"
    );
}

// ------------------------------------------------------------ POP3 wording

#[tokio::test(flavor = "multi_thread")]
async fn pop3_test_fetch_speaks_of_the_maildrop_not_of_a_folder() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-words");
    let cfg = TestConfig::new(
        &[pop3_account(
            lab,
            "acct",
            &user,
            "ssl",
            "action = \"delete\"\n",
        )],
        &smtp_section(lab, LabSmtp::Plain, &user, lab.password()),
    );
    let (out, report) = run_json(&cfg, &["test-fetch", "acct", "--wait", "30"]);
    assert!(out.status.success(), "{report:#}");
    let arrives = detail(&report, "test mail arrives");
    assert!(
        arrives.contains("in the maildrop") && !arrives.contains("INBOX"),
        "{arrives}"
    );
}

// ------------------------------------------------------------ IDLE that never pushes

#[tokio::test(flavor = "multi_thread")]
async fn with_idle_on_a_server_that_never_pushes_mail_waits_no_longer_than_poll_interval() {
    let lab = Lab::get();
    let user = lab.fresh_user("imap-mute-idle");
    let proxy = common::proxy::mute_idle(lab.port("MAIL_LAB_IMAP_PORT")).await;
    let account = imap_account(
        lab,
        "support",
        &user,
        "none",
        "action = \"move\"\nmove_to = \"Archive\"\n",
    )
    .replace(
        &format!("port = {}", lab.port("MAIL_LAB_IMAP_PORT")),
        &format!("port = {}", proxy.port),
    );
    // TestConfig polls every second.
    let cfg = TestConfig::new(&[account], "");
    let mut daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    wait_until("the daemon enters IDLE", || {
        proxy.idles.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    lab.append(
        &user,
        "INBOX",
        &[mails::simple(
            &user,
            "Pushed to nobody",
            "mute@customer.example.test",
            "",
        )],
    )
    .await;
    wait_until("the mail becomes a ticket", || cfg.tickets().len() == 1).await;
    wait_until("the daemon goes back into IDLE", || {
        proxy.idles.load(std::sync::atomic::Ordering::SeqCst) > 1
    })
    .await;
    daemon.kill();
    assert_eq!(lab.count(&user, "Archive").await, 1);
}

/// Waits for `done` to hold, checking every 100 ms; after a minute the test fails, naming `what`.
/// (A deadline against hanging, not a speed requirement.)
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------ POP3 LOGIN-DELAY

#[tokio::test(flavor = "multi_thread")]
async fn pop3_login_delay_bounds_the_poll_interval_and_is_never_a_wrong_password() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-login-delay");
    let proxy = common::proxy::login_delay(lab.port("MAIL_LAB_POP3_PORT"), 3).await;
    // TestConfig polls every second: faster than the server allows.
    let cfg = TestConfig::new(
        &[pop3_via(
            lab,
            "support",
            &user,
            proxy.port,
            "action = \"delete\"\n",
        )],
        "",
    );
    let mut daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    // After its first login the daemon has set up the store: `tickets list` may open it now.
    wait_until("the daemon's first login", || {
        proxy.logins.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    for (i, subject) in ["First of two", "Second of two"].iter().enumerate() {
        lab.append(
            &user,
            "INBOX",
            &[mails::simple(
                &user,
                subject,
                &format!("ld{i}@customer.example.test"),
                "",
            )],
        )
        .await;
        wait_until("the mail becomes a ticket", || cfg.tickets().len() == i + 1).await;
    }
    wait_until("a third login", || {
        proxy.logins.load(std::sync::atomic::Ordering::SeqCst) >= 3
    })
    .await;
    daemon.kill();
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert_eq!(
        proxy.too_early.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the daemon never logged in before the delay was over: {log}"
    );
    assert_eq!(
        log.matches("allows one login every 3 s (LOGIN-DELAY)")
            .count(),
        1,
        "said once: {log}"
    );
    assert!(!log.contains("check `user`"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_test_fetch_names_an_early_login_as_too_early() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-too-early");
    let proxy = common::proxy::login_delay(lab.port("MAIL_LAB_POP3_PORT"), 600).await;
    let cfg = TestConfig::new(
        &[pop3_via(
            lab,
            "acct",
            &user,
            proxy.port,
            "action = \"delete\"\n",
        )],
        &smtp_section(lab, LabSmtp::Plain, &user, lab.password()),
    );
    let first = cfg.run(&["run", "--once"]);
    assert!(first.status.success(), "{}", common::stderr(&first));

    let (out, report) = run_json(&cfg, &["test-fetch", "acct", "--wait", "5"]);
    assert!(!out.status.success(), "{report:#}");
    let caps = detail(&report, "capabilities");
    assert!(caps.contains("LOGIN-DELAY 600 s"), "{caps}");
    let login = step(&report, "login");
    assert_eq!(login["ok"], false, "{report:#}");
    let said = format!(
        "{} {}",
        login["detail"].as_str().unwrap(),
        login["hint"].as_str().unwrap()
    );
    assert!(
        said.contains("too early") && said.contains("not a wrong password"),
        "{said}"
    );
    assert!(!said.contains("check `user`"), "{said}");

    let again = cfg.run(&["run", "--once"]);
    let err = common::stderr(&again);
    assert!(!again.status.success());
    assert!(
        err.contains("too early") && !err.contains("check `user`"),
        "{err}"
    );
}

// ------------------------------------------------------------ a reply listed first

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_the_server_lists_before_its_original_joins_the_originals_ticket() {
    let lab = Lab::get();
    let user = lab.fresh_user("pop3-reply-first");
    let dir = tempfile::tempdir().unwrap();
    let reply = dir.path().join("1-reply.eml");
    let original = dir.path().join("2-original.eml");
    std::fs::write(
        &reply,
        mails::simple(
            &user,
            "Re: Defekter Toaster",
            "reply.toaster@customer.example.test",
            "In-Reply-To: <first.toaster@customer.example.test>\r\n",
        ),
    )
    .unwrap();
    std::fs::write(
        &original,
        mails::simple(
            &user,
            "Defekter Toaster",
            "first.toaster@customer.example.test",
            "",
        ),
    )
    .unwrap();
    // Listed reply first, as Courier's POP3 does when the reply's file name sorts first.
    lab.seed(&user, "INBOX", &[reply, original]);
    let cfg = TestConfig::new(
        &[pop3_account(
            lab,
            "support",
            &user,
            "ssl",
            "action = \"delete\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "one ticket for the pair: {tickets:?}");
    assert_eq!(tickets[0]["articles"], 2);
    assert_eq!(tickets[0]["subject"], "Defekter Toaster", "{tickets:?}");
}
