//! Microsoft 365 mailboxes through Microsoft Graph, against the lab's stand-in for Graph
//! (scripts/mail-lab.d/graph-server.py, written from Microsoft's v1.0 reference, its sources
//! noted there) with tokens from the lab's OAuth provider; replies to customers outside the
//! stand-in reach them through the lab's real Postfix and Dovecot.

mod common;

use std::time::Duration;

use common::daemon::wait_until;
use common::graph::{GraphApp, GraphLab};
use common::{mails, Daemon, Lab, TestConfig};

const MOVE: &str = "action = \"move\"\nmove_to = \"Erledigt\"\n";

/// A fresh mailbox of the stand-in with the folder "Erledigt", and an app for it.
async fn mailbox(lab: &Lab, graph: &GraphLab, prefix: &str, roles: &[&str]) -> (String, GraphApp) {
    let mailbox = lab.fresh_user(prefix);
    graph.mailbox(&mailbox, &["Erledigt"]).await;
    let app = GraphApp::register(
        lab,
        &format!("app-{prefix}-{}", rand::random::<u32>()),
        roles,
        300,
    )
    .await;
    (mailbox, app)
}

const ALL_ROLES: &[&str] = &["Mail.ReadWrite", "Mail.Send"];

fn varied(mailbox: &str, n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n).map(|i| mails::varied(i, mailbox, tag).raw).collect()
}

/// A daemon on `cfg` serving /metrics on a free port.
fn start_daemon(cfg: &TestConfig, tag: &str) -> Daemon {
    let http = common::http::free_port();
    let text = std::fs::read_to_string(&cfg.path).unwrap().replacen(
        "[daemon]\n",
        &format!("[daemon]\nhttp_listen = \"127.0.0.1:{http}\"\n"),
        1,
    );
    std::fs::write(&cfg.path, text).unwrap();
    Daemon::start(&cfg.path, cfg.dir.path().join(format!("daemon-{tag}.log"))).with_http(http)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graph_mailbox_becomes_tickets_and_its_mails_move_only_after_commit() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "gmove", ALL_ROLES).await;
    let sent = varied(&mb, 45, "gmove");
    let ids = graph.deliver(&mb, "Inbox", &sent).await;
    let cfg = TestConfig::new(&[app.account(lab, &graph, "support", &mb, MOVE, "")], "");

    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    assert_eq!(cfg.ticket_count().await, 45, "one ticket per mail");
    assert!(
        graph.ids(&mb, "Inbox").await.is_empty(),
        "the inbox is empty"
    );
    let mut moved = graph.ids(&mb, "Erledigt").await;
    let mut expected = ids.clone();
    moved.sort();
    expected.sort();
    assert_eq!(
        moved, expected,
        "the same mails, by their immutable ids, in Erledigt"
    );
    // Byte-exact: the store keeps what Graph's $value gave, which is what was delivered.
    let store = cfg.open_store().await;
    let mut stored = Vec::new();
    for t in cfg.tickets() {
        stored.extend(
            store
                .raw_articles(t["number"].as_str().unwrap())
                .await
                .unwrap(),
        );
    }
    let (mut stored, mut delivered) = (stored, sent.clone());
    stored.sort();
    delivered.sort();
    assert_eq!(stored, delivered, "the raw mails, byte for byte");
    let keys: Vec<(String,)> = sqlx::query_as("SELECT source_key FROM processed")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(keys.iter().all(|(k,)| k.starts_with("graph:")), "{keys:?}");
    assert_eq!(keys.len(), 45);
}

