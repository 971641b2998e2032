//! The order in which a fetched batch is stored.
//!
//! Servers list mails in their own order: IMAP by UID (arrival), Courier's POP3 by file name,
//! which can put a reply before the mail it answers. Stored in that order, the reply would find
//! no ticket to join and open its own. So within a batch a mail is stored after every mail of the
//! same batch it answers (In-Reply-To, References); apart from that the server's order stays, so
//! ticket numbers still follow arrival. The Date header is not used: senders' clocks are wrong
//! often enough to reorder unrelated mail.
//!
//! This covers a reply and its original fetched in one batch (one pass of up to several hundred
//! mails). A reply fetched in an earlier pass than its original still opens its own ticket.

use std::collections::HashMap;

use super::parse::ParsedMail;

/// A permutation of `0..mails.len()`: parents before their replies, otherwise unchanged.
pub fn parents_first(mails: &[&ParsedMail]) -> Vec<usize> {
    let by_id: HashMap<&str, usize> = mails
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.message_id.is_empty())
        .map(|(i, m)| (m.message_id.as_str(), i))
        .collect();
    let mut placed = vec![false; mails.len()];
    let mut order = Vec::with_capacity(mails.len());
    for i in 0..mails.len() {
        place(i, mails, &by_id, &mut placed, &mut order);
    }
    order
}

/// Places `i` after the batch mails it answers (depth-first; `placed` is set before recursing,
/// so a reference cycle cannot loop).
fn place(
    i: usize,
    mails: &[&ParsedMail],
    by_id: &HashMap<&str, usize>,
    placed: &mut [bool],
    order: &mut Vec<usize>,
) {
    if placed[i] {
        return;
    }
    placed[i] = true;
    let mail = mails[i];
    let parents: Vec<usize> = mail
        .in_reply_to
        .iter()
        .chain(&mail.references)
        .filter_map(|id| by_id.get(id.as_str()).copied())
        .filter(|p| *p != i)
        .collect();
    for p in parents {
        place(p, mails, by_id, placed, order);
    }
    order.push(i);
}

/// Reorders `items` by [`parents_first`] of the mails `mail_of` picks from them.
pub fn store_order<T>(items: Vec<T>, mail_of: impl Fn(&T) -> &ParsedMail) -> Vec<T> {
    let order = parents_first(&items.iter().map(&mail_of).collect::<Vec<_>>());
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn mail(id: &str, reply_to: &str) -> ParsedMail {
        let header = if reply_to.is_empty() {
            String::new()
        } else {
            format!("In-Reply-To: <{reply_to}>\r\nReferences: <{reply_to}>\r\n")
        };
        parse(
            format!(
                "From: a@example.test\r\nMessage-ID: <{id}>\r\n{header}Subject: s\r\n\r\nb\r\n"
            )
            .as_bytes(),
        )
    }

    #[test]
    fn a_reply_listed_before_its_original_is_stored_after_it() {
        let (reply, original, other) = (mail("r@x", "o@x"), mail("o@x", ""), mail("z@x", ""));
        assert_eq!(parents_first(&[&reply, &original, &other]), [1, 0, 2]);
    }

    #[test]
    fn unrelated_mails_keep_the_servers_order() {
        let (a, b, c) = (mail("a@x", ""), mail("b@x", "elsewhere@x"), mail("c@x", ""));
        assert_eq!(parents_first(&[&a, &b, &c]), [0, 1, 2]);
    }

    #[test]
    fn chains_and_cycles_are_ordered_without_looping() {
        let (c, b, a) = (mail("c@x", "b@x"), mail("b@x", "a@x"), mail("a@x", ""));
        assert_eq!(parents_first(&[&c, &b, &a]), [2, 1, 0]);
        let (x, y) = (mail("x@x", "y@x"), mail("y@x", "x@x"));
        let order = parents_first(&[&x, &y]);
        assert_eq!(order.len(), 2);
    }

    #[test]
    fn store_order_moves_the_items_with_their_mails() {
        let items = vec![("reply", mail("r@x", "o@x")), ("original", mail("o@x", ""))];
        let names: Vec<&str> = store_order(items, |(_, m)| m)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["original", "reply"]);
    }
}
