//! Operations, black-box: the real binary against the mail lab. Graceful SIGTERM during a
//! backlog and with a hanging server, SIGHUP reloads (broken config rejected, new account
//! started), /healthz and `mail2ticket healthcheck`, /metrics parsed as Prometheus text and
//! compared with the store, a stopped daemon's store whole in its one file, and the systemd unit
//! checked by `systemd-analyze verify`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::wait_until;
use common::http::free_port;
use common::{imap_account, Daemon, Lab};

/// A config in a temp dir that a test can rewrite (for SIGHUP).
struct Setup {
    dir: tempfile::TempDir,
    path: PathBuf,
    store: PathBuf,
    port: u16,
}

impl Setup {
    fn new(accounts: &[String], extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let s = Setup {
            path: dir.path().join("config.toml"),
            store: dir.path().join("tickets.db"),
            port: free_port(),
            dir,
        };
        s.write(accounts, extra);
        s
    }

    fn write(&self, accounts: &[String], extra: &str) {
        let mut text = format!(
            "[store]\npath = \"{}\"\n\n[daemon]\npoll_interval = \"1s\"\nnetwork_timeout = \"20s\"\n\
             http_listen = \"127.0.0.1:{}\"\nlog_format = \"json\"\n\n{extra}\n",
            self.store.display(),
            self.port
        );
        for a in accounts {
            text.push_str("[[account]]\n");
            text.push_str(a);
            text.push('\n');
        }
        std::fs::write(&self.path, text).unwrap();
    }

    fn start(&self) -> Daemon {
        let log = self.dir.path().join(format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos() ^ rand::random::<u64>() as u128
        ));
        Daemon::start(&self.path, log).with_http(self.port)
    }

    async fn tickets(&self) -> i64 {
        let store = mail2ticket::store::Store::open(&self.store).await.unwrap();
        let n = store.count_tickets().await.unwrap();
        store.close().await;
        n
    }
}

/// A customer mail dated now (so it may get an automatic reply).
fn mail(from: &str, to: &str, subject: &str, id: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Kunde <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: {}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\nBody of {subject}\r\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

/// Appends `n` mails to `Staging`, to be moved into INBOX in one command later.
async fn stage_backlog(lab: &Lab, user: &str, n: usize) {
    let mails: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            mail(
                &format!("c{i}@customer.example.test"),
                user,
                &format!("Backlog {i}"),
                &format!("ops-backlog-{i}-{user}"),
                "",
            )
        })
        .collect();
    let mut s = lab.imap(user).await;
    s.create("Staging").await.ok();
    for m in &mails {
        s.append("Staging", None, None, m).await.expect("APPEND");
    }
    s.logout().await.ok();
}

/// Moves everything in `Staging` into INBOX at once (the daemon sees a backlog appear).
async fn release_backlog(lab: &Lab, user: &str) {
    let mut s = lab.imap(user).await;
    s.select("Staging").await.unwrap();
    s.uid_mv("1:*", "INBOX").await.expect("UID MOVE");
    s.logout().await.ok();
}

