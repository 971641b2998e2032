//! The accounts page under test: a daemon with `[web]` on a free loopback port, a config file
//! with comments (to see that Save keeps them), the lab's submission service as `[smtp]`, and a
//! plain HTTP client that logs in and keeps the session cookie.

use std::path::PathBuf;
use std::time::Duration;

use super::diag::{smtp_section, LabSmtp};
use super::http::{free_port, wait_for};
use super::{mail2ticket_cmd, Daemon, Lab, TestConfig};

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
        Page::start_with(accounts, smtp_user, smtp_password, Start::Plain)
    }

    pub fn start_with(
        accounts: &[String],
        smtp_user: &str,
        smtp_password: &str,
        how: Start,
    ) -> Page {
        let lab = Lab::get();
        let port = free_port();
        let hash = mail2ticket::password_hash::hash(ADMIN_PASSWORD).unwrap();
        let extra = format!(
            "{KEPT_COMMENT}\n[tickets]\ntypes = [\"question\", \"Anfrage\"]\n\
             statuses = [\"open\", \"neu\"]   # statuses for new tickets\n\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\nadmin_password_hash = \"{hash}\"\n\n{}",
            smtp_section(lab, LabSmtp::Submission, smtp_user, smtp_password)
        );
        let mut cfg = TestConfig::new(accounts, &extra);
        let log = cfg.dir.path().join("daemon.log");
        let daemon = match how {
            Start::Plain => Daemon::start(&cfg.path, log),
            Start::TraceLog => Daemon::spawn(
                mail2ticket_cmd(&cfg.path)
                    .arg("run")
                    .env("RUST_LOG", "trace"),
                log,
            )
            .unwrap(),
            Start::WithLabDns => Daemon::spawn(
                mail2ticket_cmd(&cfg.path)
                    .arg("run")
                    .env("MAIL2TICKET_DNS", lab.var("MAIL_LAB_DNS"))
                    .env(
                        "MAIL2TICKET_AUTOCONFIG_PORT",
                        lab.var("MAIL_LAB_AUTOCONFIG_PORT"),
                    ),
                log,
            )
            .unwrap(),
            Start::ReadOnlyConfig => {
                // The config in a folder of its own, mounted read-only for the daemon alone (a
                // private mount namespace), as Docker's `:ro` does; the store stays writable.
                let conf = cfg.dir.path().join("conf");
                std::fs::create_dir(&conf).unwrap();
                let path = conf.join("config.toml");
                std::fs::copy(&cfg.path, &path).unwrap();
                cfg.path = path;
                Daemon::spawn(
                    std::process::Command::new("unshare")
                        .args(["--mount", "--propagation", "private", "sh", "-c"])
                        .arg("mount --bind -o ro \"$1\" \"$1\" && exec \"$2\" --config \"$3\" run")
                        .arg("sh")
                        .arg(&conf)
                        .arg(env!("CARGO_BIN_EXE_mail2ticket"))
                        .arg(&cfg.path)
                        .env("RUST_LOG", "mail2ticket=info"),
                    log,
                )
                .expect("unshare (util-linux) runs the daemon with a read-only config")
            }
        };
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

/// How the page's daemon is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Plain,
    /// With the lab's name server and autoconfig port for address detection.
    WithLabDns,
    /// With its config file on a read-only mount.
    ReadOnlyConfig,
    /// Logging everything, every dependency included (`RUST_LOG=trace`).
    TraceLog,
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
        hidden_value(&html, "csrf")
    }
}

/// The value of the hidden input `name` in a page.
pub fn hidden_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name}"))
        + marker.len();
    html[at..].split('"').next().unwrap().to_string()
}
