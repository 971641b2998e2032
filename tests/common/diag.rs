//! Helpers for the test-fetch / test-send tests: [smtp] sections for the lab's three SMTP
//! services, and reading the commands' reports.

use std::process::Output;
use std::time::Duration;

use super::{Lab, TestConfig};

/// Which lab SMTP service an [smtp] section points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabSmtp {
    /// Submission: STARTTLS + AUTH required.
    Submission,
    /// SMTPS: implicit TLS + AUTH required.
    Smtps,
    /// Port 25 style: plain, no AUTH, delivers to example.test only.
    Plain,
}

/// An [smtp] section for the lab; `password` is used only when the service needs a login.
pub fn smtp_section(lab: &Lab, kind: LabSmtp, user: &str, password: &str) -> String {
    let (port, encryption, auth) = match kind {
        LabSmtp::Submission => (lab.port("MAIL_LAB_SUBMISSION_PORT"), "starttls", true),
        LabSmtp::Smtps => (lab.port("MAIL_LAB_SMTPS_PORT"), "ssl", true),
        LabSmtp::Plain => (lab.port("MAIL_LAB_SMTP_PORT"), "none", false),
    };
    let mut s = format!(
        "[smtp]\nhost = \"localhost\"\nport = {port}\nencryption = \"{encryption}\"\nca_file = \"{}\"\ntimeout = \"20s\"\n",
        lab.ca()
    );
    if auth {
        s.push_str(&format!("user = \"{user}\"\npassword = \"{password}\"\n"));
    }
    s
}

/// Runs a command with `--json` and parses its report.
pub fn run_json(cfg: &TestConfig, args: &[&str]) -> (Output, serde_json::Value) {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = cfg.run(&all);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} --json did not print JSON ({e}): stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            super::stderr(&out)
        )
    });
    (out, v)
}

/// Step names of a JSON report, in order.
pub fn step_names(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .expect("steps is an array")
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

/// The failing step of a JSON report (the last one; the run stops there).
pub fn failed_step(report: &serde_json::Value) -> &serde_json::Value {
    let steps = report["steps"].as_array().expect("steps is an array");
    let last = steps.last().expect("at least one step");
    assert_eq!(last["ok"], false, "the last step failed: {report:#}");
    assert!(
        steps[..steps.len() - 1].iter().all(|s| s["ok"] == true),
        "only the last step failed: {report:#}"
    );
    last
}

/// "detail: hint" of a step, as the text report prints it.
pub fn cause(step: &serde_json::Value) -> String {
    match step["hint"].as_str() {
        Some(h) => format!("{}: {h}", step["detail"].as_str().unwrap_or("")),
        None => step["detail"].as_str().unwrap_or("").to_string(),
    }
}

/// Panics if a secret shows up anywhere in a command's output.
pub fn assert_no_secret(out: &Output, secret: &str) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(secret),
        "the password appears in the output:\n{all}"
    );
}

/// Waits for a mail in `folder` of `user` that `pred` accepts; returns its raw bytes.
pub async fn wait_for_mail(
    lab: &Lab,
    user: &str,
    folder: &str,
    timeout: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(m) = lab
            .messages(user, folder)
            .await
            .into_iter()
            .find(|m| pred(m))
        {
            return Some(m);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
