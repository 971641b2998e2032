//! German by default, English when the browser prefers it: the product's own words
//! ("E-Mail-Konten", "Verschieben nach") on the German side, pinned labels on both.

use axum::http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}

impl Lang {
    /// The first of German or English in the browser's Accept-Language order (by q-value);
    /// German when it names neither.
    pub fn from_headers(headers: &HeaderMap) -> Lang {
        let Some(value) = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::De;
        };
        let mut choices: Vec<(f32, usize, Lang)> = value
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim().to_ascii_lowercase();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                let lang = match tag.split('-').next()? {
                    "de" => Lang::De,
                    "en" => Lang::En,
                    _ => return None,
                };
                (q > 0.0).then_some((q, i, lang))
            })
            .collect();
        choices.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        choices.first().map_or(Lang::De, |c| c.2)
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    pub fn t(self) -> &'static Texts {
        match self {
            Lang::De => &DE,
            Lang::En => &EN,
        }
    }
}

/// Every fixed word of the pages, once per language.
pub struct Texts {
    pub title: &'static str,
    pub login: &'static str,
    pub logout: &'static str,
    pub password: &'static str,
    pub wrong_password: &'static str,
    pub too_many_tries: &'static str,
    pub new_account: &'static str,
    pub find_mail: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    pub active: &'static str,
    pub user: &'static str,
    pub protocol: &'static str,
    pub port: &'static str,
    pub encryption: &'static str,
    pub host: &'static str,
    pub ticket_type: &'static str,
    pub ticket_status: &'static str,
    pub sender_name: &'static str,
    pub reply_to: &'static str,
    pub action: &'static str,
    pub move_to: &'static str,
    pub act_move: &'static str,
    pub act_delete: &'static str,
    pub act_keep: &'static str,
    pub enc_none: &'static str,
    pub save: &'static str,
    pub test_fetch: &'static str,
    pub test_send: &'static str,
    pub advanced: &'static str,
    pub load_folders: &'static str,
    pub find_settings: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub state: &'static str,
    pub last_fetch: &'static str,
    pub mails_today: &'static str,
    pub tickets_today: &'static str,
    pub quarantined: &'static str,
    pub quarantine_intro: &'static str,
    pub nothing_quarantined: &'static str,
    pub from: &'static str,
    pub size: &'static str,
    pub tries: &'static str,
    pub failing_since: &'static str,
    pub last_error: &'static str,
    pub retry: &'static str,
    pub retry_all: &'static str,
    pub never: &'static str,
    pub password_keep: &'static str,
    pub password_from_file: &'static str,
    pub password_from_env: &'static str,
    pub port_25: &'static str,
    pub fix_fields: &'static str,
    pub saved: &'static str,
    pub saved_unchanged: &'static str,
    pub not_applied: &'static str,
    pub changed_on_disk: &'static str,
    pub read_only: &'static str,
    pub file_broken: &'static str,
    pub max_accounts: &'static str,
    pub search: &'static str,
    pub subject: &'static str,
    pub customer: &'static str,
    pub created: &'static str,
    pub no_results: &'static str,
    pub raw_mail: &'static str,
    pub attachments: &'static str,
    pub back: &'static str,
    pub st_starting: &'static str,
    pub st_polling: &'static str,
    pub st_idle: &'static str,
    pub st_waiting: &'static str,
    pub st_backing_off: &'static str,
    pub st_login_rejected: &'static str,
    pub st_token: &'static str,
    pub st_standby: &'static str,
    pub st_stopped: &'static str,
    pub st_inactive: &'static str,
    pub st_not_running: &'static str,
    pub st_store_failing: &'static str,
    /// The heading of the open alerts ([alerts]).
    pub alerts_open: &'static str,
    pub alerts_since: &'static str,
}

