//! Mails larger than `max_message_size` against the mail lab: the header alone opens a ticket
//! with the usual automatic reply, the mail stays on the server and is not fetched again, and
//! once `max_message_size` allows it (a reload) the whole mail joins the same ticket, with no
//! second reply, and only then leaves the server. Over IMAP (a running daemon, raised by
//! SIGHUP) and POP3 (`run --once` passes).

mod common;

use std::time::Duration;

use common::daemon::wait_until;
use common::diag::{smtp_section, LabSmtp};
use common::{imap_account, mails, pop3_account, Daemon, Lab, TestConfig};

/// The limit the accounts start with, and the photo that is larger (about 40 KB as base64).
const LIMIT: &str = "20KB";
const PHOTO: usize = 30_000;

fn run_once(cfg: &TestConfig) -> String {
    let out = cfg.run(&["run", "--once"]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "run --once failed: {err}");
    err
}

/// The config file with `max_message_size` raised from [`LIMIT`] to `to`.
fn raise_limit(cfg: &TestConfig, to: &str) {
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let from = format!("max_message_size = \"{LIMIT}\"");
    assert!(text.contains(&from), "{text}");
    common::write_private(
        &cfg.path,
        &text.replace(&from, &format!("max_message_size = \"{to}\"")),
    );
}

/// The one ticket of the store, as `tickets show --json` gives it.
fn the_ticket(cfg: &TestConfig) -> serde_json::Value {
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "one ticket: {tickets:?}");
    cfg.show(tickets[0]["number"].as_str().unwrap())
}

/// What a header-only ticket must show and the store must list, right after the first pass.
async fn assert_held_by_its_header(
    cfg: &TestConfig,
    account: &str,
    customer: &str,
    folder: Option<&str>,
    size: usize,
) -> String {
    let ticket = the_ticket(cfg);
    let number = ticket["number"].as_str().unwrap().to_string();
    assert_eq!(ticket["subject"], "Paket beschädigt");
    assert_eq!(ticket["customer"], customer);
    let articles = ticket["articles"].as_array().unwrap();
    assert_eq!(articles.len(), 1, "{ticket:#}");
    let header = &articles[0];
    assert_eq!(header["from"], customer);
    assert_eq!(header["attachments"].as_array().unwrap().len(), 0);
    let too_large = &header["too_large"];
    assert_eq!(too_large["state"], "on_server", "{ticket:#}");
    assert_eq!(too_large["account"], account);
    assert_eq!(too_large["folder"].as_str(), folder);
    assert_eq!(too_large["size"].as_u64(), Some(size as u64));
    assert!(
        header["auto_reply"]
            .as_str()
            .unwrap()
            .starts_with("auto-reply sent to"),
        "{ticket:#}"
    );
    let text = String::from_utf8(cfg.run(&["tickets", "show", &number]).stdout).unwrap();
    assert!(
        text.contains("Too large:") && text.contains("stays on the server"),
        "{text}"
    );

    let store = cfg.open_store().await;
    let waiting = store.oversized(Some(account)).await.unwrap();
    store.close().await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let mail = &waiting[0];
    assert_eq!(
        (
            mail.account.as_str(),
            mail.sender.as_str(),
            mail.subject.as_str(),
            mail.size,
            mail.ticket.as_str()
        ),
        (
            account,
            customer,
            "Paket beschädigt",
            size as u64,
            number.as_str()
        )
    );
    assert!(mail.since <= chrono::Utc::now());
    number
}

