//! The accounts page in a real headless Chromium (tests/common/browser.rs) against a daemon
//! and the mail lab: what the shop owner does, click by click.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::page::{Page, Start, ADMIN_PASSWORD, KEPT_COMMENT};
use common::{imap_account, Lab};

const ARCHIVE: &str = "action = \"move\"\nmove_to = \"Archive\"\n";

/// A page with the account "support" (lab user `user`) and the lab's submission service as
/// [smtp], signed in to with `smtp_password`.
fn support_page(prefix: &str, smtp_password: &str) -> (Page, String) {
    let lab = Lab::get();
    let user = lab.fresh_user(prefix);
    let account = format!(
        "# the shop's main mailbox\n{}",
        imap_account(lab, "support", &user, "ssl", ARCHIVE)
    );
    (Page::start(&[account], &user, smtp_password), user)
}

async fn logged_in(page: &Page, language: &str) -> Browser {
    let browser = Browser::start(language).await;
    browser.goto(&page.url("/")).await;
    assert_eq!(
        browser.current_url().await.path(),
        "/login",
        "a page without login leads there"
    );
    browser.fill("password", ADMIN_PASSWORD).await;
    browser.click("form.login button[type=submit]").await;
    browser
        .wait_text(
            "h1",
            if language == "en" {
                "E-mail accounts"
            } else {
                "E-Mail-Konten"
            },
        )
        .await;
    browser
}

/// Waits until the steps of a test button have ended; returns whether they passed. Up to
/// 90 s: the test mail may take a while, and Dovecot delays logins from an address that just
/// failed one (its auth penalty, up to 15 s), which other tests on loopback do on purpose.
async fn steps_result(browser: &Browser) -> bool {
    browser
        .wait_for_within(
            "the test's steps to end",
            Duration::from_secs(90),
            async || {
                let state = browser
                    .client()
                    .execute(
                        "return document.getElementById('steps').dataset.state || ''",
                        vec![],
                    )
                    .await?;
                Ok(match state.as_str() {
                    Some("passed") => Some(true),
                    Some("failed") => Some(false),
                    _ => None,
                })
            },
        )
        .await
}

