//! A real browser for the page tests: Debian's Chromium, headless, driven over WebDriver
//! (fantoccini talking to Debian's chromedriver). Each [`Browser`] has its own chromedriver, its
//! own Chromium and its own profile directory, so tests run in parallel without sharing cookies
//! or cache. Chromium resolves no name at all (`--host-resolver-rules`) except the literal
//! address 127.0.0.1: a page under test must be served on `http://127.0.0.1:PORT/`, and nothing a
//! page does can reach outside the machine.
//!
//! Every helper that looks for something on the page waits for it (polling with a deadline,
//! never a fixed sleep) and, when it does not come, panics naming what was awaited, the page's
//! URL and the start of its text; a screenshot is kept beside the driver's log for a look.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::time::Instant;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a helper waits for what it looks for. Generous: the machine may be busy building.
const WAIT: Duration = Duration::from_secs(15);
/// How long chromedriver may take to listen and say it is ready.
const DRIVER_START: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

pub struct Browser {
    /// `None` once [`Browser::close`] has ended the session.
    client: Option<Client>,
    session: String,
    driver: tokio::process::Child,
    driver_port: u16,
    /// Holds the profile (`profile/`), the driver's log and screenshots of failures.
    dir: Option<tempfile::TempDir>,
}

impl Browser {
    /// A fresh headless Chromium whose Accept-Language is `language` ("de", "en", "de-DE,en"...).
    pub async fn start(language: &str) -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the browser tests need Debian's Chromium and its WebDriver; \
                 install them with scripts/install-deps (packages chromium, chromium-driver)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("mail2ticket-browser-")
            .tempdir()
            .expect("a temporary directory for the browser");
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromedriver.log");
        let log_file = std::fs::File::create(&log).expect("creating the chromedriver log");

        // --port=0: the driver binds a port the kernel picks and prints it. Picking a free port
        // here and passing it would race with other tests doing the same.
        let mut driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg("--port=0")
            // Chromium's own stderr into the same log: why it crashed, when it does.
            .arg("--enable-chrome-logs")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            // Its own process group, Chromium and its helpers included, so that Drop can kill
            // them all at once (kill_on_drop alone would orphan Chromium).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));

