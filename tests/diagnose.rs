//! test-fetch and test-send against the real lab: every step passes for IMAP (each encryption)
//! and POP3, the test mail arrives and makes no ticket; each misconfiguration fails with a
//! message that names its cause; the password never appears in the output.

mod common;

use std::time::Duration;

use common::diag::{
    assert_no_secret, cause, failed_step, run_json, smtp_section, step_names, wait_for_mail,
    LabSmtp,
};
use common::{imap_account, mails, pop3_account, Lab, TestConfig};
use mail2ticket::ingest::parse::{parse, TEST_HEADER};

const WRONG_PASSWORD: &str = "Wrong-Secret-4711";

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A config with one account (`name` "acct") and the submission port as [smtp].
fn config_with(lab: &Lab, account: String, smtp: Option<LabSmtp>, user: &str) -> TestConfig {
    let smtp = smtp
        .map(|k| smtp_section(lab, k, user, lab.password()))
        .unwrap_or_default();
    TestConfig::new(&[account], &smtp)
}

const MOVE_TO_ARCHIVE: &str = "action = \"move\"\nmove_to = \"Archive\"\n";

/// Old mail (over 14 days) becomes a closed ticket; mails leave the server once stored.
const DELETE_OLD_CLOSED: &str =
    "action = \"delete\"\nold_mail_status = \"closed\"\nold_mail_age = \"14d\"\n";

