//! What an alert says, in English or German: a title, what happened (with the server's words),
//! since when, and what to do. The advice follows the README's troubleshooting table, so the
//! owner reads the same words there, in `test-fetch` and here.

use chrono::{DateTime, SecondsFormat, Utc};

use super::condition::Kind;
use crate::config::AlertLanguage;

/// Which message of an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    Started,
    Reminder,
    Resolved,
}

impl Moment {
    pub fn label(self) -> &'static str {
        match self {
            Moment::Started => "alert",
            Moment::Reminder => "reminder",
            Moment::Resolved => "resolved",
        }
    }
}

/// The words of one alert message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    pub title: String,
    pub body: String,
}

/// What an alert is about, as the texts need it.
pub struct About<'a> {
    pub kind: Kind,
    pub account: Option<&'a str>,
    pub since: DateTime<Utc>,
    pub detail: &'a str,
    pub stage: i64,
}

pub fn words(lang: AlertLanguage, moment: Moment, about: &About<'_>) -> Words {
    let subject = subject(lang, about);
    let title = match (lang, moment) {
        (_, Moment::Started) => subject.clone(),
        (AlertLanguage::En, Moment::Reminder) => format!("Still: {subject}"),
        (AlertLanguage::De, Moment::Reminder) => format!("Weiterhin: {subject}"),
        (AlertLanguage::En, Moment::Resolved) => format!("Resolved: {subject}"),
        (AlertLanguage::De, Moment::Resolved) => format!("Behoben: {subject}"),
    };
    let since = about.since.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut body = String::new();
    match (lang, moment) {
        (AlertLanguage::En, Moment::Resolved) => {
            body.push_str(&format!("This has ended (it began {since}).\n"));
            body.push_str(&format!("\nWhat it was:\n{}\n", about.detail));
        }
        (AlertLanguage::De, Moment::Resolved) => {
            body.push_str(&format!("Das ist vorbei (es begann {since}).\n"));
            body.push_str(&format!("\nWas es war:\n{}\n", about.detail));
        }
        (AlertLanguage::En, _) => {
            body.push_str(&format!("Since: {since}\n"));
            body.push_str(&format!("\nWhat happened:\n{}\n", about.detail));
            body.push_str(&format!("\nWhat to do:\n{}\n", advice(lang, about.kind)));
        }
        (AlertLanguage::De, _) => {
            body.push_str(&format!("Seit: {since}\n"));
            body.push_str(&format!("\nWas passiert ist:\n{}\n", about.detail));
            body.push_str(&format!(
                "\nWas zu tun ist:\n{}\n",
                advice(lang, about.kind)
            ));
        }
    }
    body.push_str(match lang {
        AlertLanguage::En => "\n-- \nmail2ticket (an automatic alert; answers are not read)\n",
        AlertLanguage::De => {
            "\n-- \nmail2ticket (eine automatische Meldung; Antworten werden nicht gelesen)\n"
        }
    });
    Words { title, body }
}

