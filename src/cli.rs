//! The command line: one function per subcommand, each returning the process exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Loaded, Severity, EXIT_CONFIG};
use crate::store::Store;

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
    /// OAuth 2.0 sign-in of accounts and [smtp] (auth = "oauth2")
    Oauth2 {
        #[command(subcommand)]
        command: Oauth2Command,
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
    /// All tickets, oldest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// One ticket with its articles
    Show {
        number: String,
        #[arg(long)]
        json: bool,
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
    let loaded = match load_config(cli.config.clone()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if let Command::CheckConfig = cli.command {
        return check_config(&loaded);
    }
    crate::logging::init(loaded.config.daemon.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::CheckConfig => unreachable!("handled above"),
            Command::Run { once } => crate::daemon::run(loaded, cli.config, once).await,
            Command::Tickets { command } => tickets(&loaded, command).await,
            Command::Oauth2 {
                command: Oauth2Command::Authorize { name },
            } => crate::oauth::device::authorize(&loaded.config, &name).await,
            Command::Healthcheck { timeout } => healthcheck(&loaded, timeout).await,
            Command::TestFetch { name, json, wait } => {
                crate::diagnose::test_fetch(&loaded.config, &name, json, wait).await
            }
            Command::TestSend { name, to, json } => {
                crate::diagnose::test_send(&loaded.config, &name, to.as_deref(), json).await
            }
        }
    })
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

async fn tickets(loaded: &Loaded, command: TicketsCommand) -> ExitCode {
    let store = match Store::open(&loaded.config.store.path).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        TicketsCommand::List { json } => store.list_tickets().await.map(|list| {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                print!("{}", crate::display::ticket_table(&list));
            }
            ExitCode::SUCCESS
        }),
        TicketsCommand::Show { number, json } => {
            store.show_ticket(&number).await.map(|t| match t {
                Some(t) if json => {
                    println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Some(t) => {
                    print!("{}", crate::display::ticket_detail(&t));
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!(
                        "no ticket with number {number}: `mail2ticket tickets list` shows them all"
                    );
                    ExitCode::FAILURE
                }
            })
        }
    };
    store.close().await;
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}
