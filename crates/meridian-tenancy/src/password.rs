//! Password hashing (argon2id, PHC strings), the password policy, and the dummy hash that
//! makes a login for an unknown operator cost as much as a wrong password.

use crate::config::PasswordHashing;
use crate::{Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Version};
use std::sync::OnceLock;

/// Shortest accepted password, in characters.
pub(crate) const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password, in bytes (argon2 takes any length; this bounds the work).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and verifies passwords with one set of argon2id parameters.
pub(crate) struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of a random password with the current parameters, verified against when the
    /// login is unknown so that both failures take the same time.
    dummy_hash: OnceLock<String>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("params", self.argon.params()).finish_non_exhaustive()
    }
}

impl PasswordHasher {
    pub(crate) fn new(config: &PasswordHashing) -> Result<PasswordHasher> {
        let params = config.params()?;
        Ok(PasswordHasher { argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params), dummy_hash: OnceLock::new() })
    }

    /// Refuses passwords shorter than [`MIN_PASSWORD_CHARS`] or longer than
    /// [`MAX_PASSWORD_BYTES`].
    pub(crate) fn check_policy(password: &str) -> Result<()> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Error::WeakPassword { min_chars: MIN_PASSWORD_CHARS });
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::InvalidArgument(format!("a password may be at most {MAX_PASSWORD_BYTES} bytes long")));
        }
        Ok(())
    }

    /// The PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) of `password` with a fresh
    /// random salt.
    pub(crate) fn hash(&self, password: &str) -> Result<String> {
        let salt = SaltString::encode_b64(&crate::random_bytes(16)).map_err(|e| Error::PasswordHash(e.to_string()))?;
        let hash = self.argon.hash_password(password.as_bytes(), &salt).map_err(|e| Error::PasswordHash(e.to_string()))?;
        Ok(hash.to_string())
    }

    /// Whether `password` matches `phc` (with the parameters stored in `phc`). An
    /// unreadable hash matches nothing.
    pub(crate) fn verify(&self, password: &str, phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(parsed) => self.argon.verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable password hash; the operator cannot log in until an admin sets a new password");
                false
            }
        }
    }

    /// Spends the time of one verification and returns false: for unknown logins.
    pub(crate) fn verify_dummy(&self, password: &str) -> bool {
        let dummy = self.dummy_hash.get_or_init(|| {
            self.hash(&crate::random_hex(16)).expect("hashing works with parameters that passed validation")
        });
        let _ = self.verify(password, dummy);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_with_a_salt_and_verify_only_the_password() {
        let hasher = PasswordHasher::new(&PasswordHashing::fast_insecure_for_tests()).unwrap();
        let first = hasher.hash("correct horse battery").unwrap();
        let second = hasher.hash("correct horse battery").unwrap();
        assert!(first.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{first}");
        assert_ne!(first, second, "every hash has its own salt");
        assert!(!first.contains("correct horse"));
        assert!(hasher.verify("correct horse battery", &first));
        assert!(hasher.verify("correct horse battery", &second));
        assert!(!hasher.verify("correct horse battery!", &first));
        assert!(!hasher.verify("correct horse battery", "not a phc string"));
        assert!(!hasher.verify_dummy("correct horse battery"));
    }

    #[test]
    fn a_hash_made_with_other_parameters_still_verifies() {
        let old = PasswordHasher::new(&PasswordHashing { memory_kib: 128, iterations: 2, parallelism: 1 }).unwrap();
        let phc = old.hash("an older password").unwrap();
        let new = PasswordHasher::new(&PasswordHashing::fast_insecure_for_tests()).unwrap();
        assert!(new.verify("an older password", &phc));
    }

    #[test]
    fn the_policy_wants_ten_characters() {
        assert!(matches!(PasswordHasher::check_policy("123456789"), Err(Error::WeakPassword { min_chars: 10 })));
        PasswordHasher::check_policy("1234567890").unwrap();
        // Characters, not bytes: nine two-byte characters are still too short.
        assert!(PasswordHasher::check_policy(&"é".repeat(9)).is_err());
        assert!(matches!(PasswordHasher::check_policy(&"x".repeat(2000)), Err(Error::InvalidArgument(_))));
        let message = PasswordHasher::check_policy("short").unwrap_err().to_string();
        assert_eq!(message, "a password needs at least 10 characters; choose a longer one");
    }
}
