//! Server settings from an e-mail address (issue #30): `mail2ticket detect ADDRESS` and the
//! accounts page propose host, port, encryption and protocol, each proven by a live connection
//! (TCP, TLS, capabilities) before it is shown as working.
//!
//! Sources, best first: the built-in provider table ([`providers`]), RFC 6186 / RFC 8314 SRV
//! records ([`dns`]), Thunderbird autoconfig ([`autoconfig`]), and MX records that point to a
//! known provider. All lookups run at once, then all probes ([`probe`]) at once; the whole run is
//! bounded by [`DetectOptions::timeout`]. Nothing here handles a password.

pub mod autoconfig;
pub mod dns;
pub mod probe;
pub mod providers;
pub mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use self::autoconfig::{Kind, ServerEntry};
use self::dns::{Dns, SrvAnswer};
use self::probe::{Prober, Wire};
use self::providers::{KnownProvider, UserName};
use crate::config::{Encryption, Protocol, Provider as OAuthProvider};

/// Test-only: `IP:PORT` of the one name server to ask (the mail lab runs one).
pub const DNS_ENV: &str = "MAIL2TICKET_DNS";
/// Test-only: the port autoconfig is fetched from instead of 443 (the lab's HTTPS server).
pub const AUTOCONFIG_PORT_ENV: &str = "MAIL2TICKET_AUTOCONFIG_PORT";

#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Ask only this name server (UDP and TCP); `None`: the system's resolver configuration.
    pub dns: Option<SocketAddr>,
    /// A CA trusted besides the system roots (a shop's own mail server, the test lab).
    pub extra_ca: Option<PathBuf>,
    /// Fetch autoconfig from this port instead of 443 (tests only).
    pub autoconfig_port: Option<u16>,
    /// The whole detection, lookups and probes, ends within this time.
    pub timeout: Duration,
}

impl DetectOptions {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

    /// Defaults plus the test-only variables [`DNS_ENV`] and [`AUTOCONFIG_PORT_ENV`].
    pub fn from_env() -> Result<DetectOptions, String> {
        let dns = match std::env::var(DNS_ENV) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().parse().map_err(|_| {
                format!("{DNS_ENV}={v:?} is not IP:PORT of a name server (e.g. 127.0.0.1:5353)")
            })?),
            _ => None,
        };
        let autoconfig_port = match std::env::var(AUTOCONFIG_PORT_ENV) {
            Ok(v) if !v.trim().is_empty() => Some(
                v.trim()
                    .parse()
                    .map_err(|_| format!("{AUTOCONFIG_PORT_ENV}={v:?} is not a port number"))?,
            ),
            _ => None,
        };
        Ok(DetectOptions {
            dns,
            extra_ca: None,
            autoconfig_port,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }
}

/// Everything `detect` found for one address.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub address: String,
    pub domain: String,
    /// IMAP and POP3 servers, best first.
    pub incoming: Vec<Candidate<Protocol>>,
    /// SMTP submission servers, best first.
    pub outgoing: Vec<Candidate<Smtp>>,
    /// Set when the provider wants OAuth 2.0 instead of a password.
    pub oauth2: Option<OAuth2Preset>,
    /// What else was learnt: services a domain says it does not offer, lookups that failed.
    pub notes: Vec<String>,
}

/// One proposed server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate<P> {
    pub protocol: P,
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    pub source: Source,
    /// The user name the source names (the address, or its local part), if it names one.
    pub user_hint: Option<String>,
    pub proof: Proof,
}

/// The protocol of an outgoing candidate: always SMTP (submission), serialised as "smtp".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smtp;

impl Serialize for Smtp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("smtp")
    }
}

/// What a candidate's protocol tells the prober and the ordering.
pub trait Service: Copy {
    fn wire(self) -> Wire;
    fn label(self) -> &'static str;
}

