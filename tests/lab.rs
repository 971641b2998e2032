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

/// The lab's stand-in OAuth provider and the real servers agree: a token it issues for a mailbox
/// opens that mailbox by XOAUTH2 over IMAP, POP3 and SMTP submission (Postfix asks Dovecot),
/// and opens no other mailbox.
#[tokio::test(flavor = "multi_thread")]
async fn the_real_servers_accept_bearer_tokens_from_the_lab_provider() {
    use base64::Engine;
    use common::oauth::{xoauth2, TokenProvider};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let user = lab.fresh_user("oauth-lab");
    let client_id = format!("client-{user}");
    provider.register(&client_id, "s3cret", &user, 60).await;
    let token = provider.client_credentials(&client_id, "s3cret").await;

    struct Bearer(String);
    impl async_imap::Authenticator for Bearer {
        type Response = String;
        fn process(&mut self, _challenge: &[u8]) -> String {
            self.0.clone()
        }
    }
    let imap_login = |login_as: String| {
        let token = token.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", lab.port("MAIL_LAB_IMAP_PORT")))
                .await
                .unwrap();
            let mut client = async_imap::Client::new(tcp);
            client.read_response().await.unwrap().unwrap();
            client
                .authenticate("XOAUTH2", Bearer(xoauth2(&login_as, &token)))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e.to_string())
        }
    };
    imap_login(user.clone())
        .await
        .expect("IMAP AUTHENTICATE XOAUTH2 with the mailbox's token");
    let other = imap_login(lab.fresh_user("oauth-other")).await;
    assert!(
        other.unwrap_err().contains("AUTHENTICATIONFAILED"),
        "a token opens only its own mailbox"
    );

    let b64 = base64::engine::general_purpose::STANDARD.encode(xoauth2(&user, &token));
    let pop = tokio::net::TcpStream::connect(("127.0.0.1", lab.port("MAIL_LAB_POP3_PORT")))
        .await
        .unwrap();
    let mut pop = BufReader::new(pop);
    let mut line = String::new();
    pop.read_line(&mut line).await.unwrap();
    pop.get_mut()
        .write_all(format!("AUTH XOAUTH2 {b64}\r\n").as_bytes())
        .await
        .unwrap();
    line.clear();
    pop.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("+OK"), "POP3 AUTH XOAUTH2: {line}");

    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let ca = Certificate::from_pem(&std::fs::read(lab.ca()).unwrap()).unwrap();
    let tls = TlsParameters::builder("localhost".into())
        .add_root_certificate(ca)
        .build_rustls()
        .unwrap();
    let smtp: lettre::AsyncSmtpTransport<lettre::Tokio1Executor> =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(lab.port("MAIL_LAB_SUBMISSION_PORT"))
            .tls(Tls::Required(tls))
            .credentials(Credentials::new(user.clone(), token.clone()))
            .authentication(vec![Mechanism::Xoauth2])
            .build();
    assert!(
        smtp.test_connection()
            .await
            .expect("SMTP submission AUTH XOAUTH2"),
        "submission session"
    );

    let stats = provider.stats().await;
    assert_eq!(stats["grants"][&client_id]["client_credentials"], 1);
    assert!(stats["introspections"].as_u64().unwrap() >= 3);
}
