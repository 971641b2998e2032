//! The daemon under test: a running `mail2ticket run`, killed when dropped so a failing test
//! never leaves a daemon behind (one holding the test runner's output pipe open would hang the
//! suite). Its stderr (the log) goes to a file the tests read; when its config sets
//! `[daemon] http_listen`, it also answers /healthz and /metrics, and the tests wait for what it
//! reports there, never for a fixed time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{http, mail2ticket_cmd};

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    /// The port of `[daemon] http_listen`, if its config has one (see [`Daemon::with_http`]).
    pub http: Option<u16>,
}

impl Daemon {
    /// `mail2ticket --config <config> run`, logging to `log`.
    pub fn start(config: &Path, log: PathBuf) -> Daemon {
        Daemon::spawn(mail2ticket_cmd(config).arg("run"), log)
            .expect("running the mail2ticket binary built by cargo")
    }

    /// Runs `cmd` (a daemon started some other way: another environment, a wrapper) as the
    /// daemon under test, its stderr to `log` and its stdout discarded.
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> std::io::Result<Daemon> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()?;
        Ok(Daemon {
            child,
            log,
            http: None,
        })
    }

    /// Says the daemon's config has `http_listen = "127.0.0.1:<port>"`: the /healthz, /metrics
    /// and waiting helpers ask there.
    pub fn with_http(mut self, port: u16) -> Daemon {
        self.http = Some(port);
        self
    }

    /// `kill -NAME` (TERM, HUP, STOP, CONT ...).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Kills the process the hard way (a crash); its log.
    pub fn crash(mut self) -> String {
        self.kill();
        self.log_text()
    }

    /// Waits for the exit (after a signal); `(exit code, seconds)`. Panics with the log when it
    /// still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, f64) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed().as_secs_f64());
            }
            if started.elapsed() > timeout {
                panic!(
                    "daemon still running {timeout:?} after the signal:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log so far (empty before the daemon wrote any).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of a JSON log (`log_format = "json"`) whose message contains `text`.
    pub fn log_events(&self, text: &str) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
            .collect()
    }

    fn http_port(&self) -> u16 {
        self.http.expect(
            "this daemon has no http port: write `http_listen` into its config and start it with \
             `Daemon::start(..).with_http(port)`",
        )
    }

    /// `(status, body)` of GET `path` on the http port, or `None` while nothing listens.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http::get(self.http_port(), path)
    }

    /// `(status, JSON body)` of /healthz, or `None` while nothing listens.
    pub fn healthz(&self) -> Option<(u16, serde_json::Value)> {
        let (code, body) = self.get("/healthz")?;
        Some((
            code,
            serde_json::from_str(&body).expect("/healthz body is JSON"),
        ))
    }

    /// The body of /metrics, or `None` while nothing listens.
    pub fn metrics(&self) -> Option<String> {
        self.get("/metrics").map(|(_, body)| body)
    }

    /// Waits until the daemon is healthy and so ready for mail: /healthz answers 200 (`"status":
    /// "ok"`), which takes a successful pass over every account (connected, folder listed, now
    /// waiting in IDLE or for the next poll) and a writable store. Panics with the log if the
    /// daemon exits or is not healthy within `timeout`.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("daemon exited with {status}:\n{}", self.log_text());
            }
            match self.healthz() {
                Some((200, _)) => return,
                other if Instant::now() > deadline => {
                    panic!(
                        "not healthy after {timeout:?}: /healthz {other:?}; log:\n{}",
                        self.log_text()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The passes over `account` the daemon completed so far (`mail2ticket_passes_total`).
    pub fn passes(&self, account: &str) -> u64 {
        let body = self
            .metrics()
            .unwrap_or_else(|| panic!("/metrics does not answer; log:\n{}", self.log_text()));
        let series = format!("mail2ticket_passes_total{{account=\"{account}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series}in /metrics:\n{body}"))
    }

    /// Waits until the daemon has completed a pass over each of `accounts` that began after this
    /// call: every mail that had reached those mailboxes by now has been looked at, stored, and
    /// its reply (if any) queued in the same transaction. The first pass counted after now may
    /// have been under way already; the one after it began later.
    pub async fn one_more_pass(&self, accounts: &[&str]) {
        for account in accounts {
            let target = self.passes(account) + 2;
            let done = wait_until(Duration::from_secs(30), || async {
                self.passes(account) >= target
            })
            .await;
            assert!(
                done,
                "no complete pass over {account} within 30 s; log:\n{}",
                self.log_text()
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 100 ms until it is true (`true`) or `timeout` has passed (`false`, after
/// one last look), for the caller to assert with what it saw.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one SIGKILL of [`kill_mid_backlog`] left behind.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    /// How long after the progress it waited for the daemon was killed.
    pub after_ms: u64,
    /// Tickets in the store then.
    pub tickets: i64,
    /// Mails still on the server then, as `left_on_server` counts them.
    pub left: usize,
}

/// Starts a daemon on `cfg` again and again, each killed with SIGKILL 0..`max_extra_ms` ms after
/// it made progress (a ticket stored, or nothing left on the server), so the kills land
/// mid-backlog whatever the machine's speed: between a commit and its move, or while the next
/// batch is fetched or stored. Stops once nothing is left on the server, or after `rounds`
/// kills; panics if a daemon makes no progress within 60 s.
pub async fn kill_mid_backlog<F, Fut>(
    cfg: &super::TestConfig,
    rounds: usize,
    max_extra_ms: u64,
    left_on_server: F,
) -> Vec<Kill>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    use rand::Rng;
    let mut kills = Vec::new();
    for round in 0..rounds {
        let before = cfg.ticket_count().await;
        let log = cfg.dir.path().join(format!("daemon-{round}.log"));
        let mut daemon = Daemon::start(&cfg.path, log);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Polled often: the kill is to land close after the commit.
        while cfg.ticket_count().await == before && left_on_server().await > 0 {
            assert!(
                Instant::now() < deadline,
                "no progress within 60 s; log:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after_ms = rand::thread_rng().gen_range(0..max_extra_ms);
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        daemon.kill();
        let kill = Kill {
            after_ms,
            tickets: cfg.ticket_count().await,
            left: left_on_server().await,
        };
        eprintln!(
            "SIGKILL {after_ms} ms after progress: {} tickets, {} mails left on the server",
            kill.tickets, kill.left
        );
        kills.push(kill);
        if kill.left == 0 {
            break;
        }
    }
    kills
}