/// Success: every line is ✓, exit 0; then `run --once` disposes of the test mail without a
/// ticket.
async fn imap_success(encryption: &str, smtp: LabSmtp) {
    let lab = Lab::get();
    let user = lab.fresh_user(&format!("diag-imap-{encryption}"));
    let cfg = config_with(
        lab,
        imap_account(lab, "acct", &user, encryption, MOVE_TO_ARCHIVE),
        Some(smtp),
        &user,
    );
    let out = cfg.run(&["test-fetch", "acct", "--wait", "30"]);
    let stdout = text(&out);
    assert!(
        out.status.success(),
        "test-fetch failed:\n{stdout}{}",
        common::stderr(&out)
    );
    assert_no_secret(&out, lab.password());
    let lines: Vec<&str> = stdout.lines().collect();
    let names = [
        "resolve host",
        "connect",
        "TLS",
        "login",
        "capabilities",
        "folder names",
        "folder",
        "move_to folder",
        "disposal",
        "forecast",
        "send test mail",
        "test mail arrives",
    ];
    assert_eq!(
        lines.len(),
        names.len() + 1,
        "one line per step plus a summary:\n{stdout}"
    );
    for (line, name) in lines.iter().zip(names) {
        assert!(
            line.starts_with(&format!("✓ {name}  ")),
            "{line:?} is step {name}"
        );
        assert!(line.contains(" ms  "), "{line:?} shows its time");
    }
    assert!(
        stdout.contains("IDLE yes, MOVE yes, UIDPLUS yes"),
        "{stdout}"
    );
    if encryption != "none" {
        assert!(
            stdout.contains("issued by CN=mail2ticket lab CA"),
            "{stdout}"
        );
    }
    assert_eq!(
        lab.count(&user, "INBOX").await,
        1,
        "the test mail is in INBOX"
    );
    let raw = &lab.messages(&user, "INBOX").await[0];
    let parsed = parse(raw);
    assert!(
        parsed.subject.starts_with("mail2ticket test 20"),
        "{}",
        parsed.subject
    );
    assert!(
        parsed.automation.test_marker.is_some(),
        "marked with {TEST_HEADER}"
    );

    let run = cfg.run(&["run", "--once"]);
    assert!(run.status.success(), "run --once: {}", common::stderr(&run));
    assert_eq!(
        cfg.tickets(),
        Vec::<serde_json::Value>::new(),
        "no ticket for the test mail"
    );
    assert_eq!(
        lab.count(&user, "INBOX").await,
        0,
        "the test mail left INBOX"
    );
    assert_eq!(
        lab.count(&user, "Archive").await,
        1,
        "and was moved per action"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_ssl_passes_every_step_and_the_test_mail_makes_no_ticket() {
    imap_success("ssl", LabSmtp::Submission).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_starttls_passes_every_step_and_the_test_mail_makes_no_ticket() {
    imap_success("starttls", LabSmtp::Smtps).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_without_encryption_passes_every_step_and_the_test_mail_makes_no_ticket() {
    imap_success("none", LabSmtp::Plain).await;
}

async fn pop3_success(encryption: &str, smtp: LabSmtp) {
    let lab = Lab::get();
    let user = lab.fresh_user(&format!("diag-pop3-{encryption}"));
    let cfg = config_with(
        lab,
        pop3_account(lab, "acct", &user, encryption, "action = \"delete\"\n"),
        Some(smtp),
        &user,
    );
    let (out, report) = run_json(&cfg, &["test-fetch", "acct", "--wait", "30"]);
    assert!(out.status.success(), "test-fetch failed: {report:#}");
    assert_no_secret(&out, lab.password());
    assert_eq!(report["account"], "acct");
    assert_eq!(report["ok"], true);
    assert_eq!(
        step_names(&report),
        [
            "resolve host",
            "connect",
            "TLS",
            "capabilities",
            "login",
            "mailbox",
            "forecast",
            "send test mail",
            "test mail arrives"
        ]
    );
    for s in report["steps"].as_array().unwrap() {
        assert_eq!(s["ok"], true);
        assert!(s["millis"].is_u64());
        assert!(s["detail"].is_string());
        assert!(s["hint"].is_null());
    }
    let caps = report["steps"][3]["detail"].as_str().unwrap();
    assert!(caps.contains("UIDL yes"), "{caps}");
    assert!(caps.contains("PIPELINING yes"), "Dovecot offers it: {caps}");

    let run = cfg.run(&["run", "--once"]);
    assert!(run.status.success(), "run --once: {}", common::stderr(&run));
    assert_eq!(
        cfg.tickets(),
        Vec::<serde_json::Value>::new(),
        "no ticket for the test mail"
    );
    assert_eq!(
        lab.count(&user, "INBOX").await,
        0,
        "the test mail was deleted per action"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_starttls_passes_every_step_and_the_test_mail_makes_no_ticket() {
    pop3_success("starttls", LabSmtp::Submission).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_ssl_passes_every_step_and_the_test_mail_makes_no_ticket() {
    pop3_success("ssl", LabSmtp::Plain).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inactive_accounts_can_be_tested_too() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-inactive");
    let cfg = with_account(
        lab,
        imap_account(
            lab,
            "acct",
            &user,
            "ssl",
            "action = \"delete\"\nactive = false\n",
        ),
        &user,
    );
    let (out, report) = run_json(&cfg, &["test-fetch", "acct", "--wait", "30"]);
    assert!(out.status.success(), "{report:#}");
    assert!(!step_names(&report).contains(&"move_to folder".to_string()));
}

// ------------------------------------------------------------------------------ forecast

/// The forecast line of a passing test-fetch of account "acct", as the text report prints it.
fn forecast(cfg: &TestConfig) -> String {
    let out = cfg.run(&["test-fetch", "acct", "--wait", "30"]);
    let stdout = text(&out);
    assert!(out.status.success(), "test-fetch failed:\n{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("✓ forecast  "))
        .unwrap_or_else(|| panic!("a forecast line:\n{stdout}"));
    let (_, detail) = line.split_once(" ms  ").expect("the step's time");
    detail.to_string()
}

/// Into `user`'s INBOX: mails of 400 and 30 days ago, one without a Date that the server
/// received a year ago (its INTERNALDATE), and mails of 3 days ago and of today.
async fn old_and_new_mail(lab: &Lab, user: &str, customer: &str) {
    let mail = |subject: &str, days_ago| mails::dated(customer, user, subject, days_ago);
    lab.append(
        user,
        "INBOX",
        &[
            mail("last year", Some(400)),
            mail("last month", Some(30)),
            mail("three days ago", Some(3)),
            mail("today", Some(0)),
        ],
    )
    .await;
    let last_year =
        (chrono::Utc::now() - chrono::Duration::days(365)).format("%d-%b-%Y %H:%M:%S +0000");
    lab.append_arrived(
        user,
        "INBOX",
        &mail("undated", None),
        &last_year.to_string(),
    )
    .await;
}

/// The status of each ticket by its subject, and the subjects whose ticket got a reply.
fn outcome(cfg: &TestConfig) -> (Vec<(String, String)>, Vec<String>) {
    let mut statuses = Vec::new();
    let mut answered = Vec::new();
    for t in cfg.tickets() {
        let subject = t["subject"].as_str().unwrap().to_string();
        statuses.push((subject.clone(), t["status"].as_str().unwrap().to_string()));
        let note = cfg.show(t["number"].as_str().unwrap())["articles"][0]["auto_reply"]
            .as_str()
            .unwrap()
            .to_string();
        if note.starts_with("auto-reply sent to") {
            answered.push(subject);
        }
    }
    statuses.sort();
    (statuses, answered)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forecast_tells_which_mails_get_the_old_mail_status_and_the_pass_agrees() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-forecast-old");
    let customer = lab.fresh_user("diag-forecast-customer");
    old_and_new_mail(lab, &user, &customer).await;
    let cfg = with_account(
        lab,
        imap_account(
            lab,
            "acct",
            &user,
            "ssl",
            &format!(
                "{MOVE_TO_ARCHIVE}auto_reply = true\nold_mail_status = \"closed\"\nold_mail_age = \"14d\"\n"
            ),
        ),
        &user,
    );
    assert_eq!(
        forecast(&cfg),
        "\"INBOX\" holds 5 mails, 3 of them older than 14 days: they will become tickets with \
         status closed and get no automatic reply; the other 2 will become tickets with status \
         open; 1 of those not older than auto_reply_max_age (1 day) may get an automatic reply"
    );
    let run = cfg.run(&["run", "--once"]);
    assert!(run.status.success(), "run --once: {}", common::stderr(&run));
    let (statuses, answered) = outcome(&cfg);
    let expected = [
        ("last month", "closed"),
        ("last year", "closed"),
        ("three days ago", "open"),
        ("today", "open"),
        ("undated", "closed"),
    ];
    assert_eq!(
        statuses,
        expected.map(|(s, t)| (s.to_string(), t.to_string())),
        "what the forecast said"
    );
    assert_eq!(answered, ["today"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_old_mail_keys_the_forecast_says_old_mail_opens_tickets_and_names_the_keys() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-forecast-plain");
    let customer = lab.fresh_user("diag-forecast-customer");
    old_and_new_mail(lab, &user, &customer).await;
    let cfg = with_account(
        lab,
        imap_account(
            lab,
            "acct",
            &user,
            "ssl",
            &format!("{MOVE_TO_ARCHIVE}auto_reply = true\n"),
        ),
        &user,
    );
    // Without old_mail_*, old is what the reply rule calls old: by the Date only, and a mail
    // without one counts as new.
    assert_eq!(
        forecast(&cfg),
        "\"INBOX\" holds 5 mails, 3 of them older than 1 day: they will become tickets with \
         status open like new mail; 2 of them not older than auto_reply_max_age (1 day) may get \
         an automatic reply; to give old mail another status and no automatic reply, set \
         old_mail_status and old_mail_age (e.g. \"closed\" and \"14d\")"
    );
    let run = cfg.run(&["run", "--once"]);
    assert!(run.status.success(), "run --once: {}", common::stderr(&run));
    let (statuses, mut answered) = outcome(&cfg);
    assert!(statuses.iter().all(|(_, s)| s == "open"), "{statuses:?}");
    assert_eq!(statuses.len(), 5);
    answered.sort();
    assert_eq!(answered, ["today", "undated"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_folder_and_a_young_one_are_forecast_too() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-forecast-young");
    let customer = lab.fresh_user("diag-forecast-customer");
    let cfg = with_account(
        lab,
        imap_account(lab, "acct", &user, "none", DELETE_OLD_CLOSED),
        &user,
    );
    assert_eq!(forecast(&cfg), "\"INBOX\" holds no mail yet");
    // No daemon ran: the test mail is still there. Take it away, and add a mail of today.
    lab.expunge(&user, "INBOX", 1).await;
    lab.append(
        &user,
        "INBOX",
        &[mails::dated(&customer, &user, "today", Some(0))],
    )
    .await;
    assert_eq!(
        forecast(&cfg),
        "\"INBOX\" holds 1 mail, not older than 14 days: it will become a ticket with status open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_forecast_reads_the_dates_from_the_headers() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-forecast-pop3");
    let customer = lab.fresh_user("diag-forecast-customer");
    old_and_new_mail(lab, &user, &customer).await;
    let cfg = with_account(
        lab,
        pop3_account(
            lab,
            "acct",
            &user,
            "starttls",
            "action = \"keep\"\nold_mail_status = \"closed\"\nold_mail_age = \"14d\"\n",
        ),
        &user,
    );
    // POP3 has no INTERNALDATE: the mail without a Date counts as new, as in the pass.
    assert_eq!(
        forecast(&cfg),
        "the maildrop holds 5 mails, 2 of them older than 14 days: they will become tickets \
         with status closed and get no automatic reply; the other 3 will become tickets with \
         status open; mails fetched before stay as they are (action = \"keep\"): they make no \
         new ticket"
    );
    let run = cfg.run(&["run", "--once"]);
    assert!(run.status.success(), "run --once: {}", common::stderr(&run));
    let (statuses, answered) = outcome(&cfg);
    let closed: Vec<&str> = statuses
        .iter()
        .filter(|(_, s)| s == "closed")
        .map(|(subject, _)| subject.as_str())
        .collect();
    assert_eq!(closed, ["last month", "last year"]);
    assert_eq!(statuses.len(), 5);
    assert!(answered.is_empty(), "no auto_reply: {answered:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_without_top_the_forecast_gives_the_rule_without_numbers() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-forecast-notop");
    let customer = lab.fresh_user("diag-forecast-customer");
    old_and_new_mail(lab, &user, &customer).await;
    // Dovecot behind a proxy that takes TOP out of CAPA.
    let port = common::proxy::pop3_without_top(lab.port("MAIL_LAB_POP3_PORT")).await;
    let cfg = with_account(
        lab,
        common::pop3_via(lab, "acct", &user, port, DELETE_OLD_CLOSED),
        &user,
    );
    assert_eq!(
        forecast(&cfg),
        "the maildrop holds 5 mails; the server offers no TOP to read a mail's header, so their \
         age is known only once they are fetched: a mail older than 14 days by its Date will \
         become a ticket with status closed and get no automatic reply, any other a ticket with \
         status open"
    );
}

/// `old` mails of last month, then `new` of today, seeded straight into `user`'s INBOX in
/// that order (fast: no IMAP for each).
fn seed_backlog(lab: &Lab, user: &str, old: usize, new: usize) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<std::path::PathBuf> = (0..old + new)
        .map(|i| {
            let days_ago = if i < old { 30 } else { 0 };
            let path = dir.path().join(format!("{i:05}.eml"));
            let from = format!("kunde{i}@customer.example.test");
            let mail = mails::dated(&from, user, &format!("Anfrage {i}"), Some(days_ago));
            std::fs::write(&path, mail).unwrap();
            path
        })
        .collect();
    lab.seed(user, "INBOX", &files);
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_mails_are_counted_one_by_one_over_imap() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-forecast-10k");
    seed_backlog(lab, &user, 6_000, 4_000);
    let cfg = with_account(
        lab,
        imap_account(lab, "acct", &user, "ssl", DELETE_OLD_CLOSED),
        &user,
    );
    assert_eq!(
        forecast(&cfg),
        "\"INBOX\" holds 10,000 mails, 6,000 of them older than 14 days: they will become \
         tickets with status closed and get no automatic reply; the other 4,000 will become \
         tickets with status open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_reads_the_headers_of_the_newest_2000_mails_only() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-forecast-pop3-many");
    // The 5 oldest by number are of last month; the newest 2,000 of today.
    seed_backlog(lab, &user, 5, 2_000);
    let cfg = with_account(
        lab,
        pop3_account(lab, "acct", &user, "ssl", DELETE_OLD_CLOSED),
        &user,
    );
    assert_eq!(
        forecast(&cfg),
        "the maildrop holds 2,005 mails (the headers of the newest 2,000 were read: POP3 tells \
         a mail's date only by its header), none older than 14 days: they will become tickets \
         with status open"
    );
}

// ------------------------------------------------------------------------------ failures

/// Runs test-fetch on an account and returns "detail: hint" of the failing step, checking the
/// exit code, which step failed and that no password leaked.
fn fetch_fails_at(cfg: &TestConfig, step: &str, secrets: &[&str]) -> String {
    let (out, report) = run_json(cfg, &["test-fetch", "acct", "--wait", "20"]);
    assert_eq!(out.status.code(), Some(1), "non-zero exit: {report:#}");
    assert_eq!(report["ok"], false);
    for s in secrets {
        assert_no_secret(&out, s);
    }
    let failed = failed_step(&report);
    assert_eq!(failed["step"], step, "{report:#}");
    assert!(
        failed["hint"].is_string(),
        "a failure has a hint: {report:#}"
    );
    // The text report says the same.
    let out = cfg.run(&["test-fetch", "acct", "--wait", "20"]);
    assert_eq!(out.status.code(), Some(1));
    let c = cause(failed);
    let stdout = text(&out);
    assert!(
        stdout.contains(&format!("✗ {step}  ")),
        "text report shows the failed step:\n{stdout}"
    );
    for s in secrets {
        assert_no_secret(&out, s);
    }
    c
}

fn imap_cfg(lab: &Lab, user: &str, encryption: &str, extra: &str) -> (TestConfig, String) {
    let account = imap_account(lab, "acct", user, encryption, extra);
    (
        config_with(lab, account.clone(), Some(LabSmtp::Submission), user),
        account,
    )
}

fn with_account(lab: &Lab, account: String, user: &str) -> TestConfig {
    config_with(lab, account, Some(LabSmtp::Submission), user)
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_names_the_login() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-badpw");
    let account = imap_account(lab, "acct", &user, "ssl", "action = \"delete\"\n")
        .replace(lab.password(), WRONG_PASSWORD);
    let cfg = with_account(lab, account, &user);
    let c = fetch_fails_at(&cfg, "login", &[WRONG_PASSWORD, lab.password()]);
    assert!(c.contains(&format!("login rejected for {user}")), "{c}");
    assert!(c.contains("check `user` and `password`"), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_wrong_password_names_the_login() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-pop-badpw");
    let account = pop3_account(lab, "acct", &user, "starttls", "action = \"delete\"\n")
        .replace(lab.password(), WRONG_PASSWORD);
    let cfg = with_account(lab, account, &user);
    let c = fetch_fails_at(&cfg, "login", &[WRONG_PASSWORD, lab.password()]);
    assert!(c.contains(&format!("login rejected for {user}")), "{c}");
    assert!(c.contains("check `user` and `password`"), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_port_names_the_port_and_the_usual_ones() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-port");
    let (_, account) = imap_cfg(lab, &user, "ssl", "action = \"delete\"\n");
    let port = lab.port("MAIL_LAB_IMAPS_PORT");
    // Nothing listens one below the lab's SMTPS port range start ... pick a closed one.
    let closed = free_port();
    let cfg = with_account(
        lab,
        account.replace(&format!("port = {port}"), &format!("port = {closed}")),
        &user,
    );
    let c = fetch_fails_at(&cfg, "connect", &[lab.password()]);
    assert!(
        c.contains(&format!("nothing answers on localhost:{closed}")),
        "{c}"
    );
    assert!(c.contains("check `port`"), "{c}");
    assert!(
        c.contains("993") && c.contains("143"),
        "mentions the default ports: {c}"
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_against_the_starttls_port_says_so() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-ssl-plain");
    let (_, account) = imap_cfg(lab, &user, "ssl", "action = \"delete\"\n");
    let account = account.replace(
        &format!("port = {}", lab.port("MAIL_LAB_IMAPS_PORT")),
        &format!("port = {}", lab.port("MAIL_LAB_IMAP_PORT")),
    );
    let cfg = with_account(lab, account, &user);
    let c = fetch_fails_at(&cfg, "TLS", &[lab.password()]);
    assert!(c.contains("did not speak TLS on this port"), "{c}");
    assert!(c.contains("did you mean encryption = \"starttls\""), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_against_the_implicit_tls_port_says_so() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-starttls-ssl");
    let (_, account) = imap_cfg(lab, &user, "starttls", "action = \"delete\"\n");
    let account = account.replace(
        &format!("port = {}", lab.port("MAIL_LAB_IMAP_PORT")),
        &format!("port = {}", lab.port("MAIL_LAB_IMAPS_PORT")),
    );
    let cfg = with_account(lab, account, &user);
    let c = fetch_fails_at(&cfg, "TLS", &[lab.password()]);
    assert!(c.contains("no greeting within 10s"), "{c}");
    assert!(c.contains("did you mean encryption = \"ssl\""), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_ca_names_the_issuer() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-noca");
    let (_, account) = imap_cfg(lab, &user, "ssl", "action = \"delete\"\n");
    let account = account.replace(&format!("ca_file = \"{}\"\n", lab.ca()), "");
    let cfg = with_account(lab, account, &user);
    let c = fetch_fails_at(&cfg, "TLS", &[lab.password()]);
    assert!(
        c.contains("certificate not trusted: issuer CN=mail2ticket lab CA"),
        "{c}"
    );
    assert!(c.contains("set `ca_file`"), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_file_of_another_ca_names_the_issuer_and_the_file() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-otherca");
    let (_, account) = imap_cfg(lab, &user, "starttls", "action = \"delete\"\n");
    let other = lab.var("MAIL_LAB_OTHER_CA");
    let cfg = with_account(lab, account.replace(lab.ca(), other), &user);
    let c = fetch_fails_at(&cfg, "TLS", &[lab.password()]);
    assert!(
        c.contains("certificate not trusted: issuer CN=mail2ticket lab CA"),
        "{c}"
    );
    assert!(
        c.contains(&format!("the current one, {other}, did not sign it")),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_move_to_folder_says_mails_would_stay() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-moveto");
    let (cfg, _) = imap_cfg(
        lab,
        &user,
        "ssl",
        "action = \"move\"\nmove_to = \"Missing\"\n",
    );
    let c = fetch_fails_at(&cfg, "move_to folder", &[lab.password()]);
    assert!(
        c.contains("move_to folder \"Missing\" does not exist"),
        "{c}"
    );
    assert!(c.contains("stay in \"INBOX\""), "{c}");
    assert!(
        c.contains("server said: Mailbox doesn't exist: Missing") && !c.contains("Outcome"),
        "the server's words, not a Debug dump: {c}"
    );
    assert!(
        c.contains("\"Erledigt/Geprüft\""),
        "lists the folders, decoded: {c}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_folder_names_the_folder() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-folder");
    let (cfg, _) = imap_cfg(
        lab,
        &user,
        "ssl",
        "action = \"delete\"\nfolder = \"Nope\"\n",
    );
    let c = fetch_fails_at(&cfg, "folder", &[lab.password()]);
    assert!(c.contains("folder \"Nope\" cannot be opened"), "{c}");
    assert!(c.contains("check `folder`"), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_says_host_not_found() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-host");
    let (_, account) = imap_cfg(lab, &user, "ssl", "action = \"delete\"\n");
    let cfg = with_account(
        lab,
        account.replace("host = \"localhost\"", "host = \"no-such-host.invalid\""),
        &user,
    );
    let c = fetch_fails_at(&cfg, "resolve host", &[lab.password()]);
    assert!(c.contains("host not found: no-such-host.invalid"), "{c}");
    assert!(c.contains("check `host`"), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_smtp_the_test_mail_step_fails_and_the_exit_is_non_zero() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-nosmtp");
    let cfg = config_with(
        lab,
        imap_account(lab, "acct", &user, "ssl", "action = \"delete\"\n"),
        None,
        &user,
    );
    let c = fetch_fails_at(&cfg, "send test mail", &[lab.password()]);
    assert!(c.contains("no [smtp] section"), "{c}");
    assert!(c.contains("add an [smtp] section"), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_smtp_password_fails_the_test_mail_step() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-smtp-badpw");
    let smtp = smtp_section(lab, LabSmtp::Submission, &user, WRONG_PASSWORD);
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "acct",
            &user,
            "ssl",
            "action = \"delete\"\n",
        )],
        &smtp,
    );
    let c = fetch_fails_at(&cfg, "send test mail", &[WRONG_PASSWORD, lab.password()]);
    assert!(c.contains("SMTP step \"AUTH\" failed"), "{c}");
    assert!(c.contains("SMTP login rejected"), "{c}");
    assert!(c.contains("check [smtp] user and password"), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_account_is_a_usage_error() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-unknown");
    let (cfg, _) = imap_cfg(lab, &user, "ssl", "action = \"delete\"\n");
    for cmd in ["test-fetch", "test-send"] {
        let out = cfg.run(&[cmd, "nope"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = common::stderr(&out);
        assert!(
            err.contains("no account named \"nope\"") && err.contains("acct"),
            "{err}"
        );
    }
}

// ------------------------------------------------------------------------------ test-send

#[tokio::test(flavor = "multi_thread")]
async fn test_send_delivers_with_display_name_and_reply_to() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-send");
    let reply_to = lab.fresh_user("diag-send-replies");
    let extra = format!(
        "action = \"delete\"\nsender_name = \"Kundendienst Müller\"\nreply_to = \"{reply_to}\"\n"
    );
    let cfg = with_account(lab, imap_account(lab, "acct", &user, "ssl", &extra), &user);
    let out = cfg.run(&["test-send", "acct", "--to", "customer@example.test"]);
    let stdout = text(&out);
    assert!(
        out.status.success(),
        "test-send failed:\n{stdout}{}",
        common::stderr(&out)
    );
    assert_no_secret(&out, lab.password());
    let names: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('✓'))
        .map(|l| l[4..].split("  ").next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "resolve host",
            "connect",
            "greeting",
            "TLS",
            "AUTH",
            "MAIL FROM",
            "RCPT TO",
            "DATA"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("STARTTLS accepted, TLS, certificate ")
            && stdout.contains("issued by CN=mail2ticket lab CA"),
        "the certificate lettre accepted after STARTTLS is shown: {stdout}"
    );
    assert!(stdout.contains("235 2.7.0"), "AUTH reply shown: {stdout}");
    assert!(
        stdout.contains("<customer@example.test>: 250"),
        "RCPT reply shown: {stdout}"
    );
    assert!(stdout.contains("queued as"), "DATA reply shown: {stdout}");

    let raw = wait_for_mail(
        lab,
        "customer@example.test",
        "INBOX",
        Duration::from_secs(30),
        |m| parse(m).from_email == user,
    )
    .await
    .expect("the test mail reaches customer@");
    let mail = parse(&raw);
    assert_eq!(mail.from_name, "Kundendienst Müller");
    assert_eq!(mail.reply_to_email.as_deref(), Some(reply_to.as_str()));
    assert!(
        mail.subject.starts_with("mail2ticket test 20"),
        "{}",
        mail.subject
    );
    assert!(mail.automation.test_marker.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn test_send_over_smtps_defaults_to_the_accounts_own_address() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-send-self");
    let cfg = config_with(
        lab,
        imap_account(lab, "acct", &user, "ssl", "action = \"delete\"\n"),
        Some(LabSmtp::Smtps),
        &user,
    );
    let (out, report) = run_json(&cfg, &["test-send", "acct"]);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(
        step_names(&report)[..4],
        ["resolve host", "connect", "TLS", "greeting"]
    );
    assert_eq!(
        lab.wait_for_count(&user, "INBOX", 1, Duration::from_secs(30))
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_send_with_a_wrong_smtp_password_names_the_cause() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-send-badpw");
    let smtp = smtp_section(lab, LabSmtp::Submission, &user, WRONG_PASSWORD);
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "acct",
            &user,
            "ssl",
            "action = \"delete\"\n",
        )],
        &smtp,
    );
    let (out, report) = run_json(
        &cfg,
        &["test-send", "acct", "--to", "customer@example.test"],
    );
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_no_secret(&out, WRONG_PASSWORD);
    assert_no_secret(&out, lab.password());
    let failed = failed_step(&report);
    assert_eq!(failed["step"], "AUTH");
    let c = cause(failed);
    assert!(
        c.contains(&format!("SMTP login rejected for {user}")),
        "{c}"
    );
    assert!(c.contains("535"), "the server's reply: {c}");
    assert!(c.contains("check [smtp] user and password"), "{c}");
    let out = cfg.run(&["test-send", "acct"]);
    assert_no_secret(&out, WRONG_PASSWORD);
    assert!(text(&out).contains("✗ AUTH  "), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn test_send_relay_denied_shows_the_servers_text() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-send-relay");
    let cfg = config_with(
        lab,
        imap_account(lab, "acct", &user, "ssl", "action = \"delete\"\n"),
        Some(LabSmtp::Plain),
        &user,
    );
    let (out, report) = run_json(
        &cfg,
        &["test-send", "acct", "--to", "someone@elsewhere.example"],
    );
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let failed = failed_step(&report);
    assert_eq!(failed["step"], "RCPT TO", "{report:#}");
    let c = cause(failed);
    assert!(
        c.contains("relay denied for <someone@elsewhere.example>"),
        "{c}"
    );
    assert!(c.contains("Relay access denied"), "the server's text: {c}");
    assert!(c.contains("set [smtp] user and password"), "{c}");
}

/// The certificate lettre refuses after STARTTLS, and the one refused on the SMTPS port, are
/// named by their issuer, with the `ca_file` that did not sign them.
#[tokio::test(flavor = "multi_thread")]
async fn test_send_with_a_ca_file_of_another_ca_names_the_issuer() {
    let lab = Lab::get();
    let user = lab.fresh_user("diag-send-otherca");
    let other = lab.var("MAIL_LAB_OTHER_CA");
    for kind in [LabSmtp::Submission, LabSmtp::Smtps] {
        let smtp = smtp_section(lab, kind, &user, lab.password()).replace(lab.ca(), other);
        let cfg = TestConfig::new(
            &[imap_account(
                lab,
                "acct",
                &user,
                "ssl",
                "action = \"delete\"\n",
            )],
            &smtp,
        );
        let (out, report) = run_json(&cfg, &["test-send", "acct"]);
        assert_eq!(out.status.code(), Some(1), "{kind:?}: {report:#}");
        assert_no_secret(&out, lab.password());
        let failed = failed_step(&report);
        assert_eq!(failed["step"], "TLS", "{kind:?}: {report:#}");
        let c = cause(failed);
        assert!(
            c.contains("certificate not trusted: issuer CN=mail2ticket lab CA"),
            "{kind:?}: {c}"
        );
        assert!(
            c.contains("set [smtp] `ca_file`")
                && c.contains(&format!("the current one, {other}, did not sign it")),
            "{kind:?}: {c}"
        );
    }
}