/// A daemon on one account (move to Archive) that has just been handed a backlog of `total`
/// mails in one go: (user, setup, daemon).
async fn daemon_given_a_backlog(lab: &Lab, prefix: &str, total: usize) -> (String, Setup, Daemon) {
    let user = lab.fresh_user(prefix);
    stage_backlog(lab, &user, total).await;
    let setup = Setup::new(
        &[imap_account(
            lab,
            "support",
            &user,
            "none",
            "action = \"move\"\nmove_to = \"Archive\"\n",
        )],
        "",
    );
    let mut daemon = setup.start();
    daemon.wait_healthy(Duration::from_secs(20)).await;
    release_backlog(lab, &user).await;
    (user, setup, daemon)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_backlog_exits_0_within_10s_and_a_restart_finishes_it() {
    let lab = Lab::get();
    let total = 1000;
    let (user, setup, mut daemon) = daemon_given_a_backlog(lab, "ops-term", total).await;

    // SIGTERM as soon as part of the backlog is committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut at_signal = 0;
    while at_signal == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        at_signal = setup.tickets().await;
    }
    let seen = at_signal > 0;
    assert!(seen, "no ticket within 60s:\n{}", daemon.log_text());
    daemon.signal("TERM");
    let (code, secs) = daemon.wait_exit(Duration::from_secs(15));
    eprintln!("SIGTERM with {at_signal}/{total} tickets stored: exit {code:?} after {secs:.2}s");
    assert!(
        at_signal < total as i64,
        "the backlog was finished before SIGTERM"
    );
    assert_eq!(code, Some(0), "{}", daemon.log_text());
    assert!(secs < 10.0, "stopping took {secs:.2}s");
    assert!(
        !daemon.log_events("stopping the pass").is_empty() || setup.tickets().await == total as i64,
        "the pass did not stop between batches:\n{}",
        daemon.log_text()
    );
    // What was committed was disposed, nothing else.
    let stored = setup.tickets().await;
    let inbox = lab.count(&user, "INBOX").await as i64;
    let archive = lab.count(&user, "Archive").await as i64;
    eprintln!("after SIGTERM: {stored} tickets, {inbox} in INBOX, {archive} archived");
    assert_eq!(archive, stored, "exactly the committed mails were moved");
    assert_eq!(inbox + archive, total as i64);
    drop(daemon);

    let mut again = setup.start();
    again.wait_healthy(Duration::from_secs(20)).await;
    let done = wait_until(Duration::from_secs(120), || async {
        lab.count(&user, "INBOX").await == 0 && setup.tickets().await == total as i64
    })
    .await;
    assert!(done, "restart did not finish:\n{}", again.log_text());
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(15)).0, Some(0));

    let store = mail2ticket::store::Store::open(&setup.store).await.unwrap();
    let (articles, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM articles")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(store.count_tickets().await.unwrap(), total as i64);
    assert_eq!((articles, distinct), (total as i64, total as i64));
    assert_eq!(lab.count(&user, "Archive").await, total as u32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_stopped_mid_backlog_leaves_every_commit_in_the_store_file_itself() {
    let lab = Lab::get();
    let (user, setup, mut daemon) = daemon_given_a_backlog(lab, "ops-whole", 1000).await;
    // Watched on the server, not in the store: a reader of the store would checkpoint it. A
    // mail is moved only after its ticket is committed.
    let moving = wait_until(Duration::from_secs(60), || async {
        lab.count(&user, "Archive").await > 0
    })
    .await;
    assert!(moving, "no mail was moved:\n{}", daemon.log_text());
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).0, Some(0));
    let moved = lab.count(&user, "Archive").await as i64;

    // The backup an admin takes of a stopped daemon: tickets.db alone, without its -wal file.
    let backup = setup.dir.path().join("backup").join("tickets.db");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    std::fs::copy(&setup.store, &backup).unwrap();
    let copy = mail2ticket::store::Store::open(&backup).await.unwrap();
    let in_copy = copy.count_tickets().await.unwrap();
    copy.close().await;
    assert!(
        in_copy >= moved,
        "{moved} mails were moved, the file alone holds {in_copy} tickets"
    );
    assert_eq!(
        in_copy,
        setup.tickets().await,
        "the file alone holds every commit"
    );
}

/// Copies `r` to `w` until `stall` is set; then holds the data back and keeps the socket open,
/// like a server that hangs.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    stall: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    std::future::pending::<()>().await;
}

