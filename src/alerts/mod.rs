//! Alerts: the shop owner hears of trouble before the customers do.
//!
//! Every few seconds the alert task reads what is wrong now ([`condition`]: accounts failing,
//! the store, replies stuck, quarantined and too large mails, expiring client secrets), decides
//! against the open alerts what to tell ([`judge`]: one alert when a state starts, a reminder a
//! day, one "resolved"), and queues the words ([`text`], [`message`]) in the outbox together
//! with the episode's row, in one transaction: the outbox's state machine delivers them exactly
//! once across restarts and instances, by mail through `[smtp]` and by the webhook.
//!
//! One exception: a failing store cannot queue anything, so its alert is sent straight away
//! from memory (at most once per episode and process).

pub mod condition;
pub mod judge;
pub mod message;
pub mod text;
pub mod webhook;

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{AlertLanguage, Config};
use crate::health::{Health, State};
use crate::smtp::Deliver;
use crate::store::{AlertFacts, AlertMessage, AlertRecord, Channel, Store};
use crate::transport::Transport;
use condition::{parse_time, Condition, HeldMail, Kind, Observed, SecretExpiry, StuckReplies};
use judge::{judge, OpenAlert, Sight, Step};
use text::{About, Moment};

/// `[alerts]` as the messages need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub to: Vec<String>,
    pub from: String,
    pub webhook: bool,
    pub language: AlertLanguage,
    pub after: Duration,
    pub message_id_domain: String,
}

impl Settings {
    /// `None` without `[alerts]`.
    pub fn of(config: &Config) -> Option<Settings> {
        let alerts = config.alerts.as_ref()?;
        let first_account = config
            .accounts
            .iter()
            .find(|a| a.active)
            .map(|a| a.email.clone())
            .unwrap_or_default();
        Some(Settings {
            to: alerts.to.clone(),
            from: alerts.from.clone().unwrap_or(first_account),
            webhook: alerts.webhook.is_some(),
            language: alerts.language,
            after: alerts.after,
            message_id_domain: match &config.smtp {
                Some(smtp) => crate::ingest::reply::message_id_domain(config, smtp),
                None => "mail2ticket.invalid".into(),
            },
        })
    }
}

/// The open alerts as the alert task last read them, for /healthz: that answer must come from
/// memory, never wait for a store that may be what is failing.
#[derive(Debug, Clone, Default)]
pub struct Board(Arc<std::sync::Mutex<Vec<Shown>>>);

impl Board {
    fn set(&self, shown: Vec<Shown>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = shown;
    }

    pub fn open(&self) -> Vec<Shown> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The daemon's alert task.
pub struct Alerting {
    store: Store,
    health: Health,
    board: Board,
    config: watch::Receiver<Arc<Config>>,
    /// The store's own alert, which the store cannot keep (see the module head).
    store_alert: Vec<OpenAlert>,
}

impl Alerting {
    pub fn new(
        store: Store,
        health: Health,
        board: Board,
        config: watch::Receiver<Arc<Config>>,
    ) -> Alerting {
        Alerting {
            store,
            health,
            board,
            config,
            store_alert: Vec::new(),
        }
    }

    /// Judges the conditions until `cancel` fires; without `[alerts]` it only waits.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let config = self.config.borrow().clone();
            let wait = match Settings::of(&config) {
                Some(settings) => {
                    self.round(&config, &settings).await;
                    (settings.after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
                }
                None => Duration::from_secs(30),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.config.changed() => {}
                _ = cancel.cancelled() => break,
            }
        }
        debug!("alert task stopped");
    }

