//! A deliberate panic for tests, so they can show that a panic while handling one mail stays
//! contained to that mail. Only debug builds have it (release builds compile it to nothing):
//! with `MAIL2TICKET_TEST_PANIC_SUBJECT` set, handling a mail whose subject contains that text
//! panics where the per-mail work runs.

/// The variable that arms the hook.
pub const ENV: &str = "MAIL2TICKET_TEST_PANIC_SUBJECT";

#[cfg(debug_assertions)]
pub fn check(subject: &str) {
    use std::sync::OnceLock;
    static MARKER: OnceLock<Option<String>> = OnceLock::new();
    let marker = MARKER.get_or_init(|| std::env::var(ENV).ok().filter(|m| !m.is_empty()));
    if let Some(marker) = marker {
        if subject.contains(marker.as_str()) {
            panic!("test hook: subject contains {marker:?}");
        }
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn check(_subject: &str) {}
