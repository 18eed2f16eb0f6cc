//! A peer's role in a room, granted by its access token.

use serde::{Deserialize, Serialize};

/// What a peer may do in its room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Joins, signals and broadcasts.
    #[default]
    Participant,
    /// Joins and signals (to receive media it must answer offers) but may not broadcast.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Participant => "participant",
            Self::Viewer => "viewer",
        }
    }
}
