//! `mail2ticket detect`: proposals from SRV records, an autoconfig file and a known provider's
//! MX, proven against the lab's real servers. The lab's name server (dnsmasq) answers for the
//! test domains; `MAIL2TICKET_DNS` sends the lookups there.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Lab;
use mail2ticket::config::{Encryption, Protocol, Provider};
use mail2ticket::detect::{self, DetectOptions, Proof, Source};

fn options(lab: &Lab) -> DetectOptions {
    DetectOptions {
        dns: Some(
            lab.var("MAIL_LAB_DNS")
                .parse()
                .expect("MAIL_LAB_DNS is IP:PORT"),
        ),
        extra_ca: Some(PathBuf::from(lab.ca())),
        autoconfig_port: Some(lab.port("MAIL_LAB_AUTOCONFIG_PORT")),
        timeout: Duration::from_secs(20),
    }
}

fn proven_detail(proof: &Proof) -> &str {
    match proof {
        Proof::Proven { detail } => detail,
        other => panic!("expected a proven server, got {other:?}"),
    }
}

#[tokio::test]
async fn finds_the_lab_servers_from_srv_records_and_proves_them() {
    let lab = Lab::get();
    let domain = lab.var("MAIL_LAB_SRV_DOMAIN");
    let d = detect::detect(&format!("support@{domain}"), &options(lab))
        .await
        .unwrap();

    let incoming: Vec<(Protocol, u16, Encryption)> = d
        .incoming
        .iter()
        .map(|c| (c.protocol, c.port, c.encryption))
        .collect();
    assert_eq!(
        incoming,
        [
            (
                Protocol::Imap,
                lab.port("MAIL_LAB_IMAPS_PORT"),
                Encryption::Ssl
            ),
            (
                Protocol::Pop3,
                lab.port("MAIL_LAB_POP3S_PORT"),
                Encryption::Ssl
            ),
            (
                Protocol::Imap,
                lab.port("MAIL_LAB_IMAP_PORT"),
                Encryption::Starttls
            ),
            (
                Protocol::Pop3,
                lab.port("MAIL_LAB_POP3_PORT"),
                Encryption::Starttls
            ),
        ],
        "best first: implicit TLS before STARTTLS, IMAP before POP3"
    );
    for c in &d.incoming {
        assert_eq!(c.host, "mail.example.test");
        assert!(matches!(c.source, Source::Srv(_)), "{:?}", c.source);
        let detail = proven_detail(&c.proof);
        assert!(detail.contains("ok"), "{detail}");
    }
    assert_eq!(d.incoming[0].source, Source::Srv("_imaps._tcp".into()));
    assert!(proven_detail(&d.incoming[0].proof).contains("IMAP4rev1"));
    assert!(proven_detail(&d.incoming[1].proof).contains("UIDL"));

    let outgoing: Vec<(u16, Encryption)> =
        d.outgoing.iter().map(|c| (c.port, c.encryption)).collect();
    assert_eq!(
        outgoing,
        [
            (lab.port("MAIL_LAB_SMTPS_PORT"), Encryption::Ssl),
            (lab.port("MAIL_LAB_SUBMISSION_PORT"), Encryption::Starttls),
        ]
    );
    for c in &d.outgoing {
        assert!(proven_detail(&c.proof).contains("AUTH=PLAIN"));
    }
    assert_eq!(d.oauth2, None);
}

#[tokio::test]
async fn finds_settings_from_an_autoconfig_file() {
    let lab = Lab::get();
    let domain = lab.var("MAIL_LAB_AUTOCONFIG_DOMAIN");
    let d = detect::detect(&format!("kunde@{domain}"), &options(lab))
        .await
        .unwrap();
    let url = format!(
        "https://autoconfig.{domain}:{}/mail/config-v1.1.xml",
        lab.port("MAIL_LAB_AUTOCONFIG_PORT")
    );

    assert_eq!(d.incoming.len(), 2, "{:#?}", d.incoming);
    let imap = &d.incoming[0];
    assert_eq!(
        (
            imap.protocol,
            imap.host.as_str(),
            imap.port,
            imap.encryption
        ),
        (
            Protocol::Imap,
            "mail.example.test",
            lab.port("MAIL_LAB_IMAPS_PORT"),
            Encryption::Ssl
        )
    );
    assert_eq!(imap.source, Source::Autoconfig(url.clone()));
    // The file names %EMAILLOCALPART% as the user.
    assert_eq!(imap.user_hint.as_deref(), Some("kunde"));
    proven_detail(&imap.proof);
    assert_eq!(d.incoming[1].protocol, Protocol::Pop3);
    proven_detail(&d.incoming[1].proof);

    let smtp = &d.outgoing[0];
    assert_eq!(
        (smtp.port, smtp.encryption),
        (lab.port("MAIL_LAB_SUBMISSION_PORT"), Encryption::Starttls)
    );
    assert_eq!(
        smtp.user_hint.as_deref(),
        Some(format!("kunde@{domain}").as_str())
    );
    assert!(proven_detail(&smtp.proof).starts_with("STARTTLS ok"));
}

