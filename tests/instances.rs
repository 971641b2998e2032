//! Several instances on one store (`[store] instances = "several"`): every instance runs the
//! whole config, each account is polled by the holder of its lease, a dead or frozen holder is
//! replaced within 30 s, and nothing is lost or doubled: no ticket, no move, no reply.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::http::{free_port, healthz, wait_for};
use common::smtp::SwitchProxy;
use common::{imap_account, Daemon, Lab, TestConfig};
use mail2ticket::store::StoreLocation;

/// The instances of one config: the same file for all, except each its own /healthz port.
struct Cluster {
    cfg: TestConfig,
    slots: Vec<Slot>,
}

struct Slot {
    config: PathBuf,
    http: u16,
    daemon: Option<Daemon>,
    starts: usize,
}

impl Cluster {
    /// `accounts` as for [`TestConfig::new`]; `tail` is appended (e.g. `[smtp]`).
    fn new(instances: usize, accounts: &[String], tail: &str) -> Cluster {
        let cfg = TestConfig::new(accounts, "");
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

    fn start(&mut self, i: usize) {
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

    fn kill(&mut self, i: usize) {
        if let Some(mut d) = self.slots[i].daemon.take() {
            d.kill();
        }
    }

    /// The accounts instance `i` holds, per its /healthz.
    fn held(&self, i: usize) -> Vec<String> {
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
    fn holder(&self, account: &str) -> Option<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].daemon.is_some())
            .find(|i| self.held(*i).iter().any(|a| a == account))
    }

