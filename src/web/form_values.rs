//! An account as the form's fields: input names are the config keys and values the config's
//! values (`protocol = "imap"`, `encryption = "ssl"`, `oauth2.client_id` for the sub-table).
//! The same function turns a stored account and a submitted form into this shape, so Save can
//! compare them string by string and change only what the user changed.

use std::collections::BTreeMap;

use crate::config::{
    AccountConfig, Action, AuthMethod, CustomerSource, Encryption, Grant, Protocol, Provider,
};

/// Field name → value, as the form carries it.
pub type Values = BTreeMap<String, String>;

/// How a key's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Bool,
}

/// Every key the page edits, with its kind and whether it may be left out of the file (an empty
/// field then removes the key, so the default applies). Secrets (`password`,
/// `oauth2.client_secret`) are write-only and handled on their own.
pub const KEYS: &[(&str, Kind, bool)] = &[
    ("name", Kind::Text, false),
    ("email", Kind::Text, false),
    ("active", Kind::Bool, true),
    ("user", Kind::Text, false),
    ("protocol", Kind::Text, false),
    ("port", Kind::Integer, true),
    ("encryption", Kind::Text, true),
    ("host", Kind::Text, false),
    ("ticket_type", Kind::Text, false),
    ("ticket_status", Kind::Text, false),
    ("sender_name", Kind::Text, true),
    ("reply_to", Kind::Text, true),
    ("action", Kind::Text, false),
    ("move_to", Kind::Text, true),
    // Advanced.
    ("folder", Kind::Text, true),
    ("customer", Kind::Text, true),
    ("auto_reply", Kind::Bool, true),
    ("auto_reply_subject", Kind::Text, true),
    ("auto_reply_body", Kind::Text, true),
    ("max_message_size", Kind::Integer, true),
    ("ca_file", Kind::Text, true),
    ("auth", Kind::Text, true),
    ("oauth2.provider", Kind::Text, true),
    ("oauth2.tenant", Kind::Text, true),
    ("oauth2.grant", Kind::Text, true),
    ("oauth2.client_id", Kind::Text, true),
];

/// The write-only keys: never shown, changed only when a new value is typed.
pub const SECRETS: &[&str] = &["password", "oauth2.client_secret"];

fn s(v: &str) -> String {
    v.to_string()
}

pub fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Imap => "imap",
        Protocol::Pop3 => "pop3",
        Protocol::Graph => "graph",
    }
}

pub fn encryption(e: Encryption) -> &'static str {
    match e {
        Encryption::Ssl => "ssl",
        Encryption::Starttls => "starttls",
        Encryption::None => "none",
    }
}

/// The values of a stored account, defaults filled in as the daemon applies them.
pub fn of_account(a: &AccountConfig) -> Values {
    let mut v = Values::new();
    let mut put = |k: &str, value: String| {
        v.insert(k.to_string(), value);
    };
    put("name", a.name.clone());
    put("email", a.email.clone());
    put("active", a.active.to_string());
    put("user", a.user.clone());
    put("protocol", s(protocol(a.protocol)));
    put("port", a.port.map(|p| p.to_string()).unwrap_or_default());
    put("encryption", s(encryption(a.encryption)));
    put("host", a.host.clone());
    put("ticket_type", a.ticket_type.clone());
    put("ticket_status", a.ticket_status.clone());
    put("sender_name", a.sender_name.clone().unwrap_or_default());
    put("reply_to", a.reply_to.clone().unwrap_or_default());
    put(
        "action",
        s(match a.action {
            Action::Move => "move",
            Action::Delete => "delete",
            Action::Keep => "keep",
        }),
    );
    put("move_to", a.move_to.clone().unwrap_or_default());
    put("folder", a.folder.clone());
    put(
        "customer",
        s(match a.customer {
            CustomerSource::ReplyTo => "reply_to",
            CustomerSource::From => "from",
        }),
    );
    put("auto_reply", a.auto_reply.to_string());
    put(
        "auto_reply_subject",
        a.auto_reply_subject.clone().unwrap_or_default(),
    );
    put(
        "auto_reply_body",
        a.auto_reply_body.clone().unwrap_or_default(),
    );
    put(
        "max_message_size",
        a.max_message_size
            .map(|m| m.0.to_string())
            .unwrap_or_default(),
    );
    put(
        "ca_file",
        a.ca_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    put(
        "auth",
        s(match a.auth {
            AuthMethod::Password => "password",
            AuthMethod::Oauth2 => "oauth2",
        }),
    );
    if let Some(o) = &a.oauth2 {
        put(
            "oauth2.provider",
            s(match o.provider {
                Provider::Microsoft => "microsoft",
                Provider::Google => "google",
                Provider::Custom => "custom",
            }),
        );
        put("oauth2.tenant", o.tenant.clone().unwrap_or_default());
        put(
            "oauth2.grant",
            s(match o.grant {
                Grant::ClientCredentials => "client_credentials",
                Grant::RefreshToken => "refresh_token",
            }),
        );
        put("oauth2.client_id", o.client_id.clone());
    }
    v
}

/// The values a new account starts with.
pub fn for_new_account() -> Values {
    let mut v = Values::new();
    for (k, val) in [
        ("active", "true"),
        ("protocol", "imap"),
        ("encryption", "ssl"),
        ("action", "move"),
        ("folder", "INBOX"),
        ("customer", "reply_to"),
        ("auto_reply", "false"),
        ("auth", "password"),
    ] {
        v.insert(k.to_string(), val.to_string());
    }
    v
}

/// A submitted form as values: the last value of a name wins (an unchecked checkbox sends only
/// its hidden `false`, a checked one `false` then `true`); text is trimmed.
pub fn of_form(pairs: &[(String, String)]) -> Values {
    let mut v = Values::new();
    for (k, val) in pairs {
        v.insert(k.clone(), val.trim().to_string());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_box_wins_over_its_hidden_false() {
        let pairs = vec![
            ("active".to_string(), "false".to_string()),
            ("active".to_string(), "true".to_string()),
            ("host".to_string(), " imap.example.test ".to_string()),
        ];
        let v = of_form(&pairs);
        assert_eq!(v["active"], "true");
        assert_eq!(v["host"], "imap.example.test");
    }

    #[test]
    fn every_edited_key_is_a_key_of_the_form_model() {
        let account: AccountConfig = toml::from_str(
            r#"name = "support"
email = "support@example.test"
protocol = "imap"
host = "localhost"
user = "support"
password = "x"
ticket_type = "Anfrage"
ticket_status = "neu"
action = "move"
move_to = "Erledigt"
"#,
        )
        .unwrap();
        let v = of_account(&account);
        for (key, _, _) in KEYS.iter().filter(|(k, _, _)| !k.starts_with("oauth2.")) {
            assert!(v.contains_key(*key), "{key} missing");
        }
        assert!(
            !v.contains_key("password"),
            "a password is never a form value"
        );
    }
}
