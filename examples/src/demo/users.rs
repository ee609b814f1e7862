//! Demo accounts, kept as Argon2 hashes only.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::gate::Admission;

/// The demo's accounts (user name, password), printed at start-up and
/// listed in the README. Only their Argon2 hashes are kept in memory.
pub const DEMO_USERS: &[(&str, &str)] = &[("alice", "wonderland"), ("bob", "builder")];

/// The longest user name a login may send, in bytes: longer ones are
/// refused before any work (the login form's `maxlength` says so too).
pub const MAX_USERNAME_BYTES: usize = 128;

/// The longest password a login may send, in bytes: 256 characters even
/// of four bytes each, well past the 64 that ASVS 5.0 V6.2.9 asks to
/// allow. Longer ones are refused, never truncated (V6.2.8), before any
/// work.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// User names and their Argon2id password hashes (PHC strings, each with
/// its own random salt).
#[derive(Debug)]
pub struct Users {
    hashes: HashMap<String, String>,
    /// A hash checked for unknown names, so that a wrong name takes as long
    /// as a wrong password and does not reveal which names exist.
    decoy: String,
}

impl Users {
    /// Hashes `accounts` (name, password) with Argon2id and fresh salts,
    /// and forgets the passwords.
    ///
    /// # Errors
    ///
    /// When the OS gives no randomness for a salt or hashing fails.
    pub fn hash(accounts: &[(&str, &str)]) -> Result<Self, argon2::password_hash::Error> {
        let mut hashes = HashMap::new();
        for (name, password) in accounts {
            hashes.insert((*name).to_owned(), hash_one(password)?);
        }
        Ok(Self {
            hashes,
            decoy: hash_one("decoy password that no one has")?,
        })
    }

    /// The [`DEMO_USERS`], hashed.
    ///
    /// # Errors
    ///
    /// As [`Users::hash`].
    pub fn demo() -> Result<Self, argon2::password_hash::Error> {
        Self::hash(DEMO_USERS)
    }

    /// Whether `password` is `name`'s password. The (deliberately slow)
    /// check runs off the async threads, within the place `admission`
    /// holds in the hash gate ([`super::gate`]); `false` if it could not
    /// run.
    pub async fn verify(
        self: &Arc<Self>,
        admission: Admission,
        name: &str,
        password: &str,
    ) -> bool {
        let users = Arc::clone(self);
        let name = name.to_owned();
        let password = password.to_owned();
        admission
            .run(move || users.check(&name, &password))
            .await
            .unwrap_or(false)
    }

    /// The check itself: one Argon2 verification, against the decoy hash
    /// for an unknown name.
    fn check(&self, name: &str, password: &str) -> bool {
        let (hash, known) = match self.hashes.get(name) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy.as_str(), false),
        };
        let matches = PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known && matches
    }
}

fn hash_one(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}