    fn logs(&self) -> String {
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
fn backlog(dir: &Path, to: &str, tag: &str, n: usize, customers: &[String]) -> Vec<PathBuf> {
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
async fn store_count(store: &StoreLocation, sql: &str) -> i64 {
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
async fn message_ids(lab: &Lab, user: &str, folder: &str) -> Vec<String> {
    lab.messages(user, folder)
        .await
        .iter()
        .map(|raw| mail2ticket::ingest::parse::parse(raw).message_id)
        .collect()
}

const MAILS_PER_ACCOUNT: usize = 3000;
const CUSTOMERS: usize = 10;
const REPLIES_PER_CUSTOMER: usize = 3;
/// The promise: a dead holder's account is polled again within this.
const TAKEOVER: Duration = Duration::from_secs(30);

/// Two accounts × 3,000 mails on `instances` instances; the holders are SIGKILLed in turn
/// mid-backlog (and restarted as new instances). Replies queue while the SMTP server is down and
/// are sent by all instances at once when it is back.
async fn instances_killed_in_turn_lose_and_double_nothing(instances: usize) {
    let lab = Lab::get();
    let users = [lab.fresh_user("lease-a"), lab.fresh_user("lease-b")];
    let customers: Vec<String> = (0..CUSTOMERS)
        .map(|_| lab.fresh_user("lease-customer"))
        .collect();
    let work = tempfile::tempdir().unwrap();
    for (user, tag) in users.iter().zip(["a", "b"]) {
        let files = backlog(work.path(), user, tag, MAILS_PER_ACCOUNT, &customers);
        lab.seed(user, "INBOX", &files);
    }
    let smtp = SwitchProxy::start(lab.port("MAIL_LAB_SMTP_PORT"), false).await;
    let account_extra = format!(
        "action = \"move\"\nmove_to = \"Archive\"\nauto_reply = true\nauto_reply_limit = {REPLIES_PER_CUSTOMER}\n"
    );
    let accounts = [
        imap_account(lab, "shop-a", &users[0], "none", &account_extra),
        imap_account(lab, "shop-b", &users[1], "none", &account_extra),
    ];
    let smtp_section = format!(
        "[smtp]\nhost = \"localhost\"\nport = {}\nencryption = \"none\"\ntimeout = \"2s\"\n\
         message_id_domain = \"tickets.example.test\"\n",
        smtp.port
    );
    let mut cluster = Cluster::new(instances, &accounts, &smtp_section);
    for i in 0..instances {
        cluster.start(i);
    }
    let store = cluster.cfg.location.clone();
    let articles = || store_count(&store, "SELECT COUNT(*) FROM articles");

    // Kill the instances in turn, each right after progress, while both backlogs have mail left.
    let mut kills = 0;
    let mut victims = HashSet::new();
    for round in 0..=instances {
        let before = articles().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while articles().await == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = lab.count(&users[0], "INBOX").await + lab.count(&users[1], "INBOX").await;
        if left == 0 {
            break;
        }
        // Preferably the instance whose turn it is, else whichever holds an account.
        let holders: BTreeMap<usize, Vec<String>> = (0..instances)
            .map(|i| (i, cluster.held(i)))
            .filter(|(_, held)| !held.is_empty())
            .collect();
        let Some(victim) = holders
            .keys()
            .copied()
            .find(|i| *i == round % instances)
            .or_else(|| holders.keys().copied().next())
        else {
            continue;
        };
        let held = holders[&victim].clone();
        cluster.kill(victim);
        let killed_at = Instant::now();
        kills += 1;
        victims.insert(victim);
        eprintln!("round {round}: SIGKILL instance {victim} holding {held:?}, {left} mails left");
        for account in &held {
            let took_over = wait_for(
                &format!("another instance to take {account} over"),
                TAKEOVER,
                || cluster.holder(account),
            );
            eprintln!(
                "failover: {account} polled by instance {took_over} {:.1} s after the SIGKILL",
                killed_at.elapsed().as_secs_f64()
            );
        }
        cluster.start(victim);
    }
    assert!(kills >= instances, "only {kills} kills landed mid-backlog");
    assert!(
        victims.len() >= 2,
        "the kills hit more than one instance: {victims:?}"
    );

    for user in &users {
        let deadline = Instant::now() + Duration::from_secs(120);
        while lab.count(user, "INBOX").await > 0 {
            assert!(Instant::now() < deadline, "{user}'s INBOX not emptied");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The SMTP server is back; every instance starts afresh and sends from the shared outbox.
    smtp.set_up(true);
    for i in 0..instances {
        cluster.kill(i);
        cluster.start(i);
    }
    let replies = (CUSTOMERS * REPLIES_PER_CUSTOMER) as i64;
    let deadline = Instant::now() + Duration::from_secs(90);
    while store_count(&store, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'").await < replies {
        assert!(
            Instant::now() < deadline,
            "replies not sent; outbox has {} rows",
            store_count(&store, "SELECT COUNT(*) FROM outbox").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for c in &customers {
        lab.wait_for_count(
            c,
            "INBOX",
            REPLIES_PER_CUSTOMER as u32,
            Duration::from_secs(30),
        )
        .await;
    }
    // Let a second copy of any reply arrive, if one was sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..instances {
        cluster.kill(i);
    }

    let total = 2 * MAILS_PER_ACCOUNT as i64;
    assert_eq!(articles().await, total, "one article per mail");
    assert_eq!(
        store_count(&store, "SELECT COUNT(DISTINCT message_id) FROM articles").await,
        total,
        "no mail stored twice"
    );
    assert_eq!(
        store_count(&store, "SELECT COUNT(*) FROM tickets").await,
        total,
        "one ticket per mail"
    );
    for user in &users {
        assert_eq!(lab.count(user, "INBOX").await, 0, "{user}'s INBOX is empty");
        let archived = message_ids(lab, user, "Archive").await;
        let distinct: HashSet<&String> = archived.iter().collect();
        assert_eq!(
            (archived.len(), distinct.len()),
            (MAILS_PER_ACCOUNT, MAILS_PER_ACCOUNT),
            "each of {user}'s mails moved to Archive exactly once"
        );
    }
    assert_eq!(
        store_count(&store, "SELECT COUNT(*) FROM outbox").await,
        replies,
        "the rate limit held across instances: {REPLIES_PER_CUSTOMER} replies per customer"
    );
    let mut delivered = Vec::new();
    for c in &customers {
        let ids = message_ids(lab, c, "INBOX").await;
        assert_eq!(ids.len(), REPLIES_PER_CUSTOMER, "replies delivered to {c}");
        delivered.extend(ids);
    }
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(distinct.len(), delivered.len(), "no reply delivered twice");
    let logs = cluster.logs();
    assert!(
        logs.contains("lease acquired"),
        "the instances polled under leases"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_killed_in_turn_lose_and_double_nothing() {
    instances_killed_in_turn_lose_and_double_nothing(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_killed_in_turn_lose_and_double_nothing() {
    instances_killed_in_turn_lose_and_double_nothing(3).await;
}

fn signal(daemon: &Daemon, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig}");
}

/// SIGSTOPs `daemon` at a moment it holds no write transaction on the SQLite file. (A process
/// frozen inside one blocks every writer of the file until it runs again: SQLite's limit, not
/// the lease's, see docs/operations.md.)
async fn freeze_outside_a_write(daemon: &Daemon, store: &Path) {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(store)
        .busy_timeout(Duration::ZERO)
        .connect()
        .await
        .unwrap();
    for _ in 0..200 {
        signal(daemon, "STOP");
        // Give the signal a moment to land, then see whether the write lock is free.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .is_ok()
        {
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            conn.close().await.ok();
            return;
        }
        signal(daemon, "CONT");
        let pause = rand::random::<u64>() % 50;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    panic!("the holder never paused outside a write transaction");
}

/// A holder that freezes (a stopped VM, a process swapped out) past its lease: the other
/// instance takes over, and the frozen one, once it runs again, notices before it touches the
/// mailbox or the store, and stands by.
#[tokio::test(flavor = "multi_thread")]
async fn a_holder_frozen_past_its_lease_stops_and_the_other_takes_over() {
    let lab = Lab::get();
    let user = lab.fresh_user("lease-frozen");
    let work = tempfile::tempdir().unwrap();
    let customers = [lab.fresh_user("lease-frozen-customer")];
    lab.seed(
        &user,
        "INBOX",
        &backlog(work.path(), &user, "f", MAILS_PER_ACCOUNT, &customers),
    );
    let accounts = [imap_account(
        lab,
        "shop",
        &user,
        "none",
        "action = \"move\"\nmove_to = \"Archive\"\n",
    )];
    let mut cluster = Cluster::new(2, &accounts, "");
    cluster.start(0);
    wait_for("instance 0 to hold the account", TAKEOVER, || {
        cluster.held(0).contains(&"shop".to_string()).then_some(())
    });
    cluster.start(1);
    let store = cluster.cfg.location.clone();
    let before = store_count(&store, "SELECT COUNT(*) FROM articles").await;
    while store_count(&store, "SELECT COUNT(*) FROM articles").await == before {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match &store {
        StoreLocation::Sqlite(path) => {
            freeze_outside_a_write(cluster.slots[0].daemon.as_ref().unwrap(), path).await
        }
        // The server ends a frozen holder's transaction after 10 s (see store::open_url).
        StoreLocation::Postgres(_) => signal(cluster.slots[0].daemon.as_ref().unwrap(), "STOP"),
    }
    let frozen_at = Instant::now();
    let left = lab.count(&user, "INBOX").await;
    assert!(left > 0, "frozen mid-backlog");
    wait_for("instance 1 to take the account over", TAKEOVER, || {
        cluster.held(1).contains(&"shop".to_string()).then_some(())
    });
    eprintln!(
        "failover from a frozen holder: {:.1} s, {left} mails left",
        frozen_at.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while lab.count(&user, "INBOX").await > 0 {
        assert!(Instant::now() < deadline, "INBOX not emptied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The frozen holder wakes up with its pass in flight.
    signal(cluster.slots[0].daemon.as_ref().unwrap(), "CONT");
    let health = wait_for("instance 0 to stand by", Duration::from_secs(30), || {
        let h = healthz(cluster.slots[0].http)?;
        (h["accounts"]["shop"]["state"] == "standby").then_some(h)
    });
    assert_eq!(health["held_accounts"], serde_json::json!([]));
    assert_eq!(health["status"], "ok", "standing by is healthy: {health}");
    let logs = cluster.logs();
    assert!(
        logs.contains("lease lost: stopped touching the mailbox"),
        "the woken holder said it stopped"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill(0);
    cluster.kill(1);

    let total = MAILS_PER_ACCOUNT as i64;
    assert_eq!(
        store_count(&store, "SELECT COUNT(*) FROM articles").await,
        total
    );
    assert_eq!(
        store_count(&store, "SELECT COUNT(DISTINCT message_id) FROM articles").await,
        total
    );
    let archived = message_ids(lab, &user, "Archive").await;
    let distinct: HashSet<&String> = archived.iter().collect();
    assert_eq!(
        (
            archived.len(),
            distinct.len(),
            lab.count(&user, "INBOX").await
        ),
        (MAILS_PER_ACCOUNT, MAILS_PER_ACCOUNT, 0),
        "each mail moved once"
    );
}
