//! No log level prints a password or an AUTH payload: the full trace output of `run --once`,
//! `test-fetch` and `test-send` is searched for the lab password in clear and in every base64
//! form an AUTH exchange uses, for IMAP, POP3 and SMTP with each encryption.

mod common;

use std::process::Output;

use base64::Engine;
use common::diag::{smtp_section, LabSmtp};
use common::{imap_account, mail2ticket_cmd, pop3_account, Lab, TestConfig};

const DELETE: &str = "action = \"delete\"\n";

/// The password as it could appear on the wire: in clear, base64 (AUTH LOGIN) and inside the
/// SASL PLAIN string (AUTH PLAIN, with and without an authorisation identity).
fn secret_forms(user: &str, password: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        password.to_string(),
        b64(password),
        b64(&format!("\0{user}\0{password}")),
        b64(&format!("{user}\0{user}\0{password}")),
    ]
}

/// Runs a command with `RUST_LOG=trace` and returns its output.
fn traced(cfg: &TestConfig, args: &[&str]) -> Output {
    mail2ticket_cmd(&cfg.path)
        .env("RUST_LOG", "trace")
        .args(args)
        .output()
        .unwrap()
}

fn assert_no_secret_in_trace(what: &str, out: &Output, user: &str, password: &str) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // `run --once` opens the store, whose statements are logged at trace: seeing them shows
    // that RUST_LOG=trace took effect (otherwise the silence would prove nothing).
    if what.starts_with("run --once") {
        assert!(
            all.contains("TRACE sqlx::query"),
            "{what}: no trace line in the output:\n{all}"
        );
    }
    for secret in secret_forms(user, password) {
        assert!(
            !all.contains(&secret),
            "{what}: the password (as {secret:?}) appears in the trace output:\n{all}"
        );
    }
}

/// `run --once` and `test-fetch` for one fetching account.
async fn fetch_side(protocol: &str, encryption: &str) {
    let lab = Lab::get();
    let user = lab.fresh_user(&format!("secret-{protocol}-{encryption}"));
    lab.smtp_send(
        "customer@example.test",
        &user,
        b"From: customer@example.test\r\nSubject: hello\r\n\r\nbody\r\n",
    )
    .await;
    let account = match protocol {
        "imap" => imap_account(lab, "acct", &user, encryption, DELETE),
        _ => pop3_account(lab, "acct", &user, encryption, DELETE),
    };
    let smtp = smtp_section(lab, LabSmtp::Plain, &user, lab.password());
    let cfg = TestConfig::new(&[account], &smtp);

    let out = traced(&cfg, &["run", "--once"]);
    assert!(
        out.status.success(),
        "run --once failed: {}",
        common::stderr(&out)
    );
    assert_no_secret_in_trace(
        &format!("run --once ({protocol}, {encryption})"),
        &out,
        &user,
        lab.password(),
    );
    assert_eq!(cfg.tickets().len(), 1, "the mail became a ticket");

    let out = traced(&cfg, &["test-fetch", "acct", "--wait", "30"]);
    assert!(
        out.status.success(),
        "test-fetch failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    assert_no_secret_in_trace(
        &format!("test-fetch ({protocol}, {encryption})"),
        &out,
        &user,
        lab.password(),
    );
}

#[tokio::test]
async fn imap_over_ssl_never_logs_the_password_at_trace() {
    fetch_side("imap", "ssl").await;
}

#[tokio::test]
async fn imap_over_starttls_never_logs_the_password_at_trace() {
    fetch_side("imap", "starttls").await;
}

#[tokio::test]
async fn imap_without_encryption_never_logs_the_password_at_trace() {
    fetch_side("imap", "none").await;
}

#[tokio::test]
async fn pop3_over_ssl_never_logs_the_password_at_trace() {
    fetch_side("pop3", "ssl").await;
}

#[tokio::test]
async fn pop3_over_starttls_never_logs_the_password_at_trace() {
    fetch_side("pop3", "starttls").await;
}

#[tokio::test]
async fn pop3_without_encryption_never_logs_the_password_at_trace() {
    fetch_side("pop3", "none").await;
}

