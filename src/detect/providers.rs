//! The built-in table of mail providers German shops use: their servers, the domains of their
//! own addresses, and the MX host names that give away a shop domain hosted there.
//!
//! Every entry names where its host names and ports were checked: Mozilla's ISPDB
//! (https://github.com/thunderbird/autoconfig, folder `ispdb/`, what Thunderbird itself uses),
//! Delta Chat's provider database (https://github.com/deltachat/provider-db, `_providers/`), and
//! the provider's own help page where one was found. Where a source was not read, the comment
//! says so.

use crate::config::{Encryption, Protocol, Provider as OAuthProvider};

/// A server a provider publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub host: &'static str,
    pub port: u16,
    pub encryption: Encryption,
}

/// What the user name is, as providers document it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserName {
    /// The whole address (most providers).
    Address,
    /// The part before the `@` (WEB.DE).
    LocalPart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownProvider {
    pub name: &'static str,
    /// Domains of the provider's own mailboxes (`name@gmx.de`).
    pub domains: &'static [&'static str],
    /// MX host names (or their parent domains) of shop domains hosted there.
    pub mx_suffixes: &'static [&'static str],
    pub imap: &'static [Server],
    pub pop3: &'static [Server],
    pub smtp: &'static [Server],
    pub user_name: UserName,
    /// Set where the provider has switched password logins off (or is switching them off) for
    /// third-party programs: the account then signs in with this OAuth 2.0 provider.
    pub oauth2: Option<OAuthProvider>,
}

impl KnownProvider {
    pub fn incoming(&self) -> impl Iterator<Item = (Protocol, Server)> + '_ {
        let imap = self.imap.iter().map(|s| (Protocol::Imap, *s));
        imap.chain(self.pop3.iter().map(|s| (Protocol::Pop3, *s)))
    }
}

const fn ssl(host: &'static str, port: u16) -> Server {
    Server {
        host,
        port,
        encryption: Encryption::Ssl,
    }
}

const fn starttls(host: &'static str, port: u16) -> Server {
    Server {
        host,
        port,
        encryption: Encryption::Starttls,
    }
}

