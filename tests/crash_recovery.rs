//! Nothing lost, nothing doubled: SIGKILL the daemon at random moments of a 2,000-mail backlog.

mod common;

use std::time::Duration;

use common::{imap_account, mails, Lab, TestConfig};
use rand::Rng;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_backlog_never_loses_or_doubles_a_mail() {
    let lab = Lab::get();
    let user = lab.fresh_user("crash");
    let total = 2000;
    let set: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            mails::simple(
                &user,
                &format!("Backlog {i}"),
                &format!("backlog-{i}@customer.example.test"),
                "",
            )
        })
        .collect();
    lab.append(&user, "INBOX", &set).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"move\"\nmove_to = \"Archive\"\n",
        )],
        "",
    );

    // Each run is killed just after it made progress (a batch committed), plus a small random
    // delay, so the kills land mid-backlog whatever the machine's speed: between a commit and
    // its move, or while the next batch is fetched or stored.
    let mut kills_mid_backlog = 0;
    for _ in 0..20 {
        let before = tickets_stored(&cfg).await;
        let mut daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tickets_stored(&cfg).await == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let extra = rand::thread_rng().gen_range(0..40);
        tokio::time::sleep(Duration::from_millis(extra)).await;
        daemon.kill();
        let left = lab.count(&user, "INBOX").await;
        let tickets = tickets_stored(&cfg).await;
        eprintln!(
            "SIGKILL {extra} ms after progress: {tickets} tickets, {left} mails left in INBOX"
        );
        if left == 0 {
            break;
        }
        kills_mid_backlog += 1;
    }
    assert!(
        kills_mid_backlog >= 2,
        "only {kills_mid_backlog} kills landed mid-backlog"
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    let store = cfg.open_store().await;
    let (articles, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM articles")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(
        store.count_tickets().await.unwrap(),
        total as i64,
        "one ticket per mail"
    );
    assert_eq!(
        (articles, distinct),
        (total as i64, total as i64),
        "no Message-ID twice"
    );
    assert_eq!(lab.count(&user, "INBOX").await, 0, "INBOX empty");
    assert_eq!(
        lab.count(&user, "Archive").await,
        total as u32,
        "each mail moved exactly once"
    );
}

async fn tickets_stored(cfg: &TestConfig) -> i64 {
    cfg.ticket_count().await
}