impl Service for Protocol {
    fn wire(self) -> Wire {
        match self {
            // Never a candidate: detect probes mail servers, and a Graph mailbox has none to
            // probe (it is at graph.microsoft.com for every tenant).
            Protocol::Imap | Protocol::Graph => Wire::Imap,
            Protocol::Pop3 => Wire::Pop3,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
            Protocol::Graph => "Microsoft Graph",
        }
    }
}

impl Service for Smtp {
    fn wire(self) -> Wire {
        Wire::Smtp
    }
    fn label(self) -> &'static str {
        "SMTP"
    }
}

/// Where a proposal came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Source {
    /// The built-in table, by the address's domain.
    Provider(String),
    /// An SRV record: the service label, e.g. `_imaps._tcp`.
    Srv(String),
    /// A Thunderbird autoconfig file at this URL.
    Autoconfig(String),
    /// The domain's MX points to this provider of the built-in table.
    Mx(String),
}

/// Whether a live connection proved the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Proof {
    /// TCP, TLS and the capability list worked, e.g. "TLS ok, IMAP4rev1 IDLE MOVE".
    Proven {
        detail: String,
    },
    /// Why not, in words (host not found, refused, certificate not trusted, ...).
    Failed {
        detail: String,
    },
    NotTried,
}

impl Proof {
    pub fn is_proven(&self) -> bool {
        matches!(self, Proof::Proven { .. })
    }
}

/// The OAuth 2.0 provider to set in `[account.oauth2]` for this address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuth2Preset {
    pub provider: OAuthProvider,
    /// Why, for the person reading the proposal.
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{0:?} is not an e-mail address: type it as name@domain (e.g. support@my-shop.de)")]
    MalformedAddress(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error(transparent)]
    Dns(#[from] dns::DnsSetupError),
}

/// Looks up, proposes and proves the servers for `address`.
pub async fn detect(address: &str, options: &DetectOptions) -> Result<Detection, DetectError> {
    let deadline = Instant::now() + options.timeout;
    let (address, domain) = split_address(address)?;
    let tls = crate::tls::client_config(options.extra_ca.as_deref())?;
    let extra_ca_pem = match &options.extra_ca {
        // client_config has read and checked it just now.
        Some(path) => std::fs::read(path).ok(),
        None => None,
    };
    // Lookups get at most half the time: the probes need the rest.
    let lookup_time = options.timeout / 2;
    let dns = Dns::new(options.dns, lookup_time)?;
    let mut found = Found::new(&address);

    let known = providers::by_domain(&domain);
    if let Some(p) = known {
        found.provider(p, |name| Source::Provider(name.to_string()));
    }
    let srv = srv_lookups(&dns, &domain);
    let autoconfig = autoconfig::fetch(
        &domain,
        &address,
        options.autoconfig_port,
        &dns,
        &tls,
        lookup_time,
    );
    let mx = dns.mx(&domain);
    let (srv, autoconfig, mx) = tokio::join!(
        tokio::time::timeout(lookup_time, srv),
        tokio::time::timeout(lookup_time, autoconfig),
        tokio::time::timeout(lookup_time, mx),
    );
    let late = |what: &str| format!("{what}: no answer within {} s", lookup_time.as_secs());
    match srv {
        Ok(answers) => found.srv(&answers),
        Err(_) => found.notes.push(late("SRV lookups")),
    }
    match autoconfig {
        Ok(Ok((url, entries))) => found.autoconfig(&url, &entries),
        Ok(Err(failures)) => found.notes.extend(failures),
        Err(_) => found.notes.push(late("autoconfig")),
    }
    match mx {
        Ok(Ok(exchanges)) if known.is_none() => found.mx(&exchanges),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => found.notes.push(format!("MX lookup for {domain}: {e}")),
        Err(_) => found.notes.push(late("MX lookup")),
    }

    let prober = Prober {
        dns,
        tls,
        extra_ca_pem,
    };
    let probe_time = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let (incoming, outgoing) = tokio::join!(
        prove_all(&prober, found.incoming, probe_time),
        prove_all(&prober, found.outgoing, probe_time),
    );
    Ok(Detection {
        address,
        domain,
        incoming,
        outgoing,
        oauth2: found.oauth2,
        notes: found.notes,
    })
}