pub const PROVIDERS: &[KnownProvider] = &[
    // ISPDB ispdb/office365.com (Microsoft 365, MX *.mail.protection.outlook.com) and
    // ispdb/hotmail.com (Outlook.com, MX *.olc.protection.outlook.com), which points to
    // https://support.office.com/article/pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040
    // Basic authentication is switched off in Exchange Online, so OAuth 2.0 is the way in.
    KnownProvider {
        name: "Microsoft 365",
        domains: &[
            "outlook.com",
            "outlook.de",
            "hotmail.com",
            "hotmail.de",
            "live.com",
            "live.de",
            "msn.com",
            "onmicrosoft.com",
        ],
        mx_suffixes: &["mail.protection.outlook.com", "olc.protection.outlook.com"],
        imap: &[ssl("outlook.office365.com", 993)],
        pop3: &[ssl("outlook.office365.com", 995)],
        smtp: &[starttls("smtp.office365.com", 587)],
        user_name: UserName::Address,
        oauth2: Some(OAuthProvider::Microsoft),
    },
    // ISPDB ispdb/googlemail.com (IMAP 993, POP3 995, SMTP 465; MX google.com for Google
    // Workspace); SMTP 587 STARTTLS and the newer MX smtp.google.com from
    // https://support.google.com/mail/answer/7126229 (not read here). Google allows passwords
    // only as app passwords with 2-step verification: OAuth 2.0 is preset.
    KnownProvider {
        name: "Google",
        domains: &["gmail.com", "googlemail.com"],
        mx_suffixes: &["aspmx.l.google.com", "google.com", "googlemail.com"],
        imap: &[ssl("imap.gmail.com", 993)],
        pop3: &[ssl("pop.gmail.com", 995)],
        smtp: &[ssl("smtp.gmail.com", 465), starttls("smtp.gmail.com", 587)],
        user_name: UserName::Address,
        oauth2: Some(OAuthProvider::Google),
    },
    // ISPDB ispdb/gmx.net.xml, documented at https://hilfe.gmx.net/pop-imap/imap/imap-serverdaten.html
    KnownProvider {
        name: "GMX",
        domains: &["gmx.de", "gmx.net", "gmx.at", "gmx.ch", "gmx.eu", "gmx.org"],
        mx_suffixes: &["gmx.net"],
        imap: &[ssl("imap.gmx.net", 993), starttls("imap.gmx.net", 143)],
        pop3: &[ssl("pop.gmx.net", 995), starttls("pop.gmx.net", 110)],
        smtp: &[ssl("mail.gmx.net", 465), starttls("mail.gmx.net", 587)],
        user_name: UserName::Address,
        oauth2: None,
    },
    // Delta Chat provider-db _providers/web.de.md (IMAP 993/143, SMTP 587, user name = the
    // local part); POP3 pop3.web.de from https://www.lukcon.de/tipps/anleitungen/mail-server/
    // (port 995 as for every "E-Mail made in Germany" provider, not confirmed by WEB.DE here).
    KnownProvider {
        name: "WEB.DE",
        domains: &["web.de", "email.de"],
        mx_suffixes: &["web.de"],
        imap: &[ssl("imap.web.de", 993), starttls("imap.web.de", 143)],
        pop3: &[ssl("pop3.web.de", 995)],
        smtp: &[starttls("smtp.web.de", 587)],
        user_name: UserName::LocalPart,
        oauth2: None,
    },
    // ISPDB ispdb/t-online.de; http://pda.teltarif.de/internet/e-mail/t-online-unverschluesselt.html
    KnownProvider {
        name: "T-Online",
        domains: &["t-online.de", "magenta.de"],
        mx_suffixes: &["t-online.de"],
        imap: &[ssl("secureimap.t-online.de", 993)],
        pop3: &[ssl("securepop.t-online.de", 995)],
        smtp: &[
            ssl("securesmtp.t-online.de", 465),
            starttls("securesmtp.t-online.de", 587),
        ],
        user_name: UserName::Address,
        oauth2: None,
    },
    // ISPDB ispdb/ionos.de (MX ionos.de, kundenserver.de, schlund.de), documented at
    // https://www.ionos.de/hilfe/index.php?id=2490
    KnownProvider {
        name: "IONOS",
        domains: &["ionos.de"],
        mx_suffixes: &["ionos.de", "kundenserver.de", "schlund.de"],
        imap: &[ssl("imap.ionos.de", 993), starttls("imap.ionos.de", 143)],
        pop3: &[ssl("pop.ionos.de", 995), starttls("pop.ionos.de", 110)],
        smtp: &[ssl("smtp.ionos.de", 465), starttls("smtp.ionos.de", 587)],
        user_name: UserName::Address,
        oauth2: None,
    },
    // https://www.strato.de/faq/article/1612/ links "Die STRATO E-Mailserver" for these names,
    // which were not read here: imap.strato.de, pop3.strato.de and smtp.strato.de are the names
    // STRATO customers configure; MX smtpin.rzone.de. Check before relying on them.
    KnownProvider {
        name: "STRATO",
        domains: &["strato.de"],
        mx_suffixes: &["rzone.de"],
        imap: &[ssl("imap.strato.de", 993)],
        pop3: &[ssl("pop3.strato.de", 995)],
        smtp: &[ssl("smtp.strato.de", 465), starttls("smtp.strato.de", 587)],
        user_name: UserName::Address,
        oauth2: None,
    },
    // Delta Chat provider-db _providers/posteo.md (IMAP 993/143, SMTP 465/587, all on
    // posteo.de, checked 2026-01); POP3 995 on the same host per https://posteo.de/hilfe
    // (not read here).
    KnownProvider {
        name: "Posteo",
        domains: &[
            "posteo.de",
            "posteo.net",
            "posteo.at",
            "posteo.ch",
            "posteo.eu",
        ],
        mx_suffixes: &["posteo.de"],
        imap: &[ssl("posteo.de", 993), starttls("posteo.de", 143)],
        pop3: &[ssl("posteo.de", 995)],
        smtp: &[ssl("posteo.de", 465), starttls("posteo.de", 587)],
        user_name: UserName::Address,
        oauth2: None,
    },
    // ISPDB ispdb/mailbox.org.xml, from https://kb.mailbox.org/de/privat/e-mail/e-mail-konfiguration/
    // (IMAP 993, SMTP 465/587); POP3 pop3.mailbox.org 995 is not in those sources: unproven
    // until the probe says so.
    KnownProvider {
        name: "mailbox.org",
        domains: &["mailbox.org"],
        mx_suffixes: &["mailbox.org"],
        imap: &[ssl("imap.mailbox.org", 993)],
        pop3: &[ssl("pop3.mailbox.org", 995)],
        smtp: &[
            ssl("smtp.mailbox.org", 465),
            starttls("smtp.mailbox.org", 587),
        ],
        user_name: UserName::Address,
        oauth2: None,
    },
    // ISPDB ispdb/freenet.de, documented at
    // http://email-hilfe.freenet.de/documents/Beitrag/15916/einstellungen-serverdaten-fuer-alle-e-mail-programme
    KnownProvider {
        name: "freenet",
        domains: &["freenet.de"],
        mx_suffixes: &["freenet.de"],
        imap: &[ssl("mx.freenet.de", 993)],
        pop3: &[ssl("mx.freenet.de", 995)],
        smtp: &[starttls("mx.freenet.de", 587)],
        user_name: UserName::Address,
        oauth2: None,
    },
];

