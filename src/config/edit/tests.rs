use proptest::prelude::*;

use super::*;
use crate::config::{parse, Severity};

const EXAMPLE: &str = include_str!("../../../config/example.toml");

/// A config that passes check-config on any machine: inline passwords, no files.
const VALID: &str = r#"# Tickets of the shop.
[store]
path = "/var/lib/mail2ticket/tickets.db"

[tickets]
types = ["question", "return"]
statuses = ["open"]

[[account]]
name = "support"
email = "support@example.com"
protocol = "imap"
host = "mail.example.com"
user = "support"
password = "pw1"
ticket_type = "question"
ticket_status = "open"
action = "move"
move_to = "Archive"

[[account]]
name = "returns"
email = "returns@example.com"
protocol = "pop3"
host = "mail.example.com"
user = "returns"
password = "pw2"
ticket_type = "return"
ticket_status = "open"
action = "delete"
"#;

fn set(key: &str, value: Value) -> (String, Change) {
    (key.to_string(), Change::Set(value))
}

fn text(s: &str) -> Value {
    Value::Str(s.to_string())
}

fn edit(name: &str, changes: Vec<(String, Change)>) -> AccountEdit {
    AccountEdit {
        original_name: Some(name.to_string()),
        changes,
    }
}

fn new_account(name: &str) -> AccountEdit {
    AccountEdit {
        original_name: None,
        changes: vec![
            set("name", text(name)),
            set("email", text(&format!("{name}@example.com"))),
            set("protocol", text("imap")),
            set("host", text("mail.example.com")),
            set("user", text(name)),
            set("password", text("pw")),
            set("ticket_type", text("question")),
            set("ticket_status", text("open")),
            set("action", text("delete")),
        ],
    }
}

/// Replaces the one occurrence of `from` in `text`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

#[test]
fn keeps_comments_and_order_of_untouched_keys() {
    let original = replace_once(
        EXAMPLE,
        "move_to = \"Archive\"\n# Send",
        "move_to = \"Archive\"   # where finished mails go\n# Send",
    );
    let changes = vec![
        set("move_to", text("Erledigt/Geprüft")),
        set("sender_name", text("Support")),
        ("reply_to".into(), Change::Remove),
        set("auto_reply_limit", Value::Int(3)),
    ];
    let edited = apply(&original, &edit("support", changes)).unwrap();

    let expected = replace_once(
        &original,
        "move_to = \"Archive\"   # where",
        "move_to = \"Erledigt/Geprüft\"   # where",
    );
    let expected = replace_once(
        &expected,
        "sender_name = \"Example Shop Support\"",
        "sender_name = \"Support\"",
    );
    // The removed key goes with the comment that describes it.
    let expected = replace_once(
        &expected,
        "# Reply-To of automatic replies.\nreply_to = \"support@example.com\"\n",
        "",
    );
    // A new key ends the table, before the comments that lead to the next [[account]].
    let expected = replace_once(
        &expected,
        "auto_reply = true\n",
        "auto_reply = true\nauto_reply_limit = 3\n",
    );
    assert_eq!(edited.text, expected);
    assert_eq!(edited.position, 0);
}

#[test]
fn edits_only_the_named_account() {
    let changes = vec![
        set("host", text("pop.example.com")),
        set("name", text("refunds")),
    ];
    let edited = apply(EXAMPLE, &edit("returns", changes)).unwrap();
    let expected = replace_once(
        EXAMPLE,
        "name = \"returns\"\nemail = \"returns@example.com\"\nactive = false\nprotocol = \"pop3\"\nhost = \"mail.example.com\"",
        "name = \"refunds\"\nemail = \"returns@example.com\"\nactive = false\nprotocol = \"pop3\"\nhost = \"pop.example.com\"",
    );
    // Renamed in its place: still the second account.
    assert_eq!(edited.position, 1);
    assert_eq!(edited.text, expected);

    assert_eq!(
        apply(EXAMPLE, &edit("nobody", vec![])),
        Err(EditError::NoSuchAccount("nobody".into()))
    );
}