/// `Name@Example.COM` → ("Name@example.com", "example.com"): the domain is case-insensitive,
/// the local part is kept as typed.
pub fn split_address(address: &str) -> Result<(String, String), DetectError> {
    let trimmed = address.trim();
    let parsed: lettre::Address = trimmed
        .parse()
        .map_err(|_| DetectError::MalformedAddress(address.to_string()))?;
    let domain = parsed.domain().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.starts_with('[') {
        return Err(DetectError::MalformedAddress(address.to_string()));
    }
    Ok((format!("{}@{domain}", parsed.user()), domain))
}

/// SRV names of RFC 6186 (incoming) and RFC 8314 (submission), implicit TLS first.
const SRV_SERVICES: &[(&str, Wire, Encryption)] = &[
    ("_imaps._tcp", Wire::Imap, Encryption::Ssl),
    ("_imap._tcp", Wire::Imap, Encryption::Starttls),
    ("_pop3s._tcp", Wire::Pop3, Encryption::Ssl),
    ("_pop3._tcp", Wire::Pop3, Encryption::Starttls),
    ("_submissions._tcp", Wire::Smtp, Encryption::Ssl),
    ("_submission._tcp", Wire::Smtp, Encryption::Starttls),
];

type SrvResult = (&'static str, Wire, Encryption, Result<SrvAnswer, String>);

async fn srv_lookups(dns: &Dns, domain: &str) -> Vec<SrvResult> {
    let lookups = SRV_SERVICES.iter().map(|&(label, wire, encryption)| {
        let name = format!("{label}.{domain}");
        async move { (label, wire, encryption, dns.srv(&name).await) }
    });
    futures::future::join_all(lookups).await
}

/// Proposals gathered from the sources, without duplicates, in source order.
struct Found {
    address: String,
    incoming: Vec<Candidate<Protocol>>,
    outgoing: Vec<Candidate<Smtp>>,
    oauth2: Option<OAuth2Preset>,
    notes: Vec<String>,
}

impl Found {
    fn new(address: &str) -> Found {
        Found {
            address: address.to_string(),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            oauth2: None,
            notes: Vec::new(),
        }
    }

    fn add(
        &mut self,
        wire: Wire,
        host: &str,
        port: u16,
        encryption: Encryption,
        source: Source,
        user_hint: Option<String>,
    ) {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let protocol = match wire {
            Wire::Imap => Some(Protocol::Imap),
            Wire::Pop3 => Some(Protocol::Pop3),
            Wire::Smtp => None,
        };
        match protocol {
            Some(protocol) => push_new(
                &mut self.incoming,
                protocol,
                host,
                port,
                encryption,
                source,
                user_hint,
            ),
            None => push_new(
                &mut self.outgoing,
                Smtp,
                host,
                port,
                encryption,
                source,
                user_hint,
            ),
        }
    }

    fn provider(&mut self, p: &KnownProvider, source: impl Fn(&str) -> Source) {
        let user = match p.user_name {
            UserName::Address => self.address.clone(),
            UserName::LocalPart => self
                .address
                .rsplit_once('@')
                .map_or(self.address.clone(), |(local, _)| local.to_string()),
        };
        for (protocol, server) in p.incoming() {
            self.add(
                protocol.wire(),
                server.host,
                server.port,
                server.encryption,
                source(p.name),
                Some(user.clone()),
            );
        }
        for server in p.smtp {
            self.add(
                Wire::Smtp,
                server.host,
                server.port,
                server.encryption,
                source(p.name),
                Some(user.clone()),
            );
        }
        if let (Some(provider), None) = (p.oauth2, &self.oauth2) {
            self.oauth2 = Some(OAuth2Preset {
                provider,
                reason: format!(
                    "{} mailboxes sign in with OAuth 2.0: set auth = \"oauth2\" and an \
                     [account.oauth2] table with provider = \"{}\"",
                    p.name,
                    provider_key(provider)
                ),
            });
        }
    }

    fn srv(&mut self, answers: &[SrvResult]) {
        for (label, wire, encryption, answer) in answers {
            match answer {
                Ok(SrvAnswer::Offered(records)) => {
                    for r in records {
                        // RFC 6186 section 4: the user name is the address unless told otherwise.
                        let user = Some(self.address.clone());
                        let source = Source::Srv(label.to_string());
                        self.add(*wire, &r.target, r.port, *encryption, source, user);
                    }
                }
                Ok(SrvAnswer::NotOffered) => self.notes.push(format!(
                    "SRV {label}: the domain says it does not offer this"
                )),
                Ok(SrvAnswer::None) => {}
                Err(e) => self.notes.push(format!("SRV {label}: {e}")),
            }
        }
    }

    fn autoconfig(&mut self, url: &str, entries: &[ServerEntry]) {
        for e in entries {
            let wire = match e.kind {
                Kind::Imap => Wire::Imap,
                Kind::Pop3 => Wire::Pop3,
                Kind::Smtp => Wire::Smtp,
            };
            let source = Source::Autoconfig(url.to_string());
            self.add(wire, &e.host, e.port, e.encryption, source, e.user.clone());
        }
    }

    fn mx(&mut self, exchanges: &[String]) {
        let Some((exchange, p)) = exchanges
            .iter()
            .find_map(|mx| providers::by_mx(mx).map(|p| (mx, p)))
        else {
            return;
        };
        self.notes.push(format!(
            "the domain's mail goes to {exchange}, a server of {}",
            p.name
        ));
        self.provider(p, |name| Source::Mx(name.to_string()));
    }
}

fn push_new<P: PartialEq>(
    list: &mut Vec<Candidate<P>>,
    protocol: P,
    host: String,
    port: u16,
    encryption: Encryption,
    source: Source,
    user_hint: Option<String>,
) {
    let known = list.iter().any(|c| {
        c.protocol == protocol && c.host == host && c.port == port && c.encryption == encryption
    });
    if !known {
        list.push(Candidate {
            protocol,
            host,
            port,
            encryption,
            source,
            user_hint,
            proof: Proof::NotTried,
        });
    }
}

/// The key `[account.oauth2] provider` takes.
pub fn provider_key(provider: OAuthProvider) -> &'static str {
    match provider {
        OAuthProvider::Microsoft => "microsoft",
        OAuthProvider::Google => "google",
        OAuthProvider::Custom => "custom",
    }
}

