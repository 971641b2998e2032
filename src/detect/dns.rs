//! DNS for `detect`: SRV (RFC 6186, RFC 8314), MX and the addresses of the proposed hosts, all
//! through one hickory resolver. With `MAIL2TICKET_DNS=IP:PORT` that resolver asks only that
//! name server (UDP, and TCP for long answers) and never reads /etc/hosts or resolv.conf, so a
//! test name server decides every answer; otherwise it is the system's configuration.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol as Transport;
use hickory_resolver::{ResolveError, TokioResolver};

/// One SRV record as RFC 2782 defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot; "." (the root) means "this service is not offered".
    pub target: String,
}

/// What an SRV lookup said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvAnswer {
    /// Servers, best first (see [`order_srv`]).
    Offered(Vec<SrvRecord>),
    /// A single record with the target "." (RFC 2782, RFC 6186 section 4): the domain says
    /// explicitly that it does not offer the service.
    NotOffered,
    /// No record at all.
    None,
}

/// The resolver every lookup of one detection shares (cheap to clone).
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up DNS: {0}")]
pub struct DnsSetupError(String);

impl Dns {
    /// A resolver asking only `server` when given, else the system's configuration.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Dns, DnsSetupError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let servers = NameServerConfigGroup::from(vec![
                    NameServerConfig::new(addr, Transport::Udp),
                    NameServerConfig::new(addr, Transport::Tcp),
                ]);
                let config = ResolverConfig::from_parts(None, Vec::new(), servers);
                let mut builder = TokioResolver::builder_with_config(config, provider);
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
            None => TokioResolver::builder(provider).map_err(|e| DnsSetupError(e.to_string()))?,
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        Ok(Dns {
            resolver: Arc::new(builder.build()),
        })
    }

    /// SRV records of `name` (e.g. `_imaps._tcp.example.com`).
    pub async fn srv(&self, name: &str) -> Result<SrvAnswer, String> {
        match self.resolver.srv_lookup(fqdn(name)).await {
            Ok(lookup) => {
                let records = lookup
                    .iter()
                    .map(|r| SrvRecord {
                        priority: r.priority(),
                        weight: r.weight(),
                        port: r.port(),
                        target: bare(&r.target().to_ascii()),
                    })
                    .collect();
                Ok(order_srv(records))
            }
            Err(e) if is_empty_answer(&e) => Ok(SrvAnswer::None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Mail exchangers of `domain`, most preferred first.
    pub async fn mx(&self, domain: &str) -> Result<Vec<String>, String> {
        match self.resolver.mx_lookup(fqdn(domain)).await {
            Ok(lookup) => {
                let mut records: Vec<(u16, String)> = lookup
                    .iter()
                    .map(|r| (r.preference(), bare(&r.exchange().to_ascii())))
                    .collect();
                records.sort();
                Ok(records.into_iter().map(|(_, host)| host).collect())
            }
            Err(e) if is_empty_answer(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The addresses of `host` (an IP address stands for itself).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(fqdn(host)).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) if is_empty_answer(&e) => Err("no such host (no A or AAAA record)".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Absolute, so no search domain of the machine is appended to a mail domain.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Without the root's dot, lower case; the root itself stays ".".
fn bare(name: &str) -> String {
    match name.trim_end_matches('.') {
        "" => ".".to_string(),
        trimmed => trimmed.to_ascii_lowercase(),
    }
}

fn is_empty_answer(e: &ResolveError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

/// Orders SRV records for proposing them: lowest priority first, then the heaviest weight.
///
/// RFC 2782 picks among records of one priority at random, in proportion to weight, to spread
/// the load of many clients. `detect` proposes settings once, for a person to save, so it lists
/// every server in a stable order instead of one drawn by lot, the most weighted first.
/// A lone record with the target "." means the service is decidedly not offered.
pub fn order_srv(mut records: Vec<SrvRecord>) -> SrvAnswer {
    if records.is_empty() {
        return SrvAnswer::None;
    }
    if records.len() == 1 && records[0].target == "." {
        return SrvAnswer::NotOffered;
    }
    records.retain(|r| r.target != ".");
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then(a.target.cmp(&b.target))
    });
    SrvAnswer::Offered(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 993,
            target: target.into(),
        }
    }

    #[test]
    fn lowest_priority_comes_first_then_the_heaviest_weight() {
        let answer = order_srv(vec![
            rec(20, 100, "backup.example.com"),
            rec(10, 10, "light.example.com"),
            rec(10, 60, "heavy.example.com"),
        ]);
        let SrvAnswer::Offered(records) = answer else {
            panic!("expected servers, got {answer:?}")
        };
        let order: Vec<&str> = records.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            order,
            [
                "heavy.example.com",
                "light.example.com",
                "backup.example.com"
            ]
        );
    }

    #[test]
    fn a_lone_dot_target_means_the_service_is_not_offered() {
        assert_eq!(order_srv(vec![rec(0, 0, ".")]), SrvAnswer::NotOffered);
        assert_eq!(order_srv(Vec::new()), SrvAnswer::None);
    }

    #[test]
    fn dot_targets_beside_real_servers_are_dropped() {
        let answer = order_srv(vec![rec(0, 0, "."), rec(5, 0, "imap.example.com")]);
        assert_eq!(
            answer,
            SrvAnswer::Offered(vec![rec(5, 0, "imap.example.com")])
        );
    }

    #[test]
    fn names_lose_the_root_dot_and_keep_the_root() {
        assert_eq!(bare("Mail.Example.COM."), "mail.example.com");
        assert_eq!(bare("."), ".");
        assert_eq!(fqdn("example.com"), "example.com.");
        assert_eq!(fqdn("example.com."), "example.com.");
    }
}