#[tokio::test(flavor = "multi_thread")]
async fn action_delete_removes_the_mails_into_the_recoverable_items() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "gdel", ALL_ROLES).await;
    graph.deliver(&mb, "Inbox", &varied(&mb, 7, "gdel")).await;
    let cfg = TestConfig::new(
        &[app.account(lab, &graph, "support", &mb, "action = \"delete\"", "")],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.ticket_count().await, 7);
    assert!(graph.ids(&mb, "Inbox").await.is_empty());
    assert_eq!(graph.ids(&mb, "recoverableitemsdeletions").await.len(), 7);
    assert!(graph.ids(&mb, "deleteditems").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_between_commit_and_move_loses_and_doubles_nothing() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "gkill", ALL_ROLES).await;
    let total = 1500;
    let set: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            mails::simple(
                &mb,
                &format!("Backlog {i}"),
                &format!("gkill-{i}@customer.example.test"),
                "",
            )
        })
        .collect();
    graph.deliver(&mb, "Inbox", &set).await;
    let cfg = TestConfig::new(&[app.account(lab, &graph, "support", &mb, MOVE, "")], "");

    let kills = common::daemon::kill_mid_backlog(&cfg, 20, 60, || async {
        graph.ids(&mb, "Inbox").await.len()
    })
    .await;
    let kills_mid_backlog = kills.iter().filter(|k| k.left > 0).count();
    // Mails stored and still in the inbox: the kill came between a commit and its move.
    let seen_committed_not_moved = kills
        .iter()
        .filter(|k| k.tickets as usize + k.left > total)
        .count();
    assert!(
        kills_mid_backlog >= 2,
        "only {kills_mid_backlog} kills landed mid-backlog"
    );
    assert!(
        seen_committed_not_moved >= 1,
        "no kill landed between a commit and its move"
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    assert_eq!(
        cfg.ticket_count().await,
        total as i64,
        "one ticket per mail"
    );
    assert!(graph.ids(&mb, "Inbox").await.is_empty());
    assert_eq!(
        graph.ids(&mb, "Erledigt").await.len(),
        total,
        "every mail moved once"
    );
    let store = cfg.open_store().await;
    let (articles, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM articles")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(
        (articles, distinct),
        (total as i64, total as i64),
        "no article twice"
    );
}

/// A customer's mail answered by an automatic reply through Graph: what the test reads of it.
struct Replied {
    mailbox: String,
    cfg: TestConfig,
    /// The reply as the customer's mailbox (a real one of the lab, behind Postfix) got it.
    delivered: String,
    /// Still running: the customer can have the reply before the daemon has recorded it as
    /// sent, and a daemon dropped here is killed inside that window.
    daemon: Daemon,
}

