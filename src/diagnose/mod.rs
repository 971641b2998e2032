//! `test-fetch` and `test-send`: step-by-step checks that say what is wrong.
//!
//! Every check is a list of [`Step`]s run in order; the first failing step ends the run. A step
//! that fails carries the cause (`detail`) and what to change (`hint`). The text report prints one
//! line per step as soon as it finishes (`✓ resolve host  12 ms  127.0.0.1`); `--json` prints the
//! whole report as one object at the end. Exit code 0 only when every step ran and passed.
//!
//! Passwords are [`crate::secret::Secret`]s and are only exposed to the protocol clients, never
//! formatted into a step.

mod cert;
mod fetch;
mod forecast;
mod graph;
mod graph_fetch;
mod imap;
mod net;
mod pop3;
mod send;
mod smtp;
mod steps;
mod test_mail;
mod token;

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{AccountConfig, Config};

pub use fetch::{fetch_steps, test_fetch};
pub use send::{send_steps, test_send};

/// Exit code when a step failed (or could not run).
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a usage error: no account with that name.
pub const EXIT_USAGE: u8 = 2;

/// Longest time to wait for a server greeting on a plain connection. A server on an
/// implicit-TLS port waits for our TLS hello and never greets; waiting the full network timeout
/// (60 s by default) before saying so would be unkind.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    #[serde(rename = "step")]
    pub name: String,
    pub ok: bool,
    pub millis: u64,
    pub detail: String,
    pub hint: Option<String>,
}

impl Step {
    /// The report line, e.g. `✗ login  2003 ms  login rejected for u: check ...`.
    pub fn line(&self) -> String {
        let mark = if self.ok { '✓' } else { '✗' };
        let mut line = format!("{mark} {}  {} ms  {}", self.name, self.millis, self.detail);
        if let Some(hint) = &self.hint {
            line.push_str(": ");
            line.push_str(hint);
        }
        line
    }
}

/// Why a step failed: the cause and, when we know one, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub detail: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl Fail {
    pub fn new(detail: impl Into<String>) -> Fail {
        Fail {
            detail: detail.into(),
            hint: None,
        }
    }
    pub fn hint(detail: impl Into<String>, hint: impl Into<String>) -> Fail {
        Fail {
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// The steps of one check, printed as they finish unless quiet or JSON, or sent to `sink` as
/// they finish (the accounts page shows them live).
#[derive(Debug)]
pub struct Report {
    pub account: String,
    pub steps: Vec<Step>,
    json: bool,
    quiet: bool,
    sink: Option<tokio::sync::mpsc::UnboundedSender<Step>>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    account: &'a str,
    ok: bool,
    steps: &'a [Step],
}

impl Report {
    pub fn new(account: &str, json: bool) -> Report {
        Report {
            account: account.into(),
            steps: Vec::new(),
            json,
            quiet: false,
            sink: None,
        }
    }

    /// Sends each step to `sink` as it finishes, printing nothing.
    pub fn streaming(account: &str, sink: tokio::sync::mpsc::UnboundedSender<Step>) -> Report {
        Report {
            sink: Some(sink),
            ..Report::quiet(account)
        }
    }

    /// Collects steps without printing them (for steps summarised by a caller).
    pub fn quiet(account: &str) -> Report {
        Report {
            quiet: true,
            ..Report::new(account, false)
        }
    }

    /// Records a finished step; returns whether it passed.
    pub fn push(&mut self, step: Step) -> bool {
        if !self.json && !self.quiet {
            println!("{}", step.line());
        }
        if let Some(sink) = &self.sink {
            // A page that went away no longer listens; the check still runs to its end.
            let _ = sink.send(step.clone());
        }
        let ok = step.ok;
        self.steps.push(step);
        ok
    }

    /// Runs one step, timing it. `Ok((value, detail))` passes; `Err(fail)` fails.
    pub async fn run<T>(
        &mut self,
        name: &str,
        fut: impl Future<Output = Result<(T, String), Fail>>,
    ) -> Option<T> {
        let started = Instant::now();
        let result = fut.await;
        let millis = started.elapsed().as_millis() as u64;
        match result {
            Ok((value, detail)) => {
                self.push(Step {
                    name: name.into(),
                    ok: true,
                    millis,
                    detail,
                    hint: None,
                });
                Some(value)
            }
            Err(fail) => {
                self.push(Step {
                    name: name.into(),
                    ok: false,
                    millis,
                    detail: fail.detail,
                    hint: fail.hint,
                });
                None
            }
        }
    }

    /// Records a failure that took no time (e.g. a setting that is missing).
    pub fn fail_now(&mut self, name: &str, fail: Fail) {
        self.push(Step {
            name: name.into(),
            ok: false,
            millis: 0,
            detail: fail.detail,
            hint: fail.hint,
        });
    }

    /// Passed only when at least one step ran and none failed.
    pub fn ok(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&JsonReport {
            account: &self.account,
            ok: self.ok(),
            steps: &self.steps,
        })
        .unwrap_or_default()
    }

    /// Prints the summary (or the JSON) and returns the exit code.
    pub fn finish(self, what: &str) -> ExitCode {
        if self.json {
            println!("{}", self.to_json());
        } else if self.ok() {
            println!(
                "{what} for account {:?}: all {} steps passed",
                self.account,
                self.steps.len()
            );
        } else {
            let failed = self
                .steps
                .iter()
                .find(|s| !s.ok)
                .map(|s| s.name.as_str())
                .unwrap_or("?");
            println!(
                "{what} for account {:?}: FAILED at step \"{failed}\"",
                self.account
            );
        }
        if self.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The account called `name` (active or not), or a usage error naming the known accounts.
pub fn find_account<'a>(config: &'a Config, name: &str) -> Result<&'a AccountConfig, ExitCode> {
    config
        .accounts
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
            eprintln!(
                "no account named {name:?} in the config; known accounts: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
            ExitCode::from(EXIT_USAGE)
        })
}

