//! Thunderbird autoconfig: the domain's own `config-v1.1.xml`, fetched over HTTPS from
//! `autoconfig.DOMAIN` or `DOMAIN/.well-known/autoconfig/`, and read with quick-xml.
//!
//! The format is Mozilla's "clientConfig" (the ISPDB format): `incomingServer` elements of type
//! `imap` or `pop3` and `outgoingServer` elements of type `smtp`, each with `hostname`, `port`,
//! `socketType` (SSL, STARTTLS, plain) and `username`, in which `%EMAILADDRESS%`,
//! `%EMAILLOCALPART%` and `%EMAILDOMAIN%` stand for parts of the address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::dns::Dns;
use crate::config::Encryption;

/// Larger answers are not config files (ISPDB files are a few KiB).
const MAX_BYTES: usize = 1024 * 1024;

/// Which service a server entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Imap,
    Pop3,
    Smtp,
}

/// One `incomingServer` or `outgoingServer` of a file, placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    pub user: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not XML: {0}")]
    Xml(String),
    #[error("not a Thunderbird autoconfig file (no <clientConfig>)")]
    NotClientConfig,
}

/// The servers a config file lists, in its order (the file's own preference). Entries of other
/// types (exchange, ...) or without host or a known socket type are left out.
pub fn parse(xml: &str, address: &str) -> Result<Vec<ServerEntry>, ParseError> {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let fill = |s: &str| {
        s.replace("%EMAILADDRESS%", address)
            .replace("%EMAILLOCALPART%", local)
            .replace("%EMAILDOMAIN%", domain)
    };
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut seen_root = false;
    let mut entries = Vec::new();
    // The server element being read, and the name of its child whose text comes next.
    let mut current: Option<Partial> = None;
    let mut field: Option<String> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ParseError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match name.as_str() {
                    "clientConfig" => seen_root = true,
                    "incomingServer" | "outgoingServer" => {
                        let mut kind = None;
                        for attr in e.attributes().flatten() {
                            if attr.key.local_name().as_ref() == b"type" {
                                kind = match attr.value.as_ref() {
                                    b"imap" => Some(Kind::Imap),
                                    b"pop3" => Some(Kind::Pop3),
                                    b"smtp" => Some(Kind::Smtp),
                                    _ => None,
                                };
                            }
                        }
                        current = Some(Partial {
                            kind,
                            ..Partial::default()
                        });
                    }
                    _ => field = Some(name),
                }
            }
            Event::Text(t) => {
                let (Some(server), Some(name)) = (current.as_mut(), field.as_deref()) else {
                    continue;
                };
                let text = t
                    .unescape()
                    .map_err(|e| ParseError::Xml(e.to_string()))?
                    .trim()
                    .to_string();
                match name {
                    "hostname" => server.host = Some(fill(&text).to_ascii_lowercase()),
                    "port" => server.port = text.parse().ok(),
                    "socketType" => server.encryption = socket_type(&text),
                    "username" => server.user = Some(fill(&text)),
                    _ => {}
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"incomingServer" | b"outgoingServer" => {
                    if let Some(entry) = current.take().and_then(Partial::finish) {
                        entries.push(entry);
                    }
                }
                _ => field = None,
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(ParseError::NotClientConfig);
    }
    Ok(entries)
}

