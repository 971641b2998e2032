//! OAuth 2.0 sign-in: the config's rules per provider, and (against the lab's provider and the
//! real Dovecot and Postfix) tokens fetched, refreshed and used for IMAP, POP3 and SMTP.

mod common;

use common::TestConfig;

/// An IMAP account whose `[account.oauth2]` table is `oauth2` (host and port are never reached
/// by check-config).
fn oauth_account(name: &str, oauth2: &str, extra: &str) -> String {
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
            oauth_account(
                "ms",
                "provider = \"microsoft\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"TopSecret1\"\ntenant = \"common\"\n",
                "",
            ),
            oauth_account(
                "g",
                "provider = \"google\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"TopSecret2\"\n",
                "",
            ),
            oauth_account(
                "cu",
                "provider = \"custom\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\n",
                "",
            ),
            oauth_account(
                "pw",
                "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"TopSecret3\"\n",
                "password = \"TopSecret4\"\n",
            ),
            oauth_account(
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
        &[oauth_account(
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
    let account = oauth_account(
        "ms",
        "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\ngrant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        "",
    );
    let err = config_errors(
        &[account.clone()],
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