/// A proxy to a lab port that stops forwarding once `stall` is set.
async fn stalling_proxy(target: u16, stall: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, stall.clone()));
            tokio::spawn(pipe(sr, cw, stall.clone()));
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_within_10s_when_the_server_hangs() {
    let lab = Lab::get();
    let user = lab.fresh_user("ops-hang");
    let stall = Arc::new(AtomicBool::new(false));
    let port = stalling_proxy(lab.port("MAIL_LAB_IMAP_PORT"), stall.clone()).await;
    let mut account = imap_account(lab, "support", &user, "none", "action = \"delete\"\n");
    account = account.replace(
        &format!("port = {}", lab.port("MAIL_LAB_IMAP_PORT")),
        &format!("port = {port}"),
    );
    let setup = Setup::new(&[account], "");
    let mut daemon = setup.start();
    daemon.wait_healthy(Duration::from_secs(20)).await;
    // The server stops answering while the daemon sits in IDLE (network_timeout is 20s).
    stall.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.signal("TERM");
    let (code, secs) = daemon.wait_exit(Duration::from_secs(15));
    eprintln!("SIGTERM with a hanging server: exit {code:?} after {secs:.2}s");
    assert_eq!(code, Some(0), "{}", daemon.log_text());
    assert!(secs < 10.0, "stopping took {secs:.2}s");
    assert!(
        !daemon.log_events("did not stop in time").is_empty(),
        "expected the abort after the grace period:\n{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rejects_a_broken_config_and_starts_a_new_account() {
    let lab = Lab::get();
    let a = lab.fresh_user("ops-hup-a");
    let b = lab.fresh_user("ops-hup-b");
    let acc_a = imap_account(lab, "a", &a, "none", "action = \"delete\"\n");
    let acc_b = imap_account(lab, "b", &b, "none", "action = \"delete\"\n");
    let setup = Setup::new(std::slice::from_ref(&acc_a), "");
    let mut daemon = setup.start();
    daemon.wait_healthy(Duration::from_secs(20)).await;
    let hc = common::mail2ticket_cmd(&setup.path)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert!(hc.status.success(), "healthcheck: {}", common::stderr(&hc));

    // A broken config: an unknown key and a bad duration. Rejected; the old one keeps running.
    std::fs::write(
        &setup.path,
        std::fs::read_to_string(&setup.path).unwrap().replace(
            "poll_interval = \"1s\"",
            "poll_interval = \"soon\"\ncolour = 3",
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    let rejected = wait_until(Duration::from_secs(10), || async {
        !daemon.log_events("config reload rejected").is_empty()
    })
    .await;
    assert!(rejected, "no rejection logged:\n{}", daemon.log_text());
    let errors = daemon.log_text();
    assert!(
        errors.contains("poll_interval") && errors.contains("colour"),
        "every error is logged: {errors}"
    );
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(daemon.healthz().unwrap().0, 200, "health still 200");
    lab.append(
        &a,
        "INBOX",
        &[mail(
            "x@c.example.test",
            &a,
            "Still running",
            &format!("hup1-{a}"),
            "",
        )],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            setup.tickets().await == 1
        })
        .await,
        "the old config stopped ingesting:\n{}",
        daemon.log_text()
    );

    // A valid config with a second account: only the new account starts.
    setup.write(&[acc_a.clone(), acc_b.clone()], "");
    let hup = Instant::now();
    daemon.signal("HUP");
    lab.append(
        &b,
        "INBOX",
        &[mail(
            "y@c.example.test",
            &b,
            "New account",
            &format!("hup2-{b}"),
            "",
        )],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            setup.tickets().await == 2
        })
        .await,
        "the new account did not ingest:\n{}",
        daemon.log_text()
    );
    eprintln!(
        "SIGHUP to the new account's first ticket: {:.2}s",
        hup.elapsed().as_secs_f64()
    );
    let reloaded = daemon.log_events("config reloaded");
    assert_eq!(reloaded.len(), 1, "{}", daemon.log_text());
    eprintln!("reload: {}", reloaded[0]);
    assert!(reloaded[0]["started"].as_str().unwrap().contains("\"b\""));
    assert_eq!(reloaded[0]["restarted"].as_str().unwrap(), "[]");
    // "a" kept its connection: it connected once.
    let connects_a = daemon
        .log_events("connected")
        .iter()
        .filter(|e| e["account"] == "a")
        .count();
    assert_eq!(
        connects_a,
        1,
        "account a reconnected:\n{}",
        daemon.log_text()
    );
    daemon.wait_healthy(Duration::from_secs(10)).await;
    let (_, body) = daemon.healthz().unwrap();
    assert!(
        body["accounts"]["b"]["healthy"].as_bool().unwrap(),
        "{body}"
    );

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).0, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_is_503_with_the_error_when_login_fails_and_healthcheck_exits_1() {
    let lab = Lab::get();
    let user = lab.fresh_user("ops-badpw");
    let account = imap_account(lab, "support", &user, "none", "action = \"delete\"\n")
        .replace(lab.password(), "wrong-password");
    let setup = Setup::new(&[account], "");
    let daemon = setup.start();
    let answered = wait_until(Duration::from_secs(20), || async {
        daemon
            .healthz()
            .is_some_and(|(_, b)| !b["accounts"]["support"]["last_error"].is_null())
    })
    .await;
    assert!(answered, "{}", daemon.log_text());
    let (code, body) = daemon.healthz().unwrap();
    assert_eq!(code, 503, "{body}");
    let acc = &body["accounts"]["support"];
    assert_eq!(acc["state"], "login_rejected", "{body}");
    assert!(
        acc["last_error"]
            .as_str()
            .unwrap()
            .contains("login rejected"),
        "{body}"
    );
    assert!(
        !body.to_string().contains("wrong-password"),
        "no password in /healthz"
    );
    assert!(
        !daemon.log_text().contains("wrong-password"),
        "no password in the log"
    );
    let hc = common::mail2ticket_cmd(&setup.path)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(hc.status.code(), Some(1), "{}", common::stderr(&hc));
}

