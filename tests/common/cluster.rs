//! Several instances of one config on one store, for the suites that run them side by side:
//! starting, killing and asking each instance which accounts it holds, and reading the shared
//! store and mailboxes to check that nothing was lost or doubled.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mail2ticket::store::StoreLocation;

use super::http::{free_port, healthz, wait_for};
use super::{Daemon, Lab, TestConfig, TestStore};

/// The instances of one config: the same file for all, except each its own /healthz port.
pub struct Cluster {
    pub cfg: TestConfig,
    pub slots: Vec<Slot>,
}

pub struct Slot {
    pub config: PathBuf,
    pub http: u16,
    pub daemon: Option<Daemon>,
    starts: usize,
}

impl Cluster {
    /// `accounts` as for [`TestConfig::new`]; `tail` is appended (e.g. `[smtp]`).
    pub fn new(instances: usize, accounts: &[String], tail: &str) -> Cluster {
        Cluster::new_on(TestStore::current(), instances, accounts, tail)
    }

    /// As [`Cluster::new`], on the given store whatever the suite runs on.
    pub fn new_on(on: TestStore, instances: usize, accounts: &[String], tail: &str) -> Cluster {
        let cfg = TestConfig::new_on(on, accounts, "");
        let text = std::fs::read_to_string(&cfg.path).unwrap().replacen(
            "[store]\n",
            "[store]\ninstances = \"several\"\n",
            1,
        );
        let slots = (0..instances)
            .map(|i| {
                let http = free_port();
                let config = cfg.dir.path().join(format!("instance-{i}.toml"));
                let own = text.replacen(
                    "[daemon]\n",
                    &format!("[daemon]\nhttp_listen = \"127.0.0.1:{http}\"\n"),
                    1,
                );
                std::fs::write(&config, format!("{own}\n{tail}")).unwrap();
                Slot {
                    config,
                    http,
                    daemon: None,
                    starts: 0,
                }
            })
            .collect();
        Cluster { cfg, slots }
    }

    pub fn start(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.starts += 1;
        let log = self
            .cfg
            .dir
            .path()
            .join(format!("instance-{i}.{}.log", slot.starts));
        slot.daemon = Some(Daemon::start(&slot.config, log));
        let port = slot.http;
        wait_for("the instance's /healthz", Duration::from_secs(30), || {
            healthz(port)
        });
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut d) = self.slots[i].daemon.take() {
            d.kill();
        }
    }

    /// The accounts instance `i` holds, per its /healthz.
    pub fn held(&self, i: usize) -> Vec<String> {
        let Some(health) = healthz(self.slots[i].http) else {
            return Vec::new();
        };
        health["held_accounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The running instance holding `account`, if one does.
    pub fn holder(&self, account: &str) -> Option<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].daemon.is_some())
            .find(|i| self.held(*i).iter().any(|a| a == account))
    }

    /// Points instance `i` (PostgreSQL) at the store through `url`, e.g. a proxy's port,
    /// instead of the URL the others use.
    pub fn store_url(&self, i: usize, url: &str) {
        let shared = self.cfg.dir.path().join("store.url");
        let own = self.cfg.dir.path().join(format!("instance-{i}.url"));
        std::fs::write(&own, url).unwrap();
        std::fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let config = &self.slots[i].config;
        let text = std::fs::read_to_string(config).unwrap();
        let pointed = text.replace(
            &format!("url_file = \"{}\"", shared.display()),
            &format!("url_file = \"{}\"", own.display()),
        );
        assert_ne!(
            text, pointed,
            "instance {i}'s config names the shared URL file"
        );
        std::fs::write(config, pointed).unwrap();
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.cfg.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        all
    }
}

/// Writes `n` customer mails for `to` as files for `scripts/mail-lab seed`; mail `i` comes from
/// `customers[i % len]`.
pub fn backlog(dir: &Path, to: &str, tag: &str, n: usize, customers: &[String]) -> Vec<PathBuf> {
    let date = chrono::Utc::now().to_rfc2822();
    (0..n)
        .map(|i| {
            let path = dir.join(format!("{tag}-{i}.eml"));
            let from = &customers[i % customers.len()];
            let raw = format!(
                "From: Kunde <{from}>\r\nTo: {to}\r\nSubject: {tag} question {i}\r\n\
                 Message-ID: <{tag}-{i}@customer.example.test>\r\nDate: {date}\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\nWhere is order {i}?\r\n"
            );
            std::fs::write(&path, raw).unwrap();
            path
        })
        .collect()
}

