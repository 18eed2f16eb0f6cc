//! What a session's access token lets it do, kept for the session's life.
//!
//! A token is checked once, when the WebSocket opens (`crate::upgrade`); the session then keeps
//! only its grant — one room, a user and a role — and checks each join and broadcast against
//! it. A session outlives its token's expiry: a token is a ticket to open a connection.

use std::sync::Arc;

use switchboard::auth::{self, TokenError};
use switchboard::protocol::{ProtocolError, Role};

#[derive(Debug)]
pub struct Grant {
    /// The one room the token opens, as clients name it (a v1 room or a seed channel).
    room: Box<str>,
    pub user: Arc<str>,
    pub role: Role,
}

impl From<auth::Grant> for Grant {
    fn from(g: auth::Grant) -> Self {
        Self { room: g.room.into(), user: g.user.into(), role: g.role }
    }
}

impl Grant {
    /// The grant as a parked session carries it to the node it resumes on.
    pub fn parts(&self) -> (String, String, Role) {
        (self.room.to_string(), self.user.to_string(), self.role)
    }

    pub fn from_parts((room, user, role): (String, String, Role)) -> Self {
        Self { room: room.into(), user: user.into(), role }
    }

    /// A token for room A never opens room B.
    pub fn check_join(&self, room: &str) -> Result<(), ProtocolError> {
        if *self.room == *room {
            return Ok(());
        }
        let asked: String = room.chars().take(64).collect();
        Err(refusal(TokenError::WrongRoom { granted: self.room.to_string(), asked }))
    }

    /// The seed `userId` a session with this grant joins as. A token that names a user is
    /// that user's seat: any other id is refused, so a token for one user cannot take over
    /// (and evict) another's. An empty id claims no identity and becomes the token's user.
    pub fn seed_user(&self, asked: &str) -> Result<Arc<str>, ProtocolError> {
        if self.user.is_empty() {
            return Ok(Arc::from(asked));
        }
        if asked.is_empty() || *self.user == *asked {
            return Ok(Arc::clone(&self.user));
        }
        let asked: String = asked.chars().take(64).collect();
        Err(refusal(TokenError::WrongUser { granted: self.user.to_string(), asked }))
    }

    /// Viewers receive (they answer offers to get media) but do not speak to the whole room.
    pub fn check_broadcast(&self) -> Result<(), ProtocolError> {
        match self.role {
            Role::Participant => Ok(()),
            Role::Viewer => Err(refusal(TokenError::NotAllowed { role: Role::Viewer.as_str(), action: "broadcast" })),
        }
    }
}

fn refusal(e: TokenError) -> ProtocolError {
    ProtocolError::new(e.code(), e.to_string())
}

#[cfg(test)]
mod tests {
    use switchboard::protocol::ErrorCode;

    use super::*;

    fn grant(role: Role) -> Grant {
        Grant::from(auth::Grant { room: "a".into(), user: "ann".into(), role, expires_at: 0 })
    }

    #[test]
    fn one_room_and_no_broadcast_for_viewers() {
        assert!(grant(Role::Participant).check_join("a").is_ok());
        let err = grant(Role::Participant).check_join("b").unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err.message.contains("\"a\"") && err.message.contains("\"b\""), "{}", err.message);
        assert!(grant(Role::Participant).check_broadcast().is_ok());
        assert_eq!(grant(Role::Viewer).check_broadcast().unwrap_err().code, ErrorCode::Forbidden);
    }

    #[test]
    fn a_seed_user_id_is_the_tokens_user() {
        let g = grant(Role::Participant);
        assert_eq!(&*g.seed_user("ann").unwrap(), "ann");
        assert_eq!(&*g.seed_user("").unwrap(), "ann");
        let err = g.seed_user("alice").unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err.message.contains("\"ann\"") && err.message.contains("\"alice\""), "{}", err.message);
    }
}
