//! The one place where IMAP mail leaves the folder being read. Every move and every delete goes
//! through [`dispose`], and the pass calls it only for mails whose tickets are durable.
//!
//! How, by what the server offers (MOVE is RFC 6851, UID EXPUNGE comes with UIDPLUS, RFC 4315):
//! - `move` with MOVE: `UID MOVE` to the target.
//! - `move` without MOVE: `UID COPY` to the target, then delete as below. The \Deleted flag is
//!   set only after a successful copy, so a mail of ours that already carries it was copied in
//!   an earlier pass and is not copied again. (A new mail that another client flagged before we
//!   fetched it is therefore not copied either: its ticket holds it, and that client asked for
//!   its deletion.)
//! - delete with UIDPLUS: `UID STORE +FLAGS.SILENT (\Deleted)`, then `UID EXPUNGE` of exactly our
//!   UIDs.
//! - delete without UIDPLUS: a plain `EXPUNGE` removes every \Deleted mail of the folder, also
//!   those another client flagged and may still undelete. So after flagging ours, `UID SEARCH
//!   DELETED` lists the folder's \Deleted set, and EXPUNGE is sent only when that set holds
//!   nothing but mails of ours. Otherwise ours stay flagged (with their tickets), the log says
//!   why once, and every pass tries again until the other client has expunged or undeleted its
//!   mails. A mail flagged by someone else in the one round trip between the SEARCH and the
//!   EXPUNGE goes with ours; whoever flagged it had asked for its deletion.

use std::collections::HashSet;
use std::fmt;

use super::error::{is_trycreate, timed, ImapError};
use super::login::ImapConnection;
use super::names::Hierarchy;
use super::uid_set::uid_set;
use super::utf7;
use crate::config::ImapAction;

/// How the mails leave, decided from the configured action and the server's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub step: Step,
    pub expunge: Expunge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `UID MOVE` to the server's name of the folder.
    Move { to: String },
    /// `UID COPY` to the server's name of the folder, then flag and expunge.
    CopyThenDelete { to: String },
    /// Flag and expunge.
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expunge {
    /// `UID EXPUNGE` of exactly our UIDs.
    Uid,
    /// Plain `EXPUNGE`, only while the folder's \Deleted mails are all ours.
    Guarded,
}

impl Plan {
    pub fn new(action: &ImapAction, has: impl Fn(&str) -> bool, names: &Hierarchy) -> Plan {
        let expunge = if has("UIDPLUS") {
            Expunge::Uid
        } else {
            Expunge::Guarded
        };
        let step = match action {
            ImapAction::Move { to } if has("MOVE") => Step::Move {
                to: names.server_name(to),
            },
            ImapAction::Move { to } => Step::CopyThenDelete {
                to: names.server_name(to),
            },
            ImapAction::Delete => Step::Delete,
        };
        Plan { step, expunge }
    }

    pub fn for_connection(action: &ImapAction, conn: &ImapConnection) -> Plan {
        Plan::new(action, |c| conn.has(c), &conn.hierarchy)
    }
}

impl fmt::Display for Plan {
    /// What happens to a mail, in the words test-fetch and the docs use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let removed = match self.expunge {
            Expunge::Uid => "removed with UID EXPUNGE",
            Expunge::Guarded => {
                "removed with EXPUNGE only while no other mail in the folder is flagged \\Deleted \
                 (no UIDPLUS: a plain EXPUNGE removes every flagged mail); until then it stays \
                 flagged"
            }
        };
        match &self.step {
            Step::Move { to } => write!(f, "moved to {to:?} with UID MOVE"),
            Step::CopyThenDelete { to } => write!(
                f,
                "copied to {to:?} (the server has no MOVE), flagged \\Deleted and {removed}"
            ),
            Step::Delete => write!(f, "flagged \\Deleted and {removed}"),
        }
    }
}

