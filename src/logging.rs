//! Logging to stderr (journald picks it up); `RUST_LOG` filters, default `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Libraries whose trace output carries what they send and receive: async-imap prints every
/// command (a LOGIN password, an AUTHENTICATE token), the HTTP stack can print request bodies
/// (a client secret, a refresh token). With `RUST_LOG=trace` they stay at debug, whatever else
/// the filter says, so no log level shows a secret.
const CAPPED_AT_DEBUG: &[&str] = &[
    "async_imap",
    "imap_proto",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "oauth2",
    "lettre",
    "rustls",
    "tokio_rustls",
];

pub fn filter(spec: Option<&str>) -> EnvFilter {
    let mut filter = spec
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if filter.max_level_hint() == Some(tracing::level_filters::LevelFilter::TRACE) {
        for target in CAPPED_AT_DEBUG {
            if let Ok(directive) = format!("{target}=debug").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Under systemd the journal adds its own timestamps.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let result = match (format, under_journal) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => builder.without_time().with_ansi(false).try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
    // A second init (tests) is harmless.
    let _ = result;
}
