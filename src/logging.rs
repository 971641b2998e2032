//! Logging to stderr (journald picks it up); `RUST_LOG` filters, default `info`.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Under systemd the journal adds its own timestamps.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let result = match (format, under_journal) {
        (LogFormat::Json, _) => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(wire_cap())
            .try_init(),
        (LogFormat::Text, true) => builder
            .without_time()
            .with_ansi(false)
            .finish()
            .with(wire_cap())
            .try_init(),
        (LogFormat::Text, false) => builder.finish().with(wire_cap()).try_init(),
    };
    // A second init (tests) is harmless.
    let _ = result;
}

/// Log targets that see protocol traffic, logins included: async-imap logs every line it writes
/// at trace (`LOGIN "user" "password"`), lettre's SMTP client the AUTH exchange, and our POP3
/// client its commands. Their debug and trace events never reach any output.
pub const WIRE_TARGETS: &[&str] = &["async_imap", "imap_proto", "lettre", WIRE_TARGET];

/// Parent target of our own protocol-line logging.
pub const WIRE_TARGET: &str = "mail2ticket::wire";
/// POP3 commands and replies.
pub const WIRE_POP3: &str = "mail2ticket::wire::pop3";

/// Caps the [`WIRE_TARGETS`] at info whatever `RUST_LOG` says: it is applied beside the
/// `RUST_LOG` filter, not inside it, so no directive (however specific) can lift it. Secrets
/// stay out of the logs by construction, not by a warning in the README.
pub fn wire_cap() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool + Clone> {
    filter_fn(|meta| *meta.level() <= Level::INFO || !is_wire_target(meta.target()))
}

fn is_wire_target(target: &str) -> bool {
    WIRE_TARGETS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_targets_and_their_modules_are_capped_others_are_not() {
        assert!(is_wire_target("async_imap::imap_stream"));
        assert!(is_wire_target("async_imap"));
        assert!(is_wire_target(
            "lettre::transport::smtp::client::async_connection"
        ));
        assert!(is_wire_target("mail2ticket::wire::pop3"));
        assert!(!is_wire_target("async_imapx"));
        assert!(!is_wire_target("mail2ticket::poller"));
    }
}
