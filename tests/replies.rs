//! Automatic replies end to end against the mail lab: Postfix delivers to Dovecot, mail2ticket
//! fetches over IMAP and replies through the lab's SMTP, and the tests read the customer's
//! mailbox over IMAP.

mod common;

use std::time::{Duration, Instant};

use common::daemon::wait_until;
use common::smtp::SwitchProxy;
use common::{imap_account, pop3_account, Daemon, Lab, TestConfig};
use mail2ticket::ingest::parse::{parse, ParsedMail};

const ACCOUNT_EXTRA: &str = "action = \"move\"\nmove_to = \"Archive\"\nauto_reply = true\n";

/// `[smtp]` for the lab. `mode`: "none" (port 14025 plain), "starttls" (submission with AUTH),
/// "ssl" (SMTPS with AUTH); `port` overrides the port (a proxy in front of it).
fn smtp_section(lab: &Lab, mode: &str, login: &str, port: Option<u16>) -> String {
    let (default_port, auth) = match mode {
        "none" => (lab.port("MAIL_LAB_SMTP_PORT"), false),
        "starttls" => (lab.port("MAIL_LAB_SUBMISSION_PORT"), true),
        "ssl" => (lab.port("MAIL_LAB_SMTPS_PORT"), true),
        other => panic!("unknown mode {other}"),
    };
    let mut s = format!(
        "[smtp]\nhost = \"localhost\"\nport = {}\nencryption = \"{mode}\"\nca_file = \"{}\"\ntimeout = \"10s\"\n\
         message_id_domain = \"tickets.example.test\"\n",
        port.unwrap_or(default_port),
        lab.ca()
    );
    if auth {
        s.push_str(&format!(
            "user = \"{login}\"\npassword = \"{}\"\n",
            lab.password()
        ));
    }
    s
}

fn rfc2822_now() -> String {
    chrono::Utc::now().to_rfc2822()
}

/// A customer mail dated now; `extra` are additional header lines ending in CRLF.
fn customer_mail(from: &str, to: &str, subject: &str, id: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: =?UTF-8?Q?Kunde_M=C3=BCller?= <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: {}\r\nMIME-Version: 1.0\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\nGrüße, bitte helfen Sie mir.\r\n",
        rfc2822_now()
    )
    .into_bytes()
}