#[test]
fn appends_a_new_account_after_the_last_one() {
    let added = "\n[[account]]\nname = \"new\"\nemail = \"new@example.com\"\nprotocol = \"imap\"\n\
                 host = \"mail.example.com\"\nuser = \"new\"\npassword = \"pw\"\n\
                 ticket_type = \"question\"\nticket_status = \"open\"\naction = \"delete\"\n";

    // The example's last table is [account.oauth2]; the commented-out keys after it stay there.
    let edited = apply(EXAMPLE, &new_account("new")).unwrap();
    assert_eq!(edited.text, format!("{EXAMPLE}{added}"));
    assert_eq!(edited.position, 4);

    // A table after the accounts stays after the new one, with the comments above its header.
    let smtp = "\n# Replies.\n[smtp]\nhost = \"mail.example.com\"\n";
    let edited = apply(&format!("{VALID}{smtp}"), &new_account("new")).unwrap();
    assert_eq!(edited.text, format!("{VALID}{added}{smtp}"));
    assert_eq!(edited.position, 2);

    // No account yet: the first one ends the file.
    let no_accounts = "[store]\npath = \"/tmp/t.db\"\n";
    let edited = apply(no_accounts, &new_account("new")).unwrap();
    assert_eq!(edited.text, format!("{no_accounts}{added}"));
    assert_eq!(edited.position, 0);
}

#[test]
fn refuses_a_twenty_first_account() {
    let mut config = String::from("[store]\npath = \"/tmp/t.db\"\n");
    for i in 0..MAX_ACCOUNTS - 1 {
        let added = apply(&config, &new_account(&format!("a{i}"))).unwrap();
        assert_eq!(added.position, i);
        config = added.text;
    }
    let twentieth = apply(&config, &new_account("a19")).unwrap();
    let loaded = parse(&twentieth.text).expect("twenty accounts are valid");
    assert_eq!(loaded.config.accounts.len(), MAX_ACCOUNTS);

    assert_eq!(
        apply(&twentieth.text, &new_account("a20")),
        Err(EditError::TooManyAccounts)
    );
    // Editing one of the twenty is still fine.
    let changes = vec![set("host", text("other.example.com"))];
    assert!(apply(&twentieth.text, &edit("a3", changes)).is_ok());
}

#[test]
fn creates_the_oauth2_subtable_when_needed() {
    let changes = vec![
        ("password".into(), Change::Remove),
        set("auth", text("oauth2")),
        set("oauth2.provider", text("google")),
        set("oauth2.grant", text("refresh_token")),
        set("oauth2.client_id", text("app-id")),
        set("oauth2.client_secret", text("app-secret")),
    ];
    let edited = apply(VALID, &edit("support", changes)).unwrap();
    let expected = replace_once(VALID, "password = \"pw1\"\n", "");
    let expected = replace_once(
        &expected,
        "move_to = \"Archive\"\n",
        "move_to = \"Archive\"\nauth = \"oauth2\"\n\n[account.oauth2]\nprovider = \"google\"\n\
         grant = \"refresh_token\"\nclient_id = \"app-id\"\nclient_secret = \"app-secret\"\n",
    );
    assert_eq!(edited.text, expected);
    let loaded = parse(&edited.text).expect("valid");
    let oauth2 = loaded.config.accounts[0].oauth2.as_ref().unwrap();
    assert_eq!(oauth2.client_id, "app-id");
    assert!(loaded.config.accounts[1].oauth2.is_none());

    // An existing [account.oauth2] is edited in place.
    let changes = vec![set("oauth2.client_id", text("11111111-2222"))];
    let edited = apply(EXAMPLE, &edit("sales", changes)).unwrap();
    let expected = replace_once(
        EXAMPLE,
        "client_id = \"00000000-0000-0000-0000-000000000000\"",
        "client_id = \"11111111-2222\"",
    );
    assert_eq!(edited.text, expected);

    // Without its keys the table goes too: the account signs in with a password again.
    let changes = [
        "provider",
        "tenant",
        "grant",
        "client_id",
        "client_secret_env",
    ]
    .map(|key| (format!("oauth2.{key}"), Change::Remove))
    .into_iter()
    .chain([set("auth", text("password")), set("password", text("pw"))])
    .collect();
    let edited = apply(EXAMPLE, &edit("sales", changes)).unwrap();
    assert_eq!(
        edited.text.matches("\n[account.oauth2]\n").count(),
        1,
        "only the Graph account's table is left:\n{}",
        edited.text
    );
    let doc: DocumentMut = edited.text.parse().unwrap();
    let sales = doc["account"][2].as_table().unwrap();
    assert!(!sales.contains_key("oauth2"));
    assert_eq!(sales["auth"].as_str(), Some("password"));

    // A new account's oauth2 table follows its header.
    let mut added = new_account("new");
    added.changes.push(set("oauth2.client_id", text("x")));
    let edited = apply(VALID, &added).unwrap();
    assert!(
        edited
            .text
            .ends_with("action = \"delete\"\n\n[account.oauth2]\nclient_id = \"x\"\n"),
        "{}",
        edited.text
    );

    assert_eq!(
        apply(VALID, &edit("support", vec![set("oauth2", text("x"))])),
        Err(EditError::BadKey("oauth2".into()))
    );
    assert_eq!(
        apply(VALID, &edit("support", vec![set("oauth2.a.b", text("x"))])),
        Err(EditError::BadKey("oauth2.a.b".into()))
    );
}

