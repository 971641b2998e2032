//! A [`Detection`] in words: one line per candidate for the terminal, and the config snippets
//! (`[[account]]`, `[smtp]`) for the best proposals.

use std::fmt::Write as _;
use std::path::Path;

use super::{provider_key, Candidate, Detection, Proof, Service, Source};
use crate::config::{Encryption, Protocol};

/// `✓ IMAP  mail.example.test:993  SSL  (SRV _imaps._tcp)  TLS ok, IMAP4rev1 IDLE`
pub fn line<P: Service>(c: &Candidate<P>) -> String {
    let (mark, detail) = match &c.proof {
        Proof::Proven { detail } => ('✓', detail.as_str()),
        Proof::Failed { detail } => ('✗', detail.as_str()),
        Proof::NotTried => ('?', "not tried"),
    };
    format!(
        "{mark} {:<5} {}:{}  {}  ({})  {detail}",
        c.protocol.label(),
        c.host,
        c.port,
        encryption_label(c.encryption),
        source_label(&c.source)
    )
}

fn encryption_label(e: Encryption) -> &'static str {
    match e {
        Encryption::Ssl => "SSL",
        Encryption::Starttls => "STARTTLS",
        Encryption::None => "none",
    }
}

fn encryption_key(e: Encryption) -> &'static str {
    match e {
        Encryption::Ssl => "ssl",
        Encryption::Starttls => "starttls",
        Encryption::None => "none",
    }
}

pub fn source_label(s: &Source) -> String {
    match s {
        Source::Provider(name) => format!("built-in: {name}"),
        Source::Srv(label) => format!("SRV {label}"),
        Source::Autoconfig(url) => format!("autoconfig {url}"),
        Source::Mx(name) => format!("MX of {name}"),
    }
}

/// The whole report for the terminal: incoming, outgoing, notes, then the snippets.
pub fn text(d: &Detection, ca_file: Option<&Path>) -> String {
    let mut out = format!("Server settings for {}\n\nIncoming:\n", d.address);
    if d.incoming.is_empty() {
        out.push_str("  (none found)\n");
    }
    for c in &d.incoming {
        let _ = writeln!(out, "  {}", line(c));
    }
    out.push_str("\nOutgoing:\n");
    if d.outgoing.is_empty() {
        out.push_str("  (none found)\n");
    }
    for c in &d.outgoing {
        let _ = writeln!(out, "  {}", line(c));
    }
    if !d.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &d.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    if let Some(oauth) = &d.oauth2 {
        let _ = writeln!(out, "\nOAuth 2.0: {}", oauth.reason);
    }
    if let Some(snippet) = account_snippet(d, ca_file) {
        let _ = write!(out, "\nSuggested account:\n\n{snippet}");
    }
    if let Some(snippet) = smtp_snippet(d, ca_file) {
        let _ = write!(out, "\nSuggested [smtp]:\n\n{snippet}");
    }
    out
}

/// A TOML basic string. JSON's string escapes are valid TOML escapes, and host names from DNS
/// or an autoconfig file must not break out of the quotes.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A config name for the account: the local part in lower case, letters, digits and `-` only.
fn account_name(address: &str) -> String {
    let local = address.split('@').next().unwrap_or("mailbox");
    let name: String = local
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "mailbox".into()
    } else {
        name
    }
}

/// Why a snippet's server is not proven, as a TOML comment line (empty when it is).
fn unproven_comment<P>(c: &Candidate<P>) -> String {
    match &c.proof {
        Proof::Proven { .. } => String::new(),
        Proof::Failed { detail } => format!("# not proven: {detail}\n"),
        Proof::NotTried => "# not proven: not tried\n".into(),
    }
}

/// The keys an account and `[smtp]` both have: where the server is, whom to log in as, and the
/// extra CA the proof trusted.
fn server_keys<P>(s: &mut String, c: &Candidate<P>, user: &str, ca_file: Option<&Path>) {
    let _ = writeln!(s, "host = {}", quoted(&c.host));
    let _ = writeln!(s, "port = {}", c.port);
    let _ = writeln!(s, "encryption = \"{}\"", encryption_key(c.encryption));
    let _ = writeln!(s, "user = {}", quoted(user));
    if let Some(ca) = ca_file {
        let _ = writeln!(s, "ca_file = {}", quoted(&ca.display().to_string()));
    }
}