    async fn round(&mut self, config: &Config, settings: &Settings) {
        let now = Utc::now();
        let accounts = self.health.snapshots();
        let polled: HashSet<String> = accounts
            .iter()
            .filter(|(_, a)| a.state != State::Standby)
            .map(|(name, _)| name.clone())
            .collect();
        let configured: HashSet<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
        let sight = Sight {
            polled: &polled,
            configured: &configured,
        };
        // The store's own alert first: its state is in memory, and the reads below may be
        // what fails.
        let store = Observed {
            store: Some(self.store.health()),
            ..Observed::default()
        };
        let store_conditions = condition::conditions(&store, now);
        let steps = judge(
            &self.store_alert,
            &store_conditions,
            &sight,
            settings.after,
            now,
        );
        self.tell_directly(config, settings, steps, now).await;

        // What could not be read must not look like trouble that ended: no step this round.
        let (seen, records) = match self.observe(config, accounts).await {
            Ok(seen) => seen,
            Err(e) => {
                debug!(error = %e, "alerts: cannot read the store; judging next round");
                // What is known for sure now: the store's own alert.
                self.board.set(
                    self.store_alert
                        .iter()
                        .map(|a| shown_alert(a, AlertLanguage::En))
                        .collect(),
                );
                return;
            }
        };
        let open: Vec<OpenAlert> = records.iter().filter_map(open_alert).collect();
        self.board.set(
            open.iter()
                .chain(&self.store_alert)
                .map(|a| shown_alert(a, AlertLanguage::En))
                .collect(),
        );
        let by_id: HashMap<i64, &AlertRecord> = records.iter().map(|r| (r.id, r)).collect();
        let conditions = condition::conditions(&seen, now);
        for step in judge(&open, &conditions, &sight, settings.after, now) {
            if let Err(e) = self.queue(settings, &by_id, &step, now).await {
                warn!(error = %e, "alerts: could not queue an alert; trying again next round");
            }
        }
    }

    /// What is wrong now besides the store itself, and the open alerts.
    async fn observe(
        &self,
        config: &Config,
        accounts: std::collections::BTreeMap<String, crate::health::AccountState>,
    ) -> Result<(Observed, Vec<AlertRecord>), crate::store::StoreError> {
        // How long they must have waited is the judge's rule (`Kind::waits`), not this one's.
        let stuck_replies = self.store.waiting_replies().await?.and_then(|w| {
            parse_time(&w.oldest).map(|oldest| StuckReplies {
                unsent: w.unsent,
                oldest,
                last_error: format!(
                    "{} replies waiting; the last error: {}",
                    w.unsent, w.last_error
                ),
            })
        });
        let quarantined = self
            .store
            .quarantined(None)
            .await?
            .into_iter()
            .map(|m| HeldMail {
                account: m.account,
                sender: m.sender,
                subject: m.subject,
                size: m.size,
                note: m.error,
                since: m.since,
            })
            .collect();
        let too_large = self
            .store
            .oversized(None)
            .await?
            .into_iter()
            .map(|m| HeldMail {
                note: format!("ticket {}, still on the server ({})", m.ticket, m.key),
                account: m.account,
                sender: m.sender,
                subject: m.subject,
                size: m.size,
                since: m.since,
            })
            .collect();
        let seen = Observed {
            accounts,
            store: None,
            stuck_replies,
            quarantined,
            too_large,
            secrets: secrets(config),
        };
        Ok((seen, self.store.open_alerts().await?))
    }

