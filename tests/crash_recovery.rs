//! Nothing lost, nothing doubled: SIGKILL the daemon at random moments of a 4,000-mail backlog.

mod common;

use common::{imap_account, mails, Lab, TestConfig};

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_backlog_never_loses_or_doubles_a_mail() {
    let lab = Lab::get();
    let user = lab.fresh_user("crash");
    // Eight batches: a kill lands up to 40 ms after a round's first commit, and a fast machine
    // commits two more batches of small mails in that time; with 2,000 mails (four batches) the
    // second round could already finish the backlog, leaving one kill mid-backlog.
    let total = 4000;
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

    let kills = common::daemon::kill_mid_backlog(&cfg, 20, 40, || async {
        lab.count(&user, "INBOX").await as usize
    })
    .await;
    let kills_mid_backlog = kills.iter().filter(|k| k.left > 0).count();
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
