//! Short-lived TURN credentials in the "TURN REST API" form that coturn checks with
//! `use-auth-secret` + `static-auth-secret` (draft-uberti-behave-turn-rest-00):
//!
//! ```text
//! username   = "<expiry, unix seconds>:<user>"
//! credential = base64(HMAC-SHA1(shared secret, username))
//! ```
//!
//! The TURN server holds the same secret and recomputes the password from the username, so
//! the gateway and the TURN server never talk: a credential is good until its expiry, for
//! whoever holds it, and the user part only labels the allocation in the TURN server's logs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::error::EdgeError;

/// The shared secret, keyed once: each credential clones the keyed state.
#[derive(Clone)]
pub struct TurnSecret {
    mac: Hmac<Sha1>,
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

/// One TURN credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub credential: String,
    pub expires_at: u64,
}

impl TurnSecret {
    pub fn new(secret: &str) -> Result<Self, EdgeError> {
        if secret.is_empty() {
            return Err(EdgeError::TurnSecret("the secret is empty".into()));
        }
        // HMAC takes a key of any length; the error arm exists only in the trait's signature.
        let mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).map_err(|e| EdgeError::TurnSecret(e.to_string()))?;
        Ok(Self { mac })
    }

    /// A credential for `user` that the TURN server accepts until `expires_at` (unix seconds).
    pub fn credential(&self, user: &str, expires_at: u64) -> TurnCredential {
        let username = format!("{expires_at}:{user}");
        let mut mac = self.mac.clone();
        mac.update(username.as_bytes());
        let credential = STANDARD.encode(mac.finalize().into_bytes());
        TurnCredential { username, credential, expires_at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_vector() {
        // python3 -c 'import hmac,hashlib,base64;
        //   print(base64.b64encode(hmac.new(b"north", b"1700000000:alice", hashlib.sha1).digest()).decode())'
        let c = TurnSecret::new("north").expect("secret").credential("alice", 1_700_000_000);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.credential, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(TurnSecret::new("").is_err());
    }
}
