//! A network partition between one instance and PostgreSQL: the path goes silent (packets
//! dropped, no connection closed, so the server cannot notice either). The holder cut off must
//! stop disposing of mail before its lease can pass to another instance, the other one takes
//! the account over, and when the path is back the first one stands by. Nothing is lost or
//! doubled: no ticket, no move, no reply. Always on the lab's PostgreSQL (TLS, verify-full,
//! through a proxy that passes it untouched), whatever store the suite runs on.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    assert_each_mail_stored_and_moved_once, assert_each_reply_sent_once, backlog, store_count,
    wait_until_inboxes_empty, Cluster,
};
use common::daemon::wait_until;
use common::http::{healthz, wait_for};
use common::proxy::stallable;
use common::smtp::SwitchProxy;
use common::{imap_account, Lab, TestStore};
use mail2ticket::store::StoreLocation;

const MAILS: usize = 3000;
const CUSTOMERS: usize = 5;
const REPLIES_PER_CUSTOMER: usize = 3;
/// The promise: an account whose holder is cut off is polled again within this.
const TAKEOVER: Duration = Duration::from_secs(30);

/// `url` with its port replaced by `port` (host and TLS parameters kept).
fn via_port(url: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_port(Some(port)).unwrap();
    url.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_cut_off_from_the_database_stops_before_the_other_takes_over() {
    let lab = Lab::get();
    let user = lab.fresh_user("partition");
    let customers: Vec<String> = (0..CUSTOMERS)
        .map(|_| lab.fresh_user("partition-customer"))
        .collect();
    let work = tempfile::tempdir().unwrap();
    lab.seed(
        &user,
        "INBOX",
        &backlog(work.path(), &user, "p", MAILS, &customers),
    );
    // Replies queue while the SMTP server is down and go out once the partition is over.
    let smtp = SwitchProxy::start(lab.port("MAIL_LAB_SMTP_PORT"), false).await;
    let accounts = [imap_account(
        lab,
        "shop",
        &user,
        "none",
        &format!(
            "action = \"move\"\nmove_to = \"Archive\"\nauto_reply = true\n\
             auto_reply_limit = {REPLIES_PER_CUSTOMER}\n"
        ),
    )];
    let smtp_section = format!(
        "[smtp]\nhost = \"localhost\"\nport = {}\nencryption = \"none\"\ntimeout = \"2s\"\n\
         message_id_domain = \"tickets.example.test\"\n",
        smtp.port
    );
    let mut cluster = Cluster::new_on(TestStore::Postgres, 2, &accounts, &smtp_section);
    let store = cluster.cfg.location.clone();
    let StoreLocation::Postgres(url) = &store else {
        unreachable!("the cluster runs on PostgreSQL")
    };
    let pg_port = url::Url::parse(url.expose()).unwrap().port().unwrap();
    let path = stallable(pg_port).await;
    cluster.store_url(0, &via_port(url.expose(), path.port));

    cluster.start(0);
    let holds = |cluster: &Cluster, i: usize| cluster.held(i).iter().any(|a| a == "shop");
    wait_for("instance 0 to hold the account", TAKEOVER, || {
        holds(&cluster, 0).then_some(())
    });
    cluster.start(1);
    let articles = || store_count(&store, "SELECT COUNT(*) FROM articles");
    let before = articles().await;
    let started = wait_until(TAKEOVER, || async { articles().await > before }).await;
    assert!(started, "instance 0 stored nothing within {TAKEOVER:?}");

    path.stall();
    let cut_at = Instant::now();
    let at_cut = articles().await;
    let left = lab.count(&user, "INBOX").await;
    assert!(left > 0, "cut off mid-backlog");
    // Watch both instances: the cut-off holder must have let go before the other takes over.
    let mut let_go = None;
    let taken_over = loop {
        if let_go.is_none() && !holds(&cluster, 0) {
            let_go = Some(cut_at.elapsed());
        }
        if holds(&cluster, 1) {
            break cut_at.elapsed();
        }
        assert!(
            cut_at.elapsed() < TAKEOVER,
            "instance 1 did not take the account over within {TAKEOVER:?} of the cut"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let let_go = let_go.expect("the cut-off holder let the account go before the takeover");
    eprintln!(
        "partition: instance 0 let go {:.1} s after the cut, instance 1 took over after {:.1} s \
         ({left} mails left)",
        let_go.as_secs_f64(),
        taken_over.as_secs_f64()
    );
    assert!(let_go < taken_over);

    // While cut off, the instance says so: it stands by and cannot reach its store.
    let health = wait_for(
        "instance 0 to report its store unreachable",
        TAKEOVER,
        || {
            let h = healthz(cluster.slots[0].http)?;
            (h["store"]["state"] == "unreachable").then_some(h)
        },
    );
    assert_eq!(health["accounts"]["shop"]["state"], "standby", "{health}");
    assert_eq!(health["held_accounts"], serde_json::json!([]), "{health}");
    assert_eq!(health["status"], "unhealthy", "{health}");

    // The other instance works the backlog on (it may have finished it already); then the path
    // comes back.
    let worked_on = wait_until(TAKEOVER, || async {
        articles().await > at_cut || lab.count(&user, "INBOX").await == 0
    })
    .await;
    assert!(
        worked_on,
        "instance 1 stored nothing within {TAKEOVER:?} of taking over"
    );
    path.resume();
    let health = wait_for("instance 0 to reach its store again", TAKEOVER, || {
        let h = healthz(cluster.slots[0].http)?;
        (h["store"]["state"] == "ok").then_some(h)
    });
    assert_eq!(health["accounts"]["shop"]["state"], "standby", "{health}");
    assert_eq!(health["held_accounts"], serde_json::json!([]), "{health}");
    assert!(holds(&cluster, 1), "the account stays with instance 1");

    wait_until_inboxes_empty(lab, std::slice::from_ref(&user), Duration::from_secs(120)).await;
    smtp.set_up(true);
    assert_each_reply_sent_once(lab, &store, &customers, REPLIES_PER_CUSTOMER).await;
    let logs = cluster.logs();
    cluster.kill(0);
    cluster.kill(1);
    assert_each_mail_stored_and_moved_once(lab, &store, &[user], MAILS).await;
    assert!(
        logs.contains("lease lost: stopped touching the mailbox"),
        "the cut-off holder said it stopped"
    );
    assert!(
        !logs.contains(lab.var("MAIL_LAB_PG_PASSWORD")),
        "the database password never reaches the log"
    );
}
