//! OAuth 2.0 sign-in: the config's rules per provider, and (against the lab's provider and the
//! real Dovecot and Postfix) tokens fetched, refreshed and used for IMAP, POP3 and SMTP.

mod common;

use common::TestConfig;

/// An IMAP account whose `[account.oauth2]` table is `oauth2` (host and port are never reached
/// by check-config).
fn config_account(name: &str, oauth2: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nemail = \"{name}@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\n\
         user = \"{name}@example.test\"\nticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\n\
         auth = \"oauth2\"\n{extra}\n[account.oauth2]\n{oauth2}\n"
    )
}

/// check-config's stderr, asserting it failed with the config exit code.
fn config_errors(accounts: &[String], extra: &str) -> String {
    let cfg = TestConfig::new(accounts, extra);
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "stderr: {err}");
    err
}

/// The line `file:LINE:COL: error: KEY: ...` naming `key` with `words`; returns its line number.
fn line_of(err: &str, key: &str, words: &str) -> usize {
    let line = err
        .lines()
        .find(|l| l.contains(&format!(": {key}: ")) && l.contains(words))
        .unwrap_or_else(|| panic!("no error naming {key} ({words}) in:\n{err}"));
    line.split(':').nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn check_config_knows_each_providers_rules_and_names_key_and_line() {
    let err = config_errors(
        &[
            config_account(
                "ms",
                "provider = \"microsoft\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"TopSecret1\"\ntenant = \"common\"\n",
                "",
            ),
            config_account(
                "g",
                "provider = \"google\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"TopSecret2\"\n",
                "",
            ),
            config_account(
                "cu",
                "provider = \"custom\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\n",
                "",
            ),
            config_account(
                "pw",
                "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"TopSecret3\"\n",
                "password = \"TopSecret4\"\n",
            ),
            config_account(
                "plain",
                "provider = \"custom\"\ngrant = \"refresh_token\"\nclient_id = \"c\"\ntoken_url = \"http://login.example.com/token\"\n",
                "",
            ),
            // Every line of the accounts above ends before this one starts.
            "name = \"none\"\nemail = \"none@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
             ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\nauth = \"oauth2\"\n"
                .to_string(),
        ],
        "",
    );
    let tenant = line_of(
        &err,
        "account[1].oauth2.tenant",
        "\"common\" cannot issue app-only tokens",
    );
    let google = line_of(
        &err,
        "account[2].oauth2.grant",
        "Google has no client_credentials grant for mail",
    );
    let token_url = line_of(
        &err,
        "account[3].oauth2.token_url",
        "provider = \"custom\" needs the token endpoint",
    );
    let secret = line_of(
        &err,
        "account[3].oauth2.client_secret",
        "client_credentials grant signs in with the app's secret",
    );
    let password = line_of(
        &err,
        "account[4].password",
        "not used with auth = \"oauth2\"",
    );
    let http = line_of(
        &err,
        "account[5].oauth2.token_url",
        "plain HTTP to another machine",
    );
    let table = line_of(&err, "account[6].auth", "needs a [account.oauth2] table");
    assert!(tenant < google && google < token_url && token_url <= secret && secret < password);
    assert!(password < http && http < table, "{err}");
    for secret in ["TopSecret1", "TopSecret2", "TopSecret3", "TopSecret4"] {
        assert!(
            !err.contains(secret),
            "a secret in check-config output:\n{err}"
        );
    }
}

#[test]
fn a_refresh_token_grant_without_authorization_says_what_to_run() {
    let cfg = TestConfig::new(
        &[config_account(
            "support",
            "provider = \"google\"\ngrant = \"refresh_token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
            "",
        )],
        "",
    );
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "a warning, not an error: {err}");
    assert!(
        err.contains("warning: account[1].oauth2.grant: no authorization yet")
            && err.contains("run `mail2ticket oauth2 authorize support`"),
        "{err}"
    );
    assert!(
        err.contains(
            &cfg.dir
                .path()
                .join("oauth2/support.token")
                .display()
                .to_string()
        ),
        "names the default token file beside the store: {err}"
    );
}