pub static DE: Texts = Texts {
    title: "E-Mail-Konten",
    login: "Anmelden",
    logout: "Abmelden",
    password: "Passwort",
    wrong_password: "Das Passwort stimmt nicht.",
    too_many_tries: "Zu viele Versuche. Bitte warten Sie eine Minute.",
    new_account: "Neues Konto",
    find_mail: "Mail finden",
    name: "Name",
    email: "E-Mail",
    active: "Aktiv",
    user: "Benutzer",
    protocol: "Verfahren",
    port: "Port",
    encryption: "Verschlüsselung",
    host: "Host",
    ticket_type: "Typ",
    ticket_status: "Status",
    sender_name: "Name Sender",
    reply_to: "Antwort an",
    action: "Aktion",
    move_to: "Verschieben nach",
    act_move: "Verschieben",
    act_delete: "Löschen",
    act_keep: "Behalten (nur POP3)",
    enc_none: "keine",
    save: "Speichern",
    test_fetch: "E-Mail-Abruf testen",
    test_send: "E-Mail-Versand testen",
    advanced: "Erweitert",
    load_folders: "Ordner vom Server laden",
    find_settings: "Server-Einstellungen suchen",
    yes: "ja",
    no: "nein",
    state: "Zustand",
    last_fetch: "Letzter Abruf",
    mails_today: "Mails heute",
    tickets_today: "Neue Tickets heute",
    quarantined: "In Quarantäne",
    quarantine_intro: "Diese Mails ließen sich dreimal nicht speichern. Sie bleiben auf dem Server und werden übersprungen. Ist die Ursache behoben (siehe letzter Fehler), holt „Erneut versuchen“ sie beim nächsten Abruf noch einmal ab.",
    nothing_quarantined: "Keine Mail dieses Kontos ist in Quarantäne.",
    from: "Absender",
    size: "Bytes",
    tries: "Versuche",
    failing_since: "Fehlschläge seit",
    last_error: "Letzter Fehler",
    retry: "Erneut versuchen",
    retry_all: "Alle erneut versuchen",
    never: "noch nie",
    password_keep: "Leer lassen, um das gespeicherte Passwort zu behalten.",
    password_from_file: "Das Passwort kommt aus der Datei",
    password_from_env: "Das Passwort kommt aus der Umgebungsvariable",
    port_25: "25 ist der Port für den Versand (SMTP). IMAP nutzt 993 (SSL) oder 143, POP3 995 (SSL) oder 110.",
    fix_fields: "Nichts gespeichert: bitte die markierten Felder korrigieren.",
    saved: "Gespeichert und übernommen.",
    saved_unchanged: "Gespeichert; kein Konto musste neu starten.",
    not_applied: "Gespeichert, aber nicht übernommen:",
    changed_on_disk: "Nichts gespeichert: die Konfigurationsdatei wurde geändert, seit dieses Formular geöffnet wurde. Bitte die Seite neu laden und die Änderung erneut eingeben.",
    read_only: "Nichts gespeichert: der Dienst kann die Konfigurationsdatei nicht schreiben. Bitte diesen Abschnitt selbst in die Datei übernehmen:",
    file_broken: "Die Konfigurationsdatei hat Fehler:",
    max_accounts: "Es sind höchstens 20 Konten möglich.",
    search: "Suchen",
    subject: "Betreff",
    customer: "Kunde",
    created: "Erstellt",
    no_results: "Keine Treffer.",
    raw_mail: "Original-Mail (.eml)",
    attachments: "Anhänge",
    back: "Zurück",
    st_starting: "startet",
    st_polling: "ruft ab",
    st_idle: "wartet auf neue Mail (IDLE)",
    st_waiting: "wartet auf den nächsten Abruf",
    st_backing_off: "gestört, nächster Versuch",
    st_login_rejected: "Anmeldung abgelehnt",
    st_token: "Token-Fehler",
    st_standby: "eine andere Instanz ruft ab",
    st_stopped: "angehalten",
    st_inactive: "inaktiv",
    st_not_running: "läuft nicht (Datei noch nicht übernommen)",
    st_store_failing: "Ticketspeicher gestört",
    alerts_open: "Offene Meldungen",
    alerts_since: "seit",
};

