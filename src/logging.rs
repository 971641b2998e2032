//! Logging to stderr (journald picks it up); `RUST_LOG` filters, else a default per audience.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Who reads the log, which decides what is logged when `RUST_LOG` is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// `run`: an operator's journal. Our own events from `info`, the libraries' warnings too.
    Daemon,
    /// Every other command: a person at a terminal or a script reading its output. Only our
    /// own warnings and errors; a library's warnings (sqlx's "slow statement", say) mean
    /// nothing to them and would mix into the output they asked for.
    Command,
}

impl Audience {
    fn default_filter(self) -> &'static str {
        match self {
            Audience::Daemon => "info",
            // Directives for one target only: every other target is off.
            Audience::Command => "mail2ticket=warn",
        }
    }
}

/// `spec` is `RUST_LOG`; without it, the audience's default.
pub fn filter(spec: Option<&str>, audience: Audience) -> EnvFilter {
    spec.and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(audience.default_filter()))
}

pub fn init(format: LogFormat, audience: Audience) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), audience);
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
/// at trace (`LOGIN "user" "password"`, an AUTHENTICATE token), lettre's SMTP client the AUTH
/// exchange, the HTTP stack under the OAuth token requests their bodies and headers (a client
/// secret, a refresh token), and our POP3 client its commands. Their debug and trace events
/// never reach any output.
pub const WIRE_TARGETS: &[&str] = &[
    "async_imap",
    "imap_proto",
    "lettre",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "oauth2",
    "rustls",
    "tokio_rustls",
    WIRE_TARGET,
];

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
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a subscriber with the audience's default filter writes for one of our warnings and
    /// one of sqlx's.
    fn written(audience: Audience) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(None, audience))
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "mail2ticket::store", "our own warning");
            tracing::warn!(target: "sqlx::query", "slow statement: execution time exceeded alert threshold");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_command_shows_our_warnings_but_no_librarys() {
        let text = written(Audience::Command);
        assert!(text.contains("our own warning"), "{text}");
        assert!(!text.contains("slow statement"), "{text}");
    }

    #[test]
    fn the_daemon_logs_library_warnings_too() {
        let text = written(Audience::Daemon);
        assert!(
            text.contains("our own warning") && text.contains("slow statement"),
            "{text}"
        );
    }

    #[test]
    fn wire_targets_and_their_modules_are_capped_others_are_not() {
        assert!(is_wire_target("async_imap::imap_stream"));
        assert!(is_wire_target("async_imap"));
        assert!(is_wire_target(
            "lettre::transport::smtp::client::async_connection"
        ));
        assert!(is_wire_target("mail2ticket::wire::pop3"));
        assert!(is_wire_target("reqwest::connect"));
        assert!(is_wire_target("hyper_util::client::legacy::pool"));
        assert!(!is_wire_target("async_imapx"));
        assert!(!is_wire_target("mail2ticket::poller"));
    }
}