/// Sums the samples of `name` whose labels match `labels`.
fn sample_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_as_prometheus_text_and_match_the_tickets() {
    let lab = Lab::get();
    let user = lab.fresh_user("ops-metrics");
    let smtp = format!(
        "[smtp]\nhost = \"localhost\"\nport = {}\nencryption = \"none\"\ntimeout = \"10s\"\n\
         message_id_domain = \"tickets.example.test\"\n",
        lab.port("MAIL_LAB_SMTP_PORT")
    );
    let account = imap_account(
        lab,
        "support",
        &user,
        "none",
        "action = \"delete\"\nauto_reply = true\n",
    );
    let setup = Setup::new(&[account], &smtp);
    let mut daemon = setup.start();
    daemon.wait_healthy(Duration::from_secs(20)).await;
    let mails = [
        mail(
            &format!("anna-{user}"),
            &user,
            "Frage 1",
            &format!("m1-{user}"),
            "",
        ),
        mail(
            &format!("bert-{user}"),
            &user,
            "Frage 2",
            &format!("m2-{user}"),
            "",
        ),
        mail(
            &format!("carl-{user}"),
            &user,
            "Frage 3",
            &format!("m3-{user}"),
            "",
        ),
        mail(
            "noreply@example.test",
            &user,
            "Bestellung",
            &format!("m4-{user}"),
            "",
        ),
        mail(
            &format!("dora-{user}"),
            &user,
            "Abwesend",
            &format!("m5-{user}"),
            "Auto-Submitted: auto-replied\r\n",
        ),
        // A follow-up to the first mail's thread.
        mail(
            &format!("anna-{user}"),
            &user,
            "Re: Frage 1",
            &format!("m6-{user}"),
            &format!("In-Reply-To: <m1-{user}>\r\nReferences: <m1-{user}>\r\n"),
        ),
    ];
    lab.append(&user, "INBOX", &mails[..5]).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            setup.tickets().await == 5
        })
        .await
    );
    lab.append(&user, "INBOX", &mails[5..]).await;
    let store = mail2ticket::store::Store::open(&setup.store).await.unwrap();
    let settled = wait_until(Duration::from_secs(30), || async {
        let articles: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM articles")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let s = store.outbox_summary().await.unwrap();
        articles == 6 && s.unsent() == 0 && s.sent == 3
    })
    .await;
    assert!(settled, "{}", daemon.log_text());

    let started = Instant::now();
    let (code, text) = daemon.get("/metrics").unwrap();
    let elapsed = started.elapsed();
    assert_eq!(code, 200);
    eprintln!("GET /metrics: {} bytes in {elapsed:?}", text.len());
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text");
    let acc = [("account", "support")];
    let tickets = setup.tickets().await as f64;
    assert_eq!(tickets, 5.0);
    assert_eq!(
        sample_sum(&scrape, "mail2ticket_tickets_created_total", &acc),
        tickets,
        "{text}"
    );
    assert_eq!(
        sample_sum(&scrape, "mail2ticket_followups_total", &acc),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample_sum(&scrape, "mail2ticket_mails_fetched_total", &acc),
        6.0,
        "{text}"
    );
    assert_eq!(
        sample_sum(&scrape, "mail2ticket_replies_sent_total", &acc),
        3.0,
        "{text}"
    );
    assert_eq!(
        sample_sum(
            &scrape,
            "mail2ticket_replies_suppressed_total",
            &[("account", "support"), ("reason", "robot_sender")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample_sum(
            &scrape,
            "mail2ticket_replies_suppressed_total",
            &[("account", "support"), ("reason", "auto_submitted")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample_sum(&scrape, "mail2ticket_replies_failed_total", &acc),
        0.0
    );
    assert_eq!(
        sample_sum(&scrape, "mail2ticket_outbox_depth", &[]),
        0.0,
        "{text}"
    );
    let last = sample_sum(&scrape, "mail2ticket_last_success_timestamp_seconds", &acc);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - last).abs() < 120.0, "last success {last}, now {now}");
    assert!(
        scrape.docs.contains_key("mail2ticket_tickets_created"),
        "HELP texts present"
    );
    store.close().await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).0, Some(0));
}

