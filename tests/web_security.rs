//! The accounts page's defences, over plain HTTP against a running daemon: it holds every
//! mailbox's password, so nothing without a login, nothing from another site, no guessing, no
//! password in any page, and mail text shown as text.

mod common;

use std::time::Duration;

use common::page::{hidden_value, Client, Page, Start, ADMIN_PASSWORD};
use common::{imap_account, Lab};

fn page_with_one_account(prefix: &str) -> (Page, String) {
    page_started(prefix, Start::Plain)
}

/// A page with the IMAP account "support" of a fresh lab user, its daemon started `how`.
fn page_started(prefix: &str, how: Start) -> (Page, String) {
    let lab = Lab::get();
    let user = lab.fresh_user(prefix);
    let account = imap_account(
        lab,
        "support",
        &user,
        "ssl",
        "action = \"move\"\nmove_to = \"Archive\"\n",
    );
    (
        Page::start_with(&[account], &user, lab.password(), how),
        user,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_without_login_lead_to_the_login_and_writes_are_refused() {
    let (page, _) = page_with_one_account("web-nologin");
    let client = Client::new(&page);
    for path in [
        "/",
        "/accounts/support",
        "/accounts/new",
        "/accounts/support/quarantine",
        "/tickets?q=x",
    ] {
        let r = client.get(path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
    }
    for path in [
        "/accounts/new",
        "/accounts/support",
        "/accounts/support/quarantine",
        "/api/test-fetch",
        "/api/folders",
    ] {
        let r = client.post(path, &[("name", "x")], None).await;
        assert_eq!(r.status(), 403, "{path}");
    }
    let login = client.get("/login").await;
    assert_eq!(login.status(), 200);
    assert!(login.text().await.unwrap().contains("name=\"password\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_from_another_site_or_without_the_token_is_refused() {
    let (page, _) = page_with_one_account("web-csrf");
    let mut client = Client::new(&page);
    client.log_in(ADMIN_PASSWORD).await.unwrap();
    let csrf = client.csrf().await;
    let before = page.config_text();

    let other_site = client
        .post(
            "/accounts/new",
            &[("csrf", &csrf), ("name", "evil")],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(other_site.status(), 403);
    assert!(other_site.text().await.unwrap().contains("Origin"));

    let no_token = client
        .post("/accounts/new", &[("name", "evil")], None)
        .await;
    assert_eq!(no_token.status(), 403);
    let wrong_token = client
        .post(
            "/accounts/new",
            &[("csrf", "forged"), ("name", "evil")],
            None,
        )
        .await;
    assert_eq!(wrong_token.status(), 403);
    assert_eq!(page.config_text(), before, "nothing was written");

    // A login from another site is refused too (no session can be planted).
    let r = Client::new(&page)
        .post(
            "/login",
            &[("password", ADMIN_PASSWORD)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_slowed_and_logged_without_what_was_typed() {
    let (page, _) = page_with_one_account("web-throttle");
    let mut client = Client::new(&page);
    for n in 0..5 {
        let typed = format!("guess-number-{n}");
        assert_eq!(client.log_in(&typed).await, Err(401));
    }
    // The sixth try waits, even with the right password: the limit tells nothing.
    assert_eq!(client.log_in(ADMIN_PASSWORD).await, Err(429));
    page.wait_for_log(
        "login refused, too many failed tries",
        Duration::from_secs(10),
    );
    let log = page.log();
    assert!(
        log.contains("failed login") && log.contains("127.0.0.1"),
        "{log}"
    );
    assert!(
        !log.contains("guess-number"),
        "a typed password reached the log"
    );
    assert!(!log.contains(ADMIN_PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_forbid_framing_caching_and_inline_script_and_never_show_a_password() {
    let lab = Lab::get();
    let (page, _) = page_with_one_account("web-headers");
    let mut client = Client::new(&page);
    client.log_in(ADMIN_PASSWORD).await.unwrap();
    for path in ["/", "/accounts/support", "/accounts/new", "/tickets"] {
        let r = client.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        assert!(!html.contains(lab.password()), "{path} shows a password");
        assert!(!html.contains("<script>"), "{path} has inline script");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_another_host_name_is_refused_on_loopback() {
    let (page, _) = page_with_one_account("web-rebind");
    let r = reqwest::Client::new()
        .get(page.url("/login"))
        .header("host", format!("rebind.example:{}", page.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_found_mail_downloads_as_its_raw_bytes_never_as_a_page() {
    let lab = Lab::get();
    let (page, user) = page_with_one_account("web-raw");
    let raw = "Subject: Bestellung 4711 storniert\r\nFrom: kunde@example.test\r\n\
               Message-ID: <web-raw-1@example.test>\r\nContent-Type: text/html\r\n\r\n\
               <script>alert(1)</script>\r\n";
    lab.smtp_send("kunde@example.test", &user, raw.as_bytes())
        .await;
    common::http::wait_for(
        "the mail to become a ticket",
        Duration::from_secs(60),
        || {
            page.cfg
                .tickets()
                .first()
                .map(|t| t["number"].as_str().unwrap().to_string())
        },
    );
    let number = page.cfg.tickets()[0]["number"]
        .as_str()
        .unwrap()
        .to_string();
    let mut client = Client::new(&page);
    client.log_in(ADMIN_PASSWORD).await.unwrap();
    let found = client
        .get("/tickets?q=storniert")
        .await
        .text()
        .await
        .unwrap();
    assert!(found.contains(&format!("/tickets/{number}")), "{found}");
    let r = client.get(&format!("/tickets/{number}/1/raw")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Message-ID: <web-raw-1@example.test>"),
        "{body}"
    );
    assert!(
        body.contains("<script>alert(1)</script>"),
        "the bytes as they came"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_saved_through_the_page_reaches_no_log_even_at_trace() {
    let lab = Lab::get();
    let (page, _) = page_started("web-trace", Start::TraceLog);
    let mut client = Client::new(&page);
    client.log_in(ADMIN_PASSWORD).await.unwrap();
    let form = client.get("/accounts/support").await.text().await.unwrap();
    let new_password = "Neues-Postfach-Passwort-93";
    let saved = client
        .post(
            "/accounts/support",
            &[
                ("csrf", &hidden_value(&form, "csrf")),
                ("version", &hidden_value(&form, "version")),
                ("original", "support"),
                ("password", new_password),
            ],
            None,
        )
        .await;
    assert_eq!(saved.status(), 200);
    let answer = saved.text().await.unwrap();
    assert!(answer.contains("Gespeichert"), "{answer}");
    assert!(
        !answer.contains(new_password),
        "the answer shows no password"
    );
    assert!(
        page.config_text().contains(new_password),
        "the file has the new password"
    );
    page.wait_for_log("config reloaded", Duration::from_secs(30));
    let log = page.log();
    assert!(log.contains("TRACE"), "trace logging is on");
    for secret in [new_password, ADMIN_PASSWORD, lab.password()] {
        assert!(!log.contains(secret), "a password reached the trace log");
    }
    let cookie = client.cookie.as_deref().unwrap().split('=').nth(1).unwrap();
    assert!(!log.contains(cookie), "the session token reached the log");
}
