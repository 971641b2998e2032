//! The lab itself: Postfix delivers to Dovecot over LMTP, and our IMAP client reads the mail
//! over TLS verified against the lab's generated CA.

mod common;

use std::time::Duration;

use common::{imap_account, mails, Lab};
use futures::TryStreamExt;

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_sent_by_smtp_arrives_over_imap_with_verified_tls() {
    let lab = Lab::get();
    let user = lab.fresh_user("lab");
    let raw = mails::simple(&user, "Lab check", "lab-check@customer.example.test", "");
    lab.smtp_send("customer@example.test", &user, &raw).await;
    assert_eq!(
        lab.wait_for_count(&user, "INBOX", 1, Duration::from_secs(20))
            .await,
        1
    );

    let toml = format!(
        "[store]\npath = \"/nonexistent/unused.db\"\n[[account]]\n{}",
        imap_account(lab, "lab", &user, "ssl", "action = \"delete\"\n")
    );
    let config = mail2ticket::config::parse(&toml)
        .expect("valid config")
        .config;
    let account = &config.accounts[0];
    let tls = mail2ticket::tls::client_config(account.ca_file.as_deref()).unwrap();
    let mut conn = mail2ticket::imap::connect(account, tls, Duration::from_secs(10))
        .await
        .expect("IMAPS with the lab CA");
    conn.session.select("INBOX").await.unwrap();
    let fetched: Vec<_> = conn
        .session
        .uid_fetch("1:*", "BODY.PEEK[]")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let body = fetched[0].body().unwrap();
    assert!(body.windows(9).any(|w| w == b"Lab check"));
    assert!(
        body.starts_with(b"Return-Path:"),
        "delivered by Postfix/LMTP, not appended"
    );
    conn.session.logout().await.ok();
}