/// A daemon on `cfg`, its log `daemon-<tag>.log` beside the config, serving /healthz and
/// /metrics on a free port written into `[daemon] http_listen` (replacing the one of a daemon
/// started before on the same config).
fn start_daemon(cfg: &TestConfig, tag: &str) -> Daemon {
    let http = common::http::free_port();
    let text: String = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("http_listen"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.replacen(
        "[daemon]\n",
        &format!("[daemon]\nhttp_listen = \"127.0.0.1:{http}\"\n"),
        1,
    );
    assert!(text.contains("http_listen"), "no [daemon] section:\n{text}");
    std::fs::write(&cfg.path, text).unwrap();
    let log = cfg.dir.path().join(format!("daemon-{tag}.log"));
    Daemon::start(&cfg.path, log).with_http(http)
}

/// The daemon waits until it is healthy, for as long as every test here allows.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The proof that no further reply is coming: after a pass over each of `accounts` that began
/// after the last event that could cause one (see [`Daemon::one_more_pass`]), the outbox, where
/// every reply is queued before it is sent, once each of its rows has reached a final state
/// (`sent` or `failed`), which the sender never takes up again.
async fn final_outbox(
    daemon: &Daemon,
    cfg: &TestConfig,
    accounts: &[&str],
) -> Vec<mail2ticket::store::OutboxRow> {
    daemon.one_more_pass(accounts).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = outbox(cfg).await;
        if rows
            .iter()
            .all(|r| r.status == "sent" || r.status == "failed")
        {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "replies still queued after 30 s: {rows:?}; log:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = &raw[..raw.find("\r\n\r\n").unwrap_or(raw.len())];
    head.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

async fn outbox(cfg: &TestConfig) -> Vec<mail2ticket::store::OutboxRow> {
    let store = cfg.open_store().await;
    let rows = store.outbox_rows().await.unwrap();
    store.close().await;
    rows
}

fn run_once(cfg: &TestConfig) -> std::process::Output {
    let out = cfg.run(&["run", "--once"]);
    assert!(
        out.status.success(),
        "run --once failed: {}",
        common::stderr(&out)
    );
    out
}

/// The replies in a customer's INBOX, parsed, with the raw text.
async fn replies(lab: &Lab, user: &str) -> Vec<(ParsedMail, String)> {
    lab.messages(user, "INBOX")
        .await
        .into_iter()
        .map(|raw| (parse(&raw), String::from_utf8_lossy(&raw).into_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ticket_gets_exactly_one_reply_and_the_answer_joins_the_ticket() {
    let lab = Lab::get();
    let support = lab.fresh_user("reply-support");
    let helpdesk = lab.fresh_user("reply-helpdesk");
    let customer = lab.fresh_user("reply-customer");
    let extra = format!(
        "{ACCOUNT_EXTRA}sender_name = \"Beispiel Kundendienst\"\nreply_to = \"{helpdesk}\"\n"
    );
    let cfg = TestConfig::new(
        &[imap_account(lab, "support", &support, "starttls", &extra)],
        &smtp_section(lab, "starttls", &support, None),
    );
    let mut daemon = start_daemon(&cfg, "1");
    // Connected and waiting for mail, so the latency measured below is the daemon's own.
    daemon.wait_healthy(READY_WITHIN).await;

    let subject = "Rückgabe für Bestellung 4711";
    let encoded = "=?UTF-8?Q?R=C3=BCckgabe_f=C3=BCr_Bestellung_4711?=";
    let sent = Instant::now();
    lab.smtp_send(
        &customer,
        &support,
        &customer_mail(
            &customer,
            &support,
            encoded,
            "first@customer.example.test",
            "",
        ),
    )
    .await;
    let arrived = wait_until(Duration::from_secs(30), || async {
        lab.count(&customer, "INBOX").await >= 1
    })
    .await;
    let end_to_end = sent.elapsed();
    let seen_at = chrono::Utc::now();
    assert!(
        arrived,
        "no reply arrived; daemon log:\n{}",
        daemon.log_text()
    );

    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let number = tickets[0]["number"].as_str().unwrap().to_string();
    let got = replies(lab, &customer).await;
    assert_eq!(got.len(), 1);
    let (reply, raw) = &got[0];
    assert_eq!(reply.from_name, "Beispiel Kundendienst");
    assert_eq!(reply.from_email, support);
    assert_eq!(reply.reply_to_email.as_deref(), Some(helpdesk.as_str()));
    assert_eq!(reply.subject, format!("[Ticket#{number}] {subject}"));
    assert_eq!(reply.in_reply_to, vec!["first@customer.example.test"]);
    assert_eq!(header(raw, "Auto-Submitted"), Some("auto-replied"), "{raw}");
    assert_eq!(header(raw, "X-Auto-Response-Suppress"), Some("All"));
    assert!(header(raw, "X-Mail2ticket-Loop").is_some(), "{raw}");
    assert!(reply.message_id.ends_with("@tickets.example.test"));
    assert!(reply.text.contains(&number), "{}", reply.text);
    assert!(
        reply.text.contains("Guten Tag Kunde Müller"),
        "{}",
        reply.text
    );

    // Latency: from the ticket's commit (outbox created_at) to the reply in the INBOX.
    let store = cfg.open_store().await;
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].message_id, reply.message_id);
    let created = rows[0].created_at.clone();
    let sent_at = rows[0].sent_at.clone().unwrap_or_default();
    store.close().await;
    let commit_to_inbox = seen_at
        - chrono::DateTime::parse_from_rfc3339(&created)
            .unwrap()
            .to_utc();
    eprintln!(
        "customer SMTP submit → reply in customer INBOX: {end_to_end:?}; ticket commit (outbox created {created}) \
         → SMTP accepted {sent_at} → seen in INBOX after {} ms (100 ms polling)",
        commit_to_inbox.num_milliseconds()
    );

    // The customer answers the reply: it joins the ticket, and nobody replies again.
    let answer = format!(
        "From: {customer}\r\nTo: {helpdesk}\r\nSubject: Re: [Ticket#{number}] answer\r\nMessage-ID: <answer@customer.example.test>\r\n\
         In-Reply-To: <{}>\r\nReferences: <first@customer.example.test> <{}>\r\nDate: {}\r\n\r\nDanke!\r\n",
        reply.message_id,
        reply.message_id,
        rfc2822_now()
    );
    lab.smtp_send(&customer, &support, answer.as_bytes()).await;
    let joined = wait_until(Duration::from_secs(30), || async {
        cfg.tickets()
            .first()
            .is_some_and(|t| t["articles"].as_i64() == Some(2))
    })
    .await;
    assert!(
        joined,
        "the answer did not join; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(cfg.tickets().len(), 1);
    // Nobody replies to the answer: after a whole pass that began once it had joined, the
    // outbox still holds the one reply, sent, and that is what the customer has.
    let rows = final_outbox(&daemon, &cfg, &["support"]).await;
    assert_eq!(rows.len(), 1, "no second reply: {rows:?}");
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].message_id, reply.message_id);
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "no second reply");
    let detail = cfg.show(&number);
    let note = detail["articles"][0]["auto_reply"].as_str().unwrap();
    assert!(note.starts_with("auto-reply sent to"), "{note}");
    assert_eq!(detail["articles"][1]["auto_reply"].as_str(), Some(""));
    let log = daemon.crash();
    assert!(
        !log.contains(lab.password()),
        "the password leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_suppression_rule_stops_the_reply_and_records_why() {
    let lab = Lab::get();
    let support = lab.fresh_user("suppress-support");
    let colleague = lab.fresh_user("suppress-colleague");
    let colleague_account = imap_account(
        lab,
        "colleague",
        &colleague,
        "starttls",
        "action = \"move\"\nmove_to = \"Archive\"\nactive = false\n",
    );
    let cfg = TestConfig::new(
        &[
            imap_account(lab, "support", &support, "none", ACCOUNT_EXTRA),
            colleague_account,
        ],
        &smtp_section(lab, "none", "", None),
    );
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc2822();
    // (sender prefix or exact address, extra headers, expected reason, Date override)
    let cases: Vec<(String, String, &str)> = vec![
        (
            lab.fresh_user("as"),
            "Auto-Submitted: auto-generated\r\n".into(),
            "Auto-Submitted",
        ),
        (
            lab.fresh_user("prec-bulk"),
            "Precedence: bulk\r\n".into(),
            "Precedence",
        ),
        (
            lab.fresh_user("prec-junk"),
            "Precedence: junk\r\n".into(),
            "Precedence",
        ),
        (
            lab.fresh_user("prec-list"),
            "Precedence: list\r\n".into(),
            "Precedence",
        ),
        (
            lab.fresh_user("listid"),
            "List-Id: <news.example.test>\r\n".into(),
            "List-Id",
        ),
        (
            lab.fresh_user("listunsub"),
            "List-Unsubscribe: <mailto:unsub@example.test>\r\n".into(),
            "List-Unsubscribe",
        ),
        (
            lab.fresh_user("xars-all"),
            "X-Auto-Response-Suppress: All\r\n".into(),
            "X-Auto-Response-Suppress",
        ),
        (
            lab.fresh_user("xars-ar"),
            "X-Auto-Response-Suppress: DR, AutoReply\r\n".into(),
            "X-Auto-Response-Suppress",
        ),
        (
            lab.fresh_user("xars-oof"),
            "X-Auto-Response-Suppress: OOF\r\n".into(),
            "X-Auto-Response-Suppress",
        ),
        (
            lab.fresh_user("bounce"),
            "Return-Path: <>\r\n".into(),
            "Return-Path <>",
        ),
        (
            lab.fresh_user("MAILER-DAEMON"),
            String::new(),
            "robot address",
        ),
        (lab.fresh_user("postmaster"), String::new(), "robot address"),
        (lab.fresh_user("noreply"), String::new(), "robot address"),
        (lab.fresh_user("no_reply"), String::new(), "robot address"),
        (
            lab.fresh_user("do-not-reply"),
            String::new(),
            "robot address",
        ),
        (colleague.clone(), String::new(), "one of our own accounts"),
        (
            lab.fresh_user("robot-reply-to"),
            "Reply-To: no-reply@shop.example.test\r\n".into(),
            "robot address",
        ),
        (
            lab.fresh_user("loop"),
            "X-Mail2ticket-Loop: mail2ticket; support@elsewhere.test\r\n".into(),
            "loop header",
        ),
        (
            lab.fresh_user("old"),
            format!("X-Old-Date: {three_days_ago}\r\n"),
            "auto_reply_max_age",
        ),
    ];
    let mut mails = Vec::new();
    for (i, (from, extra, _)) in cases.iter().enumerate() {
        let id = format!("case{i}.{}@customer.example.test", std::process::id());
        let mut raw = String::from_utf8(customer_mail(
            from,
            &support,
            &format!("case {i}"),
            &id,
            extra,
        ))
        .unwrap();
        if extra.starts_with("X-Old-Date") {
            let now_line = raw
                .lines()
                .find(|l| l.starts_with("Date: "))
                .unwrap()
                .to_string();
            raw = raw.replace(&now_line, &format!("Date: {three_days_ago}"));
        }
        mails.push(raw.into_bytes());
    }
    // A delivery status report from a normal-looking address.
    let dsn_from = lab.fresh_user("dsn");
    mails.push(
        format!(
            "From: {dsn_from}\r\nTo: {support}\r\nSubject: Delivery Status Notification\r\nMessage-ID: <dsn.{}@mx.example.test>\r\n\
             Date: {}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; mx.example.test\r\n\r\nFinal-Recipient: rfc822; x@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n",
            std::process::id(),
            rfc2822_now()
        )
        .into_bytes(),
    );
    // Controls: a normal mail and one without a Date get their reply.
    let control = lab.fresh_user("control");
    mails.push(customer_mail(
        &control,
        &support,
        "control",
        &format!("control.{}@customer.example.test", std::process::id()),
        "",
    ));
    let undated = lab.fresh_user("undated");
    mails.push(
        format!(
            "From: {undated}\r\nTo: {support}\r\nSubject: no date\r\nMessage-ID: <undated.{}@customer.example.test>\r\n\r\nhi\r\n",
            std::process::id()
        )
        .into_bytes(),
    );
    lab.append(&support, "INBOX", &mails).await;
    run_once(&cfg);

    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), cases.len() + 3, "{tickets:?}");
    let mut reasons = Vec::new();
    for t in &tickets {
        let detail = cfg.show(t["number"].as_str().unwrap());
        let note = detail["articles"][0]["auto_reply"]
            .as_str()
            .unwrap()
            .to_string();
        reasons.push((
            t["customer"].as_str().unwrap().to_string(),
            t["subject"].as_str().unwrap().to_string(),
            note,
        ));
    }
    for (i, (_, _, expected)) in cases.iter().enumerate() {
        let (customer, _, note) = reasons
            .iter()
            .find(|(_, s, _)| *s == format!("case {i}"))
            .unwrap_or_else(|| panic!("no ticket for case {i}"));
        assert!(
            note.starts_with("no auto-reply:") && note.contains(expected),
            "case {i} ({customer}): expected {expected:?}, got {note:?}"
        );
    }
    let dsn = reasons.iter().find(|(c, _, _)| *c == dsn_from).unwrap();
    assert!(dsn.2.contains("delivery status report"), "{dsn:?}");
    for who in [&control, &undated] {
        let r = reasons.iter().find(|(c, _, _)| c == who).unwrap();
        assert!(r.2.starts_with("auto-reply sent to"), "{r:?}");
    }

    // Exactly the two controls were sent, and they arrive; nobody else gets anything.
    let rows = outbox(&cfg).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        lab.wait_for_count(&control, "INBOX", 1, Duration::from_secs(20))
            .await,
        1
    );
    assert_eq!(
        lab.wait_for_count(&undated, "INBOX", 1, Duration::from_secs(20))
            .await,
        1
    );
    for (from, _, _) in cases.iter().filter(|(f, _, _)| *f != colleague) {
        assert_eq!(lab.count(from, "INBOX").await, 0, "{from} got a reply");
    }
    assert_eq!(lab.count(&dsn_from, "INBOX").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_twenty_mails_gets_exactly_the_limit_of_replies() {
    let lab = Lab::get();
    let support = lab.fresh_user("burst-support");
    let customer = lab.fresh_user("burst-customer");
    let cfg = TestConfig::new(
        &[imap_account(lab, "support", &support, "ssl", ACCOUNT_EXTRA)],
        &smtp_section(lab, "ssl", &support, None),
    );
    for i in 0..20 {
        let id = format!("burst{i}.{}@customer.example.test", std::process::id());
        lab.smtp_send(
            &customer,
            &support,
            &customer_mail(&customer, &support, &format!("Frage {i}"), &id, ""),
        )
        .await;
    }
    assert_eq!(
        lab.wait_for_count(&support, "INBOX", 20, Duration::from_secs(30))
            .await,
        20
    );
    run_once(&cfg);
    assert_eq!(cfg.tickets().len(), 20);
    assert_eq!(
        lab.wait_for_count(&customer, "INBOX", 5, Duration::from_secs(20))
            .await,
        5
    );
    // A second pass with more mail from the same sender: still limited (persisted).
    lab.smtp_send(
        &customer,
        &support,
        &customer_mail(
            &customer,
            &support,
            "noch eine",
            "burst-late@customer.example.test",
            "",
        ),
    )
    .await;
    assert_eq!(
        lab.wait_for_count(&support, "INBOX", 1, Duration::from_secs(30))
            .await,
        1
    );
    run_once(&cfg);
    // No wait needed: `run --once` has exited, and every reply goes through the outbox, so the
    // five rows, all sent, are every reply there will ever be; the five have arrived (above).
    assert_eq!(cfg.tickets().len(), 21);
    let rows = outbox(&cfg).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    assert_eq!(lab.count(&customer, "INBOX").await, 5);
    let limited = cfg
        .tickets()
        .iter()
        .filter(|t| {
            cfg.show(t["number"].as_str().unwrap())["articles"][0]["auto_reply"]
                .as_str()
                .unwrap()
                .contains("auto_reply_limit")
        })
        .count();
    assert_eq!(limited, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_replies_wait_survive_a_crash_and_arrive_exactly_once() {
    let lab = Lab::get();
    let support = lab.fresh_user("down-support");
    let customers: Vec<String> = (0..3).map(|_| lab.fresh_user("down-customer")).collect();
    let proxy = SwitchProxy::start(lab.port("MAIL_LAB_SUBMISSION_PORT"), false).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "starttls",
            ACCOUNT_EXTRA,
        )],
        &smtp_section(lab, "starttls", &support, Some(proxy.port)),
    );
    let daemon = start_daemon(&cfg, "down-1");
    for (i, c) in customers.iter().enumerate() {
        let id = format!("down{i}.{}@customer.example.test", std::process::id());
        lab.smtp_send(
            c,
            &support,
            &customer_mail(c, &support, &format!("Ausfall {i}"), &id, ""),
        )
        .await;
    }
    // Tickets are created while SMTP is down; the replies wait with a recorded error.
    let waiting = wait_until(Duration::from_secs(30), || async {
        let rows = outbox(&cfg).await;
        rows.len() == 3
            && rows
                .iter()
                .all(|r| r.attempts >= 1 && !r.last_error.is_empty())
    })
    .await;
    assert!(
        waiting,
        "replies not queued/attempted; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(cfg.tickets().len(), 3);
    assert!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let rows = outbox(&cfg).await;
    assert!(
        rows.iter()
            .all(|r| r.status == "pending" || r.status == "sending"),
        "{rows:?}"
    );
    let note = cfg.show(cfg.tickets()[0]["number"].as_str().unwrap())["articles"][0]["auto_reply"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(note.contains("waiting"), "{note}");

    // The daemon dies while SMTP is still down; a new one takes over the outbox.
    let log = daemon.crash();
    assert!(log.contains("will retry"), "{log}");
    for c in &customers {
        assert_eq!(lab.count(c, "INBOX").await, 0);
    }
    let mut daemon = start_daemon(&cfg, "down-2");
    // Up and polling before SMTP comes back, so the time measured below is the sender's.
    daemon.wait_healthy(READY_WITHIN).await;
    let back = Instant::now();
    proxy.set_up(true);
    let delivered = wait_until(Duration::from_secs(60), || async {
        outbox(&cfg).await.iter().all(|r| r.status == "sent")
    })
    .await;
    assert!(
        delivered,
        "not delivered after SMTP came back; log:\n{}",
        daemon.log_text()
    );
    eprintln!(
        "SMTP back → all 3 queued replies accepted: {:?}",
        back.elapsed()
    );
    for c in &customers {
        assert_eq!(
            lab.wait_for_count(c, "INBOX", 1, Duration::from_secs(20))
                .await,
            1
        );
    }
    // Nothing more arrives later: after a whole pass of the new daemon (which found the
    // mailbox the crashed one left), the outbox holds one reply per customer, each sent, and a
    // sent reply is never taken up again.
    let rows = final_outbox(&daemon, &cfg, &["support"]).await;
    let mut recipients: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    recipients.sort();
    let mut expected: Vec<&str> = customers.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(recipients, expected, "one reply per customer: {rows:?}");
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    for c in &customers {
        assert_eq!(lab.count(c, "INBOX").await, 1, "{c} got a duplicate");
    }
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_echoing_every_reply_stops_at_the_rate_limit() {
    let lab = Lab::get();
    let support = lab.fresh_user("storm-support");
    let robot = lab.fresh_user("storm-robot");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "starttls",
            ACCOUNT_EXTRA,
        )],
        &smtp_section(lab, "none", "", None),
    );
    let mut daemon = start_daemon(&cfg, "storm");
    daemon.wait_healthy(READY_WITHIN).await;
    // The worst robot: it answers every mail with a fresh one that strips every header that
    // could tell it is automatic (new Message-ID, no In-Reply-To, no ticket tag).
    lab.smtp_send(
        &robot,
        &support,
        &customer_mail(&robot, &support, "hello", "echo0@robot.example.test", ""),
    )
    .await;
    // The storm is over when nothing is in flight anywhere, not after a quiet spell: every
    // mail the robot sent is a ticket, the daemon made a whole pass after that, every queued
    // reply reached its final state, and every reply sent has reached the robot and been
    // echoed. A reply beyond the limit would show up as one more outbox row and keep it going.
    let started = Instant::now();
    let mut echoed = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the echo storm did not end within 120 s ({echoed} replies); log:\n{}",
            daemon.log_text()
        );
        let stored = wait_until(Duration::from_secs(30), || async {
            cfg.ticket_count().await == echoed as i64 + 1
        })
        .await;
        assert!(
            stored,
            "the robot's {} mails did not all become tickets; log:\n{}",
            echoed + 1,
            daemon.log_text()
        );
        let rows = final_outbox(&daemon, &cfg, &["support"]).await;
        let sent = rows.iter().filter(|r| r.status == "sent").count() as u32;
        let arrived = lab
            .wait_for_count(&robot, "INBOX", sent, Duration::from_secs(20))
            .await;
        assert_eq!(arrived, sent, "every sent reply reaches the robot once");
        if arrived == echoed {
            break;
        }
        for k in echoed..arrived {
            let id = format!("echo{}.{}@robot.example.test", k + 1, std::process::id());
            lab.smtp_send(
                &robot,
                &support,
                &customer_mail(&robot, &support, &format!("echo {}", k + 1), &id, ""),
            )
            .await;
        }
        echoed = arrived;
    }
    let replies = lab.count(&robot, "INBOX").await;
    eprintln!(
        "echo storm: {replies} replies, ended after {:?}",
        started.elapsed()
    );
    assert_eq!(replies, 5, "log:\n{}", daemon.log_text());
    // Every echo became a ticket; the last one was answered with silence.
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 6);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_auto_replying_to_each_other_do_not_loop() {
    let lab = Lab::get();
    let a = lab.fresh_user("loop-a");
    let b = lab.fresh_user("loop-b");
    let cfg_a = TestConfig::new(
        &[imap_account(lab, "a", &a, "starttls", ACCOUNT_EXTRA)],
        &format!(
            "[tickets]\nsubject_tag = \"A#\"\n\n{}",
            smtp_section(lab, "none", "", None).replace("tickets.example.test", "a.example.test")
        ),
    );
    let cfg_b = TestConfig::new(
        &[imap_account(lab, "b", &b, "starttls", ACCOUNT_EXTRA)],
        &format!(
            "[tickets]\nsubject_tag = \"B#\"\n\n{}",
            smtp_section(lab, "none", "", None).replace("tickets.example.test", "b.example.test")
        ),
    );
    let mut da = start_daemon(&cfg_a, "a");
    let mut db = start_daemon(&cfg_b, "b");
    da.wait_healthy(READY_WITHIN).await;
    db.wait_healthy(READY_WITHIN).await;
    // Somebody at B's address writes to A (and, separately, A's address to B).
    lab.smtp_send(
        &b,
        &a,
        &customer_mail(&b, &a, "von B", "start-b@example.test", ""),
    )
    .await;
    lab.smtp_send(
        &a,
        &b,
        &customer_mail(&a, &b, "von A", "start-a@example.test", ""),
    )
    .await;
    let settled = wait_until(Duration::from_secs(30), || async {
        cfg_a.tickets().len() == 2 && cfg_b.tickets().len() == 2
    })
    .await;
    assert!(settled, "logs:\n{}\n{}", da.log_text(), db.log_text());
    // Each side answered the human mail once and ignored the other's automatic reply: after a
    // whole pass on each side that began once both had their two tickets, each outbox holds
    // exactly one reply, sent. Both replies were received (the second ticket on each side), so
    // no mail is left in flight that could start a loop.
    for (cfg, daemon, account) in [(&cfg_a, &da, "a"), (&cfg_b, &db, "b")] {
        let rows = final_outbox(daemon, cfg, &[account]).await;
        assert_eq!(rows.len(), 1, "{account}: {rows:?}");
        assert_eq!(rows[0].status, "sent", "{account}: {rows:?}");
        assert_eq!(cfg.tickets().len(), 2);
        let notes: Vec<String> = cfg
            .tickets()
            .iter()
            .map(|t| {
                cfg.show(t["number"].as_str().unwrap())["articles"][0]["auto_reply"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(
            notes.iter().any(|n| n.contains("Auto-Submitted")),
            "{notes:?}"
        );
    }
    drop((da, db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_waits_a_bounded_time_for_smtp_and_the_next_run_sends() {
    let lab = Lab::get();
    let support = lab.fresh_user("once-support");
    let customer = lab.fresh_user("once-customer");
    let proxy = SwitchProxy::start(lab.port("MAIL_LAB_SMTP_PORT"), false).await;
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "starttls",
            ACCOUNT_EXTRA,
        )],
        &smtp_section(lab, "none", "", Some(proxy.port)),
    );
    lab.append(
        &support,
        "INBOX",
        &[customer_mail(
            &customer,
            &support,
            "once",
            "once@customer.example.test",
            "",
        )],
    )
    .await;
    let started = Instant::now();
    let out = cfg.run(&["run", "--once"]);
    let took = started.elapsed();
    eprintln!("run --once with SMTP down took {took:?}");
    assert!(took < Duration::from_secs(40), "{took:?}");
    assert!(
        common::stderr(&out).contains("still queued"),
        "{}",
        common::stderr(&out)
    );
    // Mail stored and moved, the reply still queued: EX_TEMPFAIL, neither success nor failure.
    assert_eq!(out.status.code(), Some(75), "{}", common::stderr(&out));
    assert_eq!(lab.count(&support, "INBOX").await, 0);
    assert_eq!(outbox(&cfg).await[0].status, "pending");
    proxy.set_up(true);
    let started = Instant::now();
    let out = run_once(&cfg);
    eprintln!("run --once with SMTP back took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let sent = outbox(&cfg).await;
    assert_eq!(sent[0].status, "sent");
    assert_eq!(
        lab.wait_for_count(&customer, "INBOX", 1, Duration::from_secs(20))
            .await,
        1
    );
    // A third run finds nothing to send: the one reply is still the only outbox row, as sent.
    let out = run_once(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(outbox(&cfg).await, sent);
    assert_eq!(lab.count(&customer, "INBOX").await, 1);
}

/// `[smtp]` for the lab with `message_id_domain` left at its default (the first account's
/// domain, example.test: the same domain the shop's own systems use).
fn smtp_section_default_domain(lab: &Lab, mode: &str, login: &str) -> String {
    smtp_section(lab, mode, login, None)
        .replace("message_id_domain = \"tickets.example.test\"\n", "")
}

/// The automatic-reply note of a ticket's first article.
fn reply_note(cfg: &TestConfig, number: &str) -> String {
    cfg.show(number)["articles"][0]["auto_reply"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_shop_mail_that_matches_no_ticket_opens_a_ticket_with_a_reply() {
    let lab = Lab::get();
    let support = lab.fresh_user("order-support");
    let customer = lab.fresh_user("order-customer");
    let echo = lab.fresh_user("order-echo");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "none",
            ACCOUNT_EXTRA,
        )],
        &smtp_section_default_domain(lab, "none", ""),
    );
    // The shop's order system sent "Ihre Bestellung 4711" from the shop's own domain.
    let answer = customer_mail(
        &customer,
        &support,
        "Re: Ihre Bestellung 4711",
        &format!("answer.{}@customer.example.test", std::process::id()),
        "In-Reply-To: <order-4711@example.test>\r\nReferences: <order-4711@example.test>\r\n",
    );
    lab.append(&support, "INBOX", &[answer]).await;
    run_once(&cfg);
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let number = tickets[0]["number"].as_str().unwrap().to_string();
    let note = reply_note(&cfg, &number);
    assert!(note.starts_with("auto-reply sent to"), "{note}");
    assert_eq!(
        lab.wait_for_count(&customer, "INBOX", 1, Duration::from_secs(20))
            .await,
        1
    );
    let (reply, _) = replies(lab, &customer).await.remove(0);
    assert!(
        reply.message_id.ends_with("@example.test"),
        "{}",
        reply.message_id
    );

    // Our own reply coming back stripped of every automation header (a forwarder that keeps
    // only the Message-ID) is recognised by the Message-ID we sent: no reply to it.
    let stripped = format!(
        "From: {echo}\r\nTo: {support}\r\nSubject: Fwd: Ihre Anfrage\r\nMessage-ID: <{}>\r\nDate: {}\r\n\r\nforwarded\r\n",
        reply.message_id,
        rfc2822_now()
    );
    // And the customer answers the reply: a follow-up of the same ticket, no reply either.
    let followup = format!(
        "From: {customer}\r\nTo: {support}\r\nSubject: Re: {}\r\nMessage-ID: <answer2.{}@customer.example.test>\r\n\
         In-Reply-To: <{}>\r\nDate: {}\r\n\r\nDanke\r\n",
        reply.subject,
        std::process::id(),
        reply.message_id,
        rfc2822_now()
    );
    lab.append(
        &support,
        "INBOX",
        &[stripped.into_bytes(), followup.into_bytes()],
    )
    .await;
    run_once(&cfg);
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let joined = tickets
        .iter()
        .find(|t| t["number"] == number.as_str())
        .unwrap();
    assert_eq!(joined["articles"].as_i64(), Some(2));
    let echoed = tickets
        .iter()
        .find(|t| t["customer"] == echo.as_str())
        .unwrap();
    let note = reply_note(&cfg, echoed["number"].as_str().unwrap());
    assert!(note.contains("our own Message-ID"), "{note}");
    // No wait needed: `run --once` has exited, and every reply goes through the outbox, so its
    // one row, sent (the reply that arrived above), is every reply there will ever be.
    let rows = outbox(&cfg).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].message_id, reply.message_id);
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "no second reply");
    assert_eq!(lab.count(&echo, "INBOX").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_form_mail_belongs_to_and_is_answered_at_its_reply_to_person() {
    let lab = Lab::get();
    let support = lab.fresh_user("form-support");
    let form = lab.fresh_user("noreply-form");
    let customer = lab.fresh_user("form-customer");
    let robot = lab.fresh_user("no-reply-robot");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "none",
            ACCOUNT_EXTRA,
        )],
        &smtp_section(lab, "none", "", None),
    );
    let form_mail = |reply_to: &str, subject: &str, id: &str| {
        format!(
            "From: Webshop Kontaktformular <{form}>\r\nReply-To: {reply_to}\r\nTo: {support}\r\n\
             Subject: {subject}\r\nMessage-ID: <{id}.{}@shop.example.test>\r\nDate: {}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nName: Erika Mustermann\r\nNachricht: Wo bleibt mein Paket?\r\n",
            std::process::id(),
            rfc2822_now()
        )
        .into_bytes()
    };
    lab.append(
        &support,
        "INBOX",
        &[
            form_mail(
                &format!("=?UTF-8?Q?Erika_M=C3=BCstermann?= <{customer}>"),
                "Kontaktformular",
                "form1",
            ),
            // A form whose Reply-To is a robot stays unanswered.
            form_mail(&robot, "Kontaktformular (robot)", "form2"),
        ],
    )
    .await;
    run_once(&cfg);
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let t = tickets
        .iter()
        .find(|t| t["subject"] == "Kontaktformular")
        .unwrap();
    assert_eq!(t["customer"].as_str(), Some(customer.as_str()));
    assert_eq!(t["customer_name"].as_str(), Some("Erika Müstermann"));
    let note = reply_note(&cfg, t["number"].as_str().unwrap());
    assert!(note.starts_with("auto-reply sent to"), "{note}");
    let r = tickets
        .iter()
        .find(|t| t["subject"] == "Kontaktformular (robot)")
        .unwrap();
    let note = reply_note(&cfg, r["number"].as_str().unwrap());
    assert!(note.contains("robot address"), "{note}");

    assert_eq!(
        lab.wait_for_count(&customer, "INBOX", 1, Duration::from_secs(20))
            .await,
        1
    );
    let (reply, raw) = replies(lab, &customer).await.remove(0);
    assert!(
        reply.text.contains("Guten Tag Erika Müstermann,"),
        "{}",
        reply.text
    );
    assert!(
        header(&raw, "To").is_some_and(|to| to.contains(&customer) && to.contains("=?")),
        "{raw}"
    );
    assert_eq!(lab.count(&form, "INBOX").await, 0);
    assert_eq!(lab.count(&robot, "INBOX").await, 0);
}

