//! Alerts to the shop owner against the lab: a state that lasts `[alerts] after` is told once by
//! mail (through the lab's Postfix) and webhook (a local receiver), and "resolved" once it ends;
//! an alert that lands in one of the accounts opens no ticket; `alerts test` reaches each route.

mod common;

use std::time::Duration;

use common::diag::{smtp_section, LabSmtp};
use common::http::{free_port, healthz, wait_for};
use common::webhook::WebhookReceiver;
use common::{imap_account, mail2ticket_cmd, Daemon, Lab, TestConfig};
use mail2ticket::ingest::parse::parse;

const WRONG: &str = "not-the-lab-password";

fn alerts_section(to: &str, webhook: &WebhookReceiver) -> String {
    format!(
        "[alerts]\nto = [\"{to}\"]\nafter = \"2s\"\nwebhook = \"{}\"\nlanguage = \"en\"\n",
        webhook.url()
    )
}

fn header(raw: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_alerts_once_by_mail_and_webhook_then_resolves_after_sighup() {
    let lab = Lab::get();
    let owner = lab.fresh_user("owner");
    let user = lab.fresh_user("alerted");
    let webhook = WebhookReceiver::start();
    let http = free_port();
    let right = imap_account(lab, "support", &user, "none", "action = \"delete\"\n");
    let wrong = right.replace(
        &format!("password = \"{}\"", lab.password()),
        &format!("password = \"{WRONG}\""),
    );
    let extra = format!(
        "{}\n{}\n",
        smtp_section(lab, LabSmtp::Plain, "", ""),
        alerts_section(&owner, &webhook)
    );
    // A healthy account beside it: its passes show the daemon (and its alert rounds) running on.
    let witness_user = lab.fresh_user("witness");
    let witness = imap_account(
        lab,
        "witness",
        &witness_user,
        "none",
        "action = \"delete\"\n",
    );
    let cfg = TestConfig::new(&[wrong, witness], &extra);
    let text = std::fs::read_to_string(&cfg.path).unwrap().replace(
        "[daemon]\n",
        &format!("[daemon]\nhttp_listen = \"127.0.0.1:{http}\"\n"),
    );
    std::fs::write(&cfg.path, &text).unwrap();
    let daemon = Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log")).with_http(http);

    // `after` (2 s) plus one minute, as the promise goes.
    let first = wait_for("the alert at the webhook", Duration::from_secs(62), || {
        webhook.received().into_iter().next()
    });
    assert_eq!(first["event"], "alert", "{first}");
    assert_eq!(first["kind"], "login_rejected", "{first}");
    assert_eq!(first["account"], "support", "{first}");
    let message = first["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("AUTHENTICATIONFAILED") && message.contains("password"),
        "the server's words and what to do: {message}"
    );
    assert!(
        !first.to_string().contains(WRONG),
        "no password in an alert"
    );
    assert_eq!(
        lab.wait_for_count(&owner, "INBOX", 1, Duration::from_secs(30))
            .await,
        1,
        "the alert mail; log:\n{}",
        daemon.log_text()
    );
    let mail = lab.messages(&owner, "INBOX").await.remove(0);
    assert_eq!(header(&mail, "Auto-Submitted"), "auto-generated");
    assert_eq!(
        parse(&mail).subject,
        "[mail2ticket] Account support: the server rejects the login"
    );
    wait_for(
        "/healthz to list the alert",
        Duration::from_secs(30),
        || healthz(http).filter(|h| h["alerts"][0]["kind"] == "login_rejected"),
    );

    // Still failing, rounds later: no second alert (the reminder is a day away).
    daemon.one_more_pass(&["witness"]).await;
    daemon.one_more_pass(&["witness"]).await;
    assert_eq!(webhook.events(), ["alert"]);
    assert_eq!(lab.count(&owner, "INBOX").await, 1);

    std::fs::write(&cfg.path, text.replace(WRONG, lab.password())).unwrap();
    daemon.signal("HUP");
    wait_for("resolved at the webhook", Duration::from_secs(60), || {
        (webhook.events().len() >= 2).then_some(())
    });
    assert_eq!(
        webhook.events(),
        ["alert", "resolved"],
        "{:?}",
        webhook.received()
    );
    assert_eq!(
        lab.wait_for_count(&owner, "INBOX", 2, Duration::from_secs(30))
            .await,
        2
    );
    let resolved = lab.messages(&owner, "INBOX").await.remove(1);
    assert_eq!(
        parse(&resolved).subject,
        "[mail2ticket] Resolved: Account support: the server rejects the login"
    );
    wait_for("/healthz to list no alert", Duration::from_secs(30), || {
        healthz(http).filter(|h| h["alerts"] == serde_json::json!([]))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_sent_to_an_accounts_own_address_opens_no_ticket() {
    let lab = Lab::get();
    let support = lab.fresh_user("ownalert");
    let broken_user = lab.fresh_user("broken");
    let webhook = WebhookReceiver::start();
    let reader = imap_account(
        lab,
        "support",
        &support,
        "none",
        "action = \"move\"\nmove_to = \"Archive\"\n",
    );
    let broken = imap_account(lab, "broken", &broken_user, "none", "action = \"delete\"\n")
        .replace(
            &format!("password = \"{}\"", lab.password()),
            &format!("password = \"{WRONG}\""),
        );
    let extra = format!(
        "{}\n{}\n",
        smtp_section(lab, LabSmtp::Plain, "", ""),
        alerts_section(&support, &webhook)
    );
    let cfg = TestConfig::new(&[reader, broken], &extra);
    let daemon = Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    assert_eq!(
        lab.wait_for_count(&support, "Archive", 1, Duration::from_secs(90))
            .await,
        1,
        "the alert arrived in support's INBOX and was moved; log:\n{}",
        daemon.log_text()
    );
    assert!(
        daemon
            .log_text()
            .contains("one of our own alerts recognised"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(cfg.ticket_count().await, 0, "an alert is never a ticket");
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_test_reaches_every_configured_route() {
    let lab = Lab::get();
    let owner = lab.fresh_user("testalert");
    let user = lab.fresh_user("quiet");
    let webhook = WebhookReceiver::start();
    let extra = format!(
        "{}\n{}\n",
        smtp_section(lab, LabSmtp::Plain, "", ""),
        alerts_section(&owner, &webhook)
    );
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"delete\"\n",
        )],
        &extra,
    );
    let out = mail2ticket_cmd(&cfg.path)
        .args(["alerts", "test"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", common::stderr(&out));
    assert!(
        stdout.contains(&format!("mail to {owner}: sent")),
        "{stdout}"
    );
    assert!(stdout.contains("webhook: sent"), "{stdout}");
    assert!(
        !stdout.contains(&webhook.url()),
        "the webhook URL is a secret: {stdout}"
    );
    assert_eq!(
        lab.wait_for_count(&owner, "INBOX", 1, Duration::from_secs(30))
            .await,
        1
    );
    let received = webhook.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["kind"], "test");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantined_mail_alerts_at_once_and_resolves_once_retried_and_stored() {
    let lab = Lab::get();
    let user = lab.fresh_user("alert-poison");
    let poison = common::mails::simple(&user, "poison", "alert-poison@customer.example.test", "");
    lab.append(&user, "INBOX", &[poison]).await;
    let webhook = WebhookReceiver::start();
    let extra = format!(
        "[alerts]\nwebhook = \"{}\"\nafter = \"1h\"\n",
        webhook.url()
    );
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"delete\"\n",
        )],
        &extra,
    );
    cfg.refuse_articles_with_subject("poison").await;
    let daemon = Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));

    // Not delayed by `after`: a quarantined mail is an event, not a state that may pass.
    let alert = wait_for("the quarantine alert", Duration::from_secs(90), || {
        webhook.received().into_iter().next()
    });
    assert_eq!(alert["kind"], "quarantined", "{alert}");
    let message = alert["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("poison") && message.contains("quarantine retry"),
        "names the mail and what to do: {message}"
    );

    // The cause fixed, the mail released: it is stored and the alert resolved.
    let store = cfg.open_store().await;
    let drop = match cfg.location {
        mail2ticket::store::StoreLocation::Sqlite(_) => "DROP TRIGGER refuse",
        mail2ticket::store::StoreLocation::Postgres(_) => "DROP TRIGGER refuse ON articles",
    };
    sqlx::query(drop).execute(store.pool()).await.unwrap();
    store.close().await;
    let out = cfg.run(&["quarantine", "retry", "--all"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    wait_for("resolved at the webhook", Duration::from_secs(60), || {
        (webhook.events().len() >= 2).then_some(())
    });
    assert_eq!(
        webhook.events(),
        ["alert", "resolved"],
        "{}",
        daemon.log_text()
    );
    assert_eq!(cfg.ticket_count().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_stuck_behind_a_failing_smtp_reach_the_owner_by_webhook_only() {
    let lab = Lab::get();
    let support = lab.fresh_user("alert-smtp");
    let customer = lab.fresh_user("alert-smtp-customer");
    let owner = lab.fresh_user("alert-smtp-owner");
    // SMTP unreachable at first: the reply waits in the outbox.
    let proxy = common::smtp::SwitchProxy::start(lab.port("MAIL_LAB_SMTP_PORT"), false).await;
    let webhook = WebhookReceiver::start();
    let smtp = smtp_section(lab, LabSmtp::Plain, "", "").replace(
        &format!("port = {}", lab.port("MAIL_LAB_SMTP_PORT")),
        &format!("port = {}", proxy.port),
    );
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "none",
            "action = \"delete\"\nauto_reply = true\n",
        )],
        &format!("{smtp}\n{}", alerts_section(&owner, &webhook)),
    );
    let mail = common::mails::with_photo(
        &customer,
        &support,
        "Wo bleibt mein Paket?",
        "stuck-reply@customer.example.test",
        100,
    );
    lab.append(&support, "INBOX", &[mail]).await;
    let daemon = Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));

    let alert = wait_for(
        "the webhook alert of stuck replies",
        Duration::from_secs(60),
        || webhook.received().into_iter().next(),
    );
    assert_eq!(alert["kind"], "replies_not_draining", "{alert}");
    assert_eq!(alert["by_mail"], false, "{alert}");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("only by webhook")),
        "it says why it comes by webhook alone: {alert}"
    );

    // SMTP back: the reply goes out and the alert ends; the owner got no mail of it at all.
    proxy.set_up(true);
    assert_eq!(
        lab.wait_for_count(&customer, "INBOX", 1, Duration::from_secs(60))
            .await,
        1,
        "the reply; log:\n{}",
        daemon.log_text()
    );
    wait_for("resolved at the webhook", Duration::from_secs(60), || {
        (webhook.events().len() >= 2).then_some(())
    });
    assert_eq!(webhook.events(), ["alert", "resolved"]);
    assert_eq!(lab.count(&owner, "INBOX").await, 0, "never by mail");
}