fn screenshot_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_added_in_the_browser_fetches_mail_without_a_restart_and_keeps_the_files_comments(
) {
    let lab = Lab::get();
    let (page, _) = support_page("web-add-support", lab.password());
    let browser = logged_in(&page, "de").await;
    browser.screenshot(&screenshot_path("overview.png")).await;

    let returns = lab.fresh_user("web-add-returns");
    browser.click("a.button[href='/accounts/new']").await;
    browser.wait_text("h1", "Neues Konto").await;
    browser.fill("name", "returns").await;
    browser.fill("email", &returns).await;
    browser.fill("user", &returns).await;
    browser.fill("password", lab.password()).await;
    browser.fill("protocol", "imap").await;
    browser.fill("encryption", "ssl").await;
    assert_eq!(
        browser
            .eval("return document.getElementById('port').value")
            .await,
        "993",
        "the port follows protocol and encryption"
    );
    browser
        .fill("port", &lab.port("MAIL_LAB_IMAPS_PORT").to_string())
        .await;
    browser.fill("host", "localhost").await;
    browser.fill("ticket_type", "Anfrage").await;
    browser.fill("ticket_status", "neu").await;
    browser.fill("sender_name", "Rücksendungen Shop").await;
    browser.fill("action", "move").await;
    browser.fill("move_to", "Erledigt/Geprüft").await;
    browser.eval("window.scrollTo(0, 0); return true").await;
    browser
        .screenshot(&screenshot_path("account-form.png"))
        .await;
    browser.click("details.advanced summary").await;
    browser.fill("ca_file", lab.ca()).await;
    browser.click("#save").await;
    browser.wait_text("p.done", "Gespeichert").await;
    assert!(
        !browser.html().await.contains(lab.password()),
        "the saved form shows no password"
    );

    let text = page.config_text();
    assert!(text.contains(KEPT_COMMENT), "{text}");
    assert!(text.contains("# statuses for new tickets"), "{text}");
    assert!(text.contains("# the shop's main mailbox"), "{text}");
    assert!(text.contains("name = \"returns\""), "{text}");
    assert!(text.contains("move_to = \"Erledigt/Geprüft\""), "{text}");
    assert!(text.find("name = \"support\"") < text.find("name = \"returns\""));

    // No restart: the running daemon picks the new account up and ingests its mail.
    let pid = page.daemon.child.id();
    lab.smtp_send(
        "kunde@example.test",
        &returns,
        b"Subject: Paket beschaedigt\r\nFrom: kunde@example.test\r\nMessage-ID: <web-add-1@example.test>\r\n\r\nDas Paket kam kaputt an.\r\n",
    )
    .await;
    common::http::wait_for(
        "the new account's mail to become a ticket",
        Duration::from_secs(60),
        || {
            page.cfg
                .ticket_subjects()
                .contains(&"Paket beschaedigt".to_string())
                .then_some(())
        },
    );
    assert_eq!(page.daemon.child.id(), pid);
    browser.goto(&page.url("/")).await;
    let row = browser.text("tr[data-account=returns]").await;
    assert!(row.contains("IMAP") && row.contains("localhost"), "{row}");
    let counts = browser.text("tr[data-account=returns] td.count").await;
    assert_eq!(counts, "1", "one mail today: {row}");
    assert!(page.log().contains("config reloaded"), "{}", page.log());
    assert!(
        page.log().contains("accounts page: saved a change"),
        "an audit line"
    );
    assert!(
        !page.log().contains(lab.password()),
        "the audit line names keys, not values"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_test_buttons_report_a_right_and_a_wrong_password() {
    let lab = Lab::get();
    let (page, _) = support_page("web-tests", lab.password());
    let before = page.config_text();
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/accounts/support")).await;

    // The stored password (the field left empty) is right.
    browser.click_button("E-Mail-Abruf testen").await;
    assert!(
        steps_result(&browser).await,
        "{}",
        browser.text("#steps").await
    );
    let steps = browser.text("#steps").await;
    assert!(
        steps.contains("✓ login") && steps.contains("✓ test mail arrives"),
        "{steps}"
    );

    browser.click_button("E-Mail-Versand testen").await;
    assert!(
        steps_result(&browser).await,
        "{}",
        browser.text("#steps").await
    );

    // A wrong one typed into the form is named beside the password field.
    browser.fill("password", "not-the-password").await;
    browser.click_button("E-Mail-Abruf testen").await;
    assert!(!steps_result(&browser).await);
    let beside = browser
        .wait_text("p.issue[data-for=password]", "login")
        .await;
    assert!(
        beside.contains("rejected") || beside.contains("abgelehnt"),
        "{beside}"
    );
    assert_eq!(page.config_text(), before, "testing writes nothing");

    // Test send with a wrong [smtp] password says so with the server's words.
    let (bad_smtp, _) = support_page("web-tests-smtp", "not-the-password");
    let browser2 = logged_in(&bad_smtp, "en").await;
    browser2.goto(&bad_smtp.url("/accounts/support")).await;
    browser2.click_button("Test send").await;
    assert!(!steps_result(&browser2).await);
    let steps = browser2.text("#steps").await;
    assert!(steps.contains("✗") && steps.contains("AUTH"), "{steps}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_folder_picker_lists_the_servers_folders_with_umlauts() {
    let lab = Lab::get();
    let (page, _) = support_page("web-folders", lab.password());
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/accounts/support")).await;
    browser.click("#load-folders").await;
    browser.wait_text("#folder-list", "Erledigt/Geprüft").await;
    browser
        .client()
        .find(fantoccini::Locator::Css("#folder-list"))
        .await
        .unwrap()
        .select_by_value("Erledigt/Geprüft")
        .await
        .unwrap();
    assert_eq!(
        browser
            .eval("return document.getElementById('move_to').value")
            .await,
        "Erledigt/Geprüft"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_of_the_file_meanwhile_is_not_overwritten() {
    let lab = Lab::get();
    let (page, _) = support_page("web-conflict", lab.password());
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/accounts/support")).await;
    // An admin edits the file while the form is open.
    let edited = format!("{}\n# changed by the admin\n", page.config_text());
    std::fs::write(&page.cfg.path, &edited).unwrap();
    browser.fill("sender_name", "Neuer Name").await;
    browser.click("#save").await;
    browser.wait_text("p.problem", "geändert").await;
    assert_eq!(
        page.config_text(),
        edited,
        "the admin's edit stays, the page wrote nothing"
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('sender_name').value")
            .await,
        "Neuer Name",
        "what was typed is still in the form"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subject_with_html_shows_as_text() {
    let lab = Lab::get();
    let (page, user) = support_page("web-xss", lab.password());
    let subject = "Rechnung <img src=x onerror=\"document.title='pwned'\"> zweimal";
    // A second one the store refuses, so that it is quarantined and shown on that page too.
    let refused = "Mahnung <img src=x onerror=document.title=1>";
    page.cfg.refuse_articles_with_subject(refused).await;
    for (subject, id) in [(subject, "web-xss-1"), (refused, "web-xss-2")] {
        lab.smtp_send(
            "kunde@example.test",
            &user,
            format!("Subject: {subject}\r\nFrom: \"<b>Kunde</b>\" <kunde@example.test>\r\nMessage-ID: <{id}@example.test>\r\n\r\nHallo <script>document.title='pwned'</script>\r\n").as_bytes(),
        )
        .await;
    }
    common::http::wait_for(
        "the mail to become a ticket",
        Duration::from_secs(60),
        || (!page.cfg.tickets().is_empty()).then_some(()),
    );
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/tickets?q=Rechnung")).await;
    let shown = browser.wait_text("td.subject", "Rechnung").await;
    assert!(
        shown.contains("<img src=x"),
        "the subject shows as text: {shown}"
    );
    browser.click("table.hits a").await;
    browser.wait_text("pre.text", "<script>").await;
    let images = browser.eval("return document.images.length").await;
    assert_eq!(images, 0);
    let title = browser.eval("return document.title").await;
    assert_ne!(title, "pwned");

    // The overview counts the quarantined mail and leads to it; Retry has it stored.
    common::http::wait_for(
        "the refused mail in quarantine",
        Duration::from_secs(60),
        || {
            let out = page.cfg.run(&["quarantine", "list", "--json"]);
            let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
            (listed.len() == 1).then_some(())
        },
    );
    browser.goto(&page.url("/")).await;
    assert_eq!(
        browser
            .text("tr[data-account=support] td.quarantined")
            .await,
        "1"
    );
    browser
        .click("tr[data-account=support] td.quarantined a")
        .await;
    let shown = browser
        .wait_text("table.quarantine td.subject", "Mahnung")
        .await;
    assert!(shown.contains("<img src=x"), "as text: {shown}");
    assert_eq!(browser.eval("return document.images.length").await, 0);
    browser.screenshot(&screenshot_path("quarantine.png")).await;
    page.cfg.accept_articles_again().await;
    browser.click("table.quarantine button[type=submit]").await;
    browser.wait_text("ul.retried li.done", "released").await;
    common::http::wait_for(
        "the released mail to become a ticket",
        Duration::from_secs(60),
        || (page.cfg.tickets().len() == 2).then_some(()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_in_the_browser_are_slowed() {
    let lab = Lab::get();
    let (page, _) = support_page("web-throttle-browser", lab.password());
    let browser = Browser::start("de").await;
    browser.goto(&page.url("/login")).await;
    for _ in 0..5 {
        browser.fill("password", "falsch-geraten").await;
        browser.click("form.login button[type=submit]").await;
        browser.wait_text("p.problem", "stimmt nicht").await;
    }
    browser.fill("password", ADMIN_PASSWORD).await;
    browser.click("form.login button[type=submit]").await;
    browser.wait_text("p.problem", "Zu viele Versuche").await;
    assert_eq!(browser.current_url().await.path(), "/login");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_speaks_english_to_an_english_browser() {
    let lab = Lab::get();
    let (page, _) = support_page("web-english", lab.password());
    let browser = logged_in(&page, "en").await;
    browser.goto(&page.url("/accounts/support")).await;
    for label in ["Test fetch", "Test send", "Move to", "Save"] {
        browser.wait_text("form#account", label).await;
    }
    // 25 is an SMTP port: typed for IMAP, it gets a hint.
    browser.fill("port", "25").await;
    browser.wait_text("#port-hint", "SMTP").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_config_file_is_explained_with_the_toml_to_paste() {
    let lab = Lab::get();
    let user = lab.fresh_user("web-read-only");
    let account = imap_account(lab, "support", &user, "ssl", ARCHIVE);
    let page = Page::start_with(&[account], &user, lab.password(), Start::ReadOnlyConfig);
    let before = page.config_text();
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/accounts/support")).await;
    browser.fill("sender_name", "Kundendienst").await;
    browser.click("#save").await;
    browser.wait_text("div.problem", "nicht schreiben").await;
    let paste = browser.text("pre.paste").await;
    assert!(paste.contains("sender_name = \"Kundendienst\""), "{paste}");
    assert!(paste.contains("name = \"support\""), "{paste}");
    assert!(
        !paste.contains(lab.password()),
        "the TOML to paste hides the password: {paste}"
    );
    assert_eq!(page.config_text(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn detection_finds_the_lab_from_srv_records_and_from_an_autoconfig_file() {
    let lab = Lab::get();
    let user = lab.fresh_user("web-detect");
    let account = imap_account(lab, "support", &user, "ssl", ARCHIVE);
    let page = Page::start_with(&[account], &user, lab.password(), Start::WithLabDns);
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/accounts/new")).await;
    browser.click("details.advanced summary").await;
    browser.fill("ca_file", lab.ca()).await;

    let imaps = lab.port("MAIL_LAB_IMAPS_PORT").to_string();
    for domain in [
        lab.var("MAIL_LAB_SRV_DOMAIN"),
        lab.var("MAIL_LAB_AUTOCONFIG_DOMAIN"),
    ] {
        browser.fill("email", &format!("support@{domain}")).await;
        browser.click("#detect").await;
        browser
            .wait_for("the detected servers", async || {
                let state = browser
                    .client()
                    .execute(
                        "return document.getElementById('detected').dataset.state || ''",
                        vec![],
                    )
                    .await?;
                Ok(state == "done")
            })
            .await;
        let proven = format!("#detected li.ok[data-port='{imaps}']");
        let line = browser.text(&proven).await;
        assert!(
            line.contains("✓") && line.contains("IMAP"),
            "{domain}: {line}"
        );
        browser.click(&format!("{proven} button.use")).await;
        assert_eq!(
            browser
                .eval("return document.getElementById('port').value")
                .await,
            imaps.as_str()
        );
        assert_eq!(
            browser
                .eval("return document.getElementById('encryption').value")
                .await,
            "ssl"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_on_another_site_cannot_save() {
    use axum::response::Html;
    let lab = Lab::get();
    let (page, _) = support_page("web-foreign", lab.password());
    let before = page.config_text();
    // Another site on this machine (another port is another origin) with a form that posts to
    // the page as soon as it loads, in a browser that is logged in to the page.
    let target = page.url("/accounts/new");
    let foreign = format!(
        "<!doctype html><form id=f method=post action=\"{target}\">\
         <input name=name value=evil><input name=csrf value=guess></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = format!("http://{}/", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { Html(foreign) }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let browser = logged_in(&page, "de").await;
    browser.goto(&site).await;
    let refused = browser.wait_text("body", "refused").await;
    assert!(refused.contains("Origin"), "{refused}");
    assert_eq!(page.config_text(), before, "nothing was written");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_rules_show_beside_their_fields_before_anything_is_written() {
    let lab = Lab::get();
    let (page, _) = support_page("web-rules", lab.password());
    let before = page.config_text();
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/accounts/support")).await;
    browser.fill("move_to", "").await;
    browser.fill("reply_to", "not an address").await;
    browser.click("#save").await;
    browser.wait_text("p.problem", "markierten Felder").await;
    let move_to = browser.text("p.issue[data-for=move_to]").await;
    assert!(
        move_to.contains("required when action = \"move\""),
        "{move_to}"
    );
    browser.text("p.issue[data-for=reply_to]").await;
    assert_eq!(page.config_text(), before, "nothing was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_names_a_rejected_login_in_the_servers_words() {
    let lab = Lab::get();
    let user = lab.fresh_user("web-rejected");
    let account = imap_account(lab, "support", &user, "ssl", ARCHIVE).replace(
        &format!("password = \"{}\"", lab.password()),
        "password = \"wrong-one\"",
    );
    let page = Page::start(&[account], &user, lab.password());
    let browser = logged_in(&page, "de").await;
    let state = browser
        .wait_for_within(
            "the rejected login on the overview",
            Duration::from_secs(60),
            async || {
                browser.goto(&page.url("/")).await;
                let state = browser
                    .client()
                    .find(fantoccini::Locator::Css(
                        "tr[data-account=support] td.state",
                    ))
                    .await?
                    .text()
                    .await?;
                Ok(state.contains("Anmeldung abgelehnt").then_some(state))
            },
        )
        .await;
    assert!(
        state.contains("AUTHENTICATIONFAILED") || state.contains("Authentication failed"),
        "{state}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_open_alerts_with_mail_text_as_text() {
    let lab = Lab::get();
    let (page, _) = support_page("web-alert", lab.password());
    // An open alert as the alert task records it; its detail holds a sender's subject.
    let store = page.cfg.open_store().await;
    let now = chrono::Utc::now();
    let detail = "kunde@example.test | <script>document.title='pwned'</script> | 2 KB | error";
    let facts = mail2ticket::store::AlertFacts {
        condition_key: "quarantine:support",
        kind: "quarantined",
        account: Some("support"),
        stage: 1,
        since: now,
        detail,
    };
    assert!(store.open_alert(&facts, &[], now).await.unwrap());
    let browser = logged_in(&page, "de").await;
    browser.goto(&page.url("/")).await;
    let shown = browser
        .wait_text("section.alerts", "Konto support: 1 Mail(s) in Quarantäne")
        .await;
    assert!(
        shown.contains("<script>"),
        "the subject shows as text: {shown}"
    );
    let title = browser.eval("return document.title").await;
    assert_ne!(title, "pwned");
}
