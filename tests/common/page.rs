//! The accounts page under test: a daemon with `[web]` on a free loopback port, a config file
//! with comments (to see that Save keeps them), the lab's submission service as `[smtp]`, and a
//! plain HTTP client that logs in and keeps the session cookie.

use std::path::PathBuf;
use std::time::Duration;

use super::diag::{smtp_section, LabSmtp};
use super::http::{free_port, wait_for};
use super::{Daemon, Lab, TestConfig};

/// The admin password of every test page.
pub const ADMIN_PASSWORD: &str = "Kassenbuch-2027!";

/// A comment Save must keep.
pub const KEPT_COMMENT: &str = "# Tickets of the shop: keep this comment";

pub struct Page {
    pub cfg: TestConfig,
    pub daemon: Daemon,
    pub port: u16,
}

impl Page {
    /// A daemon serving the page for `accounts` (`[[account]]` bodies), with `smtp_password`
    /// for `[smtp]` (the lab's password unless a test wants a wrong one).
    pub fn start(accounts: &[String], smtp_user: &str, smtp_password: &str) -> Page {
        let lab = Lab::get();
        let port = free_port();
        let hash = mail2ticket::password_hash::hash(ADMIN_PASSWORD).unwrap();
        let extra = format!(
            "{KEPT_COMMENT}\n[tickets]\ntypes = [\"question\", \"Anfrage\"]\n\
             statuses = [\"open\", \"neu\"]   # statuses for new tickets\n\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\nadmin_password_hash = \"{hash}\"\n\n{}",
            smtp_section(lab, LabSmtp::Submission, smtp_user, smtp_password)
        );
        let cfg = TestConfig::new(accounts, &extra);
        let log = cfg.dir.path().join("daemon.log");
        let daemon = Daemon::start(&cfg.path, log);
        let page = Page { cfg, daemon, port };
        wait_for(
            "the accounts page to listen",
            Duration::from_secs(30),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        page
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.cfg.path).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.daemon.log.clone()
    }

    /// Waits until the daemon's log has a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        wait_for(&format!("{needle:?} in the daemon's log"), timeout, || {
            self.log().contains(needle).then_some(())
        });
    }
}

/// A browser-less client: no redirects followed, the session cookie kept by hand.
pub struct Client {
    pub http: reqwest::Client,
    pub origin: String,
    pub cookie: Option<String>,
}

impl Client {
    pub fn new(page: &Page) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            origin: page.origin(),
            cookie: None,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.origin));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    /// A form POST from this page's own origin unless `origin` says otherwise.
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.origin))
            .header("origin", origin.unwrap_or(&self.origin))
            .form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    /// Logs in; `Err(status)` when the page refused.
    pub async fn log_in(&mut self, password: &str) -> Result<(), u16> {
        let r = self.post("/login", &[("password", password)], None).await;
        if r.status().as_u16() != 303 {
            return Err(r.status().as_u16());
        }
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        self.cookie = Some(set.split(';').next().unwrap().to_string());
        Ok(())
    }

    /// The CSRF token of the logged-in session, read from a page's form.
    pub async fn csrf(&self) -> String {
        let html = self.get("/").await.text().await.unwrap();
        let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        html[at..].split('"').next().unwrap().to_string()
    }
}