/// Probes every candidate at once, then orders them best first.
async fn prove_all<P: Service>(
    prober: &Prober,
    candidates: Vec<Candidate<P>>,
    timeout: Duration,
) -> Vec<Candidate<P>> {
    let probes = candidates.into_iter().map(|mut c| async move {
        c.proof = prober
            .probe(c.protocol.wire(), &c.host, c.port, c.encryption, timeout)
            .await;
        c
    });
    let mut proven = futures::future::join_all(probes).await;
    sort_best_first(&mut proven);
    proven
}

/// Proven before unproven, implicit TLS before STARTTLS before none, IMAP before POP3; the
/// source order (table, SRV, autoconfig, MX) decides the rest (the sort is stable).
pub fn sort_best_first<P: Service>(candidates: &mut [Candidate<P>]) {
    candidates.sort_by_key(|c| {
        let proof = match c.proof {
            Proof::Proven { .. } => 0,
            Proof::NotTried => 1,
            Proof::Failed { .. } => 2,
        };
        let encryption = match c.encryption {
            Encryption::Ssl => 0,
            Encryption::Starttls => 1,
            Encryption::None => 2,
        };
        let protocol = match c.protocol.wire() {
            Wire::Imap | Wire::Smtp => 0,
            Wire::Pop3 => 1,
        };
        (proof, encryption, protocol)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(protocol: Protocol, encryption: Encryption, proven: bool) -> Candidate<Protocol> {
        Candidate {
            protocol,
            host: "mail.example.com".into(),
            port: 1,
            encryption,
            source: Source::Srv("_imaps._tcp".into()),
            user_hint: None,
            proof: if proven {
                Proof::Proven {
                    detail: "ok".into(),
                }
            } else {
                Proof::Failed {
                    detail: "refused".into(),
                }
            },
        }
    }

    #[test]
    fn orders_proven_then_implicit_tls_then_imap() {
        let mut list = vec![
            candidate(Protocol::Pop3, Encryption::Ssl, true),
            candidate(Protocol::Imap, Encryption::Ssl, false),
            candidate(Protocol::Imap, Encryption::Starttls, true),
            candidate(Protocol::Imap, Encryption::Ssl, true),
        ];
        sort_best_first(&mut list);
        let order: Vec<_> = list
            .iter()
            .map(|c| (c.protocol, c.encryption, c.proof.is_proven()))
            .collect();
        assert_eq!(
            order,
            [
                (Protocol::Imap, Encryption::Ssl, true),
                (Protocol::Pop3, Encryption::Ssl, true),
                (Protocol::Imap, Encryption::Starttls, true),
                (Protocol::Imap, Encryption::Ssl, false),
            ]
        );
    }

    #[test]
    fn splits_an_address_and_lowercases_its_domain() {
        let (address, domain) = split_address(" Support@My-Shop.DE ").unwrap();
        assert_eq!(address, "Support@my-shop.de");
        assert_eq!(domain, "my-shop.de");
        for bad in ["", "support", "@my-shop.de", "support@", "a b@c.de"] {
            assert!(
                matches!(split_address(bad), Err(DetectError::MalformedAddress(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_server_named_by_two_sources_is_proposed_once_with_the_first_source() {
        let mut found = Found::new("kunde@gmx.de");
        found.provider(providers::by_domain("gmx.de").unwrap(), |n| {
            Source::Provider(n.into())
        });
        let before = found.incoming.len();
        found.add(
            Wire::Imap,
            "IMAP.GMX.NET.",
            993,
            Encryption::Ssl,
            Source::Srv("_imaps._tcp".into()),
            None,
        );
        assert_eq!(found.incoming.len(), before);
        assert_eq!(found.incoming[0].source, Source::Provider("GMX".into()));
        assert_eq!(found.incoming[0].user_hint.as_deref(), Some("kunde@gmx.de"));
    }

    #[test]
    fn a_microsoft_mx_proposes_microsoft_365_with_oauth2() {
        let mut found = Found::new("info@my-shop.de");
        found.mx(&[
            "backup.my-shop.de".into(),
            "my-shop-de.mail.protection.outlook.com".into(),
        ]);
        assert_eq!(found.incoming[0].host, "outlook.office365.com");
        assert_eq!(found.incoming[0].source, Source::Mx("Microsoft 365".into()));
        assert_eq!(found.outgoing[0].host, "smtp.office365.com");
        assert_eq!(
            found.oauth2.as_ref().map(|o| o.provider),
            Some(OAuthProvider::Microsoft)
        );
    }

    #[test]
    fn options_read_the_test_variables_and_refuse_nonsense() {
        // One test touches the process environment, so nothing races it.
        std::env::set_var(DNS_ENV, "127.0.0.1:5353");
        std::env::set_var(AUTOCONFIG_PORT_ENV, "8443");
        let options = DetectOptions::from_env().unwrap();
        assert_eq!(options.dns, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(options.autoconfig_port, Some(8443));
        std::env::set_var(DNS_ENV, "my-dns-server");
        assert!(DetectOptions::from_env().unwrap_err().contains(DNS_ENV));
        std::env::remove_var(DNS_ENV);
        std::env::remove_var(AUTOCONFIG_PORT_ENV);
    }

    #[test]
    fn serialises_for_the_web_page() {
        let c = candidate(Protocol::Imap, Encryption::Ssl, true);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["protocol"], "imap");
        assert_eq!(json["encryption"], "ssl");
        assert_eq!(json["source"]["kind"], "srv");
        assert_eq!(json["proof"]["status"], "proven");
        assert_eq!(serde_json::to_value(Smtp).unwrap(), "smtp");
    }
}
