//! A full disk under the ticket store, for real: a 3 MB tmpfs (needs root, as CI runs). The pass
//! stops with one clear error, `run --once` exits non-zero, no mail is blamed (quarantined) or
//! lost, /healthz and /metrics name the state, the owner's webhook hears of it (sent straight
//! away: the store cannot queue it); once the file system grows, every mail arrives exactly once
//! and the webhook hears "resolved".

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http::{free_port, get, healthz, wait_for};
use common::webhook::WebhookReceiver;
use common::{imap_account, mail2ticket_cmd, ticket_count, Daemon, Lab};

const MAILS: usize = 600;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Rows in a table, read without writing (the disk is full).
async fn rows(store: &Path, table: &str) -> i64 {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(store)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// ~20 KB mails, each with its own subject, as files for `scripts/mail-lab seed`.
fn mail_files(dir: &Path, user: &str) -> Vec<PathBuf> {
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(350);
    (0..MAILS)
        .map(|i| {
            let path = dir.join(format!("mail-{i}.eml"));
            let raw = common::mails::simple(
                user,
                &format!("full disk {i}"),
                &format!("full-disk-{i}@example.test"),
                "",
            );
            let mut raw = String::from_utf8(raw).unwrap();
            raw.push_str(&filler);
            raw.push_str("\r\n");
            std::fs::write(&path, raw).unwrap();
            path
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_pass_blames_no_mail_and_every_mail_arrives_once_after_it_grows() {
    let lab = Lab::get();
    let user = lab.fresh_user("full-disk");
    let work = tempfile::tempdir().unwrap();
    lab.seed(&user, "INBOX", &mail_files(work.path(), &user));
    assert_eq!(lab.count(&user, "INBOX").await, MAILS as u32);

    let disk = Tmpfs::mount(&work.path().join("store"), "3m");
    let store = disk.0.join("tickets.db");
    let port = free_port();
    let webhook = WebhookReceiver::start();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n\n[daemon]\npoll_interval = \"1s\"\nnetwork_timeout = \"20s\"\n\
             http_listen = \"127.0.0.1:{port}\"\n\n[alerts]\nwebhook = \"{}\"\nafter = \"2s\"\n\n\
             [[account]]\n{}",
            store.display(),
            webhook.url(),
            imap_account(lab, "acct", &user, "none", "action = \"delete\"\n")
        ),
    )
    .unwrap();

    // `run --once`: some mails fit, then the disk is full.
    let out = mail2ticket_cmd(&config)
        .args(["run", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "run --once must fail on a full disk:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "ticket store: disk full at {}; mails stay on the server until there is space",
            store.display()
        )),
        "one clear error line names the disk and the path:\n{stderr}"
    );
    assert!(
        !stderr.contains("transaction depth"),
        "a connection was reused inside its failed transaction:\n{stderr}"
    );
    let stored = ticket_count(&store).await;
    // A batch is one transaction: one that does not fit stores nothing, batches before it stay.
    assert!(
        (stored as usize) < MAILS,
        "{stored} tickets: the disk should have filled up"
    );
    assert_eq!(
        lab.count(&user, "INBOX").await as i64,
        MAILS as i64 - stored,
        "exactly the stored mails left the server"
    );
    assert_eq!(
        rows(&store, "failures").await,
        0,
        "a full disk is no mail's fault: nothing counts toward quarantine"
    );

    // The daemon on the same full disk: /healthz and /metrics say so.
    let daemon = Daemon::start(&config, work.path().join("daemon.log"));
    let health = wait_for(
        "/healthz to report the full disk",
        Duration::from_secs(30),
        || healthz(port).filter(|h| h["store"]["state"] == "disk_full"),
    );
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert!(
        health["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("mails stay on the server until there is space")),
        "{health}"
    );
    let (_, metrics) = get(port, "/metrics").expect("/metrics answers");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mail2ticket_store_errors_total{kind=\"disk_full\"}")),
        "store errors are counted by kind:\n{metrics}"
    );

    let alert = wait_for(
        "the webhook to hear of the full disk",
        Duration::from_secs(60),
        || webhook.received().into_iter().next(),
    );
    assert_eq!(alert["kind"], "store_failing", "{alert}");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("disk full")),
        "{alert}"
    );

    // Space again: every mail arrives, once.
    disk.grow("200m");
    wait_for(
        "every mail to become a ticket",
        Duration::from_secs(90),
        || {
            let n = futures::executor::block_on(ticket_count(&store));
            (n >= MAILS as i64).then_some(())
        },
    );
    wait_for(
        "/healthz to report the store ok",
        Duration::from_secs(30),
        || healthz(port).filter(|h| h["store"]["state"] == "ok"),
    );
    wait_for("the INBOX to be emptied", Duration::from_secs(30), || {
        let n = futures::executor::block_on(lab.count(&user, "INBOX"));
        (n == 0).then_some(())
    });
    wait_for(
        "the webhook to hear it resolved",
        Duration::from_secs(30),
        || (webhook.events().len() >= 2).then_some(()),
    );
    assert_eq!(webhook.events(), ["alert", "resolved"]);
    drop(daemon);
    let out = mail2ticket_cmd(&config)
        .args(["tickets", "list", "--json", "--limit", "1000000"])
        .output()
        .unwrap();
    let tickets: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut subjects: Vec<&str> = tickets
        .iter()
        .map(|t| t["subject"].as_str().unwrap())
        .collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(tickets.len(), MAILS, "one ticket per mail");
    assert_eq!(subjects.len(), MAILS, "no mail twice, none missing");
    assert_eq!(rows(&store, "failures").await, 0, "no mail was blamed");
}