/// `[[account]]` for the best incoming candidate; the password stays out (an env variable).
pub fn account_snippet(d: &Detection, ca_file: Option<&Path>) -> Option<String> {
    let best = d.incoming.first()?;
    let name = account_name(&d.address);
    let user = best.user_hint.as_deref().unwrap_or(&d.address);
    let mut s = unproven_comment(best);
    s.push_str("[[account]]\n");
    let _ = writeln!(s, "name = {}", quoted(&name));
    let _ = writeln!(s, "email = {}", quoted(&d.address));
    let protocol = match best.protocol {
        Protocol::Imap => "imap",
        Protocol::Pop3 => "pop3",
        Protocol::Graph => "graph",
    };
    let _ = writeln!(s, "protocol = \"{protocol}\"");
    server_keys(&mut s, best, user, ca_file);
    if d.oauth2.is_none() {
        let env = format!(
            "MAIL2TICKET_{}_PASSWORD",
            name.to_ascii_uppercase().replace('-', "_")
        );
        let _ = writeln!(s, "password_env = {}", quoted(&env));
    }
    s.push_str("ticket_type = \"question\"     # one of [tickets] types\n");
    s.push_str("ticket_status = \"open\"       # one of [tickets] statuses\n");
    match best.protocol {
        Protocol::Imap | Protocol::Graph => {
            s.push_str("action = \"move\"\nmove_to = \"Archive\"\n")
        }
        Protocol::Pop3 => s.push_str("action = \"delete\"\n"),
    }
    if let Some(oauth) = &d.oauth2 {
        s.push_str("auth = \"oauth2\"\n\n[account.oauth2]\n");
        let _ = writeln!(s, "provider = \"{}\"", provider_key(oauth.provider));
        s.push_str("grant = \"refresh_token\"    # then: mail2ticket oauth2 authorize NAME\n");
        s.push_str("client_id = \"...\"           # your app registration\n");
    }
    Some(s)
}

/// `[smtp]` for the best outgoing candidate.
pub fn smtp_snippet(d: &Detection, ca_file: Option<&Path>) -> Option<String> {
    let best = d.outgoing.first()?;
    let user = best.user_hint.as_deref().unwrap_or(&d.address);
    let mut s = unproven_comment(best);
    s.push_str("[smtp]\n");
    server_keys(&mut s, best, user, ca_file);
    match &d.oauth2 {
        None => s.push_str("password_env = \"MAIL2TICKET_SMTP_PASSWORD\"\n"),
        Some(oauth) => {
            s.push_str("auth = \"oauth2\"\n\n[smtp.oauth2]\n");
            let _ = writeln!(s, "provider = \"{}\"", provider_key(oauth.provider));
            s.push_str("grant = \"refresh_token\"\nclient_id = \"...\"\n");
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Smtp;

    fn detection() -> Detection {
        Detection {
            address: "Support.Team@example.test".into(),
            domain: "example.test".into(),
            incoming: vec![Candidate {
                protocol: Protocol::Imap,
                host: "mail.example.test".into(),
                port: 993,
                encryption: Encryption::Ssl,
                source: Source::Srv("_imaps._tcp".into()),
                user_hint: Some("Support.Team@example.test".into()),
                proof: Proof::Proven {
                    detail: "TLS ok, IMAP4rev1 IDLE MOVE".into(),
                },
            }],
            outgoing: vec![Candidate {
                protocol: Smtp,
                host: "mail.example.test".into(),
                port: 587,
                encryption: Encryption::Starttls,
                source: Source::Srv("_submission._tcp".into()),
                user_hint: None,
                proof: Proof::Failed {
                    detail: "nothing answers".into(),
                },
            }],
            oauth2: None,
            notes: vec![],
        }
    }

    #[test]
    fn one_line_per_candidate_with_mark_source_and_proof() {
        let d = detection();
        assert_eq!(
            line(&d.incoming[0]),
            "✓ IMAP  mail.example.test:993  SSL  (SRV _imaps._tcp)  TLS ok, IMAP4rev1 IDLE MOVE"
        );
        assert!(line(&d.outgoing[0]).starts_with("✗ SMTP  mail.example.test:587  STARTTLS"));
    }

    #[test]
    fn the_account_snippet_is_valid_config_without_a_password() {
        let d = detection();
        let snippet = account_snippet(&d, Some(Path::new("/etc/ca.pem"))).unwrap();
        let parsed: toml::Value = toml::from_str(&snippet).unwrap();
        let account = &parsed["account"][0];
        assert_eq!(account["name"].as_str(), Some("support-team"));
        assert_eq!(account["host"].as_str(), Some("mail.example.test"));
        assert_eq!(account["port"].as_integer(), Some(993));
        assert_eq!(account["encryption"].as_str(), Some("ssl"));
        assert_eq!(account["ca_file"].as_str(), Some("/etc/ca.pem"));
        assert_eq!(
            account["password_env"].as_str(),
            Some("MAIL2TICKET_SUPPORT_TEAM_PASSWORD")
        );
        assert!(account.get("password").is_none());
    }

    #[test]
    fn an_unproven_smtp_snippet_says_why() {
        let snippet = smtp_snippet(&detection(), None).unwrap();
        assert!(snippet.starts_with("# not proven: nothing answers\n[smtp]\n"));
        let parsed: toml::Value = toml::from_str(&snippet).unwrap();
        assert_eq!(
            parsed["smtp"]["user"].as_str(),
            Some("Support.Team@example.test")
        );
    }
}
