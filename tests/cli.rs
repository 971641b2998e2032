//! The command line's contract: check-config and the tickets commands.

mod common;

use common::TestConfig;

fn example_with_passwords() -> std::process::Command {
    let dir = tempfile::tempdir().unwrap().keep();
    let smtp_pw = dir.join("smtp");
    std::fs::write(&smtp_pw, "secret\n").unwrap();
    std::fs::set_permissions(
        &smtp_pw,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // The example points at a systemd credential path; substitute a readable file.
    let text = std::fs::read_to_string(common::repo_root().join("config/example.toml"))
        .unwrap()
        .replace(
            "/run/credentials/mail2ticket.service/smtp",
            smtp_pw.to_str().unwrap(),
        );
    let cfg = dir.join("example.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut cmd = common::mail2ticket_cmd(&cfg);
    cmd.env("MAIL2TICKET_SUPPORT_PASSWORD", "pw1")
        .env("MAIL2TICKET_RETURNS_PASSWORD", "pw2")
        .env("MAIL2TICKET_SALES_CLIENT_SECRET", "secret3")
        .env("MAIL2TICKET_SHOP_CLIENT_SECRET", "secret4");
    cmd
}

#[test]
fn example_config_passes_check_config() {
    let out = example_with_passwords()
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", common::stderr(&out));
    assert_eq!(stdout.trim(), "ok: 4 accounts (1 active)");
}

#[test]
fn check_config_reports_every_problem_with_key_and_line_and_exits_78() {
    let mut accounts = Vec::new();
    for i in 0..21 {
        let mut a = format!(
            "name = \"a{i}\"\nemail = \"a{i}@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
             password = \"p\"\nticket_type = \"question\"\nticket_status = \"open\"\naction = \"delete\"\n"
        );
        match i {
            2 => a = a.replace("action = \"delete\"", "action = \"move\""),
            4 => {
                a = a
                    .replace("protocol = \"imap\"", "protocol = \"pop3\"")
                    .replace("\"delete\"", "\"move\"\nmove_to = \"Archive\"")
            }
            6 => a.push_str("colour = \"blue\"\n"),
            8 => a = a.replace("a8@example.test", "not-an-address"),
            _ => {}
        }
        accounts.push(a);
    }
    let cfg = TestConfig::new(&accounts, "");
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "stderr: {err}");
    for (key, words) in [
        ("account[21]", "limit is 20"),
        ("account[3].move_to", "required when action = \"move\""),
        ("account[5].action", "POP3 has no folders"),
        ("account[7].colour", "unknown field"),
        ("account[9].email", "not a valid e-mail address"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(key) && l.contains(words))
            .unwrap_or_else(|| panic!("no error naming {key} ({words}) in:\n{err}"));
        // file:line:column: error: key: message
        let mut parts = line.splitn(4, ':');
        let (_file, line_no, col) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        assert!(line_no.trim().parse::<usize>().unwrap() > 1, "{line}");
        assert!(col.trim().parse::<usize>().is_ok(), "{line}");
    }
}

#[test]
fn check_config_names_each_bad_rule_with_its_key_and_line() {
    let account = "name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
        password = \"p\"\nticket_type = \"question\"\nticket_status = \"open\"\naction = \"delete\"\n\
        old_mail_status = \"closed\"\n\
        [[account.rule]]\nheader = \"X-Spam-Flag\"\ncontains = \"YES\"\nstatus = \"spam\"\n\
        [[account.rule]]\nheader = \"Subject\"\nmatches = \"(unclosed\"\nauto_reply = false\n\
        [[account.rule]]\nheader = \"From\"\ncontains = \"paypal\"\ntype = \"payment\"\n";
    let cfg = TestConfig::new(
        &[account.into()],
        "\n[tickets]\nstatuses = [\"open\", \"closed\"]\ntypes = [\"question\"]\n",
    );
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let line_of = |needle: &str| 1 + text.lines().position(|l| l.contains(needle)).unwrap();
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    for (key, words, line) in [
        (
            "account[1].rule[1].status",
            "\"spam\" is not in [tickets] statuses",
            line_of("\"spam\""),
        ),
        (
            "account[1].rule[2].matches",
            "not a regular expression",
            line_of("(unclosed"),
        ),
        (
            "account[1].rule[3].type",
            "\"payment\" is not in [tickets] types",
            line_of("\"payment\""),
        ),
        (
            "account[1].old_mail_status",
            "needs old_mail_age",
            line_of("old_mail_status"),
        ),
    ] {
        let found = err
            .lines()
            .find(|l| l.contains(key) && l.contains(words))
            .unwrap_or_else(|| panic!("no error naming {key} ({words}) in:\n{err}"));
        assert!(
            found.contains(&format!(":{line}:")),
            "{key} is on line {line}: {found}"
        );
    }
}

#[test]
fn a_memory_budget_too_small_for_ordinary_mail_names_its_key_and_line() {
    let cfg = TestConfig::new(
        &["name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
           password_env = \"X\"\nticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\n".into()],
        "memory_budget = \"1MB\"\n",
    );
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("daemon.memory_budget"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(":8:") && line.contains("at least 16MB"),
        "{line}"
    );
}

#[test]
fn a_bad_value_names_the_key_and_line() {
    let cfg = TestConfig::new(
        &["name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
           ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\nencryption = \"tls\"\n".into()],
        "[smtp]\nhost = \"h\"\nencryption = \"sometimes\"\n",
    );
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("smtp") && err.contains("sometimes"), "{err}");
}