pub static EN: Texts = Texts {
    title: "E-mail accounts",
    login: "Log in",
    logout: "Log out",
    password: "Password",
    wrong_password: "That password is not right.",
    too_many_tries: "Too many tries. Please wait a minute.",
    new_account: "New account",
    find_mail: "Find a mail",
    name: "Name",
    email: "E-mail",
    active: "Active",
    user: "User",
    protocol: "Protocol",
    port: "Port",
    encryption: "Encryption",
    host: "Host",
    ticket_type: "Type",
    ticket_status: "Status",
    sender_name: "Sender name",
    reply_to: "Reply to",
    action: "Action",
    move_to: "Move to",
    act_move: "Move",
    act_delete: "Delete",
    act_keep: "Keep (POP3 only)",
    enc_none: "none",
    save: "Save",
    test_fetch: "Test fetch",
    test_send: "Test send",
    advanced: "Advanced",
    load_folders: "Load folders from the server",
    find_settings: "Find server settings",
    yes: "yes",
    no: "no",
    state: "State",
    last_fetch: "Last fetch",
    mails_today: "Mails today",
    tickets_today: "New tickets today",
    quarantined: "Quarantined",
    quarantine_intro: "These mails failed to be stored three times. They stay on the server and are skipped. Once the cause is fixed (see the last error), “Retry” has the next fetch try them again.",
    nothing_quarantined: "No mail of this account is in quarantine.",
    from: "From",
    size: "Bytes",
    tries: "Tries",
    failing_since: "Failing since",
    last_error: "Last error",
    retry: "Retry",
    retry_all: "Retry all",
    never: "never",
    password_keep: "Leave empty to keep the stored password.",
    password_from_file: "The password comes from the file",
    password_from_env: "The password comes from the environment variable",
    port_25: "25 is the port for sending (SMTP). IMAP uses 993 (SSL) or 143, POP3 995 (SSL) or 110.",
    fix_fields: "Nothing saved: please correct the marked fields.",
    saved: "Saved and applied.",
    saved_unchanged: "Saved; no account needed a restart.",
    not_applied: "Saved, but not applied:",
    changed_on_disk: "Nothing saved: the config file changed since this form was opened. Please reload the page and enter your change again.",
    read_only: "Nothing saved: the service cannot write the config file. Please put this part into the file yourself:",
    file_broken: "The config file has errors:",
    max_accounts: "At most 20 accounts are possible.",
    search: "Search",
    subject: "Subject",
    customer: "Customer",
    created: "Created",
    no_results: "Nothing found.",
    raw_mail: "Original mail (.eml)",
    attachments: "Attachments",
    back: "Back",
    st_starting: "starting",
    st_polling: "fetching",
    st_idle: "waiting for new mail (IDLE)",
    st_waiting: "waiting for the next fetch",
    st_backing_off: "failing, next try",
    st_login_rejected: "login rejected",
    st_token: "token failure",
    st_standby: "another instance fetches",
    st_stopped: "stopped",
    st_inactive: "inactive",
    st_not_running: "not running (file not applied yet)",
    st_store_failing: "ticket store failing",
    alerts_open: "Open alerts",
    alerts_since: "since",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(accept: &str) -> Lang {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::ACCEPT_LANGUAGE, accept.parse().unwrap());
        Lang::from_headers(&h)
    }

    #[test]
    fn german_unless_the_browser_prefers_english() {
        assert_eq!(Lang::from_headers(&HeaderMap::new()), Lang::De);
        assert_eq!(lang("de-DE,de;q=0.9,en;q=0.8"), Lang::De);
        assert_eq!(lang("en-US,en;q=0.9"), Lang::En);
        assert_eq!(lang("fr-FR,en;q=0.5,de;q=0.4"), Lang::En);
        assert_eq!(lang("fr-FR"), Lang::De);
        assert_eq!(lang("en;q=0.2,de;q=0.8"), Lang::De);
    }
}
