//! A password that never prints itself: `Debug` and `Display` show `***`, so a secret that ends up
//! in a log line, an error or a panic message leaks nothing. A URL that may carry one is shown
//! with [`masked_url`].

use std::fmt;

#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The only way to read the value: grep for `expose` to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `postgres://user:***@host/db`: the URL as it may appear in messages.
pub fn masked_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            // Query parameters may carry a password too (`?password=`).
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "***".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => "(an unreadable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_url_in_messages_never_shows_its_password() {
        assert_eq!(
            masked_url("postgres://m2t:s3cret@db.example.com:5432/tickets?sslmode=verify-full"),
            "postgres://m2t:***@db.example.com:5432/tickets?sslmode=verify-full"
        );
        assert_eq!(
            masked_url("postgres://m2t@db/t?password=s3cret"),
            "postgres://m2t@db/t?password=***"
        );
    }
}
