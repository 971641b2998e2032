//! Proving a proposal: TCP connect, TLS (implicit, or after STARTTLS/STLS) verified against the
//! system roots plus the extra CA, then the capability list (IMAP CAPABILITY, POP3 CAPA, SMTP
//! EHLO). Never a login: `detect` has no password and wants none.
//!
//! The steps are the crate's own: [`crate::net`] and [`crate::tls`] for TCP and TLS,
//! [`crate::imap::connect`] for the IMAP greeting and STARTTLS, [`Pop3Client`] for POP3, and
//! lettre (which `[smtp]` sends with) for SMTP. Only name resolution differs: it goes through
//! the detection's resolver, so a test name server answers for the hosts it proposes too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::{ClientId, Extension};
use rustls::ClientConfig;

use super::dns::Dns;
use super::Proof;
use crate::config::Encryption;
use crate::imap::connect as imap;
use crate::net::{self, MailStream};
use crate::pop3::client::{Pop3Client, Pop3Security, Pop3Timeouts};

/// Which protocol a probe speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Imap,
    Pop3,
    Smtp,
}

/// What every probe of one detection shares.
#[derive(Clone)]
pub struct Prober {
    pub dns: Dns,
    pub tls: Arc<ClientConfig>,
    /// The extra CA as PEM, for lettre's own TLS parameters.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Prober {
    /// Proves or fails one server within `timeout`.
    pub async fn probe(
        &self,
        wire: Wire,
        host: &str,
        port: u16,
        encryption: Encryption,
        timeout: Duration,
    ) -> Proof {
        let attempt = self.attempt(wire, host, port, encryption, timeout);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(detail)) => Proof::Proven { detail },
            Ok(Err(detail)) => Proof::Failed { detail },
            Err(_) => Proof::Failed {
                detail: format!(
                    "{host}:{port} did not finish answering within {} s",
                    timeout.as_secs_f32().ceil()
                ),
            },
        }
    }

    async fn attempt(
        &self,
        wire: Wire,
        host: &str,
        port: u16,
        encryption: Encryption,
        timeout: Duration,
    ) -> Result<String, String> {
        let addrs: Vec<SocketAddr> = self
            .dns
            .addresses(host)
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        let (security, features) = match wire {
            Wire::Imap => self.imap(host, port, &addrs, encryption, timeout).await?,
            Wire::Pop3 => self.pop3(host, port, &addrs, encryption, timeout).await?,
            Wire::Smtp => self.smtp(host, &addrs, encryption, timeout).await?,
        };
        Ok(if features.is_empty() {
            security.to_string()
        } else {
            format!("{security}, {}", features.join(" "))
        })
    }

    async fn imap(
        &self,
        host: &str,
        port: u16,
        addrs: &[SocketAddr],
        encryption: Encryption,
        timeout: Duration,
    ) -> Result<(&'static str, Vec<String>), String> {
        let text = |e: crate::imap::error::ImapError| e.to_string();
        let tcp = net::connect_addrs(host, port, addrs, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let (mut stream, security) = match encryption {
            Encryption::Ssl => {
                let mut tls = self.tls_over(tcp, host, timeout).await?;
                imap::read_greeting(&mut tls, timeout).await.map_err(text)?;
                (tls, "TLS ok")
            }
            Encryption::Starttls => {
                let tcp = imap::negotiate_starttls(tcp, host, timeout)
                    .await
                    .map_err(text)?;
                (self.tls_over(tcp, host, timeout).await?, "STARTTLS ok")
            }
            Encryption::None => {
                let mut plain = MailStream::Plain(tcp);
                imap::read_greeting(&mut plain, timeout)
                    .await
                    .map_err(text)?;
                (plain, "no encryption")
            }
        };
        let names = imap::capabilities(&mut stream, timeout)
            .await
            .map_err(text)?;
        Ok((security, notable_imap(&names)))
    }

    async fn pop3(
        &self,
        host: &str,
        port: u16,
        addrs: &[SocketAddr],
        encryption: Encryption,
        timeout: Duration,
    ) -> Result<(&'static str, Vec<String>), String> {
        let text = |e: crate::pop3::client::Pop3Error| e.to_string();
        let timeouts = Pop3Timeouts {
            connect: timeout,
            command: timeout,
        };
        let tcp = net::connect_addrs(host, port, addrs, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let security = crate::pop3::login::security(encryption);
        let first = match security {
            Pop3Security::Implicit => self.tls_over(tcp, host, timeout).await?,
            _ => MailStream::Plain(tcp),
        };
        let mut client = Pop3Client::from_stream(first, timeouts);
        client.read_greeting(timeout).await.map_err(text)?;
        client.refresh_capabilities().await.map_err(text)?;
        let label = match security {
            Pop3Security::Implicit => "TLS ok",
            Pop3Security::Plain => "no encryption",
            Pop3Security::StartTls => {
                let tcp = client.stls().await.map_err(text)?;
                let tls = self.tls_over(tcp, host, timeout).await?;
                // No second greeting after STLS (RFC 2595); capabilities are asked anew.
                client = Pop3Client::from_stream(tls, timeouts);
                client.refresh_capabilities().await.map_err(text)?;
                "STLS ok"
            }
        };
        Ok((label, notable_pop3(client.capabilities())))
    }

    async fn smtp(
        &self,
        host: &str,
        addrs: &[SocketAddr],
        encryption: Encryption,
        timeout: Duration,
    ) -> Result<(&'static str, Vec<String>), String> {
        let text = |e: lettre::transport::smtp::Error| net::error_chain(&e);
        let hello = ClientId::default();
        let implicit = match encryption {
            Encryption::Ssl => Some(self.lettre_tls(host)?),
            _ => None,
        };
        let mut conn =
            AsyncSmtpConnection::connect_tokio1(addrs, Some(timeout), &hello, implicit, None)
                .await
                .map_err(text)?;
        let label = match encryption {
            Encryption::Ssl => "TLS ok",
            Encryption::None => "no encryption",
            Encryption::Starttls => {
                if !conn.can_starttls() {
                    return Err(format!("{host} does not offer STARTTLS"));
                }
                conn.starttls(self.lettre_tls(host)?, &hello)
                    .await
                    .map_err(text)?;
                "STARTTLS ok"
            }
        };
        let info = conn.server_info();
        let mut features = Vec::new();
        for (ext, name) in [
            (Extension::EightBitMime, "8BITMIME"),
            (Extension::SmtpUtfEight, "SMTPUTF8"),
        ] {
            if info.supports_feature(ext) {
                features.push(name.to_string());
            }
        }
        for (mechanism, name) in [
            (Mechanism::Plain, "AUTH=PLAIN"),
            (Mechanism::Login, "AUTH=LOGIN"),
            (Mechanism::Xoauth2, "AUTH=XOAUTH2"),
        ] {
            if info.supports_auth_mechanism(mechanism) {
                features.push(name.to_string());
            }
        }
        conn.quit().await.ok();
        Ok((label, features))
    }

    async fn tls_over(
        &self,
        tcp: tokio::net::TcpStream,
        host: &str,
        timeout: Duration,
    ) -> Result<MailStream, String> {
        net::start_tls(tcp, host, self.tls.clone(), timeout)
            .await
            .map_err(|e| e.to_string())
    }

    fn lettre_tls(&self, host: &str) -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(host.to_string());
        if let Some(pem) = &self.extra_ca_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| format!("the CA file: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| format!("TLS setup for {host}: {e}"))
    }
}

/// The IMAP capabilities worth showing: the protocol version, what mail2ticket makes use of, how
/// a login may happen, and LOGINDISABLED (no login on this connection at all).
fn notable_imap(names: &[String]) -> Vec<String> {
    const SHOWN: &[&str] = &[
        "IMAP4rev1",
        "IMAP4rev2",
        "IDLE",
        "MOVE",
        "UIDPLUS",
        "LOGINDISABLED",
    ];
    names
        .iter()
        .filter(|n| {
            SHOWN.iter().any(|s| s.eq_ignore_ascii_case(n))
                || n.to_ascii_uppercase().starts_with("AUTH=")
        })
        .cloned()
        .collect()
}

/// POP3: UIDL (mail2ticket needs it), PIPELINING, and the SASL mechanisms.
fn notable_pop3(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| {
            let first = l.split_ascii_whitespace().next().unwrap_or("");
            ["UIDL", "PIPELINING", "SASL", "USER"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(first))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_imap_capabilities_that_matter() {
        let names: Vec<String> = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT MOVE \
                                  UIDPLUS AUTH=PLAIN AUTH=XOAUTH2 LITERAL+"
            .split(' ')
            .map(str::to_string)
            .collect();
        assert_eq!(
            notable_imap(&names),
            [
                "IMAP4rev1",
                "IDLE",
                "MOVE",
                "UIDPLUS",
                "AUTH=PLAIN",
                "AUTH=XOAUTH2"
            ]
        );
    }

    #[test]
    fn shows_the_pop3_capabilities_that_matter() {
        let lines: Vec<String> = [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "SASL PLAIN LOGIN",
        ]
        .map(str::to_string)
        .into();
        assert_eq!(
            notable_pop3(&lines),
            ["UIDL", "PIPELINING", "SASL PLAIN LOGIN"]
        );
    }
}
