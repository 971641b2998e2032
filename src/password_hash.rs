//! The accounts page's admin password: stored only as an argon2id PHC string
//! (`$argon2id$v=19$m=…`), made by `mail2ticket web hash-password`, checked at login.
//!
//! The argon2 crate does the work; this module fixes the parameters and says what is wrong with
//! a hash that will not do, in words check-config can show beside the key.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A new hash with argon2id and the crate's defaults (OWASP's minimum: 19 MiB, 2 passes).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `phc` is an argon2 PHC string this build can verify against.
pub fn check(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc.trim()).map_err(|e| {
        format!("is not a password hash ({e}): expected a PHC string such as \"$argon2id$v=19$…\"")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "is a {} hash; the page takes argon2 (argon2id) hashes",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Whether `password` matches `phc`. CPU-heavy by design (tens of ms): call it off the async
/// threads (`spawn_blocking`).
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc.trim()) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        let phc = hash("Sommer 2027!").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        check(&phc).unwrap();
        assert!(verify("Sommer 2027!", &phc));
        assert!(!verify("sommer 2027!", &phc));
        assert!(!verify("", &phc));
    }

    #[test]
    fn check_names_what_is_not_an_argon2_hash() {
        assert!(check("hunter2")
            .unwrap_err()
            .contains("not a password hash"));
        let bcrypt_like = "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2g";
        assert!(check(bcrypt_like).unwrap_err().contains("argon2"));
    }
}
