//! Authenticating an open session: USER/PASS (RFC 1939), SASL `AUTH` with one client message
//! (RFC 5034), and what a -ERR at login means (a wrong password, a login too early, a locked
//! maildrop). Which of these an account uses, and the token behind it, is [`super::login`]'s.
//! Neither a password nor a SASL message ever reaches a log or an error.

use std::time::Duration;

use super::error::Pop3Error;
use super::response::{parse_status, shown, trim_eol, Reply, Status};
use super::transport::Transport;
use crate::secret::Secret;

/// USER/PASS login. The password is never logged nor put in an error. `login_delay` is the
/// server's advertised LOGIN-DELAY, for the error if it refuses the login as too early.
pub(super) async fn user_pass(
    wire: &mut Transport,
    user: &str,
    password: &str,
    login_delay: Option<Duration>,
) -> Result<(), Pop3Error> {
    if has_line_break(user) {
        return Err(Pop3Error::InvalidInput(
            "`user` contains a line break or NUL, which POP3 cannot send".into(),
        ));
    }
    if has_line_break(password) {
        return Err(Pop3Error::InvalidInput(
            "`password` contains a line break or NUL, which POP3 cannot send".into(),
        ));
    }
    let line = format!("USER {user}\r\n");
    if let Reply::Err(text) = wire.command("USER", line.as_bytes()).await? {
        return Err(login_failure(LoginStep::User, user, text, login_delay));
    }
    let mut line = Vec::with_capacity(password.len() + 7);
    line.extend_from_slice(b"PASS ");
    line.extend_from_slice(password.as_bytes());
    line.extend_from_slice(b"\r\n");
    let reply = wire.command("PASS ***", &line).await;
    line.fill(0);
    if let Reply::Err(text) = reply? {
        return Err(login_failure(LoginStep::Pass, user, text, login_delay));
    }
    Ok(())
}