        let driver_port = wait_for_driver(&mut driver, &log).await;
        let url = format!("http://127.0.0.1:{driver_port}");
        // Plain HTTP to the local driver: hyper-util's connector (the one fantoccini builds on)
        // needs none of fantoccini's TLS features.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities(language, &profile))
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                // A Chromium half started would outlive the driver's kill_on_drop.
                kill_group(&driver);
                panic!(
                    "Chromium did not start under {CHROMEDRIVER}: {e}\n{}",
                    log_tail(&log)
                )
            });
        let session = client
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("chromedriver names the session it created");
        Browser {
            client: Some(client),
            session,
            driver,
            driver_port,
            dir: Some(dir),
        }
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the browser was closed already")
    }

    /// Opens `url` and returns once the page has loaded; panics when it cannot be loaded.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client().goto(url).await {
            panic!(
                "{}",
                self.failure(&format!("could not load {url}: {e}")).await
            );
        }
    }

    /// Opens `url` expecting the load to fail, and returns the browser's error
    /// (e.g. "unknown error: net::ERR_NAME_NOT_RESOLVED"); panics if the page loads.
    pub async fn goto_failing(&self, url: &str) -> String {
        match self.client().goto(url).await {
            Ok(()) => panic!(
                "{}",
                self.failure(&format!("{url} loaded; it was to fail")).await
            ),
            Err(e) => e.to_string(),
        }
    }

    /// Types `value` into the input or textarea named `name` (clearing it first), or chooses
    /// the option with value `value` of the select, or the radio button with that value.
    pub async fn fill(&self, name: &str, value: &str) {
        let selector = format!("[name={}]", css_string(name));
        let what = format!("a field named {name:?} to hold {value:?}");
        let field = self.find(&selector, &what).await;
        let tag = field.tag_name().await.unwrap_or_default().to_lowercase();
        let kind = field.attr("type").await.ok().flatten().unwrap_or_default();
        match (tag.as_str(), kind.as_str()) {
            ("select", _) => {
                self.wait_for(&what, async || {
                    field.select_by_value(value).await?;
                    Ok(field_value(&field).await? == value)
                })
                .await
            }
            ("input", "radio") => {
                let radio = format!("{selector}[value={}]", css_string(value));
                self.click(&radio).await;
                self.wait_for(&what, async || {
                    self.client()
                        .find(Locator::Css(&radio))
                        .await?
                        .is_selected()
                        .await
                })
                .await
            }
            ("input", "checkbox") => panic!("{name:?} is a checkbox: use Browser::check"),
            _ => {
                self.wait_for(&what, async || {
                    field.clear().await?;
                    field.send_keys(value).await?;
                    Ok(field_value(&field).await? == value)
                })
                .await
            }
        }
    }

    /// Ticks (`true`) or clears (`false`) the checkbox named `name`.
    pub async fn check(&self, name: &str, on: bool) {
        let selector = format!("input[type=checkbox][name={}]", css_string(name));
        let what = format!(
            "the checkbox {name:?} to be {}",
            if on { "on" } else { "off" }
        );
        let checkbox = self.find(&selector, &what).await;
        self.wait_for(&what, async || {
            if checkbox.is_selected().await? != on {
                checkbox.click().await?;
            }
            Ok(checkbox.is_selected().await? == on)
        })
        .await
    }

    /// Clicks the first element matching `css` once it is visible and enabled.
    pub async fn click(&self, css: &str) {
        self.wait_for(&format!("{css} to be clickable"), async || {
            let element = self.client().find(Locator::Css(css)).await?;
            click_when_ready(&element).await
        })
        .await
    }

    /// Clicks the button (`<button>`, or an `<input>` submit or button) labelled `text`.
    pub async fn click_button(&self, text: &str) {
        self.wait_for(&format!("a button labelled {text:?}"), async || {
            let buttons = self
                .client()
                .find_all(Locator::Css(
                    "button, input[type=submit], input[type=button]",
                ))
                .await?;
            for button in buttons {
                let label = match button.tag_name().await?.to_lowercase().as_str() {
                    "button" => button.text().await?,
                    _ => button.prop("value").await?.unwrap_or_default(),
                };
                if label.trim() == text && button.is_displayed().await? {
                    return click_when_ready(&button).await;
                }
            }
            Ok(false)
        })
        .await
    }

    /// The text of the first element matching `css`, once it contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_for(&format!("{css} to contain {needle:?}"), async || {
            let text = self.client().find(Locator::Css(css)).await?.text().await?;
            Ok(text.contains(needle).then_some(text))
        })
        .await
    }

    /// The text of the first element matching `css`, once there is one.
    pub async fn text(&self, css: &str) -> String {
        self.find(css, &format!("an element {css}"))
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading the text of {css}: {e}"))
    }

    /// The page's HTML as the browser holds it now.
    pub async fn html(&self) -> String {
        self.client().source().await.expect("the page source")
    }

    pub async fn current_url(&self) -> url::Url {
        self.client().current_url().await.expect("the current URL")
    }

    /// Saves a PNG of the viewport (1280 pixels wide) to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client().screenshot().await.expect("a screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Runs `js` as the body of a function in the page (so: `return ...`) and returns its value.
    pub async fn eval(&self, js: &str) -> Value {
        self.client()
            .execute(js, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {js:?} in the page: {e}"))
    }

    /// The cookie `name` the browser holds for the current page now, if any.
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        match self.client().get_named_cookie(name).await {
            Ok(cookie) => Some(cookie),
            Err(e) if e.is_no_such_cookie() => None,
            Err(e) => panic!("reading the cookie {name:?}: {e}"),
        }
    }

    /// Polls `check` until it returns `Ok(Some(value))` or `Ok(true)` (errors count as "not
    /// yet": an element not there yet, a page still being replaced), or panics after the
    /// deadline naming `what` was awaited.
    pub async fn wait_for<T: Ready>(
        &self,
        what: &str,
        check: impl AsyncFnMut() -> Result<T, CmdError>,
    ) -> T::Value {
        self.wait_for_within(what, WAIT, check).await
    }

    /// [`Browser::wait_for`] with a deadline of its own, for what takes a server longer (a
    /// test-fetch waits for its test mail; a mail server delays logins after failed ones).
    pub async fn wait_for_within<T: Ready>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl AsyncFnMut() -> Result<T, CmdError>,
    ) -> T::Value {
        let deadline = Instant::now() + within;
        loop {
            let last = match check().await {
                Ok(result) => match result.ready() {
                    Some(value) => return value,
                    None => "not yet".to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                let headline = format!("waited {within:?} for {what}, in vain ({last})");
                panic!("{}", self.failure(&headline).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends the session (Chromium quits) and stops the driver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.ok();
        }
        self.kill();
        self.driver.wait().await.ok();
    }

    async fn find(&self, css: &str, what: &str) -> Element {
        self.wait_for(what, async || {
            Ok(Some(self.client().find(Locator::Css(css)).await?))
        })
        .await
    }

    /// A panic message: `headline` (what was awaited), where the browser is, what it shows.
    async fn failure(&self, headline: &str) -> String {
        let client = self.client();
        let url = match client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let text = client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let text: String = text.chars().take(600).collect();
        let shot = self.dir().join("failure.png");
        let shot = match client.screenshot().await {
            Ok(png) if std::fs::write(&shot, &png).is_ok() => shot.display().to_string(),
            _ => "(none)".into(),
        };
        format!(
            "browser: {headline}\n  at: {url}\n  page text: {text}\n  screenshot: {shot}\n  \
             driver log: {}",
            self.dir().join("chromedriver.log").display()
        )
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the browser's directory").path()
    }

    fn kill(&mut self) {
        kill_group(&self.driver);
        // Reaped by tokio in the background.
        self.driver.start_kill().ok();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.client.take().is_some() {
            // Drop cannot await the client's own close; ending the session lets Chromium quit
            // and remove its files before the profile directory goes. Best effort: the kill
            // below ends everything anyway.
            let url = format!(
                "http://127.0.0.1:{}/session/{}",
                self.driver_port, self.session
            );
            super::block_on(async move {
                if let Ok(http) = reqwest::Client::builder().no_proxy().build() {
                    http.delete(url)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await
                        .ok();
                }
            });
        }
        self.kill();
        if std::thread::panicking() {
            // Keep the driver's log and the failure's screenshot for whoever reads the panic.
            if let Some(dir) = self.dir.take() {
                std::fs::remove_dir_all(dir.path().join("profile")).ok();
                let kept: PathBuf = dir.keep();
                eprintln!("browser: kept {} for a look", kept.display());
            }
        }
    }
}

/// What [`Browser::wait_for`] accepts from its check: `true` or `Some(value)` when the awaited
/// condition holds.
pub trait Ready {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// The W3C capabilities: headless Chromium that resolves no name, with its own profile.
fn capabilities(language: &str, profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless=new".to_string(),
        // Root in a container: Chromium's sandbox needs user namespaces it may not get.
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        // /dev/shm is small in containers; Chromium crashes when it fills.
        "--disable-dev-shm-usage".into(),
        // Every name fails to resolve except the literal loopback address the tests serve on,
        // so no page (nor Chromium itself) reaches outside.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".into(),
        // A proxy from the environment would resolve names for Chromium, past the rules above.
        "--no-proxy-server".into(),
        format!("--user-data-dir={}", profile.display()),
        "--no-first-run".into(),
        // Chromium's own calls home (updates, sync, QUIC probes) would only fail here, loudly.
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-quic".into(),
        "--window-size=1280,900".into(),
        // The UI language; on Linux it does not set Accept-Language, the preference below does.
        format!("--lang={language}"),
    ];
    let caps = json!({
        "browserName": "chrome",
        "timeouts": {"pageLoad": 30_000, "script": 30_000},
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": args,
            "prefs": {"intl.accept_languages": language},
        },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// Waits until the driver has printed its port and says it is ready; returns the port.
async fn wait_for_driver(driver: &mut tokio::process::Child, log: &Path) -> u16 {
    let deadline = Instant::now() + DRIVER_START;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut port = None;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("{CHROMEDRIVER} exited ({status})\n{}", log_tail(log));
        }
        if port.is_none() {
            port = driver_port(&std::fs::read_to_string(log).unwrap_or_default());
        }
        if let Some(port) = port {
            let status = http
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .await;
            if let Ok(response) = status {
                let body = response.text().await.unwrap_or_default();
                let body: Value = serde_json::from_str(&body).unwrap_or_default();
                if body["value"]["ready"] == json!(true) {
                    return port;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{CHROMEDRIVER} was not ready after {DRIVER_START:?}\n{}",
            log_tail(log)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// SIGKILL to the driver's process group: the driver, Chromium and its helpers (Chromium's
/// crash handlers leave the group, and end by themselves when Chromium is gone).
fn kill_group(driver: &tokio::process::Child) {
    if let Some(pid) = driver.id() {
        // SAFETY: kill(2) touches no memory of ours; the group is the driver's own (see start).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
}

/// The port from chromedriver's "ChromeDriver was started successfully on port 41235."
fn driver_port(log: &str) -> Option<u16> {
    let (_, rest) = log.split_once("started successfully on port ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("chromedriver log ({}):\n{tail}", log.display())
}

/// Clicks when the element is visible and enabled; `Ok(false)` while it is not.
async fn click_when_ready(element: &Element) -> Result<bool, CmdError> {
    if !(element.is_displayed().await? && element.is_enabled().await?) {
        return Ok(false);
    }
    element.click().await?;
    Ok(true)
}

async fn field_value(field: &Element) -> Result<String, CmdError> {
    Ok(field.prop("value").await?.unwrap_or_default())
}

/// `s` as a CSS string literal, for attribute selectors.
fn css_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