/// `systemd-analyze verify` on config/mail2ticket.service with ExecStart pointing at the binary
/// just built (verify insists that it exists).
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let root = common::repo_root();
    let unit = std::fs::read_to_string(root.join("config/mail2ticket.service")).unwrap();
    let bin = env!("CARGO_BIN_EXE_mail2ticket");
    assert!(unit.contains("/usr/local/bin/mail2ticket"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail2ticket.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/mail2ticket", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze not found ({e}): scripts/install-deps installs it (package systemd)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on this machine are not ours.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("mail2ticket"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}",
        out.status
    );
}

/// No Docker engine here: check that what the Dockerfile references exists in this build.
#[test]
fn dockerfile_references_what_the_build_has() {
    let root = common::repo_root();
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("COPY ") {
            if rest.starts_with("--from") {
                continue;
            }
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(root.join(src).exists(), "Dockerfile copies missing {src}");
            }
        }
    }
    assert!(text.contains("FROM rust:1.95-bookworm AS build"));
    // The dist profile (release with whole-program optimisation) must exist in Cargo.toml.
    assert!(text.contains("cargo build --profile dist --locked"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[profile.dist]\ninherits = \"release\""));
    assert!(text.contains("/app/target/dist/mail2ticket"));
    assert!(text.contains("HEALTHCHECK"));
    assert!(text.contains("mail2ticket\", \"healthcheck\""));
    assert!(text.contains("USER mail2ticket"));
    // The image is the last stage (what `docker build .` builds): Debian slim with the
    // stripped binary; the debug info is a stage of its own and stays out of the image.
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(
        stages,
        [
            "FROM rust:1.95-bookworm AS build",
            "FROM scratch AS symbols",
            "FROM debian:bookworm-slim"
        ]
    );
    let image = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(
        image.contains("COPY --from=build /app/target/dist/mail2ticket /usr/local/bin/mail2ticket")
    );
    assert!(!image.contains(".debug"), "no debug info in the image");
    assert!(text.contains("COPY --from=build /app/target/dist/mail2ticket.debug /"));
    let build = run_instructions(&text);
    let cargo = build.iter().position(|r| r.starts_with("cargo build"));
    let strip = build.iter().position(|r| r.contains("objcopy"));
    assert!(
        cargo.is_some() && strip > cargo,
        "the binary is stripped after it is built: {build:?}"
    );
    let help = common::mail2ticket_cmd(Path::new("/nonexistent"))
        .args(["healthcheck", "--help"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(help.status.success(), "the healthcheck subcommand exists");
}

/// The Dockerfile's RUN instructions, each with its continuation lines joined.
fn run_instructions(dockerfile: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current: Option<String> = None;
    for line in dockerfile.lines() {
        let line = line.trim();
        let part = match current.as_mut() {
            Some(run) => {
                run.push(' ');
                run
            }
            None => match line.strip_prefix("RUN ") {
                Some(_) => current.insert(String::new()),
                None => continue,
            },
        };
        let text = line.strip_prefix("RUN ").unwrap_or(line);
        match text.strip_suffix('\\') {
            Some(more) => part.push_str(more.trim()),
            None => {
                part.push_str(text);
                runs.extend(current.take());
            }
        }
    }
    runs
}

/// The section names of an ELF file, by `readelf`.
fn sections(file: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .args(["--sections", "--wide"])
        .arg(file)
        .output()
        .expect("readelf (binutils) is needed: apt-get install binutils");
    assert!(out.status.success(), "readelf {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// No Docker engine here either: the Dockerfile's own stripping step, run on this build's
/// binary in a copy of the build stage's folder, leaves a binary without debug info that still
/// runs and names its debug file, and a debug file that holds the line tables.
#[test]
fn the_dockerfiles_strip_step_splits_the_debug_info_off_a_binary_that_still_runs() {
    let text = std::fs::read_to_string(common::repo_root().join("Dockerfile")).unwrap();
    let step = run_instructions(&text)
        .into_iter()
        .find(|r| r.contains("objcopy"))
        .expect("a RUN step with objcopy");
    for part in [
        "objcopy --only-keep-debug target/dist/mail2ticket target/dist/mail2ticket.debug",
        "objcopy --strip-debug target/dist/mail2ticket",
        "objcopy --add-gnu-debuglink=target/dist/mail2ticket.debug target/dist/mail2ticket",
    ] {
        assert!(step.contains(part), "{part:?} in {step:?}");
    }
    let app = tempfile::tempdir().unwrap();
    let dist = app.path().join("target/dist");
    std::fs::create_dir_all(&dist).unwrap();
    let binary = dist.join("mail2ticket");
    std::fs::copy(env!("CARGO_BIN_EXE_mail2ticket"), &binary).unwrap();
    let before = std::fs::metadata(&binary).unwrap().len();
    let out = Command::new("sh")
        .args(["-e", "-c", &step])
        .current_dir(app.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{step}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stripped = sections(&binary);
    // .debug_gdb_scripts is no debug info: a few bytes that tell gdb to load Rust's
    // pretty-printers, loaded with the program.
    let dwarf = |s: &&String| s.starts_with(".debug_") && *s != ".debug_gdb_scripts";
    assert!(
        !stripped.iter().any(|s| dwarf(&s)),
        "no debug info left: {stripped:?}"
    );
    for kept in [".gnu_debuglink", ".symtab", ".text"] {
        assert!(stripped.iter().any(|s| s == kept), "{kept} in {stripped:?}");
    }
    let debug = sections(&dist.join("mail2ticket.debug"));
    for needed in [".debug_line", ".debug_info", ".symtab"] {
        assert!(debug.iter().any(|s| s == needed), "{needed} in {debug:?}");
    }
    let link = Command::new("readelf")
        .args(["--string-dump=.gnu_debuglink"])
        .arg(&binary)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("mail2ticket.debug"),
        "the binary names its debug file"
    );
    let after = std::fs::metadata(&binary).unwrap().len();
    assert!(
        after * 2 < before,
        "the debug info was most of it: {before} bytes before, {after} after"
    );
    let help = Command::new(&binary).arg("--help").output().unwrap();
    assert!(help.status.success(), "the stripped binary runs");
    assert!(String::from_utf8_lossy(&help.stdout).contains("test-fetch"));
}