/// SASL `AUTH` (RFC 5034) with one client message, e.g. XOAUTH2 or OAUTHBEARER with a token.
/// The message goes after the server's `+` continuation rather than on the AUTH line, because
/// RFC 5034 caps that line at 255 octets and bearer tokens are longer. `after_error` answers a
/// second challenge (the server's error details) so it can finish. Neither the message nor its
/// base64 form is ever logged or put in an error.
pub(super) async fn sasl(
    wire: &mut Transport,
    user: &str,
    mechanism: &str,
    message: &Secret,
    after_error: &[u8],
    login_delay: Option<Duration>,
) -> Result<(), Pop3Error> {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let command = format!("AUTH {mechanism}");
    let mut sent = false;
    let mut line = format!("{command}\r\n").into_bytes();
    loop {
        let logged = if sent {
            "(SASL response)"
        } else {
            command.as_str()
        };
        tracing::debug!("POP3 C: {logged}");
        let written = wire.send(&command, &line).await;
        line.fill(0);
        written?;
        let reply = wire.read_line(&command).await?;
        if reply.starts_with(b"+ ") || trim_eol(reply) == b"+" {
            // A continuation: first the request for our message, then (if any) the server's
            // error details, answered with the mechanism's "give up".
            let answer = if sent {
                b64(after_error)
            } else {
                b64(message.expose().as_bytes())
            };
            line = format!("{answer}\r\n").into_bytes();
            sent = true;
            continue;
        }
        let reply = match parse_status(reply) {
            Some(Status::Ok(_)) => return Ok(()),
            Some(Status::Err(text)) => {
                let text = shown(text);
                return Err(login_failure(LoginStep::Pass, user, text, login_delay));
            }
            None => shown(trim_eol(reply)),
        };
        return Err(wire.fail(Pop3Error::Protocol { command, reply }));
    }
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginStep {
    User,
    Pass,
}

/// Maps a -ERR during login: always a rejection after PASS, and after USER when the server
/// marks it with the RFC 3206 `[AUTH]` response code; any other USER failure is a protocol error.
fn login_failure(
    step: LoginStep,
    user: &str,
    server_text: String,
    delay: Option<Duration>,
) -> Pop3Error {
    if server_text
        .get(..13)
        .is_some_and(|code| code.eq_ignore_ascii_case("[LOGIN-DELAY]"))
    {
        return Pop3Error::LoginDelay { delay, server_text };
    }
    // RFC 2449 response codes: a locked maildrop or a server-side fault is not a wrong password,
    // and telling the admin to check the password would send them the wrong way.
    if server_text.starts_with("[IN-USE]") || server_text.starts_with("[SYS/") {
        return Pop3Error::Protocol {
            command: if step == LoginStep::Pass {
                "PASS"
            } else {
                "USER"
            }
            .into(),
            reply: format!("-ERR {server_text}"),
        };
    }
    if step == LoginStep::Pass || server_text.contains("[AUTH]") {
        Pop3Error::AuthRejected {
            user: user.into(),
            server_text,
        }
    } else {
        Pop3Error::Protocol {
            command: "USER".into(),
            reply: format!("-ERR {server_text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pop3::client::Pop3Error;
    use crate::pop3::test_server::session;

    #[test]
    fn a_login_delay_code_is_too_early_never_a_wrong_password() {
        let e = login_failure(
            LoginStep::Pass,
            "bob",
            "[LOGIN-DELAY] Logins must be at least 1 minute apart".into(),
            Some(Duration::from_secs(60)),
        );
        assert!(matches!(&e, Pop3Error::LoginDelay { delay: Some(d), .. } if d.as_secs() == 60));
        let text = e.to_string();
        assert!(
            text.contains("too early") && text.contains("60 s"),
            "{text}"
        );
        assert!(!text.contains("check `user`"), "{text}");
    }

    #[test]
    fn a_login_err_is_a_rejection_unless_its_code_says_otherwise() {
        let e = login_failure(
            LoginStep::Pass,
            "bob",
            "[AUTH] Authentication failed.".into(),
            None,
        );
        assert!(matches!(&e, Pop3Error::AuthRejected { user, .. } if user == "bob"));
        assert_eq!(
            e.to_string(),
            "login rejected for bob: check `user` and `password` (server said: [AUTH] \
             Authentication failed.)"
        );
        assert!(matches!(
            login_failure(LoginStep::Pass, "bob", "invalid password".into(), None),
            Pop3Error::AuthRejected { .. }
        ));
        assert!(matches!(
            login_failure(
                LoginStep::User,
                "bob",
                "[AUTH] Plaintext authentication disallowed on non-secure connections.".into(),
                None,
            ),
            Pop3Error::AuthRejected { .. }
        ));
        assert!(matches!(
            login_failure(LoginStep::User, "bob", "[SYS/TEMP] try later".into(), None),
            Pop3Error::Protocol { command, .. } if command == "USER"
        ));
        assert!(matches!(
            login_failure(LoginStep::Pass, "bob", "[IN-USE] Mailbox locked".into(), None),
            Pop3Error::Protocol { command, .. } if command == "PASS"
        ));
    }

    /// RFC 5034 AUTH with a bearer message: the message follows the server's `+`, and a second
    /// `+` (the server's error details, as XOAUTH2 sends them) is answered so the server can say
    /// -ERR. Neither the token nor its base64 form shows in the error.
    #[tokio::test]
    async fn sasl_auth_sends_the_message_after_the_continuation_and_gives_up_cleanly() {
        use base64::Engine;
        let message = crate::secret::Secret::new("user=bob\x01auth=Bearer tok-123\x01\x01");
        let b64: &'static str = Box::leak(
            base64::engine::general_purpose::STANDARD
                .encode(message.expose())
                .into_boxed_str(),
        );
        for accepted in [true, false] {
            let mut script = vec![
                ("CAPA", b"+OK\r\nSASL XOAUTH2\r\n.\r\n".to_vec()),
                ("AUTH XOAUTH2", b"+ \r\n".to_vec()),
            ];
            if accepted {
                script.push((b64, b"+OK Logged in.\r\n".to_vec()));
            } else {
                script.push((b64, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n".to_vec()));
                script.push(("", b"-ERR [AUTH] Authentication failed.\r\n".to_vec()));
            }
            let (mut client, server) = session(script).await;
            let result = client.authenticate("bob", "XOAUTH2", &message, b"").await;
            if accepted {
                result.unwrap();
            } else {
                let err = result.unwrap_err();
                assert!(matches!(err, Pop3Error::AuthRejected { .. }), "{err:?}");
                let text = format!("{err} {err:?}");
                assert!(
                    text.contains("bob") && !text.contains("tok-123") && !text.contains(b64),
                    "{text}"
                );
            }
            drop(client);
            server.await.unwrap();
        }
    }

    #[tokio::test]
    async fn rejected_login_hides_the_password() {
        let script = vec![
            ("CAPA", b"-ERR unknown command\r\n".to_vec()),
            ("USER bob", b"+OK\r\n".to_vec()),
            (
                "PASS hunter2",
                b"-ERR [AUTH] Authentication failed.\r\n".to_vec(),
            ),
        ];
        let (mut client, server) = session(script).await;
        assert!(client.capabilities().is_empty());
        let err = client.login("bob", "hunter2").await.unwrap_err();
        assert!(matches!(err, Pop3Error::AuthRejected { .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("bob") && !text.contains("hunter2"), "{text}");
        assert!(client.login("bob", "a\r\nDELE 1").await.is_err());
        drop(client);
        server.await.unwrap();
    }
}