/// What the server did with the mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposed {
    /// Moved or expunged.
    Done,
    /// Flagged \Deleted but not expunged: `others` mails of someone else are flagged too.
    LeftFlagged { others: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum DisposeError {
    #[error("the folder {folder:?} does not exist on the server (server said: {server})")]
    TargetMissing { folder: String, server: String },
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// Several instances: this instance's lease of the account ended (or may have): the mails
    /// are left to the instance holding it now.
    #[error("the account's lease is no longer this instance's; the mails are left to the instance holding it")]
    LeaseLost,
}

/// Moves or deletes `uids` as `plan` says. `flagged` are mails of the folder that already carry
/// \Deleted; `ours` are all mails of the folder whose tickets are stored (the guard of a plain
/// EXPUNGE counts them as ours, besides `uids`).
pub async fn dispose(
    conn: &mut ImapConnection,
    plan: &Plan,
    uids: &[u32],
    flagged: &HashSet<u32>,
    ours: &HashSet<u32>,
) -> Result<Disposed, DisposeError> {
    let t = conn.timeout;
    match &plan.step {
        Step::Move { to } => {
            let set = uid_set(uids);
            let target = utf7::encode(to);
            return timed(t, "UID MOVE", conn.session.uid_mv(&set, &target))
                .await
                .map(|()| Disposed::Done)
                .map_err(|e| missing_target(e, to));
        }
        Step::CopyThenDelete { to } => {
            let uncopied: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| !flagged.contains(u))
                .collect();
            if !uncopied.is_empty() {
                let target = utf7::encode(to);
                timed(
                    t,
                    "UID COPY",
                    conn.session.uid_copy(uid_set(&uncopied), &target),
                )
                .await
                .map_err(|e| missing_target(e, to))?;
            }
        }
        Step::Delete => {}
    }
    // These three commands are checked by their tagged status: async-imap's uid_store,
    // uid_expunge and expunge end at the tagged line whatever it says, so a NO or BAD would pass
    // as success. Their untagged responses go to the session's unsolicited queue.
    let set = uid_set(uids);
    let store = format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)");
    timed(
        t,
        "UID STORE \\Deleted",
        conn.session.run_command_and_check_ok(store),
    )
    .await?;
    match plan.expunge {
        Expunge::Uid => {
            let expunge = format!("UID EXPUNGE {set}");
            timed(
                t,
                "UID EXPUNGE",
                conn.session.run_command_and_check_ok(expunge),
            )
            .await?;
        }
        Expunge::Guarded => {
            let deleted =
                timed(t, "UID SEARCH DELETED", conn.session.uid_search("DELETED")).await?;
            let others = deleted
                .iter()
                .filter(|u| !ours.contains(u) && !uids.contains(u))
                .count();
            if others > 0 {
                return Ok(Disposed::LeftFlagged { others });
            }
            timed(
                t,
                "EXPUNGE",
                conn.session.run_command_and_check_ok("EXPUNGE"),
            )
            .await?;
        }
    }
    Ok(Disposed::Done)
}

fn missing_target(e: ImapError, folder: &str) -> DisposeError {
    match e {
        ImapError::Refused { server, .. } if is_trycreate(&server) => DisposeError::TargetMissing {
            folder: folder.to_string(),
            server,
        },
        other => DisposeError::Imap(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |c| list.iter().any(|l| l.eq_ignore_ascii_case(c))
    }

    #[test]
    fn the_plan_follows_the_capabilities() {
        let names = Hierarchy::default();
        let to = ImapAction::Move { to: "Done".into() };
        assert_eq!(
            Plan::new(&to, caps(&["MOVE", "UIDPLUS"]), &names).to_string(),
            "moved to \"Done\" with UID MOVE"
        );
        let copy = Plan::new(&to, caps(&["UIDPLUS"]), &names);
        assert_eq!(copy.step, Step::CopyThenDelete { to: "Done".into() });
        assert_eq!(copy.expunge, Expunge::Uid);
        let bare = Plan::new(&ImapAction::Delete, caps(&[]), &names);
        assert_eq!(bare.expunge, Expunge::Guarded);
        assert!(bare.to_string().contains("only while no other mail"));
    }

    #[test]
    fn the_target_is_the_servers_name() {
        let names = Hierarchy {
            separator: Some('.'),
            personal_prefix: "INBOX.".into(),
        };
        let plan = Plan::new(
            &ImapAction::Move {
                to: "Erledigt/Geprüft".into(),
            },
            caps(&["MOVE"]),
            &names,
        );
        assert_eq!(
            plan.step,
            Step::Move {
                to: "INBOX.Erledigt.Geprüft".into()
            }
        );
    }
}
