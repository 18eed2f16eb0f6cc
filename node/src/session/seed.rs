//! Seed protocol handling for a session: the seed's messages and relay-to-everyone-else
//! semantics, with the sender's identity taken from its own join.

use std::sync::Arc;
use std::time::Instant;

use actix::{Arbiter, AsyncContext, Context};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::protocol::seed::{SeedMessage, SeedServerMessage};
use switchboard::protocol::shape::{self, SignalKind};
use switchboard::protocol::{ErrorCode, ProtocolError, RoomName};

use super::Session;
use super::v1::{negotiation_key, not_joined};
use crate::dialect::Dialect;
use crate::post::Homed;
use crate::registry::Route;
use crate::room::{Join, Relay};

impl Session {
    pub(super) fn on_seed(&mut self, text: &str, received_at: Instant, ctx: &mut Context<Self>) {
        let msg = match SeedMessage::parse(text) {
            Ok(m) => m,
            Err(err) => {
                self.state.metrics.message_in(Dialect::Seed, "invalid");
                return self.fail(&err, None, ctx);
            }
        };
        self.state.metrics.message_in(Dialect::Seed, msg.kind());
        let result = match msg {
            SeedMessage::Join { channel, user } => self.seed_join(&channel, &user, ctx),
            SeedMessage::Quit { channel } => {
                if RoomName::seed_channel(&channel).is_ok_and(|name| self.leave_room(&name)) {
                    Ok(())
                } else {
                    Err(not_joined(&channel))
                }
            }
            SeedMessage::Offer { channel, sdp } => self.seed_relay(&channel, sdp, &[SignalKind::Offer], received_at),
            SeedMessage::Answer { channel, sdp } => self.seed_relay(&channel, sdp, &[SignalKind::Answer], received_at),
            SeedMessage::Candidate { channel, candidate } => {
                self.seed_relay(&channel, candidate, &[SignalKind::Candidate, SignalKind::EndOfCandidates], received_at)
            }
        };
        if let Err(err) = result {
            self.fail(&err, None, ctx);
        }
    }

    /// Joins `channel` as `user` (empty: an anonymous member).
    ///
    /// A join of a channel the session is in already (or on its way into) is the seed client's
    /// way of asking who is there: the room answers it (see `Room::seed_rejoin`). A join of a
    /// named channel takes the session out of the unnamed one, which the seed's client joins on
    /// connecting: its relays name the channel its user typed, so nothing it sends reaches the
    /// unnamed channel any more, while offers from there would still replace its call.
    fn seed_join(&mut self, channel: &str, user: &str, ctx: &mut Context<Self>) -> Result<(), ProtocolError> {
        let name = RoomName::seed_channel(channel)?;
        let repeat = self.is_member_or_pending(&name);
        if !repeat {
            self.admit_join(&name)?;
        } else if let Some(grant) = &self.grant {
            grant.check_join(channel)?;
        }
        let user = match &self.grant {
            Some(grant) => grant.seed_user(user)?,
            None => Arc::from(user),
        };
        if !channel.is_empty() {
            let unnamed = RoomName::seed_channel("")?;
            self.leave_room(&unnamed);
        }
        if !repeat {
            self.pending.push(name.clone());
        }
        let join = Join {
            peer: self.id,
            session: Homed::here(ctx.address()),
            meta: None,
            seed_user: Some(user),
            user: self.grant.as_ref().map(|g| Arc::clone(&g.user)),
            role: self.grant.as_ref().map(|g| g.role),
            id: None,
            repeat,
        };
        self.state.registry.do_send(Route { room: name, join, arbiter: Arbiter::current() });
        Ok(())
    }

    /// Relays `payload` to every other member of `channel`, if it is of one of `kinds`.
    fn seed_relay(
        &mut self,
        channel: &str,
        payload: &RawValue,
        kinds: &[SignalKind],
        received_at: Instant,
    ) -> Result<(), ProtocolError> {
        let Some(room) = self.rooms.iter().find(|r| r.name.is_seed() && r.name.client_name() == channel) else {
            return Err(not_joined(channel));
        };
        let (addr, key) = (room.addr.clone(), negotiation_key(room.name.as_str(), None));
        let kind = shape::classify(payload)?;
        if !kinds.contains(&kind) {
            let code = if kinds[0] == SignalKind::Candidate { ErrorCode::BadCandidate } else { ErrorCode::BadSdp };
            return Err(ProtocolError::new(code, format!("expected {}, got {}", kinds[0].as_str(), kind.as_str())));
        }
        self.admission.signal(kind, key, received_at)?;
        let (msg, label) = match kind {
            SignalKind::Offer => (SeedServerMessage::OfferReceived(payload), "offer_sdp_received"),
            SignalKind::Answer => (SeedServerMessage::AnswerReceived(payload), "answer_sdp_received"),
            _ => (SeedServerMessage::CandidateReceived(payload), "ice_candidate_received"),
        };
        addr.do_send(Relay {
            from: self.id,
            to: None,
            frame: Bytes::from(msg.to_json()),
            kind: label,
            received_at,
            id: None,
        });
        Ok(())
    }
}
