//! RETR, TOP and DELE for many messages in a row, pipelined where the server's CAPA lists PIPELINING
//! (RFC 2449 section 6.6): up to [`PIPELINE_WINDOW`] commands are in flight, written in small
//! chunks between reading the replies, which are matched to their commands strictly in order.
//! Without PIPELINING the same loop sends one command and waits for its reply before the next,
//! so there is one way to send a batch, whatever the server offers.

use super::error::Pop3Error;
use super::response::Reply;
use super::transport::Transport;

/// Most commands in flight when pipelining. Each is a dozen bytes, so the unanswered ones never
/// fill a socket buffer: the server can always read them while we read its replies, and neither
/// side waits on the other (RFC 2449 section 6.6 asks the client not to deadlock).
pub(super) const PIPELINE_WINDOW: usize = 32;

/// A command sent for many messages in a row, pipelined where the server offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PerMessage {
    Retr,
    /// `TOP n 0`: the header alone, at most `limit` bytes of it.
    Header {
        limit: usize,
    },
    Dele,
}

impl PerMessage {
    fn command(self, msg: u32) -> String {
        match self {
            PerMessage::Retr => format!("RETR {msg}"),
            PerMessage::Header { .. } => format!("TOP {msg} 0"),
            PerMessage::Dele => format!("DELE {msg}"),
        }
    }

    /// How much of a multi-line answer is kept; `None`: the answer is a single line.
    fn body_limit(self) -> Option<usize> {
        match self {
            PerMessage::Retr => Some(usize::MAX),
            PerMessage::Header { limit } => Some(limit),
            PerMessage::Dele => None,
        }
    }
}

/// The replies to one command sent for several messages: the messages the server answered
/// +OK for, in command order, with what it sent (a RETR body), and the first failure. After a
/// failure no further command is sent; the replies already in flight are still read, so the
/// session stays in step (after a -ERR) and every +OK is accounted for.
#[derive(Debug)]
pub struct Replies<T> {
    pub accepted: Vec<(u32, T)>,
    pub failure: Option<Pop3Error>,
}

impl<T> Replies<T> {
    /// Every reply, or the first failure. `Ok` holds one entry per message, in order.
    pub fn all(self) -> Result<Vec<(u32, T)>, Pop3Error> {
        match self.failure {
            Some(e) => Err(e),
            None => Ok(self.accepted),
        }
    }
}