/// Rows of `sql` (one integer) in the store, read beside the running daemons (0 before the
/// schema exists).
pub async fn store_count(store: &StoreLocation, sql: &str) -> i64 {
    use sqlx::{ConnectOptions, Connection};
    match store {
        StoreLocation::Sqlite(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .busy_timeout(Duration::from_secs(10));
            let Ok(mut conn) = options.connect().await else {
                return 0;
            };
            sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .unwrap_or(0)
        }
        StoreLocation::Postgres(url) => {
            let Ok(mut conn) = sqlx::postgres::PgConnection::connect(url.expose()).await else {
                return 0;
            };
            sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .unwrap_or(0)
        }
    }
}

/// Every Message-ID in a folder, as many times as it is there.
pub async fn message_ids(lab: &Lab, user: &str, folder: &str) -> Vec<String> {
    lab.messages(user, folder)
        .await
        .iter()
        .map(|raw| mail2ticket::ingest::parse::parse(raw).message_id)
        .collect()
}

/// Waits until every user's INBOX is empty (the instances worked the backlogs off).
pub async fn wait_until_inboxes_empty(lab: &Lab, users: &[String], timeout: Duration) {
    for user in users {
        let deadline = Instant::now() + timeout;
        while lab.count(user, "INBOX").await > 0 {
            assert!(Instant::now() < deadline, "{user}'s INBOX not emptied");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// After the backlogs: one article and one ticket per mail, no mail stored twice, every INBOX
/// empty, and each of `per_user` mails moved to Archive exactly once.
pub async fn assert_each_mail_stored_and_moved_once(
    lab: &Lab,
    store: &StoreLocation,
    users: &[String],
    per_user: usize,
) {
    let total = (users.len() * per_user) as i64;
    assert_eq!(
        store_count(store, "SELECT COUNT(*) FROM articles").await,
        total,
        "one article per mail"
    );
    assert_eq!(
        store_count(store, "SELECT COUNT(DISTINCT message_id) FROM articles").await,
        total,
        "no mail stored twice"
    );
    assert_eq!(
        store_count(store, "SELECT COUNT(*) FROM tickets").await,
        total,
        "one ticket per mail"
    );
    for user in users {
        assert_eq!(lab.count(user, "INBOX").await, 0, "{user}'s INBOX is empty");
        let archived = message_ids(lab, user, "Archive").await;
        let distinct: HashSet<&String> = archived.iter().collect();
        assert_eq!(
            (archived.len(), distinct.len()),
            (per_user, per_user),
            "each of {user}'s mails moved to Archive exactly once"
        );
    }
}

/// Once the SMTP server takes mail: waits until `per_customer` replies to each customer are
/// sent and delivered, then checks that the rate limit held across the instances and that no
/// reply was delivered twice.
pub async fn assert_each_reply_sent_once(
    lab: &Lab,
    store: &StoreLocation,
    customers: &[String],
    per_customer: usize,
) {
    let replies = (customers.len() * per_customer) as i64;
    let deadline = Instant::now() + Duration::from_secs(90);
    while store_count(store, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'").await < replies {
        assert!(
            Instant::now() < deadline,
            "replies not sent; outbox has {} rows",
            store_count(store, "SELECT COUNT(*) FROM outbox").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for c in customers {
        lab.wait_for_count(c, "INBOX", per_customer as u32, Duration::from_secs(30))
            .await;
    }
    // Let a second copy of any reply arrive, if one was sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        store_count(store, "SELECT COUNT(*) FROM outbox").await,
        replies,
        "the rate limit held across instances: {per_customer} replies per customer"
    );
    let mut delivered = Vec::new();
    for c in customers {
        let ids = message_ids(lab, c, "INBOX").await;
        assert_eq!(ids.len(), per_customer, "replies delivered to {c}");
        delivered.extend(ids);
    }
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(distinct.len(), delivered.len(), "no reply delivered twice");
}
