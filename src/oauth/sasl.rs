//! The SASL mechanisms that carry a bearer token: XOAUTH2 (Google's and Microsoft's) and
//! OAUTHBEARER (RFC 7628). Both strings contain the token: they are built into a [`Secret`] and
//! only ever written to the server's socket.

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    XOauth2,
    OAuthBearer,
}

impl Mechanism {
    /// OAUTHBEARER when the server names it (the standard), else XOAUTH2, which Microsoft and
    /// Google both speak. `offered` are the server's SASL mechanism names.
    pub fn choose<'a>(offered: impl IntoIterator<Item = &'a str>) -> Mechanism {
        if offered
            .into_iter()
            .any(|m| m.eq_ignore_ascii_case("OAUTHBEARER"))
        {
            Mechanism::OAuthBearer
        } else {
            Mechanism::XOauth2
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::XOauth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The client's first (and normally only) message, before base64.
    pub fn initial_response(self, user: &str, host: &str, port: u16, token: &Secret) -> Secret {
        let token = token.expose();
        Secret::new(match self {
            Mechanism::XOauth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
            Mechanism::OAuthBearer => {
                // RFC 7628 section 3.1: gs2 header, then key=value pairs separated by ^A.
                let authzid = user.replace('=', "=3D").replace(',', "=2C");
                format!(
                    "n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
                )
            }
        })
    }

    /// What the client answers to the server's error challenge so that the server can finish
    /// with a failure: an empty response for XOAUTH2, a single ^A for OAUTHBEARER (RFC 7628
    /// section 3.2.3).
    pub fn after_error_challenge(self) -> &'static [u8] {
        match self {
            Mechanism::XOauth2 => b"",
            Mechanism::OAuthBearer => b"\x01",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_and_oauthbearer_strings_follow_their_specifications() {
        let token = Secret::new("tok");
        assert_eq!(
            Mechanism::XOauth2
                .initial_response("a@example.test", "h", 993, &token)
                .expose(),
            "user=a@example.test\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            Mechanism::OAuthBearer
                .initial_response("a,b=c@example.test", "imap.example.test", 993, &token)
                .expose(),
            "n,a=a=2Cb=3Dc@example.test,\x01host=imap.example.test\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_only_when_offered() {
        assert_eq!(Mechanism::choose(["PLAIN", "XOAUTH2"]), Mechanism::XOauth2);
        assert_eq!(
            Mechanism::choose(["xoauth2", "oauthbearer"]),
            Mechanism::OAuthBearer
        );
    }
}