/// A customer (a real mailbox of the lab) writes `<order-4711@customer.example.test>` to a
/// Graph mailbox whose replies go through sendMail (`smtp_extra`: more `[smtp]` keys); waits
/// until the reply has reached the customer.
async fn reply_through_graph(
    lab: &Lab,
    graph: &GraphLab,
    prefix: &str,
    smtp_extra: &str,
) -> Replied {
    let (mb, app) = mailbox(lab, graph, prefix, ALL_ROLES).await;
    let customer = lab.fresh_user(&format!("{prefix}-kunde"));
    let mail = format!(
        "From: Kunde <{customer}>\r\nTo: {mb}\r\nSubject: Wo bleibt meine Bestellung?\r\n\
         Message-ID: <order-4711@customer.example.test>\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nBitte helfen Sie mir.\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    graph.deliver(&mb, "Inbox", &[mail.into_bytes()]).await;
    let cfg = TestConfig::new(
        &[app.account(
            lab,
            graph,
            "support",
            &mb,
            MOVE,
            "auto_reply = true\nsender_name = \"Shop Support\"\n",
        )],
        &app.smtp_section(lab, graph, smtp_extra),
    );
    let mut daemon = start_daemon(&cfg, prefix);
    daemon.wait_healthy(Duration::from_secs(30)).await;
    let arrived = lab
        .wait_for_count(&customer, "INBOX", 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        arrived,
        1,
        "the reply reached the customer; log:\n{}",
        daemon.log_text()
    );
    let delivered = String::from_utf8_lossy(&lab.messages(&customer, "INBOX").await[0]).to_string();
    Replied {
        mailbox: mb,
        cfg,
        delivered,
        daemon,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_goes_out_through_sendmail_as_mime_with_its_headers_intact() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let Replied {
        mailbox: mb,
        cfg,
        delivered,
        daemon,
    } = reply_through_graph(lab, &graph, "greply", "").await;

    let sent = graph.sent(&mb).await;
    assert_eq!(sent.len(), 1, "one sendMail from the account's own mailbox");
    let reply = String::from_utf8_lossy(&sent[0]).to_string();
    for needle in [
        "In-Reply-To: <order-4711@customer.example.test>",
        "Auto-Submitted: auto-replied",
        "Shop Support",
    ] {
        assert!(
            reply.contains(needle),
            "{needle:?} missing in what was sent:\n{reply}"
        );
        assert!(
            delivered.contains(needle),
            "{needle:?} missing in what arrived:\n{delivered}"
        );
    }
    let message_id = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .expect("a Message-ID")
        .to_string();
    assert!(
        delivered.contains(&message_id),
        "the same Message-ID arrived: {message_id}"
    );
    // The customer can have the reply before the daemon has recorded it as sent: wait for that,
    // with the daemon still running.
    let store = cfg.open_store().await;
    let recorded = wait_until(Duration::from_secs(30), || async {
        let outbox = store.outbox_rows().await.unwrap();
        outbox.len() == 1 && outbox[0].status == "sent"
    })
    .await;
    let outbox = store.outbox_rows().await.unwrap();
    assert!(
        recorded,
        "one reply, recorded as sent: {outbox:?}; log:\n{}",
        daemon.log_text()
    );
    // A copy in Sent Items, as save_to_sent_items defaults to.
    assert_eq!(graph.ids(&mb, "sentitems").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_save_to_sent_items_a_reply_leaves_no_copy_in_the_mailbox() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let Replied {
        mailbox: mb,
        delivered,
        ..
    } = reply_through_graph(lab, &graph, "gnosave", "save_to_sent_items = false\n").await;
    assert!(
        delivered.contains("In-Reply-To: <order-4711@customer.example.test>"),
        "{delivered}"
    );
    assert_eq!(graph.sent(&mb).await.len(), 1, "sent once");
    assert!(
        graph.ids(&mb, "sentitems").await.is_empty(),
        "no copy in Sent Items"
    );
    assert!(
        graph.ids(&mb, "drafts").await.is_empty(),
        "no draft left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_honoured_by_every_request_of_the_mailbox() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "gthrottle", ALL_ROLES).await;
    graph.deliver(&mb, "Inbox", &varied(&mb, 60, "gthr")).await;
    // The first answers are 429 with Retry-After: 2: the listing, then items of batches.
    graph.throttle(&mb, 3, 2).await;
    let cfg = TestConfig::new(&[app.account(lab, &graph, "support", &mb, MOVE, "")], "");
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.ticket_count().await, 60);
    assert!(graph.ids(&mb, "Inbox").await.is_empty());

    let log = graph.log(&mb).await;
    let throttled = log["throttled"].as_array().unwrap();
    assert_eq!(throttled.len(), 3, "{log}");
    let requests = log["requests"].as_array().unwrap();
    let at = |entry: &serde_json::Value| entry["at"].as_f64().unwrap();
    for t in throttled {
        let (throttled_at, wait) = (at(t), t["retry_after"].as_f64().unwrap());
        // The throttled request itself is logged once answered, a moment after its 429 was
        // recorded: the first request at or after it with that status.
        let own = requests
            .iter()
            .position(|r| at(r) >= throttled_at && r["status"] == t["status"]);
        let early: Vec<f64> = requests
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != own)
            .map(|(_, r)| at(r))
            .filter(|r| *r >= throttled_at && *r < throttled_at + wait - 0.05)
            .collect();
        assert!(
            early.is_empty(),
            "requests {early:?} came within Retry-After {wait} s of a 429 at {throttled_at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_fetch_names_a_missing_permission_and_a_mailbox_outside_the_apps_scope() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "gperm", &["Mail.Send"]).await;
    let cfg = TestConfig::new(&[app.account(lab, &graph, "support", &mb, MOVE, "")], "");
    let out = cfg.run(&["test-fetch", "support"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("permissions"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("lacks Mail.ReadWrite"), "{text}");
    assert!(
        text.contains("Application permissions: Mail.ReadWrite"),
        "{text}"
    );

    let (other, scoped) = mailbox(lab, &graph, "gscope", ALL_ROLES).await;
    graph.restrict(&scoped.client_id, &[&other]).await;
    let cfg = TestConfig::new(&[scoped.account(lab, &graph, "support", &mb, MOVE, "")], "");
    let out = cfg.run(&["test-fetch", "support"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ApplicationAccessPolicy"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_fetch_sends_a_test_mail_to_the_mailbox_itself_and_sees_it_arrive() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "gtest", ALL_ROLES).await;
    let cfg = TestConfig::new(&[app.account(lab, &graph, "support", &mb, MOVE, "")], "");
    let out = cfg.run(&["test-fetch", "support"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", common::stderr(&out));
    for step in [
        "token",
        "permissions",
        "mailbox",
        "folders",
        "send test mail",
        "test mail arrived",
    ] {
        assert!(text.contains(step), "no step {step:?}:\n{text}");
    }
    // One token for all of it: the token step's, used by every Graph request after it.
    let stats = common::oauth::TokenProvider::of(lab).stats().await;
    assert_eq!(
        stats["grants"][&app.client_id]["client_credentials"], 1,
        "{stats}"
    );
    // The next pass disposes of the test mail without a ticket.
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.ticket_count().await, 0);
    assert!(graph.ids(&mb, "Inbox").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_mailboxes_with_short_lived_tokens_lose_nothing_and_idle_passes_cost_one_request() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let app = GraphApp::register(
        lab,
        &format!("app-twenty-{}", rand::random::<u32>()),
        ALL_ROLES,
        3,
    )
    .await;
    let mut mailboxes = Vec::new();
    let mut accounts = Vec::new();
    for i in 0..20 {
        let mb = lab.fresh_user(&format!("g20-{i}"));
        graph.mailbox(&mb, &["Erledigt"]).await;
        graph
            .deliver(&mb, "Inbox", &varied(&mb, 3, &format!("a{i}")))
            .await;
        accounts.push(app.account(lab, &graph, &format!("shop{i}"), &mb, MOVE, ""));
        mailboxes.push(mb);
    }
    let cfg = TestConfig::new(&accounts, "");
    let mut daemon = start_daemon(&cfg, "twenty");
    daemon.wait_healthy(Duration::from_secs(60)).await;
    let all = wait_until(Duration::from_secs(60), || async {
        cfg.ticket_count().await == 60
    })
    .await;
    assert!(all, "60 tickets; log:\n{}", daemon.log_text());

    // An idle pass: one delta request per mailbox.
    let names: Vec<String> = (0..20).map(|i| format!("shop{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let first = &mailboxes[0];
    let before = graph.log(first).await["requests"].as_array().unwrap().len();
    let passes_before = daemon.passes("shop0");
    daemon.one_more_pass(&["shop0"]).await;
    let after = graph.log(first).await["requests"].as_array().unwrap().len();
    let passes = daemon.passes("shop0") - passes_before;
    assert!(
        (after - before) as u64 <= passes + 1,
        "{} requests for {passes} idle passes",
        after - before
    );

    // Tokens live 3 s: mails after several lifetimes still come in, in every mailbox.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, mb) in mailboxes.iter().enumerate() {
        graph
            .deliver(mb, "Inbox", &varied(mb, 2, &format!("b{i}")))
            .await;
    }
    let all = wait_until(Duration::from_secs(60), || async {
        cfg.ticket_count().await == 100
    })
    .await;
    assert!(all, "100 tickets; log:\n{}", daemon.log_text());
    daemon.one_more_pass(&name_refs).await;
    for mb in &mailboxes {
        assert!(graph.ids(mb, "Inbox").await.is_empty());
        assert_eq!(graph.ids(mb, "Erledigt").await.len(), 5);
    }
    let stats = common::oauth::TokenProvider::of(lab).stats().await;
    let grants = stats["grants"][&app.client_id]["client_credentials"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        grants >= 20,
        "tokens renewed as they expired: {grants} grants"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_too_large_to_fetch_opens_a_ticket_of_its_header_and_stays() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "glarge", ALL_ROLES).await;
    let big = mails::with_photo(
        "Kunde <kunde@example.test>",
        &mb,
        "Fotos vom Schaden",
        "big-1@customer.example.test",
        300_000,
    );
    let small = mails::simple(&mb, "Kurze Frage", "small-1@customer.example.test", "");
    graph.deliver(&mb, "Inbox", &[big, small]).await;
    let cfg = TestConfig::new(
        &[app.account(
            lab,
            &graph,
            "support",
            &mb,
            MOVE,
            "max_message_size = \"100KB\"\n",
        )],
        "",
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let mut subjects = cfg.ticket_subjects();
    subjects.sort();
    assert_eq!(
        subjects,
        ["Fotos vom Schaden", "Kurze Frage"],
        "a ticket each"
    );
    assert_eq!(
        graph.ids(&mb, "Inbox").await.len(),
        1,
        "the large mail stays"
    );
    assert_eq!(
        graph.ids(&mb, "Erledigt").await.len(),
        1,
        "the small one moved"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_mail_is_fetched_on_its_own_byte_for_byte() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let (mb, app) = mailbox(lab, &graph, "gbig", ALL_ROLES).await;
    let big = mails::with_photo(
        "Kunde <kunde@example.test>",
        &mb,
        "Fotos vom Schaden",
        "big-2@customer.example.test",
        2_500_000,
    );
    let mut set = varied(&mb, 3, "gbig");
    set.push(big.clone());
    graph.deliver(&mb, "Inbox", &set).await;
    let cfg = TestConfig::new(&[app.account(lab, &graph, "support", &mb, MOVE, "")], "");
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.ticket_count().await, 4);
    let store = cfg.open_store().await;
    let number = cfg
        .tickets()
        .into_iter()
        .find(|t| t["subject"] == "Fotos vom Schaden")
        .expect("the big mail's ticket")["number"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(store.raw_articles(&number).await.unwrap(), vec![big]);
    let log = graph.log(&mb).await;
    let alone = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["in_batch"] == false && r["path"].as_str().unwrap_or("").ends_with("/$value"))
        .count();
    assert_eq!(alone, 1, "one $value outside a batch: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn folders_are_display_name_paths_also_under_a_german_inbox() {
    let lab = Lab::get();
    let graph = GraphLab::of(lab);
    let mb = lab.fresh_user("gpath");
    graph
        .admin_mailbox(
            &mb,
            "Posteingang",
            &["Posteingang/Shop", "Erledigt/Geprüft"],
        )
        .await;
    let app = GraphApp::register(
        lab,
        &format!("app-gpath-{}", rand::random::<u32>()),
        ALL_ROLES,
        300,
    )
    .await;
    graph
        .deliver(&mb, "Posteingang/Shop", &varied(&mb, 4, "gpath"))
        .await;
    let account = app
        .account(
            lab,
            &graph,
            "support",
            &mb,
            "action = \"move\"\nmove_to = \"Erledigt/Geprüft\"",
            "",
        )
        .replace("folder = \"Inbox\"", "folder = \"Posteingang/Shop\"");
    let cfg = TestConfig::new(&[account], "");
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.ticket_count().await, 4);
    assert!(graph.ids(&mb, "Posteingang/Shop").await.is_empty());
    assert_eq!(graph.ids(&mb, "Erledigt/Geprüft").await.len(), 4);

    // A folder that does not exist is named with the ones that do.
    let wrong = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace("Posteingang/Shop", "Posteingang/Shopp");
    std::fs::write(&cfg.path, wrong).unwrap();
    let out = cfg.run(&["test-fetch", "support"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success());
    assert!(text.contains("\"Shopp\" is not among \"Shop\""), "{text}");
}

#[test]
fn check_config_names_graph_rules_by_key_and_line() {
    let account = "name = \"support\"\nemail = \"support@shop.example\"\nprotocol = \"graph\"\n\
                   user = \"support@shop.example\"\nfolder = \"Posteingang//Shop\"\n\
                   ticket_type = \"q\"\nticket_status = \"o\"\naction = \"move\"\nmove_to = \"Erledigt\"\n";
    let scoped = "name = \"returns\"\nemail = \"returns@shop.example\"\nprotocol = \"graph\"\n\
                  user = \"returns@shop.example\"\nticket_type = \"q\"\nticket_status = \"o\"\n\
                  action = \"delete\"\nauth = \"oauth2\"\n[account.oauth2]\nprovider = \"microsoft\"\n\
                  tenant = \"contoso.onmicrosoft.com\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\n\
                  client_secret = \"TopSecret5\"\nscope = \"https://outlook.office365.com/.default\"\n";
    let cfg = TestConfig::new(&[account.to_string(), scoped.to_string()], "");
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("account[1].auth: protocol = \"graph\" signs in as an app"),
        "{err}"
    );
    assert!(
        err.contains("account[1].folder: \"Posteingang//Shop\" has an empty folder name"),
        "{err}"
    );
    assert!(
        err.contains("account[2].oauth2.scope: \"https://outlook.office365.com/.default\" names no Microsoft Graph scope"),
        "{err}"
    );
    assert!(!err.contains("TopSecret5"), "{err}");
}