fn subject(lang: AlertLanguage, about: &About<'_>) -> String {
    let account = about.account.unwrap_or("-");
    let en = lang == AlertLanguage::En;
    match about.kind {
        Kind::LoginRejected if en => format!("Account {account}: the server rejects the login"),
        Kind::LoginRejected => format!("Konto {account}: der Server lehnt die Anmeldung ab"),
        Kind::OAuthRejected if en => {
            format!("Account {account}: the OAuth provider rejects the sign-in")
        }
        Kind::OAuthRejected => {
            format!("Konto {account}: der OAuth-Anbieter lehnt die Anmeldung ab")
        }
        Kind::Tls if en => format!("Account {account}: the encrypted connection fails"),
        Kind::Tls => format!("Konto {account}: die verschlüsselte Verbindung scheitert"),
        Kind::Unreachable if en => format!("Account {account}: the mail server cannot be reached"),
        Kind::Unreachable => format!("Konto {account}: der Mailserver ist nicht erreichbar"),
        Kind::AccountFailing if en => format!("Account {account}: mail is not being fetched"),
        Kind::AccountFailing => format!("Konto {account}: es wird keine Mail abgeholt"),
        Kind::StoreFailing if en => "The ticket store cannot be written".into(),
        Kind::StoreFailing => "Der Ticketspeicher kann nicht schreiben".into(),
        Kind::RepliesNotDraining if en => {
            "Automatic replies are not being sent (SMTP fails)".into()
        }
        Kind::RepliesNotDraining => {
            "Automatische Antworten werden nicht versendet (SMTP scheitert)".into()
        }
        Kind::Quarantined if en => {
            format!("Account {account}: {} mail(s) in quarantine", about.stage)
        }
        Kind::Quarantined => format!("Konto {account}: {} Mail(s) in Quarantäne", about.stage),
        Kind::TooLarge if en => format!(
            "Account {account}: {} mail(s) too large to fetch",
            about.stage
        ),
        Kind::TooLarge => format!(
            "Konto {account}: {} Mail(s) zu groß zum Abholen",
            about.stage
        ),
        Kind::SecretExpiring if en => match about.stage {
            3 => format!("The OAuth client secret of {account} has expired"),
            _ => format!("The OAuth client secret of {account} expires soon"),
        },
        Kind::SecretExpiring => match about.stage {
            3 => format!("Das OAuth-Client-Secret von {account} ist abgelaufen"),
            _ => format!("Das OAuth-Client-Secret von {account} läuft bald ab"),
        },
        Kind::Test if en => "Test alert from mail2ticket".into(),
        Kind::Test => "Testmeldung von mail2ticket".into(),
    }
}