/// `test-send` through one of the lab's SMTP services, with a login wherever it offers AUTH.
fn send_side(kind: LabSmtp) {
    let lab = Lab::get();
    let user = lab.fresh_user("secret-smtp");
    let account = imap_account(lab, "acct", &user, "ssl", DELETE);
    let mut smtp = smtp_section(lab, kind, &user, lab.password());
    if kind == LabSmtp::Plain {
        // The plain port offers no AUTH, but the credentials are configured all the same.
        smtp.push_str(&format!(
            "user = \"{user}\"\npassword = \"{}\"\n",
            lab.password()
        ));
    }
    let cfg = TestConfig::new(&[account], &smtp);
    let out = traced(
        &cfg,
        &["test-send", "acct", "--to", "customer@example.test"],
    );
    if kind != LabSmtp::Plain {
        assert!(
            out.status.success(),
            "test-send failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            common::stderr(&out)
        );
    }
    assert_no_secret_in_trace(
        &format!("test-send ({kind:?})"),
        &out,
        &user,
        lab.password(),
    );
}

#[test]
fn smtp_over_ssl_never_logs_the_password_at_trace() {
    send_side(LabSmtp::Smtps);
}

#[test]
fn smtp_over_starttls_never_logs_the_password_at_trace() {
    send_side(LabSmtp::Submission);
}

#[test]
fn smtp_without_encryption_never_logs_the_password_at_trace() {
    send_side(LabSmtp::Plain);
}

/// The alert webhook's URL often is the secret (an ntfy topic, a chat's incoming webhook): it
/// stays out of the trace output of a send, as passwords do.
#[test]
fn the_alert_webhook_url_never_reaches_the_trace_log() {
    let lab = Lab::get();
    let owner = lab.fresh_user("traced-owner");
    let user = lab.fresh_user("traced-alerts");
    let webhook = common::webhook::WebhookReceiver::start();
    let token = "tk_9f3c2e7a51b84d06";
    let url = format!("{}/{token}", webhook.url());
    let extra = format!(
        "{}\n[alerts]\nto = [\"{owner}\"]\nwebhook = \"{url}\"\n",
        smtp_section(lab, LabSmtp::Plain, "", "")
    );
    let cfg = TestConfig::new(
        &[imap_account(lab, "support", &user, "none", DELETE)],
        &extra,
    );
    let out = traced(&cfg, &["alerts", "test"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert_eq!(webhook.events(), ["alert"], "the test alert arrived");
    assert!(
        !all.contains(token),
        "the webhook URL in the trace output:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_never_logs_its_client_secret_or_tokens_at_trace() {
    use common::graph::{GraphApp, GraphLab};
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let mailbox = lab.fresh_user("traced-graph");
    graph.mailbox(&mailbox, &["Erledigt"]).await;
    let customer = lab.fresh_user("traced-graph-customer");
    let mail = format!(
        "From: {customer}\r\nTo: {mailbox}\r\nSubject: traced\r\nMessage-ID: <traced-graph@example.test>\r\n\
         Date: {}\r\n\r\nhello\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    graph.deliver(&mailbox, "Inbox", &[mail.into_bytes()]).await;
    let app = GraphApp::register(
        lab,
        &format!("traced-app-{}", rand::random::<u32>()),
        &["Mail.ReadWrite", "Mail.Send"],
        300,
    )
    .await;
    let smtp = app.smtp_section(lab, &graph, "");
    let cfg = TestConfig::new(
        &[app.account(
            lab,
            &graph,
            "support",
            &mailbox,
            "action = \"move\"\nmove_to = \"Erledigt\"",
            "auto_reply = true\n",
        )],
        &smtp,
    );
    for args in [
        &["run", "--once"][..],
        &["test-fetch", "support"][..],
        &["test-send", "support", "--to", &customer][..],
    ] {
        let out = traced(&cfg, args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {all}");
        // RUST_LOG=trace took effect: the store's statements are traced, the HTTP and TLS
        // libraries' lines held at debug.
        assert!(
            all.contains("TRACE") || all.contains("DEBUG"),
            "{args:?}: no trace line:\n{all}"
        );
        assert!(
            !all.contains(&app.secret),
            "{args:?}: the client secret in the trace output:\n{all}"
        );
        // Every access token of the lab's provider for a Graph app is a JWT: its header
        // `{"typ":"JWT",...` starts with these characters in base64url.
        assert!(
            !all.contains("eyJ0eXAiOiJKV1Qi") && !all.contains("Bearer "),
            "{args:?}: a token in the trace output:\n{all}"
        );
    }
    assert_eq!(cfg.ticket_count().await, 1);
}
