//! The browser harness itself (tests/common/browser.rs), against a small site this test serves
//! on 127.0.0.1: it fills and submits forms the way a person does, it sends the language it was
//! started with, and it reaches nothing outside the machine. Needs Debian's chromium and
//! chromium-driver (scripts/install-deps); not the mail lab.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use common::browser::Browser;

/// One request as the site received it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    host: String,
    accept_language: String,
    form: Vec<(String, String)>,
}

/// A site on 127.0.0.1 that records every request: a form at /form that posts to /form, and a
/// small page at any other path.
struct Site {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

const FORM: &str = r#"<!doctype html>
<html lang="en"><head><title>Account</title></head><body>
<form method="post" action="/form">
  <label>Name <input name="name" value="old name"></label>
  <label>Protocol <select name="protocol">
    <option value="imap">IMAP</option><option value="pop3">POP3</option></select></label>
  <label><input type="radio" name="encryption" value="ssl" checked> SSL</label>
  <label><input type="radio" name="encryption" value="starttls"> STARTTLS</label>
  <label><input type="checkbox" name="active" value="yes"> Active</label>
  <textarea name="note"></textarea>
  <button type="button" id="other">Test</button>
  <button type="submit">Save account</button>
</form></body></html>"#;

impl Site {
    async fn start() -> Site {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let app = Router::new()
            .route("/form", get(form_page).post(form_saved))
            .fallback(any_page)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Site { port, seen, server }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, the browser's favicon requests left out.
    fn seen(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.path != "/favicon.ico")
            .cloned()
            .collect()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Log = State<Arc<Mutex<Vec<Seen>>>>;

fn record(log: &Log, method: Method, uri: &Uri, headers: &HeaderMap, form: Vec<(String, String)>) {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    log.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        host: header(header::HOST),
        accept_language: header(header::ACCEPT_LANGUAGE),
        form,
    });
}

async fn form_page(log: Log, uri: Uri, headers: HeaderMap) -> Html<&'static str> {
    record(&log, Method::GET, &uri, &headers, Vec::new());
    Html(FORM)
}

async fn form_saved(
    log: Log,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> impl IntoResponse {
    record(&log, Method::POST, &uri, &headers, form.clone());
    let name = form
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str())
        .unwrap_or("?");
    (
        [(
            header::SET_COOKIE,
            "saved=yes; HttpOnly; SameSite=Strict; Path=/",
        )],
        Html(format!(
            "<!doctype html><title>Saved</title><p id=\"answer\">Saved {}</p>",
            name.replace('&', "&amp;").replace('<', "&lt;")
        )),
    )
}

async fn any_page(log: Log, method: Method, uri: Uri, headers: HeaderMap) -> Html<String> {
    record(&log, method, &uri, &headers, Vec::new());
    Html(format!(
        "<!doctype html><title>Page</title><p id=\"path\">You are at {}</p>",
        uri.path()
    ))
}

#[tokio::test]
async fn the_test_browser_renders_a_local_page_and_submits_a_form() {
    let site = Site::start().await;
    let browser = Browser::start("en").await;

    browser.goto(&site.url("/form")).await;
    assert_eq!(browser.eval("return document.title").await, "Account");
    browser.fill("name", "Support \"Nord\" & Süd").await;
    browser.fill("protocol", "pop3").await;
    browser.fill("encryption", "starttls").await;
    browser.check("active", true).await;
    browser.fill("note", "line one").await;
    browser.click_button("Save account").await;

    let answer = browser.wait_text("#answer", "Saved").await;
    assert_eq!(answer, "Saved Support \"Nord\" & Süd");
    assert_eq!(browser.current_url().await.path(), "/form");
    let posts: Vec<Seen> = site
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::POST)
        .collect();
    assert_eq!(posts.len(), 1, "one POST: {posts:?}");
    let field = |name: &str| -> Vec<&str> {
        posts[0]
            .form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    // The old value was cleared, not typed after.
    assert_eq!(field("name"), ["Support \"Nord\" & Süd"]);
    assert_eq!(field("protocol"), ["pop3"]);
    assert_eq!(field("encryption"), ["starttls"]);
    assert_eq!(field("active"), ["yes"]);
    assert_eq!(field("note"), ["line one"]);
    browser.close().await;
}

#[tokio::test]
async fn the_test_browser_reads_cookies_page_source_and_takes_screenshots() {
    let site = Site::start().await;
    let browser = Browser::start("en").await;
    browser.goto(&site.url("/form")).await;
    assert_eq!(browser.cookie("saved").await, None);
    // Unchecking and checking again leaves the box as asked, whatever it was.
    browser.check("active", true).await;
    browser.check("active", false).await;
    browser.click("button[type=submit]").await;
    browser.wait_text("#answer", "Saved old name").await;

    let cookie = browser.cookie("saved").await.expect("the site's cookie");
    assert_eq!(cookie.value(), "yes");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(browser.text("#answer").await, "Saved old name");
    assert!(browser.html().await.contains("<p id=\"answer\">"));
    let post = site.seen().into_iter().last().unwrap();
    assert!(
        !post.form.iter().any(|(k, _)| k == "active"),
        "an unchecked box is not sent: {post:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("page.png");
    browser.screenshot(&png).await;
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    browser.close().await;
}

#[tokio::test]
async fn the_test_browser_never_reaches_outside() {
    let site = Site::start().await;
    let browser = Browser::start("en").await;

    let error = browser.goto_failing("http://example.com/").await;
    assert!(error.contains("ERR_NAME_NOT_RESOLVED"), "{error}");
    browser.wait_text("body", "ERR_NAME_NOT_RESOLVED").await;

    // Names that lead to the site if anything resolved them: /etc/hosts (localhost), or public
    // DNS (a name whose address is 127.0.0.1). Neither is looked up. Address literals other
    // than 127.0.0.1 are refused the same way, before any connection (which would have said
    // ERR_CONNECTION_REFUSED: the site listens on 127.0.0.1 only).
    for host in ["localhost", "127.0.0.1.nip.io", "127.0.0.2", "[::1]"] {
        let url = format!("http://{host}:{}/elsewhere", site.port);
        let error = browser.goto_failing(&url).await;
        assert!(error.contains("ERR_NAME_NOT_RESOLVED"), "{url}: {error}");
    }

    // The literal loopback address is the one way out of the browser, and it works.
    browser.goto(&site.url("/direct")).await;
    browser.wait_text("#path", "/direct").await;
    let seen = site.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/direct"], "only the direct request arrived");
    assert_eq!(seen[0].host, format!("127.0.0.1:{}", site.port));
    browser.close().await;
}

#[tokio::test]
async fn the_test_browser_sends_the_chosen_language() {
    let site = Site::start().await;
    // Two browsers at once, each with its own driver and profile.
    let (german, english) = tokio::join!(Browser::start("de"), Browser::start("en"));
    let (to_german, to_english) = (site.url("/german"), site.url("/english"));
    tokio::join!(german.goto(&to_german), english.goto(&to_english));

    let language_of = |path: &str| {
        site.seen()
            .into_iter()
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("no request for {path}"))
            .accept_language
    };
    assert_eq!(language_of("/german"), "de");
    assert_eq!(language_of("/english"), "en");
    assert_eq!(german.eval("return navigator.language").await, "de");
    assert_eq!(english.eval("return navigator.language").await, "en");
    tokio::join!(german.close(), english.close());
}