#[test]
fn refuses_to_overwrite_a_password_from_a_file() {
    let from_file = replace_once(
        VALID,
        "password = \"pw1\"",
        "password_file = \"/run/credentials/support\"",
    );
    let change = vec![set("password", text("typed-in-the-form"))];
    let refused = apply(&from_file, &edit("support", change.clone())).unwrap_err();
    assert_eq!(
        refused,
        EditError::SecretFromElsewhere {
            key: "password",
            from: "password_file /run/credentials/support".into(),
        }
    );
    assert!(!refused.to_string().contains("typed-in-the-form"));
    let logged = format!("{:?}", edit("support", change.clone()));
    assert!(
        !logged.contains("typed-in-the-form") && logged.contains("***"),
        "{logged}"
    );

    // The example's support account reads its password from the environment.
    let refused = apply(EXAMPLE, &edit("support", change.clone())).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("password_env MAIL2TICKET_SUPPORT_PASSWORD"),
        "{refused}"
    );
    let secret = vec![set("oauth2.client_secret", text("typed"))];
    assert!(matches!(
        apply(EXAMPLE, &edit("sales", secret)),
        Err(EditError::SecretFromElsewhere {
            key: "oauth2.client_secret",
            ..
        })
    ));

    // An inline password is replaced.
    let edited = apply(VALID, &edit("support", change)).unwrap();
    let loaded = parse(&edited.text).unwrap();
    assert_eq!(
        loaded.config.accounts[0]
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "typed-in-the-form"
    );

    let source = |text: &str, name: &str, kind| secret_source(text, name, kind).unwrap();
    assert_eq!(
        source(&from_file, "support", SecretKind::Password),
        SecretSource::File("/run/credentials/support".into())
    );
    assert_eq!(
        source(EXAMPLE, "returns", SecretKind::Password),
        SecretSource::Env("MAIL2TICKET_RETURNS_PASSWORD".into())
    );
    assert_eq!(
        source(VALID, "support", SecretKind::Password),
        SecretSource::Inline
    );
    assert_eq!(
        source(EXAMPLE, "sales", SecretKind::Password),
        SecretSource::None
    );
    assert_eq!(
        source(EXAMPLE, "sales", SecretKind::ClientSecret),
        SecretSource::Env("MAIL2TICKET_SALES_CLIENT_SECRET".into())
    );
}

fn messages(issues: &[crate::config::ConfigIssue]) -> Vec<&str> {
    issues.iter().map(|i| i.message.as_str()).collect()
}

#[test]
fn maps_validation_issues_to_their_fields() {
    let valid = apply(VALID, &edit("returns", vec![])).unwrap();
    let checked = validate(&valid.text, valid.position).expect("valid");
    assert!(checked.warnings.is_empty());
    assert_eq!(checked.loaded.config.accounts.len(), 2);

    // Problems of the edited account, each beside its field; one elsewhere, with its line.
    let broken = replace_once(VALID, "types = [", "typo = 1\ntypes = [");
    let changes = vec![
        set("email", text("not an address")),
        set("action", text("move")),
        set("folder", text("INBOX")),
        set("move_to", text("")),
    ];
    let edited = apply(&broken, &edit("support", changes)).unwrap();
    let issues = validate(&edited.text, edited.position).unwrap_err();
    assert_eq!(
        issues.fields.keys().collect::<Vec<_>>(),
        ["email", "move_to"]
    );
    assert!(issues.of("email")[0]
        .message
        .contains("not a valid e-mail address"));
    assert!(issues.of("move_to")[0]
        .message
        .contains("empty folder name"));
    assert_eq!(issues.other.len(), 1, "{:?}", issues.other);
    assert_eq!(issues.other[0].key, "tickets.typo");
    assert_eq!(issues.other[0].line, 6);
    assert!(issues.account.is_empty());

    // A bad value deep in the oauth2 table: check-config names the table, the page the key.
    let changes = vec![
        ("password".into(), Change::Remove),
        set("auth", text("oauth2")),
        set("oauth2.provider", text("yahoo")),
        set("oauth2.grant", text("refresh_token")),
        set("oauth2.client_id", text("x")),
    ];
    let edited = apply(VALID, &edit("returns", changes)).unwrap();
    let issues = validate(&edited.text, edited.position).unwrap_err();
    assert_eq!(
        issues.fields.keys().collect::<Vec<_>>(),
        ["oauth2.provider"],
        "{issues:?}"
    );
    assert!(messages(issues.of("oauth2.provider"))[0].contains("yahoo"));
    let without_client = edited
        .text
        .replace("provider = \"yahoo\"", "provider = \"google\"");
    let without_client = replace_once(&without_client, "client_id = \"x\"\n", "");
    let issues = validate(&without_client, edited.position).unwrap_err();
    assert_eq!(
        messages(issues.of("oauth2.client_id")),
        ["missing field `client_id`"],
        "{issues:?}"
    );

    // A missing key, and a warning that does not stop the save.
    let mut added = new_account("new");
    added.changes.retain(|(key, _)| key != "user");
    let edited = apply(VALID, &added).unwrap();
    let issues = validate(&edited.text, edited.position).unwrap_err();
    assert_eq!(messages(issues.of("user")), ["missing field `user`"]);

    let changes = vec![set("folder", text("Posteingang"))];
    let edited = apply(VALID, &edit("returns", changes)).unwrap();
    let checked = validate(&edited.text, edited.position).expect("only a warning");
    let folder = checked.warnings.of("folder");
    assert_eq!(folder[0].severity, Severity::Warning);

    // A name taken by a later account: check-config reports it there, the page beside the edit.
    let changes = vec![set("name", text("returns"))];
    let edited = apply(VALID, &edit("support", changes)).unwrap();
    let issues = validate(&edited.text, edited.position).unwrap_err();
    assert_eq!(
        messages(issues.of("name")),
        ["\"returns\" is also the name of account[2]"]
    );
    assert_eq!(issues.of("name")[0].key, "account[1].name");
    assert!(issues.other.is_empty(), "{:?}", issues.other);
}