fn socket_type(text: &str) -> Option<Encryption> {
    match text.to_ascii_uppercase().as_str() {
        "SSL" | "TLS" => Some(Encryption::Ssl),
        "STARTTLS" => Some(Encryption::Starttls),
        "PLAIN" => Some(Encryption::None),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Partial {
    kind: Option<Kind>,
    host: Option<String>,
    port: Option<u16>,
    encryption: Option<Encryption>,
    user: Option<String>,
}

impl Partial {
    fn finish(self) -> Option<ServerEntry> {
        let kind = self.kind?;
        let encryption = self.encryption?;
        let port = self.port.unwrap_or(match (kind, encryption) {
            (Kind::Imap, Encryption::Ssl) => 993,
            (Kind::Imap, _) => 143,
            (Kind::Pop3, Encryption::Ssl) => 995,
            (Kind::Pop3, _) => 110,
            (Kind::Smtp, _) => crate::config::smtp_default_port(encryption),
        });
        Some(ServerEntry {
            kind,
            host: self.host.filter(|h| !h.is_empty())?,
            port,
            encryption,
            user: self.user.filter(|u| !u.is_empty()),
        })
    }
}

/// The two places Thunderbird looks, in its order. `port` replaces 443 (lab tests only).
pub fn urls(domain: &str, port: Option<u16>) -> [String; 2] {
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    [
        format!("https://autoconfig.{domain}{port}/mail/config-v1.1.xml"),
        format!("https://{domain}{port}/.well-known/autoconfig/mail/config-v1.1.xml"),
    ]
}

/// Fetches both URLs at once and returns the first (in [`urls`] order) that holds a config
/// file, with its URL; `Err` says for each URL why not.
pub async fn fetch(
    domain: &str,
    address: &str,
    port: Option<u16>,
    dns: &Dns,
    tls: &rustls::ClientConfig,
    timeout: Duration,
) -> Result<(String, Vec<ServerEntry>), Vec<String>> {
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .dns_resolver(Arc::new(ViaDns(dns.clone())))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| vec![format!("autoconfig: cannot build the HTTPS client: {e}")])?;
    let tries = urls(domain, port).map(|url| {
        let client = client.clone();
        async move {
            let result = fetch_one(&client, &url, address).await;
            (url, result)
        }
    });
    let mut failures = Vec::new();
    for (url, result) in futures::future::join_all(tries).await {
        match result {
            Ok(entries) => return Ok((url, entries)),
            Err(why) => failures.push(format!("autoconfig {url}: {why}")),
        }
    }
    Err(failures)
}

async fn fetch_one(
    client: &reqwest::Client,
    url: &str,
    address: &str,
) -> Result<Vec<ServerEntry>, String> {
    // Thunderbird sends the address, so a server can answer per mailbox.
    let response = client
        .get(url)
        .query(&[("emailaddress", address)])
        .send()
        .await
        .map_err(|e| crate::net::error_chain(&e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BYTES as u64)
    {
        return Err("the answer is too large for a config file".into());
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| crate::net::error_chain(&e.without_url()))?;
    if body.len() > MAX_BYTES {
        return Err("the answer is too large for a config file".into());
    }
    let text = String::from_utf8_lossy(&body);
    parse(&text, address).map_err(|e| e.to_string())
}

/// Lets reqwest resolve through the detection's own resolver (the test name server, if set).
struct ViaDns(Dns);

impl reqwest::dns::Resolve for ViaDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        Box::pin(async move {
            let ips = dns
                .addresses(name.as_str())
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the files of Mozilla's ISPDB: several domains, comments, two IMAP and two
    /// POP3 entries, an Exchange entry, placeholders, documentation and webmail sections.
    const ISPDB_SHAPED: &str = include_str!("../../tests/data/autoconfig/ispdb_shaped.xml");

    #[test]
    fn reads_every_imap_pop3_and_smtp_server_in_file_order() {
        let entries = parse(ISPDB_SHAPED, "kunde@beispiel-mail.de").unwrap();
        let shown: Vec<(Kind, &str, u16, Encryption)> = entries
            .iter()
            .map(|e| (e.kind, e.host.as_str(), e.port, e.encryption))
            .collect();
        assert_eq!(
            shown,
            [
                (Kind::Imap, "imap.beispiel-mail.de", 993, Encryption::Ssl),
                (
                    Kind::Imap,
                    "imap.beispiel-mail.de",
                    143,
                    Encryption::Starttls
                ),
                (Kind::Pop3, "pop.beispiel-mail.de", 995, Encryption::Ssl),
                (
                    Kind::Pop3,
                    "pop.beispiel-mail.de",
                    110,
                    Encryption::Starttls
                ),
                (Kind::Smtp, "smtp.beispiel-mail.de", 465, Encryption::Ssl),
                (
                    Kind::Smtp,
                    "smtp.beispiel-mail.de",
                    587,
                    Encryption::Starttls
                ),
            ]
        );
    }

    #[test]
    fn fills_in_the_address_placeholders_of_the_user_name() {
        let entries = parse(ISPDB_SHAPED, "kunde@beispiel-mail.de").unwrap();
        assert_eq!(entries[0].user.as_deref(), Some("kunde@beispiel-mail.de"));
        // The POP3 entries name the local part only.
        assert_eq!(entries[2].user.as_deref(), Some("kunde"));
    }

    #[test]
    fn plain_socket_type_means_no_encryption_and_the_port_defaults() {
        let xml = r#"<clientConfig version="1.1"><emailProvider id="x">
            <incomingServer type="imap"><hostname>%EMAILDOMAIN%</hostname>
              <socketType>plain</socketType></incomingServer>
            <incomingServer type="imap"><hostname>odd.example</hostname>
              <socketType>quantum</socketType></incomingServer>
            </emailProvider></clientConfig>"#;
        let entries = parse(xml, "a@shop.example").unwrap();
        assert_eq!(
            entries,
            [ServerEntry {
                kind: Kind::Imap,
                host: "shop.example".into(),
                port: 143,
                encryption: Encryption::None,
                user: None,
            }]
        );
    }

    #[test]
    fn refuses_what_is_not_a_config_file() {
        assert_eq!(
            parse("<html><body>Not here</body></html>", "a@b.example"),
            Err(ParseError::NotClientConfig)
        );
        assert!(matches!(
            parse(
                "<clientConfig><emailProvider></clientConfig>",
                "a@b.example"
            ),
            Err(ParseError::Xml(_))
        ));
    }

    #[test]
    fn looks_in_both_of_thunderbirds_places() {
        assert_eq!(
            urls("shop.example", None),
            [
                "https://autoconfig.shop.example/mail/config-v1.1.xml",
                "https://shop.example/.well-known/autoconfig/mail/config-v1.1.xml"
            ]
        );
        assert_eq!(
            urls("shop.example", Some(8443))[0],
            "https://autoconfig.shop.example:8443/mail/config-v1.1.xml"
        );
    }
}