/// What the ticket must show once the whole mail is stored: two articles, the second the whole
/// mail with its photo, completing the first; one reply; nothing left waiting.
async fn assert_completed(cfg: &TestConfig, account: &str, number: &str, whole: &[u8]) {
    let ticket = the_ticket(cfg);
    assert_eq!(ticket["number"], number, "the same ticket");
    let articles = ticket["articles"].as_array().unwrap();
    assert_eq!(articles.len(), 2, "{ticket:#}");
    assert_eq!(articles[0]["too_large"]["state"], "fetched_whole");
    assert_eq!(articles[0]["too_large"]["whole_article"], 2);
    assert_eq!(articles[1]["completes"], 1);
    assert_eq!(articles[1]["too_large"], serde_json::Value::Null);
    assert_eq!(articles[1]["auto_reply"], "", "no second reply: {ticket:#}");
    assert_eq!(articles[1]["attachments"][0]["filename"], "paket.jpg");
    let raw = cfg.run(&["tickets", "show", number, "--raw", "2"]);
    assert!(raw.status.success(), "{}", common::stderr(&raw));
    assert_eq!(raw.stdout, whole, "the whole mail, byte for byte");

    let store = cfg.open_store().await;
    assert!(store.oversized(Some(account)).await.unwrap().is_empty());
    let outbox = store.outbox_rows().await.unwrap();
    store.close().await;
    assert_eq!(outbox.len(), 1, "one reply in all: {outbox:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_a_mail_too_large_opens_a_ticket_by_its_header_and_joins_it_whole_after_a_reload() {
    let lab = Lab::get();
    let support = lab.fresh_user("large-imap");
    let customer = lab.fresh_user("large-imap-customer");
    // The owner hears of it by the webhook, and of its end.
    let webhook = common::webhook::WebhookReceiver::start();
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "starttls",
            &format!(
                "action = \"move\"\nmove_to = \"Archive\"\nauto_reply = true\n\
                 max_message_size = \"{LIMIT}\"\n"
            ),
        )],
        &format!(
            "{}\n[alerts]\nwebhook = \"{}\"\n",
            smtp_section(lab, LabSmtp::Plain, "", ""),
            webhook.url()
        ),
    );
    // /healthz and /metrics, which the waits below ask.
    let http = common::http::free_port();
    let text = std::fs::read_to_string(&cfg.path).unwrap().replacen(
        "[daemon]\n",
        &format!("[daemon]\nhttp_listen = \"127.0.0.1:{http}\"\n"),
        1,
    );
    common::write_private(&cfg.path, &text);
    let mut daemon = Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log")).with_http(http);
    daemon.wait_healthy(Duration::from_secs(30)).await;

    let whole = mails::with_photo(
        &customer,
        &support,
        "Paket beschädigt",
        "photo@customer.example.test",
        PHOTO,
    );
    lab.smtp_send(&customer, &support, &whole).await;
    let replied = wait_until(Duration::from_secs(30), || async {
        lab.count(&customer, "INBOX").await >= 1
    })
    .await;
    assert!(replied, "no reply arrived; log:\n{}", daemon.log_text());
    // The mail as the server holds it (delivery added its Received lines).
    let on_server = lab.messages(&support, "INBOX").await;
    assert_eq!(on_server.len(), 1, "the mail stays on the server");
    let number = assert_held_by_its_header(
        &cfg,
        "support",
        &customer,
        Some("INBOX"),
        on_server[0].len(),
    )
    .await;

    // Passes go on: the mail is neither fetched nor stored again, and stays.
    daemon.one_more_pass(&["support"]).await;
    daemon.one_more_pass(&["support"]).await;
    let log = daemon.log_text();
    assert_eq!(
        log.matches("its header is stored in the ticket").count(),
        1,
        "stored by its header once: {log}"
    );
    assert_eq!(the_ticket(&cfg)["articles"].as_array().unwrap().len(), 1);
    assert_eq!(lab.count(&support, "INBOX").await, 1);
    assert_eq!(lab.count(&support, "Archive").await, 0);
    let alert = common::http::wait_for("the owner's alert", Duration::from_secs(30), || {
        webhook.received().into_iter().next()
    });
    assert_eq!(alert["kind"], "too_large", "{alert}");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("Paket beschädigt") && m.contains("max_message_size")),
        "{alert}"
    );

    raise_limit(&cfg, "1MB");
    daemon.signal("HUP");
    let moved = wait_until(Duration::from_secs(30), || async {
        lab.count(&support, "Archive").await == 1
    })
    .await;
    assert!(
        moved,
        "the whole mail was not stored and moved after the reload; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(lab.count(&support, "INBOX").await, 0);
    assert_completed(&cfg, "support", &number, &on_server[0]).await;
    // No second reply reaches the customer: the outbox, where every reply is queued with its
    // ticket, holds the one (checked above), and a pass after the move sends nothing new.
    daemon.one_more_pass(&["support"]).await;
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "one reply in all");
    common::http::wait_for("the alert resolved", Duration::from_secs(30), || {
        (webhook.events().len() >= 2).then_some(())
    });
    assert_eq!(webhook.events(), ["alert", "resolved"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_a_mail_too_large_opens_a_ticket_by_its_header_and_joins_it_whole_once_it_fits() {
    let lab = Lab::get();
    let support = lab.fresh_user("large-pop3");
    let customer = lab.fresh_user("large-pop3-customer");
    let cfg = TestConfig::new(
        &[pop3_account(
            lab,
            "support",
            &support,
            "ssl",
            &format!("action = \"delete\"\nauto_reply = true\nmax_message_size = \"{LIMIT}\"\n"),
        )],
        &smtp_section(lab, LabSmtp::Plain, "", ""),
    );
    let whole = mails::with_photo(
        &customer,
        &support,
        "Paket beschädigt",
        "photo-pop3@customer.example.test",
        PHOTO,
    );
    lab.append(&support, "INBOX", std::slice::from_ref(&whole))
        .await;

    let first = run_once(&cfg);
    assert!(
        first.contains("its header is stored in the ticket"),
        "{first}"
    );
    // `run --once` sends the queued reply before it exits.
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "the reply arrived");
    assert_eq!(lab.count(&support, "INBOX").await, 1, "the mail stays");
    let number = assert_held_by_its_header(&cfg, "support", &customer, None, whole.len()).await;

    let second = run_once(&cfg);
    assert!(
        !second.contains("its header is stored") && !second.contains("mail stored"),
        "nothing fetched or stored again: {second}"
    );
    assert_eq!(the_ticket(&cfg)["articles"].as_array().unwrap().len(), 1);
    assert_eq!(lab.count(&support, "INBOX").await, 1);

    raise_limit(&cfg, "1MB");
    let third = run_once(&cfg);
    assert!(third.contains("mail stored whole"), "{third}");
    assert_eq!(lab.count(&support, "INBOX").await, 0, "deleted once stored");
    assert_completed(&cfg, "support", &number, &whole).await;
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "one reply in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_too_large_that_another_client_deletes_no_longer_counts_as_waiting() {
    let lab = Lab::get();
    let support = lab.fresh_user("large-gone");
    let customer = lab.fresh_user("large-gone-customer");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "none",
            &format!("action = \"delete\"\nmax_message_size = \"{LIMIT}\"\n"),
        )],
        "",
    );
    let whole = mails::with_photo(
        &customer,
        &support,
        "Paket beschädigt",
        "photo-gone@customer.example.test",
        PHOTO,
    );
    lab.append(&support, "INBOX", &[whole]).await;
    run_once(&cfg);
    let store = cfg.open_store().await;
    assert_eq!(store.oversized(None).await.unwrap().len(), 1);
    store.close().await;

    // The shop owner deletes it in their mail program.
    lab.expunge(&support, "INBOX", 1).await;
    let log = run_once(&cfg);
    assert!(log.contains("has left the server by other means"), "{log}");
    let store = cfg.open_store().await;
    assert!(store.oversized(None).await.unwrap().is_empty());
    store.close().await;
    let ticket = the_ticket(&cfg);
    assert_eq!(
        ticket["articles"][0]["too_large"]["state"], "gone",
        "{ticket:#}"
    );
    let again = run_once(&cfg);
    assert!(!again.contains("by other means"), "said once: {again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_uidvalidity_change_a_mail_too_large_is_held_again_without_a_second_ticket() {
    let lab = Lab::get();
    let support = lab.fresh_user("large-uidv");
    let customer = lab.fresh_user("large-uidv-customer");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "none",
            &format!("action = \"delete\"\nauto_reply = true\nmax_message_size = \"{LIMIT}\"\n"),
        )],
        &smtp_section(lab, LabSmtp::Plain, "", ""),
    );
    let whole = mails::with_photo(
        &customer,
        &support,
        "Paket beschädigt",
        "photo-uidv@customer.example.test",
        PHOTO,
    );
    lab.append(&support, "INBOX", std::slice::from_ref(&whole))
        .await;
    run_once(&cfg);
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "the reply arrived");

    // The server renumbers the folder: the store knew it under another UIDVALIDITY.
    let store = cfg.open_store().await;
    let current = store
        .uidvalidity("support", "INBOX")
        .await
        .unwrap()
        .unwrap();
    let earlier = current.wrapping_add(1);
    sqlx::query(&format!(
        "UPDATE processed SET source_key = replace(source_key, 'imap:INBOX:{current}:', \
         'imap:INBOX:{earlier}:')"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    store
        .set_uidvalidity("support", "INBOX", earlier)
        .await
        .unwrap();
    store.close().await;
    let log = run_once(&cfg);
    assert!(log.contains("UIDVALIDITY changed"), "{log}");
    let ticket = the_ticket(&cfg);
    assert_eq!(
        ticket["articles"].as_array().unwrap().len(),
        1,
        "{ticket:#}"
    );
    assert_eq!(ticket["articles"][0]["too_large"]["state"], "on_server");
    let store = cfg.open_store().await;
    let waiting = store.oversized(Some("support")).await.unwrap();
    assert_eq!(waiting.len(), 1, "once, under its new key: {waiting:?}");
    assert!(
        waiting[0]
            .key
            .to_string()
            .starts_with(&format!("imap:INBOX:{current}:")),
        "{waiting:?}"
    );
    assert_eq!(
        store.outbox_rows().await.unwrap().len(),
        1,
        "no second reply"
    );
    store.close().await;
    assert_eq!(lab.count(&support, "INBOX").await, 1);

    raise_limit(&cfg, "1MB");
    run_once(&cfg);
    assert_eq!(
        lab.count(&support, "INBOX").await,
        0,
        "stored whole, then deleted"
    );
    let number = ticket["number"].as_str().unwrap().to_string();
    assert_completed(&cfg, "support", &number, &whole).await;
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "one reply in all");
}