/// Milliseconds (under 10 s) or seconds with one decimal, for details.
pub fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The timestamp that marks a test mail: RFC 3339 in UTC with milliseconds, so two test mails
/// sent in the same second still differ.
pub fn test_stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_mark_time_detail_and_hint() {
        let ok = Step {
            name: "resolve host".into(),
            ok: true,
            millis: 12,
            detail: "127.0.0.1".into(),
            hint: None,
        };
        assert_eq!(ok.line(), "✓ resolve host  12 ms  127.0.0.1");
        let bad = Step {
            name: "login".into(),
            ok: false,
            millis: 2003,
            detail: "login rejected for u@x".into(),
            hint: Some("check `user` and `password`".into()),
        };
        assert_eq!(
            bad.line(),
            "✗ login  2003 ms  login rejected for u@x: check `user` and `password`"
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut r = Report::quiet("support");
        r.fail_now("send test mail", Fail::hint("no [smtp] section", "add one"));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["account"], "support");
        assert_eq!(v["ok"], false);
        let step = &v["steps"][0];
        assert_eq!(step["step"], "send test mail");
        assert_eq!(step["ok"], false);
        assert_eq!(step["millis"], 0);
        assert_eq!(step["detail"], "no [smtp] section");
        assert_eq!(step["hint"], "add one");
    }

    #[test]
    fn an_empty_report_is_not_ok() {
        assert!(!Report::quiet("a").ok());
    }

    #[tokio::test]
    async fn run_records_time_and_outcome() {
        let mut r = Report::quiet("a");
        let v = r
            .run("one", async { Ok::<_, Fail>((7, "seven".to_string())) })
            .await;
        assert_eq!(v, Some(7));
        let none: Option<()> = r
            .run("two", async { Err(Fail::hint("broken", "fix it")) })
            .await;
        assert!(none.is_none());
        assert_eq!(r.steps.len(), 2);
        assert!(r.steps[0].ok && !r.steps[1].ok);
        assert_eq!(r.steps[1].hint.as_deref(), Some("fix it"));
        assert!(!r.ok());
    }
}