/// Sends `kind` for each message and reads the replies in order (a RETR's with its body, a
/// DELE's with an empty one). One loop for both ways: with `pipelining`, whenever at most half
/// the window is unanswered the next chunk of commands goes out; without, the window is one
/// command, sent once the previous reply is read.
pub(super) async fn per_message(
    wire: &mut Transport,
    pipelining: bool,
    kind: PerMessage,
    msgs: &[u32],
) -> Replies<Vec<u8>> {
    let window = if pipelining { PIPELINE_WINDOW } else { 1 };
    let mut accepted = Vec::with_capacity(msgs.len());
    let mut failure = None;
    let mut sent = 0;
    for (answered, &msg) in msgs.iter().enumerate() {
        if failure.is_none() && sent < msgs.len() && sent - answered <= window / 2 {
            let upto = msgs.len().min(answered + window);
            if let Err(e) = send_per_message(wire, kind, &msgs[sent..upto]).await {
                failure = Some(e);
                break;
            }
            sent = upto;
        }
        if answered == sent {
            // Only after a failure: every command sent has its reply.
            break;
        }
        let command = kind.command(msg);
        let answer = match wire.read_reply(&command).await {
            Ok(Reply::Ok(text)) => match kind.body_limit() {
                Some(limit) => wire.read_body(&command, &text, limit).await,
                None => Ok(Vec::new()),
            },
            Ok(Reply::Err(text)) => {
                // The server refused this one command and goes on with the next.
                failure.get_or_insert(Pop3Error::Protocol {
                    command,
                    reply: format!("-ERR {text}"),
                });
                continue;
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(body) => accepted.push((msg, body)),
            // The session is broken (see `Transport::fail`): no further reply can be read.
            Err(e) => {
                failure.get_or_insert(e);
                break;
            }
        }
    }
    Replies { accepted, failure }
}

/// Writes `kind` for each of `msgs` in one go; a failure names the first of them.
async fn send_per_message(
    wire: &mut Transport,
    kind: PerMessage,
    msgs: &[u32],
) -> Result<(), Pop3Error> {
    let commands: Vec<String> = msgs.iter().map(|&m| kind.command(m)).collect();
    let mut lines = Vec::with_capacity(commands.iter().map(|c| c.len() + 2).sum());
    for command in &commands {
        tracing::debug!(target: crate::logging::WIRE_POP3, "POP3 C: {command}");
        lines.extend_from_slice(command.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    let first = commands.first().map_or("", String::as_str);
    wire.send(first, &lines).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pop3::test_server::{
        assert_nothing_more_sent, connected, leak, read_lines, serve_after_capa, session,
    };
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CAPA_PIPELINING: &[u8] = b"+OK\r\nUIDL\r\nPIPELINING\r\nUSER\r\n.\r\n";

    #[tokio::test]
    async fn pipelined_replies_are_matched_to_their_commands_in_order() {
        let bodies: [&[u8]; 3] = [b"one\r\n", b"+OK not a status\r\n.\r\n", b""];
        let wire: [&[u8]; 3] = [b"one\r\n", b"+OK not a status\r\n..\r\n", b""];
        let mut script = vec![("CAPA", CAPA_PIPELINING.to_vec())];
        for (i, body) in wire.iter().enumerate() {
            let mut reply = format!("+OK {} octets\r\n", body.len()).into_bytes();
            reply.extend_from_slice(body);
            reply.extend_from_slice(b".\r\n");
            script.push((leak(format!("RETR {}", i + 1)), reply));
        }
        for i in 1..=3 {
            script.push((leak(format!("DELE {i}")), b"+OK Marked.\r\n".to_vec()));
        }
        script.push(("QUIT", b"+OK Logging out.\r\n".to_vec()));
        let (mut client, server) = session(script).await;
        let fetched = client.retr_all(&[1, 2, 3]).await.all().unwrap();
        let expected: Vec<(u32, Vec<u8>)> = (1..=3).zip(bodies.map(<[u8]>::to_vec)).collect();
        assert_eq!(fetched, expected);
        let deleted = client.dele_all(&[1, 2, 3]).await.all().unwrap();
        assert_eq!(deleted, [(1, ()), (2, ()), (3, ())]);
        assert_eq!(client.marked(), 3);
        client.quit().await.unwrap();
        server.await.unwrap();
    }

    /// TOP n 0 gives the header alone; one longer than the limit is cut there, and the rest of
    /// it is still read, so the next reply is matched to its own command.
    #[tokio::test]
    async fn a_header_is_cut_at_its_limit_and_the_session_stays_in_step() {
        let long = format!("X-Long: {}\r\n", "y".repeat(100));
        let headers = [
            "From: a@b.test\r\nSubject: eins\r\n\r\n".to_string(),
            format!("From: c@d.test\r\n{long}\r\n"),
        ];
        let mut script = vec![("CAPA", CAPA_PIPELINING.to_vec())];
        for (i, header) in headers.iter().enumerate() {
            let reply = format!("+OK\r\n{header}.\r\n").into_bytes();
            script.push((leak(format!("TOP {} 0", i + 1)), reply));
        }
        script.push(("NOOP", b"+OK\r\n".to_vec()));
        let (mut client, server) = session(script).await;
        let got = client.headers_all(&[1, 2], 40).await.all().unwrap();
        assert_eq!(got[0], (1, headers[0].clone().into_bytes()));
        assert_eq!(got[1], (2, headers[1].as_bytes()[..40].to_vec()));
        client.noop().await.unwrap();
        drop(client);
        server.await.unwrap();
    }

    /// A refused DELE in the middle of a window: the error names it, nothing more is sent, the
    /// replies in flight are read (the session goes on), and only what the server accepted
    /// counts as marked.
    #[tokio::test]
    async fn a_refused_dele_mid_window_is_named_and_only_accepted_ones_count_as_marked() {
        let mut script = vec![("CAPA", CAPA_PIPELINING.to_vec())];
        // 40 messages: the first window is 1..=32; nothing after it may be sent.
        for i in 1..=PIPELINE_WINDOW {
            let reply: &[u8] = if i == 5 {
                b"-ERR Message is deleted.\r\n"
            } else {
                b"+OK Marked to be deleted.\r\n"
            };
            script.push((leak(format!("DELE {i}")), reply.to_vec()));
        }
        script.push(("NOOP", b"+OK\r\n".to_vec()));
        let (mut client, server) = session(script).await;
        let msgs: Vec<u32> = (1..=40).collect();
        let replies = client.dele_all(&msgs).await;
        let accepted: Vec<u32> = replies.accepted.iter().map(|(m, _)| *m).collect();
        let expected: Vec<u32> = (1..=32).filter(|&m| m != 5).collect();
        assert_eq!(accepted, expected);
        assert_eq!(client.marked(), 31);
        assert!(
            matches!(&replies.failure, Some(Pop3Error::Protocol { command, reply })
                if command == "DELE 5" && reply == "-ERR Message is deleted."),
            "{:?}",
            replies.failure
        );
        client.noop().await.unwrap();
        drop(client);
        server.await.unwrap();
    }

    /// A server that answers slowly never has more than the window unanswered, and a connection
    /// dropped mid-window names the command whose reply was cut off.
    #[tokio::test]
    async fn pipelining_keeps_at_most_one_window_unanswered() {
        let (port, server) = serve_after_capa(CAPA_PIPELINING, |mut socket| async move {
            // A whole window before any reply, and not one command more.
            let first = read_lines(&mut socket, PIPELINE_WINDOW).await;
            assert_nothing_more_sent(&mut socket);
            assert_eq!(first[0], "DELE 1\r\n");
            assert_eq!(
                first[PIPELINE_WINDOW - 1],
                format!("DELE {PIPELINE_WINDOW}\r\n")
            );
            // Half the window answered: the next chunk fills it up again, and no more.
            let half = "+OK\r\n".repeat(PIPELINE_WINDOW / 2);
            socket.get_mut().write_all(half.as_bytes()).await.unwrap();
            let next = read_lines(&mut socket, PIPELINE_WINDOW / 2).await;
            assert_nothing_more_sent(&mut socket);
            assert_eq!(next[0], format!("DELE {}\r\n", PIPELINE_WINDOW + 1));
        })
        .await;
        let mut client = connected(port).await;
        let msgs: Vec<u32> = (1..=100).collect();
        let replies = client.dele_all(&msgs).await;
        assert_eq!(replies.accepted.len(), PIPELINE_WINDOW / 2);
        let cut = format!("DELE {}", PIPELINE_WINDOW / 2 + 1);
        assert!(
            matches!(&replies.failure, Some(Pop3Error::Closed { command }) if *command == cut),
            "{:?}",
            replies.failure
        );
        server.await.unwrap();
    }

    /// Without PIPELINING in CAPA every command waits for the reply to the one before.
    #[tokio::test]
    async fn without_pipelining_each_command_waits_for_the_previous_reply() {
        let capa = b"+OK\r\nUIDL\r\nUSER\r\n.\r\n";
        let (port, server) = serve_after_capa(capa, |mut socket| async move {
            for i in 1..=3 {
                assert_eq!(read_lines(&mut socket, 1).await, [format!("RETR {i}\r\n")]);
                assert_nothing_more_sent(&mut socket);
                let reply = format!("+OK\r\nmail {i}\r\n.\r\n");
                socket.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            // Nothing after the third reply, up to the end of the session.
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        })
        .await;
        let mut client = connected(port).await;
        let fetched = client.retr_all(&[1, 2, 3]).await.all().unwrap();
        assert_eq!(fetched[2], (3, b"mail 3\r\n".to_vec()));
        drop(client);
        server.await.unwrap();
    }

    /// A server that stalls in the middle of a pipelined RETR body: the timeout names that RETR,
    /// the mails before it are answered, and the session refuses further commands.
    #[tokio::test]
    async fn a_timeout_mid_window_names_the_command_and_breaks_the_session() {
        let (port, server) = serve_after_capa(CAPA_PIPELINING, |mut socket| async move {
            // Everything this server will ever say goes out at once, ahead of the commands (the
            // client reads it when it gets there): the client's short timeout can then only
            // fire where the server is silent for good, never while an answer is on its way.
            let replies = b"+OK\r\nfirst\r\n.\r\n+OK\r\nhalf of the sec";
            socket.get_mut().write_all(replies).await.unwrap();
            assert_eq!(
                read_lines(&mut socket, 3).await,
                ["RETR 1\r\n", "RETR 2\r\n", "RETR 3\r\n"]
            );
            let _ = socket.read_to_end(&mut Vec::new()).await;
        })
        .await;
        let mut client = connected(port).await;
        client.set_command_timeout(Duration::from_millis(500));
        let replies = client.retr_all(&[1, 2, 3]).await;
        assert_eq!(replies.accepted, [(1, b"first\r\n".to_vec())]);
        assert!(
            matches!(&replies.failure, Some(Pop3Error::Timeout { command }) if command == "RETR 2"),
            "{:?}",
            replies.failure
        );
        assert!(matches!(
            client.noop().await,
            Err(Pop3Error::ConnectionBroken { .. })
        ));
        drop(client);
        server.await.unwrap();
    }
}
