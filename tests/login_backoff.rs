//! A wrong password must not hammer the server (a provider's fail2ban would ban the whole host):
//! a rejected login waits 10 minutes, doubling to an hour; /healthz and `healthcheck` say
//! `login_rejected` with the server's words and the next try; a SIGHUP that fixes the password
//! retries at once. No test waits 10 minutes: the reported next try is checked, and logins are
//! counted through a proxy while the daemon demonstrably runs on for several seconds (a healthy
//! account beside the rejected one completes a pass that late, see `wait_for_the_daemon_past`).

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::diag::{smtp_section, LabSmtp};
use common::http::{free_port, healthz, wait_for};
use common::proxy::counting;
use common::{mail2ticket_cmd, mails, Daemon, Lab};

const WRONG: &str = "not-the-lab-password";

/// An account through the proxy on `port` (plain, so the proxy sees the login's connection).
fn account(lab: &Lab, protocol: &str, user: &str, port: u16, password: &str) -> String {
    format!(
        "name = \"acct\"\nemail = \"{user}\"\nprotocol = \"{protocol}\"\nhost = \"localhost\"\nport = {port}\n\
         encryption = \"none\"\nuser = \"{user}\"\npassword = \"{password}\"\nca_file = \"{}\"\n\
         ticket_type = \"question\"\nticket_status = \"open\"\naction = \"delete\"\n",
        lab.ca()
    )
}

