//! The dated test mail of test-fetch and test-send, marked so that ingestion disposes of it
//! without a ticket.

use lettre::address::Envelope;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::Message;

use super::Fail;
use crate::config::AccountConfig;
use crate::ingest::parse::TEST_HEADER;

/// A dated test mail, marked with [`TEST_HEADER`] so ingestion disposes of it without a ticket.
#[derive(Debug, Clone)]
pub struct TestMail {
    pub stamp: String,
    pub subject: String,
    pub envelope: Envelope,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone)]
struct TestMarker(String);

impl Header for TestMarker {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(TEST_HEADER)
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(TestMarker(s.trim().to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl TestMail {
    /// Who the test mail is for.
    pub fn recipient(&self) -> String {
        self.envelope
            .to()
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }
}

/// From the account's address with its sender name, Reply-To its `reply_to` (else its own
/// address), to `to`; subject `mail2ticket test <stamp>`.
pub fn test_mail(account: &AccountConfig, to: &str, stamp: &str) -> Result<TestMail, Fail> {
    let from_addr = account.email.parse().map_err(|e| {
        Fail::hint(
            format!(
                "the account's address {:?} is not valid: {e}",
                account.email
            ),
            "fix `email`",
        )
    })?;
    let to_addr = to
        .parse()
        .map_err(|e| Fail::hint(format!("{to:?} is not a valid address: {e}"), "fix --to"))?;
    let reply_to_text = account.reply_to.as_deref().unwrap_or(&account.email);
    let reply_to: Mailbox = reply_to_text.parse().map_err(|e| {
        Fail::hint(
            format!("reply_to {reply_to_text:?} is not a valid address: {e}"),
            "fix `reply_to`",
        )
    })?;
    let subject = format!("mail2ticket test {stamp}");
    let body = format!(
        "This is a test mail from mail2ticket, sent at {stamp} for the account \"{}\".\r\n\
         mail2ticket recognises it by its {TEST_HEADER} header and disposes of it like any \
         other mail of the account (action), without creating a ticket or sending a reply.\r\n",
        account.name
    );
    let message = Message::builder()
        .from(Mailbox::new(account.sender_name.clone(), from_addr))
        .reply_to(reply_to)
        .to(Mailbox::new(None, to_addr))
        .subject(subject.clone())
        .date_now()
        .message_id(None)
        .header(TestMarker(crate::ingest::testmail::marker(
            &account.test_mail_key(),
            &account.email,
            stamp,
        )))
        .body(body)
        .map_err(|e| Fail::new(format!("cannot build the test mail: {e}")))?;
    Ok(TestMail {
        stamp: stamp.to_string(),
        subject,
        envelope: message.envelope().clone(),
        raw: message.formatted(),
    })
}