    async fn queue(
        &self,
        settings: &Settings,
        records: &HashMap<i64, &AlertRecord>,
        step: &Step,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let done = match step {
            Step::Open(c) => {
                let messages = message::messages(settings, Moment::Started, &about(c))?;
                self.store
                    .open_alert(&facts(c), &messages, now)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Step::Remind { alert, now: c } => {
                let Some(record) = records.get(&alert.id) else {
                    return Ok(());
                };
                let messages = message::messages(settings, Moment::Reminder, &about(c))?;
                self.store
                    .remind_alert(record, &facts(c), &messages, now)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Step::Resolve(alert) => {
                let Some(record) = records.get(&alert.id) else {
                    return Ok(());
                };
                let messages = message::messages(settings, Moment::Resolved, &about_open(alert))?;
                self.store
                    .resolve_alert(record, &messages, now)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        if done {
            log_step(step);
        }
        Ok(())
    }

    /// The store's alert: sent now, remembered in memory.
    async fn tell_directly(
        &mut self,
        config: &Config,
        settings: &Settings,
        steps: Vec<Step>,
        now: DateTime<Utc>,
    ) {
        for step in steps {
            let (moment, about_it) = match &step {
                Step::Open(c) => (Moment::Started, about(c)),
                Step::Remind { now: c, .. } => (Moment::Reminder, about(c)),
                Step::Resolve(alert) => (Moment::Resolved, about_open(alert)),
            };
            match message::messages(settings, moment, &about_it) {
                Ok(messages) => {
                    for result in send_now(config, settings, &messages).await {
                        if let Err(e) = result {
                            warn!(error = %e, "alerts: the store's alert could not be sent");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "alerts: cannot build the store's alert"),
            }
            log_step(&step);
            match step {
                Step::Open(c) => self.store_alert.push(OpenAlert {
                    id: 0,
                    key: c.key.clone(),
                    kind: c.kind,
                    account: None,
                    stage: c.stage,
                    since: c.since,
                    detail: c.detail.clone(),
                    notified_at: now,
                }),
                Step::Remind { alert, .. } => {
                    for a in self.store_alert.iter_mut().filter(|a| a.key == alert.key) {
                        a.notified_at = now;
                    }
                }
                Step::Resolve(alert) => self.store_alert.retain(|a| a.key != alert.key),
            }
        }
    }
}

fn log_step(step: &Step) {
    match step {
        Step::Open(c) => {
            warn!(kind = c.kind.label(), account = c.account.as_deref().unwrap_or("-"),
            since = %c.since, "alert: {}", c.detail)
        }
        Step::Remind { now: c, .. } => info!(
            kind = c.kind.label(),
            account = c.account.as_deref().unwrap_or("-"),
            "alert reminder queued"
        ),
        Step::Resolve(a) => info!(
            kind = a.kind.label(),
            account = a.account.as_deref().unwrap_or("-"),
            "alert resolved"
        ),
    }
}

fn about(c: &Condition) -> About<'_> {
    About {
        kind: c.kind,
        account: c.account.as_deref(),
        since: c.since,
        detail: &c.detail,
        stage: c.stage,
    }
}

fn about_open(a: &OpenAlert) -> About<'_> {
    About {
        kind: a.kind,
        account: a.account.as_deref(),
        since: a.since,
        detail: &a.detail,
        stage: a.stage,
    }
}

fn facts(c: &Condition) -> AlertFacts<'_> {
    AlertFacts {
        condition_key: &c.key,
        kind: c.kind.label(),
        account: c.account.as_deref(),
        stage: c.stage,
        since: c.since,
        detail: &c.detail,
    }
}

/// A stored episode; one of a kind this version does not know is left alone.
fn open_alert(r: &AlertRecord) -> Option<OpenAlert> {
    Some(OpenAlert {
        id: r.id,
        key: r.condition_key.clone(),
        kind: Kind::from_label(&r.kind)?,
        account: r.account.clone(),
        stage: r.stage,
        since: parse_time(&r.since)?,
        detail: r.detail.clone(),
        notified_at: parse_time(&r.notified_at)?,
    })
}

/// The OAuth client secrets with an expiry date in the config.
fn secrets(config: &Config) -> Vec<SecretExpiry> {
    let mut out = Vec::new();
    for account in config.accounts.iter().filter(|a| a.active) {
        if let Some(expires) = account
            .oauth2
            .as_ref()
            .and_then(|o| o.client_secret_expires)
        {
            out.push(SecretExpiry {
                owner: format!("account {}", account.name),
                account: Some(account.name.clone()),
                expires,
            });
        }
    }
    if let Some(expires) = config
        .smtp
        .as_ref()
        .and_then(|s| s.oauth2.as_ref())
        .and_then(|o| o.client_secret_expires)
    {
        out.push(SecretExpiry {
            owner: "[smtp]".into(),
            account: None,
            expires,
        });
    }
    out
}

/// Sends messages at once (the store's alert, `alerts test`): one result per message, saying
/// where it went.
async fn send_now(
    config: &Config,
    settings: &Settings,
    messages: &[AlertMessage],
) -> Vec<Result<String, String>> {
    let mut results = Vec::new();
    let mut smtp: Option<Transport> = None;
    for m in messages {
        let result = match m.channel {
            Channel::Mail => {
                if smtp.is_none() {
                    smtp = match &config.smtp {
                        Some(s) => Transport::for_config(s, &config.store.path).ok(),
                        None => None,
                    };
                }
                match &smtp {
                    Some(transport) => transport
                        .deliver(&settings.from, &m.recipient, &m.message)
                        .await
                        .map(|()| format!("mail to {}: sent", m.recipient))
                        .map_err(|e| format!("mail to {}: {e}", m.recipient)),
                    None => Err(format!(
                        "mail to {}: [smtp] is not configured or not usable",
                        m.recipient
                    )),
                }
            }
            Channel::Webhook => {
                let url = config.alerts.as_ref().and_then(|a| a.webhook.clone());
                match (url, webhook::client()) {
                    (Some(url), Ok(http)) => webhook::post(&http, url.expose(), &m.message)
                        .await
                        .map(|()| "webhook: sent".to_string())
                        .map_err(|e| format!("webhook: {e}")),
                    (None, _) => Err("webhook: not configured".into()),
                    (_, Err(e)) => Err(format!("webhook: {e}")),
                }
            }
        };
        results.push(result);
    }
    results
}

/// `mail2ticket alerts test`: one test alert by each configured route, sent now; says what
/// became of each.
pub async fn send_test(config: &Config) -> ExitCode {
    let Some(settings) = Settings::of(config) else {
        eprintln!("error: no [alerts] section in the config: add one with `to` and/or `webhook`");
        return ExitCode::from(crate::config::EXIT_CONFIG);
    };
    let about = About {
        kind: Kind::Test,
        account: None,
        since: Utc::now(),
        detail: match settings.language {
            AlertLanguage::En => "A test alert, sent by `mail2ticket alerts test`.",
            AlertLanguage::De => "Eine Testmeldung, gesendet von `mail2ticket alerts test`.",
        },
        stage: 0,
    };
    let messages = match message::messages(&settings, Moment::Started, &about) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for result in send_now(config, &settings, &messages).await {
        match result {
            Ok(line) => println!("{line}"),
            Err(line) => {
                ok = false;
                println!("{line}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// An open alert as /healthz and the accounts page show it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub since: String,
    pub title: String,
    pub detail: String,
}

/// The open alerts, in the config's language.
pub async fn shown(store: &Store, language: AlertLanguage) -> Vec<Shown> {
    let Ok(records) = store.open_alerts().await else {
        return Vec::new();
    };
    records
        .iter()
        .filter_map(open_alert)
        .map(|a| shown_alert(&a, language))
        .collect()
}

fn shown_alert(a: &OpenAlert, language: AlertLanguage) -> Shown {
    Shown {
        kind: a.kind.label(),
        account: a.account.clone(),
        since: a.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        title: text::words(language, Moment::Started, &about_open(a)).title,
        detail: a.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secret_expiry_dates_are_read_from_accounts_and_smtp() {
        let text = "[store]\npath = \"/tmp/t.db\"\n\
            [smtp]\nhost = \"smtp.example\"\nuser = \"a@shop.example\"\nauth = \"oauth2\"\n\
            [smtp.oauth2]\nprovider = \"microsoft\"\ntenant = \"shop.example\"\n\
            grant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"x\"\n\
            client_secret_expires = \"2027-04-01\"\n\
            [[account]]\nname = \"support\"\nemail = \"a@shop.example\"\nprotocol = \"imap\"\n\
            host = \"imap.example\"\nuser = \"a@shop.example\"\nauth = \"oauth2\"\n\
            ticket_type = \"t\"\nticket_status = \"s\"\naction = \"delete\"\n\
            [account.oauth2]\nprovider = \"microsoft\"\ntenant = \"shop.example\"\n\
            grant = \"client_credentials\"\nclient_id = \"c\"\nclient_secret = \"x\"\n\
            client_secret_expires = 2027-03-01\n";
        let loaded = crate::config::parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        let found: Vec<(String, String)> = secrets(&loaded.config)
            .into_iter()
            .map(|s| (s.owner, s.expires.to_string()))
            .collect();
        assert_eq!(
            found,
            [
                ("account support".to_string(), "2027-03-01".to_string()),
                ("[smtp]".to_string(), "2027-04-01".to_string())
            ]
        );
        let bad = crate::config::parse(&text.replace("2027-03-01", "\"next March\"")).unwrap_err();
        assert!(
            bad.iter()
                .any(|i| i.to_string().contains("client_secret_expires")
                    || i.to_string().contains("is not a date")),
            "{bad:?}"
        );
    }
}