fn advice(lang: AlertLanguage, kind: Kind) -> &'static str {
    let en = lang == AlertLanguage::En;
    match kind {
        Kind::LoginRejected if en => {
            "Check the account's user and password (the most common cause) on the accounts page \
             or in the config, then save (or reload: systemctl reload mail2ticket). \
             `mail2ticket test-fetch NAME` confirms it. Mails wait on the server; nothing is lost."
        }
        Kind::LoginRejected => {
            "Benutzer und Passwort des Kontos prüfen (die häufigste Ursache), auf der Kontenseite \
             oder in der Konfiguration, dann speichern (oder neu laden: systemctl reload \
             mail2ticket). `mail2ticket test-fetch NAME` bestätigt es. Die Mails warten auf dem \
             Server; nichts geht verloren."
        }
        Kind::OAuthRejected if en => {
            "invalid_client: renew the app's client secret (Azure secrets expire) and put the new \
             one in the config. invalid_grant: run `mail2ticket oauth2 authorize NAME` again. \
             See docs/oauth2.md. Mails wait on the server; nothing is lost."
        }
        Kind::OAuthRejected => {
            "invalid_client: das Client-Secret der App erneuern (Azure-Secrets laufen ab) und das \
             neue in die Konfiguration eintragen. invalid_grant: `mail2ticket oauth2 authorize \
             NAME` erneut ausführen. Siehe docs/oauth2.md. Die Mails warten auf dem Server."
        }
        Kind::Tls if en => {
            "A certificate not trusted: if the server uses a private CA, set `ca_file`. No TLS on \
             the port: check `encryption` and `port` (ssl for 993/995, starttls for 143/110). \
             `mail2ticket test-fetch NAME` shows the step that fails."
        }
        Kind::Tls => {
            "Zertifikat nicht vertrauenswürdig: bei einer privaten CA `ca_file` setzen. Kein TLS \
             auf dem Port: `encryption` und `port` prüfen (ssl für 993/995, starttls für \
             143/110). `mail2ticket test-fetch NAME` zeigt den scheiternden Schritt."
        }
        Kind::Unreachable if en => {
            "Check `host` and `port`, the firewall and the provider's status page. The account \
             retries on its own; mails wait on the server."
        }
        Kind::Unreachable => {
            "`host` und `port`, die Firewall und die Statusseite des Anbieters prüfen. Das Konto \
             versucht es selbst weiter; die Mails warten auf dem Server."
        }
        Kind::AccountFailing if en => {
            "The server's words above say why. `mail2ticket test-fetch NAME` shows the step that \
             fails; the README's troubleshooting table has the fixes."
        }
        Kind::AccountFailing => {
            "Die Worte des Servers oben sagen warum. `mail2ticket test-fetch NAME` zeigt den \
             scheiternden Schritt; die Tabelle „Troubleshooting“ im README nennt die Lösungen."
        }
        Kind::StoreFailing if en => {
            "Free space on the store's file system, or make it writable again. The accounts retry \
             on their own; mails stay on the server until they are stored, none is lost or \
             doubled."
        }
        Kind::StoreFailing => {
            "Platz auf dem Dateisystem des Speichers schaffen oder es wieder beschreibbar machen. \
             Die Konten versuchen es selbst weiter; die Mails bleiben auf dem Server, bis sie \
             gespeichert sind."
        }
        Kind::RepliesNotDraining if en => {
            "This alert comes only by webhook: mail itself is what fails. Check [smtp] (server, \
             user, password) with `mail2ticket test-send`. Queued replies are sent once SMTP \
             works again."
        }
        Kind::RepliesNotDraining => {
            "Diese Meldung kommt nur per Webhook: gerade der Mailversand scheitert. [smtp] \
             (Server, Benutzer, Passwort) mit `mail2ticket test-send` prüfen. Wartende Antworten \
             gehen raus, sobald SMTP wieder geht."
        }
        Kind::Quarantined if en => {
            "These mails failed to be stored three times and stay on the server, skipped. \
             `mail2ticket quarantine list` shows them with the error; fix the cause, then \
             `mail2ticket quarantine retry KEY` (or --all)."
        }
        Kind::Quarantined => {
            "Diese Mails ließen sich dreimal nicht speichern und bleiben übersprungen auf dem \
             Server. `mail2ticket quarantine list` zeigt sie mit dem Fehler; die Ursache beheben, \
             dann `mail2ticket quarantine retry KEY` (oder --all)."
        }
        Kind::TooLarge if en => {
            "Each has a ticket with its sender and subject, and the mail stays on the server. \
             Raise the account's `max_message_size` to fetch them into their tickets, or handle \
             them in your mail program."
        }
        Kind::TooLarge => {
            "Jede hat ein Ticket mit Absender und Betreff, die Mail bleibt auf dem Server. \
             `max_message_size` des Kontos erhöhen, um sie in ihre Tickets zu holen, oder sie im \
             Mailprogramm bearbeiten."
        }
        Kind::SecretExpiring if en => {
            "Create a new client secret for the app (Entra admin center: App registrations, \
             Certificates & secrets), put it in the config, and update `client_secret_expires`."
        }
        Kind::SecretExpiring => {
            "Ein neues Client-Secret für die App anlegen (Entra Admin Center: App-Registrierungen, \
             Zertifikate & Geheimnisse), in die Konfiguration eintragen und \
             `client_secret_expires` anpassen."
        }
        Kind::Test if en => "Nothing: this is how alerts reach you.",
        Kind::Test => "Nichts: so erreichen Sie Meldungen.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_says_what_since_when_and_what_to_do_in_either_language() {
        let about = About {
            kind: Kind::LoginRejected,
            account: Some("support"),
            since: DateTime::parse_from_rfc3339("2027-01-10T08:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            detail: "[AUTHENTICATIONFAILED] Authentication failed.",
            stage: 0,
        };
        let en = words(AlertLanguage::En, Moment::Started, &about);
        assert_eq!(en.title, "Account support: the server rejects the login");
        for part in [
            "2027-01-10T08:00:00Z",
            "AUTHENTICATIONFAILED",
            "What to do",
            "password",
        ] {
            assert!(en.body.contains(part), "{part}: {}", en.body);
        }
        let de = words(AlertLanguage::De, Moment::Resolved, &about);
        assert_eq!(
            de.title,
            "Behoben: Konto support: der Server lehnt die Anmeldung ab"
        );
        assert!(de.body.contains("vorbei"), "{}", de.body);
    }
}