#[test]
fn round_trips_umlauts_and_quotes() {
    let tricky = "Müller \"Ärger\" \\ 'Straße' \u{7f}\ttab\r\nzweite Zeile '''\"\"\" ✓";
    let changes = vec![
        set("sender_name", text(tricky)),
        set("move_to", text("Erledigt/Geprüft")),
        set("password", text(tricky)),
    ];
    let edited = apply(VALID, &edit("support", changes)).unwrap();
    let account = &parse(&edited.text).unwrap().config.accounts[0];
    assert_eq!(account.sender_name.as_deref(), Some(tricky));
    assert_eq!(account.move_to.as_deref(), Some("Erledigt/Geprüft"));
    assert_eq!(account.password.as_ref().unwrap().expose(), tricky);
}

#[test]
fn shows_an_account_as_toml_to_paste() {
    let with_secret = replace_once(
        EXAMPLE,
        "client_secret_env = \"MAIL2TICKET_SALES_CLIENT_SECRET\"",
        "client_secret = \"s3cret\" # rotate yearly",
    );
    let pasted = account_snippet(&with_secret, "sales", Secrets::AsWritten).unwrap();
    assert!(
        pasted.starts_with("[[account]]\nname = \"sales\"\n"),
        "{pasted}"
    );
    assert!(pasted.contains("\n[account.oauth2]\n"));
    assert!(pasted.contains("client_secret = \"s3cret\" # rotate yearly\n"));
    let alone = parse(&format!("[store]\npath = \"/tmp/t.db\"\n{pasted}"))
        .expect("the snippet alone is a complete account");
    assert_eq!(alone.config.accounts[0].name, "sales");

    let shown = account_snippet(&with_secret, "sales", Secrets::Blanked).unwrap();
    assert!(!shown.contains("s3cret"));
    assert!(shown.contains("client_secret = \"…\" # rotate yearly\n"));
    let shown = account_snippet(VALID, "returns", Secrets::Blanked).unwrap();
    assert!(shown.contains("password = \"…\"\n") && !shown.contains("pw2"));
    assert!(
        !shown.contains("support"),
        "only the named account: {shown}"
    );
}

proptest! {
    #[test]
    fn random_strings_round_trip_through_apply_and_parse(
        sender in any::<String>(),
        password in any::<String>(),
        host in "[^\u{0}]{1,40}",
    ) {
        let changes = vec![
            set("sender_name", text(&sender)),
            set("password", text(&password)),
            set("host", text(&host)),
        ];
        let edited = apply(VALID, &edit("returns", changes)).unwrap();
        let loaded = parse(&edited.text);
        // A host of spaces only is refused by check-config; everything else must load.
        let account = match loaded {
            Ok(loaded) => loaded.config.accounts[1].clone(),
            Err(issues) => {
                prop_assert!(host.trim().is_empty(), "{issues:?}");
                return Ok(());
            }
        };
        prop_assert_eq!(account.sender_name.as_deref(), Some(sender.as_str()));
        prop_assert_eq!(account.password.as_ref().unwrap().expose(), password.as_str());
        prop_assert_eq!(account.host, host);
    }
}