/// A delivery report as Postfix writes it (RFC 3464, the returned header as
/// `text/rfc822-headers`) for a mail whose header is `returned_header`.
fn postfix_dsn(to: &str, recipient: &str, returned_header: &str) -> Vec<u8> {
    let id = std::process::id();
    format!(
        "From: MAILER-DAEMON@mx.customer.example.test (Mail Delivery System)\r\nTo: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nDate: {}\r\nAuto-Submitted: auto-replied\r\n\
         Message-Id: <dsn.{id}@mx.customer.example.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B.{id}\"\r\n\r\n\
         This is a MIME-encapsulated message.\r\n\r\n--B.{id}\r\nContent-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\nI'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\r\n<{recipient}>: mailbox unknown\r\n\r\n\
         --B.{id}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.customer.example.test\r\n\r\nFinal-Recipient: rfc822; {recipient}\r\n\
         Action: failed\r\nStatus: 5.1.1\r\n\r\n--B.{id}\r\nContent-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\r\n{returned_header}\r\n\r\n--B.{id}--\r\n",
        rfc2822_now()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_of_our_reply_joins_its_ticket_and_marks_the_reply_bounced() {
    let lab = Lab::get();
    let support = lab.fresh_user("bounce-support");
    let customer = lab.fresh_user("bounce-customer");
    let cfg = TestConfig::new(
        &[imap_account(
            lab,
            "support",
            &support,
            "starttls",
            ACCOUNT_EXTRA,
        )],
        &smtp_section(lab, "starttls", &support, None),
    );
    let daemon = start_daemon(&cfg, "bounce");
    lab.append(
        &support,
        "INBOX",
        &[customer_mail(
            &customer,
            &support,
            "Wo ist mein Paket?",
            &format!("typo.{}@customer.example.test", std::process::id()),
            "",
        )],
    )
    .await;
    assert_eq!(
        lab.wait_for_count(&customer, "INBOX", 1, Duration::from_secs(30))
            .await,
        1,
        "no reply; daemon log:\n{}",
        daemon.log_text()
    );
    // The lab's Postfix refuses outside domains at RCPT time and so never writes a bounce
    // itself; the customer's MTA "returns" the reply with the header it received, delivered to
    // the envelope sender (the account) with the null sender, as real bounces are.
    let (_, raw) = replies(lab, &customer).await.remove(0);
    let returned_header = &raw[..raw.find("\r\n\r\n").unwrap()];
    lab.smtp_send_to_all(
        "",
        &[&support],
        &postfix_dsn(&support, &customer, returned_header),
    )
    .await;
    let bounced = wait_until(Duration::from_secs(30), || async {
        outbox(&cfg)
            .await
            .first()
            .is_some_and(|r| r.bounced_at.is_some())
    })
    .await;
    assert!(
        bounced,
        "no bounce recorded; daemon log:\n{}",
        daemon.log_text()
    );

    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "the bounce opened a ticket: {tickets:?}");
    let number = tickets[0]["number"].as_str().unwrap();
    let detail = cfg.show(number);
    let articles = detail["articles"].as_array().unwrap();
    assert_eq!(articles.len(), 2, "{detail}");
    assert_eq!(articles[1]["bounce"], true, "{detail}");
    assert_eq!(articles[1]["followup"], true);
    assert!(
        articles[1]["from"]
            .as_str()
            .unwrap()
            .starts_with("MAILER-DAEMON"),
        "{detail}"
    );
    let note = articles[0]["auto_reply"].as_str().unwrap();
    assert!(note.contains("bounced"), "{note}");
    let rows = outbox(&cfg).await;
    assert_eq!(rows.len(), 1, "no reply to the bounce: {rows:?}");
    assert_eq!(rows[0].status, "sent");
    // Both mails left the account's INBOX.
    assert_eq!(
        lab.wait_for_count(&support, "Archive", 2, Duration::from_secs(10))
            .await,
        2
    );
    assert_eq!(lab.count(&support, "INBOX").await, 0);

    let metrics = daemon.metrics().unwrap_or_default();
    assert!(
        metrics.contains("mail2ticket_replies_bounced_total{account=\"support\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mail2ticket_outbox_bounced 1"),
        "{metrics}"
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mail_to_two_accounts_is_one_ticket_with_one_reply_and_both_mailboxes_emptied() {
    let lab = Lab::get();
    let support = lab.fresh_user("two-support");
    let returns = lab.fresh_user("two-returns");
    let customer = lab.fresh_user("two-customer");
    let cfg = TestConfig::new(
        &[
            imap_account(lab, "support", &support, "starttls", ACCOUNT_EXTRA),
            // Each copy is disposed of as its own account says: moved here, deleted there.
            pop3_account(
                lab,
                "returns",
                &returns,
                "none",
                "action = \"delete\"\nauto_reply = true\n",
            ),
        ],
        &smtp_section(lab, "none", "", None),
    );
    let mut daemon = start_daemon(&cfg, "two");
    daemon.wait_healthy(READY_WITHIN).await;
    let mail = customer_mail(
        &customer,
        &support,
        "Rücksendung 4711",
        &format!("both.{}@customer.example.test", std::process::id()),
        &format!("Cc: {returns}\r\n"),
    );
    // One SMTP transaction, two recipients: each mailbox gets its own copy.
    lab.smtp_send_to_all(&customer, &[&support, &returns], &mail)
        .await;
    let done = wait_until(Duration::from_secs(30), || async {
        lab.count(&customer, "INBOX").await >= 1
            && lab.count(&support, "INBOX").await == 0
            && lab.count(&returns, "INBOX").await == 0
    })
    .await;
    assert!(done, "daemon log:\n{}", daemon.log_text());
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let number = tickets[0]["number"].as_str().unwrap().to_string();
    let detail = cfg.show(&number);
    let mut by: Vec<String> = detail["articles"][0]["received_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        by[0],
        tickets[0]["account"].as_str().unwrap(),
        "the first to store it opened it"
    );
    by.sort();
    assert_eq!(by, vec!["returns", "support"], "{detail}");
    assert_eq!(lab.count(&support, "Archive").await, 1);

    // The customer answers the reply to both addresses: it joins the ticket, once, unanswered.
    let (reply, _) = replies(lab, &customer).await.remove(0);
    let answer = format!(
        "From: {customer}\r\nTo: {support}\r\nCc: {returns}\r\nSubject: Re: {}\r\n\
         Message-ID: <both-answer.{}@customer.example.test>\r\nIn-Reply-To: <{}>\r\nDate: {}\r\n\r\nDanke!\r\n",
        reply.subject,
        std::process::id(),
        reply.message_id,
        rfc2822_now()
    );
    lab.smtp_send_to_all(&customer, &[&support, &returns], answer.as_bytes())
        .await;
    // Joined once both accounts have stored their copy (each one names its account in the
    // answer's `received_by`), and both mailboxes are empty again.
    let joined = wait_until(Duration::from_secs(30), || async {
        cfg.show(&number)["articles"][1]["received_by"]
            .as_array()
            .is_some_and(|by| by.len() == 2)
            && lab.count(&support, "Archive").await == 2
            && lab.count(&returns, "INBOX").await == 0
    })
    .await;
    assert!(joined, "daemon log:\n{}", daemon.log_text());
    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_eq!(tickets[0]["articles"].as_i64(), Some(2));
    // One reply only: after a whole pass over each account that began once both copies of the
    // answer were stored, the outbox holds the first reply alone, sent.
    let rows = final_outbox(&daemon, &cfg, &["support", "returns"]).await;
    assert_eq!(rows.len(), 1, "one reply only: {rows:?}");
    assert_eq!(rows[0].status, "sent");
    assert_eq!(rows[0].message_id, reply.message_id);
    assert_eq!(lab.count(&customer, "INBOX").await, 1, "one reply only");
    drop(daemon);
}

/// A customer mail with its own Date and extra header lines (ending in CRLF).
fn dated_mail(from: &str, to: &str, subject: &str, id: &str, date: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Kunde <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: {date}\r\n\
         MIME-Version: 1.0\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\nBitte um Rückruf.\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_mailbox_with_rules_gets_old_mail_closed_and_rules_applied_without_stray_replies() {
    let lab = Lab::get();
    let support = lab.fresh_user("oldbox-support");
    let customer = lab.fresh_user("oldbox-customer");
    let account = format!(
        "{ACCOUNT_EXTRA}auto_reply_limit = 1000\nold_mail_status = \"closed\"\nold_mail_age = \"14d\"\n\
         [[account.rule]]\nheader = \"X-Spam-Flag\"\ncontains = \"yes\"\nstatus = \"spam\"\nauto_reply = false\n\
         [[account.rule]]\nheader = \"from\"\nmatches = \"<service@paypal\\\\.example>$\"\ntype = \"payment\"\nauto_reply = false\n"
    );
    let cfg = TestConfig::new(
        &[imap_account(lab, "support", &support, "ssl", &account)],
        &format!(
            "\n[tickets]\nstatuses = [\"open\", \"closed\", \"spam\"]\ntypes = [\"question\", \"payment\"]\n\n{}",
            smtp_section(lab, "ssl", &support, None)
        ),
    );
    // 300 mails: 200 from last year (one flagged as spam), 100 of today (one spam, one from
    // PayPal), every one from the customer's mailbox, so the replies arrive there.
    let old_date = "Tue, 02 Dec 2025 09:00:00 +0100";
    let mails: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let id = format!("oldbox{i}.{}@customer.example.test", std::process::id());
            let date = if i < 200 {
                old_date.to_string()
            } else {
                rfc2822_now()
            };
            let (from, extra) = match i {
                0 | 250 => (customer.clone(), "X-Spam-Flag: YES\r\n"),
                260 => ("service@paypal.example".to_string(), ""),
                _ => (customer.clone(), ""),
            };
            dated_mail(&from, &support, &format!("Anfrage {i}"), &id, &date, extra)
        })
        .collect();
    lab.append(&support, "INBOX", &mails).await;
    // A mail dated 1970 by a broken clock, on the server since last year: judged by the
    // server's INTERNALDATE.
    let broken_clock = dated_mail(
        &customer,
        &support,
        "Anfrage 300",
        &format!("oldbox300.{}@customer.example.test", std::process::id()),
        "Thu, 01 Jan 1970 00:00:00 +0000",
        "",
    );
    lab.append_arrived(
        &support,
        "INBOX",
        &broken_clock,
        "02-Dec-2025 09:00:00 +0100",
    )
    .await;
    run_once(&cfg);

    let tickets = cfg.tickets();
    assert_eq!(tickets.len(), 301);
    let count = |key: &str, value: &str| tickets.iter().filter(|t| t[key] == value).count();
    assert_eq!(count("status", "closed"), 200, "old mail, but the spam one");
    assert_eq!(
        count("status", "spam"),
        2,
        "the spam rule wins over the old-mail status"
    );
    assert_eq!(count("status", "open"), 99);
    assert_eq!(count("type", "payment"), 1);
    let subject = |n: u32| format!("Anfrage {n}");
    let ticket_of = |n: u32| {
        let t = tickets.iter().find(|t| t["subject"] == subject(n)).unwrap();
        cfg.show(t["number"].as_str().unwrap())
    };
    let spam = ticket_of(250);
    assert_eq!(
        spam["articles"][0]["rule"],
        "rule 1 (X-Spam-Flag contains \"yes\")"
    );
    assert!(spam["articles"][0]["auto_reply"]
        .as_str()
        .unwrap()
        .contains("sets auto_reply = false"));
    let old = ticket_of(17);
    assert!(
        old["articles"][0]["auto_reply"]
            .as_str()
            .unwrap()
            .contains("old_mail_age"),
        "{old}"
    );
    assert_eq!(old["articles"][0]["rule"], serde_json::Value::Null);
    // One reply per new mail of today that no rule stopped: 100 - spam - PayPal.
    let rows = outbox(&cfg).await;
    assert_eq!(rows.len(), 98, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.recipient == customer.to_lowercase()),
        "{rows:?}"
    );
    assert_eq!(
        lab.count(&support, "INBOX").await,
        0,
        "every mail moved to Archive"
    );
}