#[tokio::test]
async fn a_known_providers_mx_proposes_its_settings() {
    let lab = Lab::get();
    let domain = lab.var("MAIL_LAB_MX_DOMAIN");
    let d = detect::detect(&format!("info@{domain}"), &options(lab))
        .await
        .unwrap();

    let imap = &d.incoming[0];
    assert_eq!(
        (
            imap.protocol,
            imap.host.as_str(),
            imap.port,
            imap.encryption
        ),
        (
            Protocol::Imap,
            "outlook.office365.com",
            993,
            Encryption::Ssl
        )
    );
    assert_eq!(imap.source, Source::Mx("Microsoft 365".into()));
    assert_eq!(d.outgoing[0].host, "smtp.office365.com");
    assert_eq!(d.outgoing[0].port, 587);
    assert_eq!(
        d.oauth2.as_ref().map(|o| o.provider),
        Some(Provider::Microsoft)
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("mail.protection.outlook.com")),
        "{:?}",
        d.notes
    );
    // This machine has no route to Microsoft: the proof fails and says why (the lab's name
    // server knows no such host). Where it does, it may be proven.
    match &imap.proof {
        Proof::Failed { detail } => {
            assert!(
                detail.contains("outlook.office365.com") && detail.contains("resolve"),
                "{detail}"
            )
        }
        Proof::Proven { .. } => {}
        Proof::NotTried => panic!("every proposal is tried"),
    }
}

#[test]
fn detect_command_prints_json() {
    let lab = Lab::get();
    let domain = lab.var("MAIL_LAB_SRV_DOMAIN");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mail2ticket"))
        .args([
            "detect",
            &format!("support@{domain}"),
            "--json",
            "--ca-file",
        ])
        .arg(lab.ca())
        .env("MAIL2TICKET_DNS", lab.var("MAIL_LAB_DNS"))
        .env(
            "MAIL2TICKET_AUTOCONFIG_PORT",
            lab.var("MAIL_LAB_AUTOCONFIG_PORT"),
        )
        // No config anywhere: detect must not need one.
        .env("MAIL2TICKET_CONFIG", "/nonexistent/config.toml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        common::stderr(&out)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["domain"], domain);
    let best = &json["incoming"][0];
    assert_eq!(best["protocol"], "imap");
    assert_eq!(best["host"], "mail.example.test");
    assert_eq!(best["port"], lab.port("MAIL_LAB_IMAPS_PORT"));
    assert_eq!(best["encryption"], "ssl");
    assert_eq!(best["source"]["kind"], "srv");
    assert_eq!(best["proof"]["status"], "proven");
    assert_eq!(json["outgoing"][0]["protocol"], "smtp");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_mail2ticket"))
        .args(["detect", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", common::stderr(&bad));
}

#[test]
fn detect_command_exits_1_when_no_incoming_server_is_proven() {
    let lab = Lab::get();
    let domain = lab.var("MAIL_LAB_MX_DOMAIN");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mail2ticket"))
        .args(["detect", &format!("info@{domain}")])
        .env("MAIL2TICKET_DNS", lab.var("MAIL_LAB_DNS"))
        .env(
            "MAIL2TICKET_AUTOCONFIG_PORT",
            lab.var("MAIL_LAB_AUTOCONFIG_PORT"),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ IMAP  outlook.office365.com:993  SSL  (MX of Microsoft 365)"),
        "{text}"
    );
    assert!(text.contains("provider = \"microsoft\""), "{text}");
}