fn write_config(path: &Path, http: u16, accounts: &[&str], extra: &str) {
    let store = path.with_file_name("tickets.db");
    let mut text = format!(
        "[store]\npath = \"{}\"\n\n[daemon]\npoll_interval = \"1s\"\nnetwork_timeout = \"20s\"\n\
         http_listen = \"127.0.0.1:{http}\"\n\n{extra}\n",
        store.display()
    );
    for account in accounts {
        text.push_str(&format!("[[account]]\n{account}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// A healthy IMAP account named "witness" on an empty mailbox of the lab, reached directly
/// (not through the counting proxy). With `poll_interval = "1s"` it completes a pass about
/// every second (IDLE ends at `poll_interval`): the daemon's own progress, for
/// [`wait_for_the_daemon_past`].
fn witness(lab: &Lab) -> String {
    let user = lab.fresh_user("witness");
    common::imap_account(lab, "witness", &user, "none", "action = \"delete\"\n")
}

/// Waits until the daemon has run past `at` by its own work: /healthz shows a success of the
/// healthy `account` (a completed pass) at or after `at`. A window that ends there, rather than
/// after a sleep in the test, is one the daemon really lived through: every timer it had set
/// to fire within the window (a retry, say) fired before that pass ended, however late a
/// loaded machine ran the daemon.
fn wait_for_the_daemon_past(http: u16, account: &str, at: DateTime<Utc>) {
    wait_for(
        &format!("a pass of {account} completed at or after {at}"),
        Duration::from_secs(60),
        || {
            let health = healthz(http)?;
            let last: DateTime<Utc> = health["accounts"][account]["last_success"]
                .as_str()?
                .parse()
                .ok()?;
            (last >= at).then_some(())
        },
    );
}

async fn a_rejected_login_is_retried_after_ten_minutes_or_after_a_fixing_sighup(protocol: &str) {
    let lab = Lab::get();
    let user = lab.fresh_user(&format!("badpw-{protocol}"));
    lab.append(
        &user,
        "INBOX",
        &[mails::simple(
            &user,
            "waiting",
            "waiting@customer.example.test",
            "",
        )],
    )
    .await;
    let target = lab.port(if protocol == "imap" {
        "MAIL_LAB_IMAP_PORT"
    } else {
        "MAIL_LAB_POP3_PORT"
    });
    let proxy = counting(target).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let http = free_port();
    let witness = witness(lab);
    write_config(
        &config,
        http,
        &[&account(lab, protocol, &user, proxy.port, WRONG), &witness],
        "",
    );
    let started = Utc::now();
    let daemon = Daemon::start(&config, dir.path().join("daemon.log"));

    let health = wait_for(
        "/healthz to report the rejected login",
        Duration::from_secs(30),
        || healthz(http).filter(|h| h["accounts"]["acct"]["state"] == "login_rejected"),
    );
    let acct = &health["accounts"]["acct"];
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert!(
        acct["server_said"]
            .as_str()
            .is_some_and(|s| s.to_ascii_lowercase().contains("auth")),
        "the server's words are shown: {health}"
    );
    let next: DateTime<Utc> = acct["backoff_until"].as_str().unwrap().parse().unwrap();
    assert!(
        next - started >= chrono::Duration::minutes(10) - chrono::Duration::seconds(1),
        "the next try is at least 10 minutes away: {health}"
    );
    // The old backoff (1, 2, 4 s …) tried again 1, 3 and 7 s after the rejection. The window is
    // what this measures, so it stays, but it ends when the daemon has demonstrably lived
    // through it: a pass of the witness completed 8 s after the rejection (`since` is cut to the
    // second, so that is over 7 s after it).
    let rejected_at: DateTime<Utc> = acct["since"].as_str().unwrap().parse().unwrap();
    wait_for_the_daemon_past(http, "witness", rejected_at + chrono::Duration::seconds(8));
    assert_eq!(proxy.count(), 1, "one login attempt, then the long wait");

    let out = mail2ticket_cmd(&config)
        .arg("healthcheck")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "healthcheck fails while the login is rejected"
    );
    assert!(shown.contains("login_rejected"), "{shown}");

    let log = std::fs::read_to_string(&daemon.log).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("login rejected"))
        .count();
    assert_eq!(warnings, 1, "one WARN line per attempt:\n{log}");
    assert!(
        !log.contains(WRONG),
        "the password never reaches the log:\n{log}"
    );

    // The admin fixes the password and sends SIGHUP: retried at once, the mail arrives.
    write_config(
        &config,
        http,
        &[
            &account(lab, protocol, &user, proxy.port, lab.password()),
            &witness,
        ],
        "",
    );
    daemon.signal("HUP");
    wait_for(
        "the mail to be fetched after SIGHUP",
        Duration::from_secs(30),
        || {
            let n =
                futures::executor::block_on(common::ticket_count(&dir.path().join("tickets.db")));
            (n == 1).then_some(())
        },
    );
    let health = healthz(http).unwrap();
    assert_ne!(
        health["accounts"]["acct"]["state"], "login_rejected",
        "{health}"
    );
    assert!(proxy.count() >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_wrong_password_tries_once_then_waits_ten_minutes_and_sighup_retries() {
    a_rejected_login_is_retried_after_ten_minutes_or_after_a_fixing_sighup("imap").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pop3_wrong_password_tries_once_then_waits_ten_minutes_and_sighup_retries() {
    a_rejected_login_is_retried_after_ten_minutes_or_after_a_fixing_sighup("pop3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_keeps_the_short_backoff() {
    let lab = Lab::get();
    let user = lab.fresh_user("badport");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let http = free_port();
    // Nothing listens on this port: a connection error, not a rejected login.
    write_config(
        &config,
        http,
        &[&account(lab, "imap", &user, free_port(), WRONG)],
        "",
    );
    let started = Utc::now();
    let _daemon = Daemon::start(&config, dir.path().join("daemon.log"));
    let health = wait_for(
        "/healthz to report the failure",
        Duration::from_secs(30),
        || healthz(http).filter(|h| h["accounts"]["acct"]["state"] == "backing-off"),
    );
    let next: DateTime<Utc> = health["accounts"]["acct"]["backoff_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        next - started < chrono::Duration::minutes(1),
        "a connection error is retried soon: {health}"
    );
}

/// Three new tickets with automatic replies, and a wrong SMTP password: one login is tried (not
/// one per reply), then nothing until the pause ends; every reply stays queued.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_wrong_password_tries_one_login_for_all_queued_replies() {
    let lab = Lab::get();
    let user = lab.fresh_user("badpw-smtp");
    // No Date header: counts as new, so each gets an automatic reply.
    let n = std::process::id();
    let customers: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            format!(
                "From: Kunde {i} <kunde{i}@customer.example.test>\r\nTo: {user}\r\nSubject: question {i}\r\n\
                 Message-ID: <q{i}-{n}@customer.example.test>\r\n\r\nHello\r\n"
            )
            .into_bytes()
        })
        .collect();
    lab.append(&user, "INBOX", &customers).await;
    let proxy = counting(lab.port("MAIL_LAB_SUBMISSION_PORT")).await;
    let smtp = smtp_section(lab, LabSmtp::Submission, &user, WRONG).replace(
        &format!("port = {}", lab.port("MAIL_LAB_SUBMISSION_PORT")),
        &format!("port = {}", proxy.port),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let http = free_port();
    let imap = common::imap_account(
        lab,
        "acct",
        &user,
        "none",
        "action = \"delete\"\nauto_reply = true\n",
    );
    write_config(&config, http, &[&imap], &smtp);
    let daemon = Daemon::start(&config, dir.path().join("daemon.log"));
    wait_for("three tickets", Duration::from_secs(30), || {
        let n = futures::executor::block_on(common::ticket_count(&dir.path().join("tickets.db")));
        (n == 3).then_some(())
    });
    for _ in 0..150 {
        if proxy.count() >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        proxy.count() >= 1,
        "no SMTP login within 30 s:\n{}",
        std::fs::read_to_string(&daemon.log).unwrap()
    );
    // Not one login per reply, nor one per round of the sender (every 500 ms) or per backoff
    // step (1, 2, 4 s): the window stays what this measures, but it ends when the daemon has
    // demonstrably lived through 7 s of it (a pass of the account completed that late; the
    // account polls every second), not after a sleep of the test.
    let first_login_seen = Utc::now();
    wait_for_the_daemon_past(
        http,
        "acct",
        first_login_seen + chrono::Duration::seconds(7),
    );
    assert_eq!(proxy.count(), 1, "one SMTP login for three queued replies");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("SMTP login rejected"))
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains(WRONG), "{log}");
}
