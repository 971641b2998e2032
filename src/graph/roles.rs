//! The application permissions an app-only token carries, from its `roles` claim: test-fetch and
//! test-send name a missing Mail.ReadWrite or Mail.Send before Graph refuses a request.
//!
//! Only for diagnosis: the token is not verified here (Graph does that), and a token that is not
//! a JWT (Microsoft may change the format) simply shows no roles.

use base64::Engine;

/// What reading a mailbox and moving or deleting its mails needs.
pub const READ_WRITE: &str = "Mail.ReadWrite";
/// What sending the replies needs.
pub const SEND: &str = "Mail.Send";

/// The `roles` of a JWT access token, or `None` when the token is not a JWT with roles.
pub fn of_token(token: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let roles = claims.get("roles")?.as_array()?;
    Some(
        roles
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
    )
}

/// Which of `needed` the roles lack.
pub fn missing<'a>(roles: &[String], needed: &[&'a str]) -> Vec<&'a str> {
    needed
        .iter()
        .filter(|n| !roles.iter().any(|r| r.eq_ignore_ascii_case(n)))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"typ":"JWT"}"#), b64(claims))
    }

    #[test]
    fn the_roles_claim_names_a_missing_permission() {
        let roles = of_token(&token(
            r#"{"aud":"https://graph.microsoft.com","roles":["Mail.Send"]}"#,
        ))
        .unwrap();
        assert_eq!(missing(&roles, &[READ_WRITE, SEND]), vec![READ_WRITE]);
    }

    #[test]
    fn a_token_that_is_no_jwt_shows_no_roles() {
        assert_eq!(of_token("at-opaque"), None);
        assert_eq!(of_token(&token(r#"{"aud":"x"}"#)), None);
    }
}
