//! The quarantine mark on the server: the keyword the pass sets on a mail whose storage failed
//! too often (the listing skips marked mails), and taking it off again for another try
//! (`mail2ticket quarantine retry`). Both on the selected folder.

use futures::TryStreamExt;

use super::error::{timed, ImapError};
use super::login::ImapConnection;

/// IMAP keyword set on a mail whose storage failed `QUARANTINE_AFTER` times: skipped afterwards.
pub const QUARANTINE_KEYWORD: &str = "$mail2ticket-failed";

/// Whether a listed mail's flags carry the mark.
pub fn is_marked(flag: &async_imap::types::Flag<'_>) -> bool {
    matches!(flag, async_imap::types::Flag::Custom(c) if c.eq_ignore_ascii_case(QUARANTINE_KEYWORD))
}

/// Sets the mark on `uid`.
pub async fn mark(conn: &mut ImapConnection, uid: u32) -> Result<(), ImapError> {
    store_flags(conn, uid, '+', "UID STORE (quarantine)").await
}

/// What taking the mark off a mail found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmarked {
    /// The mark is gone: the next pass fetches the mail again.
    Unmarked,
    /// The mail is there but carried no mark (setting it had failed): fetched again anyway.
    WasNotMarked,
    /// No mail with this UID in the folder (deleted or moved by someone else).
    Gone,
}

/// Takes the mark off `uid`, after looking whether the mail is there and carries it.
pub async fn unmark(conn: &mut ImapConnection, uid: u32) -> Result<Unmarked, ImapError> {
    let t = conn.timeout;
    let fetch = async {
        let stream = conn
            .session
            .uid_fetch(uid.to_string(), "(UID FLAGS)")
            .await?;
        stream.try_collect::<Vec<_>>().await
    };
    let fetches = timed(t, "UID FETCH (FLAGS)", fetch).await?;
    let Some(mail) = fetches.iter().find(|f| f.uid == Some(uid)) else {
        return Ok(Unmarked::Gone);
    };
    if !mail.flags().any(|f| is_marked(&f)) {
        return Ok(Unmarked::WasNotMarked);
    }
    store_flags(conn, uid, '-', "UID STORE (release from quarantine)").await?;
    Ok(Unmarked::Unmarked)
}

/// `UID STORE uid ±FLAGS.SILENT (keyword)`, judged by its tagged status: async-imap's
/// `uid_store` takes a NO for success.
async fn store_flags(
    conn: &mut ImapConnection,
    uid: u32,
    sign: char,
    operation: &str,
) -> Result<(), ImapError> {
    let command = format!("UID STORE {uid} {sign}FLAGS.SILENT ({QUARANTINE_KEYWORD})");
    let timeout = conn.timeout;
    timed(
        timeout,
        operation,
        conn.session.run_command_and_check_ok(command),
    )
    .await?;
    Ok(())
}