#[test]
fn passwords_never_appear_in_check_config_output() {
    let cfg = TestConfig::new(
        &["name = \"x\"\nemail = \"bad address\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\npassword = \"SuperSecret42\"\n\
           ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\npassword_env = \"ALSO\"\n".into()],
        "",
    );
    let out = cfg.run(&["check-config"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(!all.contains("SuperSecret42"), "{all}");
    assert!(all.contains("exactly one of password"), "{all}");
}

#[test]
fn tickets_list_json_on_a_fresh_store_is_an_empty_array() {
    let cfg = TestConfig::new(
        &["name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
           ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\n".into()],
        "",
    );
    let out = cfg.run(&["tickets", "list", "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn an_invalid_message_id_domain_is_an_error() {
    let cfg = TestConfig::new(
        &["name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
           ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\n".into()],
        "[smtp]\nhost = \"h\"\nmessage_id_domain = \"not a domain\"\n",
    );
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("smtp.message_id_domain"), "{err}");
}

/// As fetchmail and OpenSSH do for their secrets, but a warning, not a refusal: a container's
/// mounted config may have a mode its admin cannot change.
#[test]
fn a_config_holding_secrets_that_others_can_read_is_warned_about_by_key_and_line() {
    let account = "name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\n\
        user = \"u\"\npassword = \"Inline-Secret-1\"\nticket_type = \"q\"\nticket_status = \"o\"\n\
        action = \"delete\"\n";
    let cfg = TestConfig::new(
        &[account.into()],
        "[smtp]\nhost = \"h\"\nuser = \"u\"\npassword = \"Inline-Secret-2\"\n",
    );
    let mode = |m: u32| {
        std::fs::set_permissions(&cfg.path, std::os::unix::fs::PermissionsExt::from_mode(m))
            .unwrap()
    };
    mode(0o644);
    for command in [&["check-config"][..], &["tickets", "list"][..]] {
        let out = cfg.run(command);
        let err = common::stderr(&out);
        assert!(out.status.success(), "a warning, not a refusal: {err}");
        let file = cfg.path.display().to_string();
        for key in ["account[1].password", "smtp.password"] {
            let line = err
                .lines()
                .find(|l| l.contains(&format!("warning: {key}: this secret is written in")))
                .unwrap_or_else(|| panic!("no warning for {key}: {err}"));
            assert!(
                line.starts_with(&format!("{file}:")),
                "names file and line: {line}"
            );
            assert!(
                line.contains("mode 0644") && line.contains("chmod 600"),
                "{line}"
            );
        }
        assert!(
            !err.contains("Inline-Secret"),
            "never the secret itself: {err}"
        );
    }
    mode(0o600);
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("this secret is written in"), "{err}");
}

#[test]
fn password_files_must_exist_and_should_not_be_world_readable() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open-secret");
    std::fs::write(&open, "pw\n").unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let account = |file: &std::path::Path| {
        format!(
            "name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
             password_file = \"{}\"\nticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\n",
            file.display()
        )
    };
    let warned = TestConfig::new(&[account(&open)], "");
    let out = warned.run(&["check-config"]);
    let err = common::stderr(&out);
    assert!(
        out.status.success(),
        "a world-readable file is a warning: {err}"
    );
    assert!(
        err.contains("warning: account[1].password_file") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 warning"));

    let missing = TestConfig::new(&[account(&dir.path().join("nope"))], "");
    let out = missing.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("error: account[1].password_file: cannot read"),
        "{err}"
    );
}

#[test]
fn the_customer_choice_is_reply_to_or_from_and_a_typo_names_key_and_line() {
    let account = |value: &str| {
        format!(
            "name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n\
             ticket_type = \"q\"\nticket_status = \"o\"\naction = \"delete\"\ncustomer = \"{value}\"\n"
        )
    };
    for good in ["reply_to", "from"] {
        let out = TestConfig::new(&[account(good)], "").run(&["check-config"]);
        assert!(out.status.success(), "{good}: {}", common::stderr(&out));
    }
    let cfg = TestConfig::new(&[account("reply-to")], "");
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("customer = "))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(":{line}:")) && err.contains("error: account[1].customer: unknown variant `reply-to`, expected `reply_to` or `from`"),
        "{err}"
    );
}

#[test]
fn check_config_names_each_bad_alert_setting_with_its_key_and_line() {
    let account = "name = \"x\"\nemail = \"x@example.test\"\nprotocol = \"imap\"\nhost = \"h\"\nuser = \"u\"\n\
        password = \"p\"\nticket_type = \"question\"\nticket_status = \"open\"\naction = \"delete\"\n\
        auth = \"password\"\n";
    let cfg = TestConfig::new(
        &[account.into()],
        "\n[alerts]\nto = [\"owner-at-shop.example\"]\nafter = \"15m\"\n\
         webhook = \"http://ntfy.example/secret-topic\"\nlanguage = \"de\"\n",
    );
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let line_of = |needle: &str| 1 + text.lines().position(|l| l.contains(needle)).unwrap();
    let out = cfg.run(&["check-config"]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    for (key, words, line) in [
        (
            "alerts.to",
            "is not a valid e-mail address",
            line_of("owner-at-shop"),
        ),
        (
            "alerts.to",
            "sent through [smtp], which is not configured",
            line_of("owner-at-shop"),
        ),
        ("alerts.webhook", "plain HTTP", line_of("webhook =")),
    ] {
        let found = err
            .lines()
            .find(|l| l.contains(key) && l.contains(words))
            .unwrap_or_else(|| panic!("no error naming {key} ({words}) in:\n{err}"));
        assert!(
            found.contains(&format!(":{line}:")),
            "{key} is on line {line}: {found}"
        );
    }
    assert!(
        !err.contains("secret-topic"),
        "the webhook URL is a secret: {err}"
    );
}
