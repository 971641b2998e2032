//! Signing in to the account's POP3 server: USER/PASS, or with `auth = "oauth2"` SASL with the
//! account's token (renewed once if the server refuses it).

use super::client::{Pop3Client, Pop3Error, Pop3Security, Pop3Timeouts};
use crate::account::AccountRuntime;
use crate::config::Encryption;
use crate::oauth::sasl::Mechanism;
use crate::source::SourceError;

pub fn security(encryption: Encryption) -> Pop3Security {
    match encryption {
        Encryption::Ssl => Pop3Security::Implicit,
        Encryption::Starttls => Pop3Security::StartTls,
        Encryption::None => Pop3Security::Plain,
    }
}

/// Connects and logs in: USER/PASS, or with `auth = "oauth2"` SASL with a token.
pub async fn sign_in(rt: &AccountRuntime) -> Result<Pop3Client, SourceError> {
    let a = &rt.account;
    let Some(tokens) = &rt.tokens else {
        let mut client = open(rt).await?;
        client.login(&a.user, a.password().expose()).await?;
        return Ok(client);
    };
    let server = format!("{}:{}", a.host, a.port());
    Ok(crate::oauth::login::sign_in(
        tokens,
        &server,
        &a.user,
        |token| async move {
            let mut client = open(rt).await?;
            let sasl: Vec<&str> = client
                .capabilities()
                .iter()
                .filter_map(|c| c.strip_prefix("SASL "))
                .flat_map(str::split_ascii_whitespace)
                .collect();
            let mechanism = Mechanism::choose(sasl);
            let message = mechanism.initial_response(&a.user, &a.host, a.port(), &token);
            client
                .authenticate(
                    &a.user,
                    mechanism.name(),
                    &message,
                    mechanism.after_error_challenge(),
                )
                .await?;
            Ok::<_, Pop3Error>(client)
        },
        |e| match e {
            Pop3Error::AuthRejected { server_text, .. } => Some(server_text.clone()),
            _ => None,
        },
    )
    .await?)
}

/// Connects, reads the greeting and the capabilities (and does STLS), without logging in.
async fn open(rt: &AccountRuntime) -> Result<Pop3Client, Pop3Error> {
    let a = &rt.account;
    Pop3Client::connect(
        &a.host,
        a.port(),
        security(a.encryption),
        rt.tls.clone(),
        Pop3Timeouts {
            connect: rt.timeout,
            command: rt.timeout,
        },
    )
    .await
}