/// The provider whose own addresses end in `domain` (`kunde@gmx.de`).
pub fn by_domain(domain: &str) -> Option<&'static KnownProvider> {
    let domain = normalise(domain);
    PROVIDERS
        .iter()
        .find(|p| p.domains.iter().any(|d| *d == domain))
}

/// The provider a mail exchanger belongs to: `shop-de.mail.protection.outlook.com` is
/// Microsoft 365, `mx00.ionos.de` IONOS. Matches whole labels only, so `evil-ionos.de` is no one.
pub fn by_mx(exchange: &str) -> Option<&'static KnownProvider> {
    let exchange = normalise(exchange);
    PROVIDERS.iter().find(|p| {
        p.mx_suffixes.iter().any(|suffix| {
            exchange == *suffix
                || exchange
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.ends_with('.'))
        })
    })
}

/// Lower case, without the root's trailing dot that DNS answers carry.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_offers_implicit_tls_for_imap_and_smtp() {
        for p in PROVIDERS {
            assert!(
                p.imap.iter().any(|s| s.encryption == Encryption::Ssl),
                "{}: no IMAP over implicit TLS",
                p.name
            );
            assert!(!p.smtp.is_empty(), "{}: no SMTP server", p.name);
            assert!(
                p.incoming().all(|(_, s)| s.encryption != Encryption::None),
                "{}: an unencrypted server in the table",
                p.name
            );
        }
    }

    #[test]
    fn finds_freemail_providers_by_their_domains() {
        assert_eq!(by_domain("gmx.de").unwrap().name, "GMX");
        assert_eq!(by_domain("WEB.DE").unwrap().name, "WEB.DE");
        assert_eq!(by_domain("t-online.de.").unwrap().name, "T-Online");
        assert_eq!(by_domain("googlemail.com").unwrap().name, "Google");
        assert!(by_domain("my-shop.de").is_none());
    }

    #[test]
    fn presets_oauth2_where_the_provider_requires_it() {
        assert_eq!(
            by_domain("outlook.com").unwrap().oauth2,
            Some(OAuthProvider::Microsoft)
        );
        assert_eq!(
            by_domain("gmail.com").unwrap().oauth2,
            Some(OAuthProvider::Google)
        );
        assert_eq!(by_domain("posteo.de").unwrap().oauth2, None);
    }

    #[test]
    fn recognises_hosted_shop_domains_by_their_mx() {
        let cases = [
            ("shop-de.mail.protection.outlook.com.", "Microsoft 365"),
            ("aspmx.l.google.com", "Google"),
            ("alt1.aspmx.l.google.com", "Google"),
            ("smtp.google.com", "Google"),
            ("mx00.ionos.de", "IONOS"),
            ("mx01.kundenserver.de", "IONOS"),
            ("smtpin.rzone.de", "STRATO"),
            ("mx-ha03.web.de", "WEB.DE"),
            ("mx00.emig.gmx.net", "GMX"),
            ("mxext1.mailbox.org", "mailbox.org"),
        ];
        for (mx, provider) in cases {
            assert_eq!(by_mx(mx).map(|p| p.name), Some(provider), "{mx}");
        }
    }

    #[test]
    fn mx_matching_needs_whole_labels() {
        assert!(by_mx("evil-ionos.de").is_none());
        assert!(by_mx("mail.notgoogle.com").is_none());
        assert!(by_mx("mx.my-shop.de").is_none());
    }

    #[test]
    fn web_de_names_the_local_part_as_user() {
        assert_eq!(by_domain("web.de").unwrap().user_name, UserName::LocalPart);
        assert_eq!(by_domain("gmx.net").unwrap().user_name, UserName::Address);
    }
}
