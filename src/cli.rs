//! The command line: one function per subcommand, each returning the process exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Loaded, Severity, EXIT_CONFIG};
use crate::display::{fail, print_json, write_stdout};
use crate::logging::Audience;
use crate::quarantine::Which;
use crate::source::SourceKey;
use crate::store::{CompactCursor, ExportError, FindQuery, Sender, Store, TicketFilter};
use crate::when::When;

#[derive(Debug, Parser)]
#[command(
    name = "mail2ticket",
    version,
    about = "Turns customer e-mail into helpdesk tickets"
)]
pub struct Cli {
    /// Config file [default: $MAIL2TICKET_CONFIG, else /etc/mail2ticket/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: one poller per active account, plus the reply sender
    Run {
        /// One pass over every active account (fetch, store, dispose, send replies), then exit
        #[arg(long)]
        once: bool,
    },
    /// Validate the config and print every problem with its key and line
    CheckConfig,
    /// Check an account step by step (DNS, TCP, TLS, login, folders, a test mail)
    TestFetch {
        /// The account's `name`
        name: String,
        /// Print the steps as JSON
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the test mail to arrive
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Send a dated test mail through [smtp] from the account's address
    TestSend {
        /// The account's `name`
        name: String,
        /// Recipient [default: the account's own address]
        #[arg(long)]
        to: Option<String>,
        /// Print the steps as JSON
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon's /healthz ([daemon] http_listen): exit 0 when healthy, else 1
    /// (for Docker's HEALTHCHECK and monitoring scripts)
    Healthcheck {
        /// Seconds to wait for the answer
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Look at stored tickets
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Mails whose storage failed too often and that every pass skips: list them, have the
    /// next pass try them again, or fetch one from the server
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Work on the ticket store as a whole
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// OAuth 2.0 sign-in of accounts and [smtp] (auth = "oauth2")
    Oauth2 {
        #[command(subcommand)]
        command: Oauth2Command,
    },
    /// Alerts to the shop owner ([alerts])
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// The accounts page ([web])
    Web {
        #[command(subcommand)]
        command: WebCommand,
    },
    /// Propose server settings for an address (built-in providers, SRV records, autoconfig,
    /// MX) and prove each by connecting (TCP, TLS, capabilities; no login). Needs no config.
    /// Exit 0 when an incoming server was proven, 1 when none was, 2 for a malformed address
    Detect {
        /// The mailbox's address, e.g. support@my-shop.de
        address: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
        /// A CA certificate (PEM) to trust besides the system roots
        #[arg(long, value_name = "PATH")]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Send one test alert by each configured route (each `to` address, the webhook) now, and
    /// say what became of each: exit 0 when all arrived at their server, else 1
    Test,
}

#[derive(Debug, Subcommand)]
pub enum WebCommand {
    /// Read the admin password on stdin and print its hash for [web] admin_password_hash
    HashPassword,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Every quarantined mail: account, source key, size, tries, since when, sender, subject
    /// and the last error
    List {
        /// Only this account's mails (its `name`)
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Take mails out of quarantine (IMAP: the keyword off on the server; both: the failure
    /// count cleared), so that the next pass tries them again
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["key", "account", "all"])))]
    Retry {
        /// The mail's source key as `quarantine list` shows it
        #[arg(value_name = "KEY")]
        key: Option<SourceKey>,
        /// Every quarantined mail of this account (or, with KEY, the account of the key)
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Every quarantined mail
        #[arg(long, conflicts_with_all = ["key", "account"])]
        all: bool,
    },
    /// Write a quarantined mail exactly as the server has it to stdout: `> mail.eml`
    Export {
        /// The mail's source key as `quarantine list` shows it
        #[arg(value_name = "KEY")]
        key: SourceKey,
        /// The account, where two accounts have a quarantined mail with this key
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Convert mail stored by earlier versions: raw mail compressed into its own table and
    /// attachments once per content (before schema 0009), the articles' texts compressed
    /// (before schema 0022). In short batches: safe to
    /// run beside the daemon, to interrupt, and to run again (it continues where it stopped)
    Compact {
        /// Mails per batch (one short write transaction each)
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
    },
    /// Copy every ticket, article, attachment and piece of bookkeeping of a SQLite store into
    /// the configured store ([store] url or path), which must be empty: how a shop moves to
    /// PostgreSQL. Stop the daemon first; the copy commits all or nothing.
    Copy {
        /// The SQLite store to copy from (the old [store] path)
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum Oauth2Command {
    /// Authorize NAME (an account, or `smtp`) by the device flow: open the printed URL in any
    /// browser, enter the code, approve; the refresh token is stored for the daemon
    Authorize {
        /// The account's `name`, or `smtp` for [smtp]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// Tickets, newest first
    List {
        /// At most this many tickets
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// Only this account's tickets (its `name`)
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Only tickets with this status
        #[arg(long)]
        status: Option<String>,
        /// Only tickets of this type
        #[arg(long = "type", value_name = "TYPE")]
        ticket_type: Option<String>,
        /// Created since: a date (2026-11-23, the whole day), a time (RFC 3339) or an age (7d)
        #[arg(long, value_name = "WHEN")]
        since: Option<When>,
        /// Created before: a date (2026-11-23 includes that day), a time or an age (30d)
        #[arg(long, value_name = "WHEN")]
        until: Option<When>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Articles by sender, Message-ID, subject or words in subject and body, newest first
    Find {
        /// Words that must all occur in the subject or body (`liefer*` matches a prefix)
        text: Vec<String>,
        /// Sender: an address (kunde@example.com) or a whole domain (example.com)
        #[arg(long, value_name = "ADDR")]
        from: Option<Sender>,
        /// The mail's Message-ID, with or without <>
        #[arg(long, value_name = "ID")]
        message_id: Option<String>,
        /// Words that must all occur in the subject
        #[arg(long, value_name = "TEXT")]
        subject: Option<String>,
        /// Only this account's articles (its `name`)
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Received since: a date, a time (RFC 3339) or an age (7d)
        #[arg(long, value_name = "WHEN")]
        since: Option<When>,
        /// Received before: a date (that day included), a time or an age
        #[arg(long, value_name = "WHEN")]
        until: Option<When>,
        /// At most this many articles
        #[arg(long, default_value_t = FindQuery::DEFAULT_LIMIT, value_name = "N")]
        limit: u32,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// One ticket with its articles, or one article's mail or attachment as raw bytes
    Show {
        number: String,
        /// Print JSON
        #[arg(long, conflicts_with_all = ["raw", "attachment"])]
        json: bool,
        /// Write article ARTICLE (from 1) exactly as it was fetched to stdout: `> mail.eml`
        #[arg(long, value_name = "ARTICLE", conflicts_with = "attachment")]
        raw: Option<u32>,
        /// Write attachment N (from 1) of article ARTICLE to stdout: `> file`
        #[arg(long, num_args = 2, value_names = ["ARTICLE", "N"])]
        attachment: Option<Vec<u32>>,
    },
}

/// Loads the config, printing every problem; `Err` carries the exit code.
pub fn load_config(cli_path: Option<PathBuf>) -> Result<Loaded, ExitCode> {
    let path = config::resolve_path(cli_path);
    match config::load(&path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{}:{w}", path.display());
            }
            Ok(loaded)
        }
        Err(e) => {
            eprint!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

pub fn main(cli: Cli) -> ExitCode {
    // Commands that need no config file.
    if let Command::Web {
        command: WebCommand::HashPassword,
    } = cli.command
    {
        return crate::web::hash_password_command();
    }
    // Detecting settings comes before there is a config to load.
    if let Command::Detect {
        address,
        json,
        ca_file,
    } = cli.command
    {
        crate::logging::init(config::LogFormat::Text, Audience::Command);
        return match runtime() {
            Ok(rt) => rt.block_on(detect(&address, json, ca_file)),
            Err(code) => code,
        };
    }
    let loaded = match load_config(cli.config.clone()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if let Command::CheckConfig = cli.command {
        return check_config(&loaded);
    }
    let audience = match cli.command {
        Command::Run { .. } => Audience::Daemon,
        _ => Audience::Command,
    };
    crate::logging::init(loaded.config.daemon.log_format, audience);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match cli.command {
            Command::CheckConfig | Command::Detect { .. } => unreachable!("handled above"),
            Command::Run { once } => crate::daemon::run(loaded, cli.config, once).await,
            Command::Tickets { command } => tickets(&loaded, command).await,
            Command::Store {
                command: StoreCommand::Compact { batch },
            } => store_compact(&loaded, batch).await,
            Command::Store {
                command: StoreCommand::Copy { from },
            } => copy_store(&loaded, &from).await,
            Command::Quarantine { command } => quarantine(&loaded.config, command).await,
            Command::Oauth2 {
                command: Oauth2Command::Authorize { name },
            } => crate::oauth::device::authorize(&loaded.config, &name).await,
            Command::Healthcheck { timeout } => healthcheck(&loaded, timeout).await,
            Command::Alerts {
                command: AlertsCommand::Test,
            } => crate::alerts::send_test(&loaded.config).await,
            Command::TestFetch { name, json, wait } => {
                crate::diagnose::test_fetch(&loaded.config, &name, json, wait).await
            }
            Command::TestSend { name, to, json } => {
                crate::diagnose::test_send(&loaded.config, &name, to.as_deref(), json).await
            }
            Command::Web { .. } => unreachable!("handled above"),
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `detect ADDRESS`: exit 0 when an incoming server was proven, 1 when none was, 2 for an
/// address that is none.
async fn detect(address: &str, json: bool, ca_file: Option<PathBuf>) -> ExitCode {
    use crate::detect::{self, DetectError, DetectOptions};
    let mut options = match DetectOptions::from_env() {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    options.extra_ca = ca_file;
    let detection = match detect::detect(address, &options).await {
        Ok(d) => d,
        Err(e @ DetectError::MalformedAddress(_)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => return fail(e),
    };
    if json {
        match serde_json::to_string_pretty(&detection) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e),
        }
    } else {
        print!(
            "{}",
            detect::report::text(&detection, options.extra_ca.as_deref())
        );
    }
    if detection.incoming.iter().any(|c| c.proof.is_proven()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn quarantine(config: &config::Config, command: QuarantineCommand) -> ExitCode {
    match command {
        QuarantineCommand::List { account, json } => {
            crate::quarantine::list_command(config, account.as_deref(), json).await
        }
        QuarantineCommand::Retry { key, account, .. } => {
            let which = match (key, account) {
                (Some(key), account) => Which::Key { key, account },
                (None, Some(account)) => Which::Account(account),
                // clap requires one of KEY, --account, --all.
                (None, None) => Which::All,
            };
            crate::quarantine::retry_command(config, which).await
        }
        QuarantineCommand::Export { key, account } => {
            crate::quarantine::export_command(config, key, account).await
        }
    }
}

async fn healthcheck(loaded: &Loaded, timeout: u64) -> ExitCode {
    let Some(listen) = loaded.config.daemon.http_listen else {
        eprintln!(
            "error: [daemon] http_listen is not set, so the daemon serves no /healthz; \
             set e.g. http_listen = \"127.0.0.1:9187\" and restart it"
        );
        return ExitCode::FAILURE;
    };
    match crate::http::get_healthz(listen, std::time::Duration::from_secs(timeout.max(1))).await {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            println!("{body}");
            eprintln!("unhealthy: /healthz answered {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(loaded: &Loaded) -> ExitCode {
    let accounts = &loaded.config.accounts;
    let active = accounts.iter().filter(|a| a.active).count();
    let warnings = loaded
        .warnings
        .iter()
        .filter(|w| w.severity == Severity::Warning)
        .count();
    let suffix = if warnings > 0 {
        format!(", {warnings} warning(s)")
    } else {
        String::new()
    };
    let noun = if accounts.len() == 1 {
        "account"
    } else {
        "accounts"
    };
    println!("ok: {} {noun} ({active} active){suffix}", accounts.len());
    ExitCode::SUCCESS
}

async fn open_store(loaded: &Loaded) -> Result<Store, ExitCode> {
    Store::open_at(&loaded.config.store.location())
        .await
        .map_err(fail)
}

async fn copy_store(loaded: &Loaded, from: &std::path::Path) -> ExitCode {
    if !from.is_file() {
        eprintln!(
            "error: {} is not a file: give the SQLite store to copy from (the old [store] path)",
            from.display()
        );
        return ExitCode::FAILURE;
    }
    let store = match open_store(loaded).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let copied = store
        .copy_from_sqlite(from, |t| println!("{:>16}  {} row(s)", t.table, t.rows))
        .await;
    let code = match copied {
        Ok(tables) => {
            let rows = |name: &str| {
                tables
                    .iter()
                    .find(|t| t.table == name)
                    .map_or(0, |t| t.rows)
            };
            println!(
                "copied {} ticket(s) and {} article(s) from {} into {}",
                rows("tickets"),
                rows("articles"),
                from.display(),
                store.shown()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    store.close().await;
    code
}

async fn tickets(loaded: &Loaded, command: TicketsCommand) -> ExitCode {
    let store = match open_store(loaded).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = tickets_command(&store, command).await;
    store.close().await;
    code
}

async fn store_compact(loaded: &Loaded, batch: u32) -> ExitCode {
    let store = match open_store(loaded).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut cursor = CompactCursor::default();
    let (mut mails, mut attachments, mut texts, mut damaged) = (0u64, 0u64, 0u64, 0u64);
    let finished = loop {
        match store.compact_step(&mut cursor, batch).await {
            Ok(step) => {
                mails += step.mails;
                attachments += step.attachments;
                texts += step.texts;
                damaged += step.damaged;
                if step.finished {
                    break true;
                }
                if step.mails > 0 || step.texts > 0 {
                    eprintln!("{mails} raw mails and {texts} texts compressed so far");
                }
            }
            Err(e) => {
                eprintln!(
                    "error: {e}\n{mails} raw mails and {texts} texts were converted before it; \
                     run `mail2ticket store compact` again to continue"
                );
                break false;
            }
        }
    };
    store.close().await;
    if finished {
        println!(
            "ok: {mails} raw mails compressed, {attachments} attachments stored once per \
             content, {texts} article texts compressed; the space they freed in the file is \
             reused by new mail"
        );
    }
    if damaged > 0 {
        eprintln!(
            "warning: {damaged} raw mails no longer match their SHA-256 and were left as they \
             are: the store file is damaged (`tickets show NUMBER --raw N` names them)"
        );
    }
    if finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn tickets_command(store: &Store, command: TicketsCommand) -> ExitCode {
    let now = chrono::Utc::now();
    match command {
        TicketsCommand::List {
            limit,
            account,
            status,
            ticket_type,
            since,
            until,
            json,
        } => {
            let filter = TicketFilter {
                account,
                status,
                ticket_type,
                since: since.map(|w| w.start(now)),
                until: until.map(|w| w.end(now)),
                limit,
            };
            match store.list_tickets(&filter).await {
                Ok(list) if json => print_json(&list),
                Ok(list) => {
                    print!("{}", crate::display::ticket_table(&list));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        TicketsCommand::Find {
            text,
            from,
            message_id,
            subject,
            account,
            since,
            until,
            limit,
            json,
        } => {
            let query = FindQuery {
                from,
                message_id,
                subject,
                text: Some(text.join(" ")).filter(|t| !t.trim().is_empty()),
                account,
                since: since.map(|w| w.start(now)),
                until: until.map(|w| w.end(now)),
                limit,
            };
            if !query.has_criterion() {
                eprintln!(
                    "error: tell `tickets find` what to look for: words, --from ADDR, \
                     --message-id ID or --subject TEXT (`tickets list` shows the newest tickets)"
                );
                return ExitCode::from(2);
            }
            match store.find_articles(&query).await {
                Ok(hits) if json => print_json(&hits),
                Ok(hits) => {
                    print!("{}", crate::display::hit_table(&hits));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        TicketsCommand::Show {
            number,
            raw: Some(article),
            ..
        } => match store.raw_mail(&number, article).await {
            Ok(bytes) => write_stdout(&bytes),
            Err(e) => fail(e),
        },
        TicketsCommand::Show {
            number,
            attachment: Some(which),
            ..
        } => {
            // clap takes exactly two values for --attachment.
            let (article, n) = (which[0], which[1]);
            match store.attachment(&number, article, n).await {
                Ok(att) => write_stdout(&att.data),
                Err(e) => fail(e),
            }
        }
        TicketsCommand::Show { number, json, .. } => match store.show_ticket(&number).await {
            Ok(Some(t)) if json => print_json(&t),
            Ok(Some(t)) => {
                print!("{}", crate::display::ticket_detail(&t));
                ExitCode::SUCCESS
            }
            Ok(None) => fail(ExportError::NoTicket(number)),
            Err(e) => fail(e),
        },
    }
}