/// A POP3 server without TOP (here Dovecot behind a proxy that takes TOP out of CAPA) cannot give
/// a header alone: the mail stays without a ticket, as before, and is said once; once it fits, it
/// is stored whole as a new mail and leaves the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_without_top_a_mail_too_large_waits_without_a_ticket_until_it_fits() {
    let lab = Lab::get();
    let support = lab.fresh_user("large-notop");
    let port = common::proxy::pop3_without_top(lab.port("MAIL_LAB_POP3_PORT")).await;
    let cfg = TestConfig::new(
        &[common::pop3_via(
            lab,
            "support",
            &support,
            port,
            &format!("action = \"delete\"\nmax_message_size = \"{LIMIT}\"\n"),
        )],
        "",
    );
    let whole = mails::with_photo(
        "customer@example.test",
        &support,
        "Paket beschädigt",
        "photo-notop@customer.example.test",
        PHOTO,
    );
    lab.append(&support, "INBOX", std::slice::from_ref(&whole))
        .await;
    let first = run_once(&cfg);
    assert!(first.contains("WITHOUT a ticket"), "{first}");
    assert!(cfg.tickets().is_empty());
    let second = run_once(&cfg);
    assert!(!second.contains("WITHOUT a ticket"), "said once: {second}");
    assert_eq!(lab.count(&support, "INBOX").await, 1);

    raise_limit(&cfg, "1MB");
    run_once(&cfg);
    let ticket = the_ticket(&cfg);
    let articles = ticket["articles"].as_array().unwrap();
    assert_eq!(articles.len(), 1, "{ticket:#}");
    assert_eq!(articles[0]["too_large"], serde_json::Value::Null);
    assert_eq!(articles[0]["attachments"][0]["filename"], "paket.jpg");
    assert_eq!(lab.count(&support, "INBOX").await, 0);
}