#[test]
fn smtp_with_oauth2_needs_its_table_and_a_user() {
    let account = config_account(
        "ms",
        "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        "",
    );
    let err = config_errors(
        std::slice::from_ref(&account),
        "[smtp]\nhost = \"h\"\nauth = \"oauth2\"\n",
    );
    line_of(&err, "smtp.auth", "needs a [smtp.oauth2] table");
    line_of(&err, "smtp.user", "signs in as `user`");

    let ok = TestConfig::new(
        &[account],
        "[smtp]\nhost = \"h\"\nuser = \"ms@example.test\"\nauth = \"oauth2\"\n[smtp.oauth2]\nprovider = \"microsoft\"\n\
         tenant = \"contoso.onmicrosoft.com\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    );
    let out = ok.run(&["check-config"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

use std::time::Duration;

use common::oauth::{leaked_secrets, oauth_account, oauth_smtp, TokenProvider};
use common::{imap_account, pop3_account, Lab};

/// A customer mail dated now, from `from` to `to`.
fn customer_mail(from: &str, to: &str, subject: &str, id: &str) -> Vec<u8> {
    format!(
        "From: Kunde <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: {}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBitte helfen Sie mir.\r\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

/// Registers a client for `user`'s mailbox whose tokens live `ttl` seconds; returns its id.
async fn client_for(provider: &TokenProvider, user: &str, ttl: u64) -> String {
    let client_id = format!("client-{user}");
    provider.register(&client_id, SECRET, user, ttl).await;
    client_id
}

const SECRET: &str = "Client-Secret-7f3a9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_ingest_over_imap_and_pop3_and_send_the_reply_over_submission() {
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let imaps = lab.fresh_user("oauth-imaps");
    let starttls = lab.fresh_user("oauth-starttls");
    let pop = lab.fresh_user("oauth-pop");
    let customer = lab.fresh_user("oauth-customer");
    let mut accounts = Vec::new();
    for (name, user, section) in [
        (
            "imaps",
            &imaps,
            imap_account(
                lab,
                "imaps",
                &imaps,
                "ssl",
                "action = \"delete\"\nauto_reply = true\n",
            ),
        ),
        (
            "starttls",
            &starttls,
            imap_account(
                lab,
                "starttls",
                &starttls,
                "starttls",
                "action = \"delete\"\n",
            ),
        ),
        (
            "pop",
            &pop,
            pop3_account(lab, "pop", &pop, "starttls", "action = \"delete\"\n"),
        ),
    ] {
        let client_id = client_for(&provider, user, 60).await;
        accounts.push(oauth_account(
            lab,
            &provider,
            section,
            "client_credentials",
            &client_id,
            SECRET,
            "",
        ));
        lab.smtp_send(
            &customer,
            user,
            &customer_mail(
                &customer,
                user,
                &format!("Frage an {name}"),
                &format!("{name}@customer.example.test"),
            ),
        )
        .await;
    }
    let smtp_client = format!("smtp-{imaps}");
    provider.register(&smtp_client, SECRET, &imaps, 60).await;
    let cfg = TestConfig::new(
        &accounts,
        &oauth_smtp(lab, &provider, &imaps, &smtp_client, SECRET),
    );
    for user in [&imaps, &starttls, &pop] {
        assert_eq!(
            lab.wait_for_count(user, "INBOX", 1, Duration::from_secs(20))
                .await,
            1
        );
    }

    let out = common::mail2ticket_cmd(&cfg.path)
        .args(["run", "--once"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let log = common::stderr(&out);
    assert!(out.status.success(), "run --once failed:\n{log}");

    assert_eq!(
        cfg.ticket_subjects(),
        ["Frage an imaps", "Frage an pop", "Frage an starttls"]
    );
    for user in [&imaps, &starttls, &pop] {
        assert_eq!(
            lab.count(user, "INBOX").await,
            0,
            "{user}'s mail is disposed"
        );
    }
    let replies = lab.messages(&customer, "INBOX").await;
    assert_eq!(
        replies.len(),
        1,
        "one auto-reply, sent over submission with a token"
    );
    let reply = String::from_utf8_lossy(&replies[0]);
    assert!(
        reply.contains(&format!("From: <{imaps}>")) || reply.contains(&imaps),
        "{reply}"
    );

    let stats = provider.stats().await;
    for client in [
        format!("client-{imaps}"),
        format!("client-{starttls}"),
        format!("client-{pop}"),
        smtp_client,
    ] {
        assert_eq!(
            stats["grants"][&client]["client_credentials"], 1,
            "one token per source: {stats}"
        );
    }
    assert!(
        log.contains("AUTHENTICATE") || log.contains("AUTH "),
        "the trace shows the logins happen"
    );
    let leaks = leaked_secrets(&log, &[SECRET]);
    assert!(
        leaks.is_empty(),
        "secrets in RUST_LOG=trace output: {leaks:?}"
    );
}

/// Waits up to `limit` for `check` to hold, looking every 200 ms.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_refresh_tokens_are_stored_before_use_and_survive_a_sigkill() {
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let user = lab.fresh_user("oauth-rotate");
    let customer = lab.fresh_user("oauth-rotate-customer");
    // Tokens live 4 s and POP3 logs in every second: refreshes happen while the daemon runs.
    let client_id = client_for(&provider, &user, 4).await;
    let section = pop3_account(lab, "pop", &user, "ssl", "action = \"delete\"\n");
    let cfg = TestConfig::new(
        &[oauth_account(
            lab,
            &provider,
            section,
            "refresh_token",
            &client_id,
            SECRET,
            "",
        )],
        "",
    );
    let token_file = cfg.dir.path().join("oauth2/pop.token");
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    let first = provider.refresh_token(&client_id, &user).await;
    std::fs::write(&token_file, &first).unwrap();

    let mut daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon-1.log"));
    lab.smtp_send(
        &customer,
        &user,
        &customer_mail(
            &customer,
            &user,
            "Vor dem Absturz",
            "before@customer.example.test",
        ),
    )
    .await;
    let stored = eventually(Duration::from_secs(30), || async {
        common::ticket_count(&cfg.store).await == 1
    })
    .await;
    let log = || std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(stored, "the first mail became a ticket; log:\n{}", log());
    let rotated = eventually(Duration::from_secs(30), || async {
        provider.grants(&client_id, "refresh_token").await >= 4
    })
    .await;
    assert!(
        rotated,
        "refresh tokens were rotated while the daemon ran; log:\n{}",
        log()
    );
    daemon.kill();

    let kept = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(
        kept.trim(),
        first,
        "the file holds the rotated refresh token"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let grants_before = provider.grants(&client_id, "refresh_token").await;

    let daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon-2.log"));
    lab.smtp_send(
        &customer,
        &user,
        &customer_mail(
            &customer,
            &user,
            "Nach dem Absturz",
            "after@customer.example.test",
        ),
    )
    .await;
    let stored = eventually(Duration::from_secs(30), || async {
        common::ticket_count(&cfg.store).await == 2
    })
    .await;
    let log2 = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(
        stored,
        "after SIGKILL the daemon signs in with the stored token; log:\n{log2}"
    );
    assert!(provider.grants(&client_id, "refresh_token").await > grants_before);
    assert!(!log2.contains("invalid_grant"), "{log2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_authorize_runs_the_device_flow_and_the_daemon_signs_in_with_its_refresh_token() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let user = lab.fresh_user("oauth-device");
    let customer = lab.fresh_user("oauth-device-customer");
    let client_id = client_for(&provider, &user, 60).await;
    let section = imap_account(lab, "support", &user, "starttls", "action = \"delete\"\n");
    let cfg = TestConfig::new(
        &[oauth_account(
            lab,
            &provider,
            section,
            "refresh_token",
            &client_id,
            SECRET,
            "",
        )],
        "",
    );

    let mut authorize = tokio::process::Command::from(common::mail2ticket_cmd(&cfg.path))
        .args(["oauth2", "authorize", "support"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(authorize.stdout.take().unwrap()).lines();
    let mut shown = Vec::new();
    let code = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("oauth2 authorize prints the code")
            .unwrap()
            .unwrap_or_else(|| panic!("no code printed: {shown:?}"));
        shown.push(line.clone());
        if let Some(code) = line.split("enter the code ").nth(1) {
            break code.trim().to_string();
        }
    };
    assert!(
        shown
            .iter()
            .any(|l| l.trim() == "https://login.example.test/device"),
        "the verification URL is printed: {shown:?}"
    );
    // The admin approves in a browser: here, the provider's test door.
    let (status, body) = provider
        .post_json(
            "/admin/approve",
            &serde_json::json!({"user_code": code, "username": user}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let out = tokio::time::timeout(Duration::from_secs(30), authorize.wait_with_output())
        .await
        .expect("oauth2 authorize ends after the approval")
        .unwrap();
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(out.status.success(), "{rest}\n{}", common::stderr(&out));
    assert!(
        rest.contains("Authorized. The refresh token is stored in"),
        "{rest}"
    );

    let token_file = cfg.dir.path().join("oauth2/support.token");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(token_file.parent().unwrap()), 0o700);
    assert_eq!(provider.grants(&client_id, "device_code").await, 1);

    lab.smtp_send(
        &customer,
        &user,
        &customer_mail(
            &customer,
            &user,
            "Nach der Freigabe",
            "device@customer.example.test",
        ),
    )
    .await;
    assert_eq!(
        lab.wait_for_count(&user, "INBOX", 1, Duration::from_secs(20))
            .await,
        1
    );
    let out = cfg.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(cfg.tickets().len(), 1);
    assert_eq!(provider.grants(&client_id, "refresh_token").await, 1);
}

/// A loopback port where nothing listens: a token endpoint that is down.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Four accounts, each failing in its own way before or at the login: a wrong client secret,
/// a revoked authorization, a token endpoint that is down, and a token the mailbox refuses.
async fn failing_accounts(
    lab: &Lab,
    provider: &TokenProvider,
    cfg_dir: &std::path::Path,
) -> Vec<String> {
    let wrong = lab.fresh_user("oauth-wrong");
    let wrong_client = client_for(provider, &wrong, 60).await;
    let wrong_account = oauth_account(
        lab,
        provider,
        imap_account(lab, "wrongsecret", &wrong, "ssl", "action = \"delete\"\n"),
        "client_credentials",
        &wrong_client,
        "Expired-Secret-0000",
        "",
    );

    let revoked = lab.fresh_user("oauth-revoked");
    let revoked_client = client_for(provider, &revoked, 60).await;
    let refresh = provider.refresh_token(&revoked_client, &revoked).await;
    let token_file = cfg_dir.join("revoked.token");
    std::fs::write(&token_file, refresh).unwrap();
    let (status, _) = provider
        .post_json(
            "/admin/revoke",
            &serde_json::json!({"client_id": revoked_client}),
        )
        .await;
    assert_eq!(status, 200);
    let revoked_account = oauth_account(
        lab,
        provider,
        pop3_account(lab, "revoked", &revoked, "ssl", "action = \"delete\"\n"),
        "refresh_token",
        &revoked_client,
        SECRET,
        &format!("token_file = \"{}\"\n", token_file.display()),
    );

    let down = lab.fresh_user("oauth-down");
    let down_client = client_for(provider, &down, 60).await;
    let down_account = oauth_account(
        lab,
        provider,
        imap_account(lab, "down", &down, "starttls", "action = \"delete\"\n"),
        "client_credentials",
        &down_client,
        SECRET,
        "",
    )
    .replace(
        &provider.url(),
        &format!("http://127.0.0.1:{}", closed_port()),
    );

    // The provider gives this client tokens for another mailbox than the account reads: the
    // token is good, the mail server refuses it (Microsoft app-only without mailbox permission).
    let mailbox = lab.fresh_user("oauth-nomailbox");
    let elsewhere = lab.fresh_user("oauth-elsewhere");
    let other_client = client_for(provider, &elsewhere, 60).await;
    let refused_account = oauth_account(
        lab,
        provider,
        imap_account(lab, "nomailbox", &mailbox, "ssl", "action = \"delete\"\n"),
        "client_credentials",
        &other_client,
        SECRET,
        "",
    );
    vec![
        wrong_account,
        revoked_account,
        down_account,
        refused_account,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_failure_says_what_happened_and_what_to_do() {
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let dir = tempfile::tempdir().unwrap();
    let accounts = failing_accounts(lab, &provider, dir.path()).await;
    let cfg = TestConfig::new(&accounts, "");
    let out = common::mail2ticket_cmd(&cfg.path)
        .args(["run", "--once"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert!(!out.status.success());
    let line = |account: &str| {
        err.lines()
            .find(|l| l.starts_with(&format!("error: account {account}: ")))
            .unwrap_or_else(|| panic!("no error line for {account}:\n{err}"))
            .to_string()
    };
    let wrong = line("wrongsecret");
    assert!(
        wrong
            .contains("refused the client (invalid_client: unknown client or wrong client secret)"),
        "{wrong}"
    );
    assert!(
        wrong.contains("the client secret is wrong or expired"),
        "{wrong}"
    );
    let revoked = line("revoked");
    assert!(
        revoked.contains("invalid_grant: refresh token unknown, used or revoked"),
        "{revoked}"
    );
    assert!(
        revoked.contains("run `mail2ticket oauth2 authorize revoked`"),
        "{revoked}"
    );
    let down = line("down");
    assert!(down.contains("/token is unavailable"), "{down}");
    let refused = line("nomailbox");
    assert!(
        refused.contains("refused the login of") && refused.contains("AUTHENTICATIONFAILED"),
        "{refused}"
    );
    assert!(
        refused.contains("service principal has no access to this mailbox"),
        "{refused}"
    );
    let leaks = leaked_secrets(&err, &[SECRET, "Expired-Secret-0000"]);
    assert!(
        leaks.is_empty(),
        "secrets in RUST_LOG=trace output: {leaks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_each_token_failure_and_waits_long_for_the_admin() {
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let dir = tempfile::tempdir().unwrap();
    let accounts = failing_accounts(lab, &provider, dir.path()).await;
    let port = closed_port();
    let cfg = TestConfig::new(&accounts, "");
    let text = std::fs::read_to_string(&cfg.path).unwrap().replace(
        "[daemon]\n",
        &format!("[daemon]\nhttp_listen = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::write(&cfg.path, text).unwrap();
    let daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    let listen = format!("127.0.0.1:{port}").parse().unwrap();
    let expected = [
        ("wrongsecret", "oauth_invalid_client", true),
        ("revoked", "oauth_invalid_grant", true),
        ("down", "oauth_endpoint_unavailable", false),
        ("nomailbox", "oauth_mailbox_refused", true),
    ];
    let last = std::sync::Mutex::new(String::new());
    let all_failed = eventually(Duration::from_secs(30), || async {
        let Ok((_, body)) = mail2ticket::http::get_healthz(listen, Duration::from_secs(2)).await
        else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        *last.lock().unwrap() = body;
        expected
            .iter()
            .all(|(name, kind, _)| v["accounts"][name]["last_error_kind"] == *kind)
    })
    .await;
    let last = last.into_inner().unwrap();
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    assert!(all_failed, "/healthz: {last}\nlog:\n{log}");
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["status"], "unhealthy");
    let now = chrono::Utc::now();
    for (name, _, permanent) in expected {
        let a = &v["accounts"][name];
        assert_eq!(a["state"], "backing-off", "{a}");
        let until: chrono::DateTime<chrono::Utc> =
            a["backoff_until"].as_str().unwrap().parse().unwrap();
        let wait = (until - now).num_seconds();
        if permanent {
            assert!(wait >= 200, "{name} waits for the admin, not {wait}s: {a}");
        } else {
            assert!(
                wait < 60,
                "{name} retries soon like a network error, not in {wait}s: {a}"
            );
        }
    }
    assert!(
        log.contains("run `mail2ticket oauth2 authorize revoked`"),
        "{log}"
    );
}

/// `args` run with RUST_LOG=trace and --json: (exit success, steps by name, all output).
fn diagnose(cfg: &TestConfig, args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = common::mail2ticket_cmd(&cfg.path)
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", common::stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("--json output ({e}):\n{all}"));
    let steps = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap().to_string(), s.clone()))
        .collect::<serde_json::Map<_, _>>();
    (out.status.success(), serde_json::Value::Object(steps), all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_fetch_and_test_send_show_the_token_step_and_the_mechanism_and_never_the_token() {
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let imap_user = lab.fresh_user("oauth-diag-imap");
    let pop_user = lab.fresh_user("oauth-diag-pop");
    let imap_client = client_for(&provider, &imap_user, 60).await;
    let pop_client = client_for(&provider, &pop_user, 60).await;
    let smtp_client = format!("smtp-{imap_user}");
    provider
        .register(&smtp_client, SECRET, &imap_user, 60)
        .await;
    let imap = oauth_account(
        lab,
        &provider,
        imap_account(lab, "imap", &imap_user, "ssl", "action = \"delete\"\n"),
        "client_credentials",
        &imap_client,
        SECRET,
        "",
    );
    let pop = oauth_account(
        lab,
        &provider,
        pop3_account(lab, "pop", &pop_user, "ssl", "action = \"delete\"\n"),
        "client_credentials",
        &pop_client,
        SECRET,
        "",
    );
    let broken = imap
        .replace("name = \"imap\"", "name = \"broken\"")
        .replace(
            &format!("email = \"{imap_user}\""),
            "email = \"broken@example.test\"",
        )
        .replace(SECRET, "Wrong-Secret-1234");
    let cfg = TestConfig::new(
        &[imap, pop, broken],
        &oauth_smtp(lab, &provider, &imap_user, &smtp_client, SECRET),
    );
    let endpoint = format!(
        "client_credentials grant at {}/token: expires in 60 s",
        provider.url()
    );

    let (ok, steps, imap_out) = diagnose(&cfg, &["test-fetch", "imap", "--wait", "20"]);
    assert!(ok, "{imap_out}");
    assert_eq!(steps["token"]["detail"], endpoint, "{steps}");
    assert_eq!(
        steps["login"]["detail"],
        format!("logged in as {imap_user} by OAUTHBEARER")
    );
    assert_eq!(steps["test mail arrives"]["ok"], true);

    let (ok, steps, pop_out) = diagnose(&cfg, &["test-fetch", "pop", "--wait", "20"]);
    assert!(ok, "{pop_out}");
    assert_eq!(steps["token"]["detail"], endpoint, "{steps}");
    assert!(
        steps["login"]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("logged in as {pop_user} by ")),
        "{steps}"
    );

    let (ok, steps, send_out) = diagnose(&cfg, &["test-send", "imap"]);
    assert!(ok, "{send_out}");
    assert_eq!(steps["SMTP token"]["detail"], endpoint, "{steps}");
    assert!(
        steps["AUTH"]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("logged in as {imap_user} by XOAUTH2: 235")),
        "{steps}"
    );

    let (ok, steps, broken_out) = diagnose(&cfg, &["test-fetch", "broken"]);
    assert!(!ok);
    let token = steps["token"]["detail"].as_str().unwrap();
    assert!(
        token.contains("invalid_client: unknown client or wrong client secret")
            && token.contains(&provider.url()),
        "the provider's code and description: {token}"
    );
    assert!(
        steps.get("login").is_none(),
        "no login without a token: {steps}"
    );

    for out in [imap_out, pop_out, send_out, broken_out] {
        let leaks = leaked_secrets(&out, &[SECRET, "Wrong-Secret-1234"]);
        assert!(
            leaks.is_empty(),
            "secrets in RUST_LOG=trace output: {leaks:?}"
        );
    }
}

/// GET `path` from the daemon's HTTP listener: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}

/// A config whose daemon serves /healthz and /metrics on a free port; returns the port too.
fn with_http(accounts: &[String], extra: &str) -> (TestConfig, u16) {
    let port = closed_port();
    let cfg = TestConfig::new(accounts, extra);
    let text = std::fs::read_to_string(&cfg.path).unwrap().replace(
        "[daemon]\n",
        &format!("[daemon]\nhttp_listen = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::write(&cfg.path, text).unwrap();
    (cfg, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_refused_with_the_cached_token_gets_one_new_token_and_one_retry() {
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let user = lab.fresh_user("oauth-retry");
    let customer = lab.fresh_user("oauth-retry-customer");
    let client_id = client_for(&provider, &user, 600).await;
    let section = pop3_account(lab, "pop", &user, "starttls", "action = \"delete\"\n");
    let cfg = TestConfig::new(
        &[oauth_account(
            lab,
            &provider,
            section,
            "client_credentials",
            &client_id,
            SECRET,
            "",
        )],
        "",
    );
    let daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    let log = || std::fs::read_to_string(&daemon.log).unwrap_or_default();
    lab.smtp_send(
        &customer,
        &user,
        &customer_mail(&customer, &user, "Erste", "first@retry.example.test"),
    )
    .await;
    let first = eventually(Duration::from_secs(30), || async {
        common::ticket_count(&cfg.store).await == 1
    })
    .await;
    assert!(first, "{}", log());
    assert_eq!(
        provider.grants(&client_id, "client_credentials").await,
        1,
        "the token is cached across polls"
    );

    // The cached token dies at the provider while it still looks valid here (as a token does
    // that expired a moment early): the next login is refused once, then works with a new one.
    let (status, _) = provider
        .post_json(
            "/admin/revoke",
            &serde_json::json!({"client_id": client_id}),
        )
        .await;
    assert_eq!(status, 200);
    lab.smtp_send(
        &customer,
        &user,
        &customer_mail(&customer, &user, "Zweite", "second@retry.example.test"),
    )
    .await;
    let second = eventually(Duration::from_secs(30), || async {
        common::ticket_count(&cfg.store).await == 2
    })
    .await;
    let text = log();
    assert!(second, "{text}");
    assert_eq!(provider.grants(&client_id, "client_credentials").await, 2);
    assert!(
        text.contains("login refused with the cached token: one more try with a new one"),
        "{text}"
    );
    assert!(!text.contains("account failing"), "no failed pass: {text}");
}

/// 20 accounts (10 IMAP in IDLE, 10 POP3 polling) whose tokens live 20 s stay healthy for two
/// minutes while tokens are renewed ahead of expiry, counted in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_oauth_accounts_with_20s_tokens_stay_healthy_for_two_minutes() {
    let lab = Lab::get();
    let provider = TokenProvider::of(lab);
    let customer = lab.fresh_user("oauth-soak-customer");
    let mut accounts = Vec::new();
    let mut users = Vec::new();
    for i in 0..20 {
        let user = lab.fresh_user(&format!("oauth-soak{i}"));
        let client_id = client_for(&provider, &user, 20).await;
        let name = format!("soak{i}");
        let section = if i % 2 == 0 {
            let encryption = if i % 4 == 0 { "ssl" } else { "starttls" };
            imap_account(lab, &name, &user, encryption, "action = \"delete\"\n")
        } else {
            pop3_account(lab, &name, &user, "ssl", "action = \"delete\"\n")
        };
        accounts.push(oauth_account(
            lab,
            &provider,
            section,
            "client_credentials",
            &client_id,
            SECRET,
            "",
        ));
        users.push(user);
    }
    let (cfg, port) = with_http(&accounts, "");
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace("poll_interval = \"1s\"", "poll_interval = \"2s\"");
    std::fs::write(&cfg.path, text).unwrap();
    let daemon = common::Daemon::start(&cfg.path, cfg.dir.path().join("daemon.log"));
    let log = || std::fs::read_to_string(&daemon.log).unwrap_or_default();
    let healthy = eventually(Duration::from_secs(60), || async {
        http_get(port, "/healthz").is_some_and(|(code, _)| code == 200)
    })
    .await;
    assert!(healthy, "{:?}\n{}", http_get(port, "/healthz"), log());

    let started = std::time::Instant::now();
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(120) {
        let (code, body) = http_get(port, "/healthz").expect("/healthz answers");
        assert_eq!(code, 200, "unhealthy after {:?}: {body}", started.elapsed());
        samples += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    for (i, user) in users.iter().enumerate() {
        lab.smtp_send(
            &customer,
            user,
            &customer_mail(
                &customer,
                user,
                &format!("Soak {i}"),
                &format!("soak{i}@customer.example.test"),
            ),
        )
        .await;
    }
    let all = eventually(Duration::from_secs(60), || async {
        common::ticket_count(&cfg.store).await == 20
    })
    .await;
    assert!(all, "every account still ingests; log:\n{}", log());

    let (_, metrics) = http_get(port, "/metrics").unwrap();
    let requests: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mail2ticket_oauth_token_requests_total{"))
        .collect();
    let count = |outcome: &str| -> f64 {
        requests
            .iter()
            .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let ok = count("ok");
    // Each POP3 account renews every 15 s of its 20 s tokens: about 8 per account in 2 minutes.
    eprintln!("{samples} healthy samples; {ok} token requests, all ok");
    assert!(
        ok >= 20.0 + 10.0 * 6.0,
        "renewals counted in /metrics: {requests:#?}"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|l| !l.contains("outcome=\"ok\""))
            .count(),
        0,
        "{requests:#?}"
    );
}
