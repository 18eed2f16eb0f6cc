//! Protocol v1 handling for a session.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use actix::{Arbiter, AsyncContext, Context};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::protocol::shape;
use switchboard::protocol::v1::{ClientFrame, ClientMessage, ServerMessage};
use switchboard::protocol::{ErrorCode, PeerId, ProtocolError, RoomName};

use super::Session;
use crate::dialect::Dialect;
use crate::post::Homed;
use crate::registry::Route;
use crate::room::{Join, Relay};

/// Identifies one (room, peer) negotiation for the per-negotiation candidate cap.
pub(super) fn negotiation_key(room: &str, to: Option<PeerId>) -> u64 {
    let mut h = DefaultHasher::new();
    room.hash(&mut h);
    to.hash(&mut h);
    h.finish()
}

impl Session {
    pub(super) fn on_v1(&mut self, text: &str, received_at: Instant, ctx: &mut Context<Self>) {
        let frame = match ClientFrame::parse(text) {
            Ok(f) => f,
            Err(rejected) => {
                self.state.metrics.message_in(Dialect::V1, "invalid");
                return self.fail(&rejected.error, rejected.id, ctx);
            }
        };
        if let ClientMessage::Ack { seq } = frame.msg {
            self.state.metrics.message_in(Dialect::V1, "ack");
            return self.replay.acknowledged(seq);
        }
        if let Some(cseq) = frame.cseq {
            if cseq <= self.replay.last_cseq {
                // Sent again after a resume, and processed before: its effects (and reply) stand.
                return self.state.metrics.message_in(Dialect::V1, "duplicate");
            }
            self.replay.last_cseq = cseq;
        }
        self.state.metrics.message_in(Dialect::V1, frame.msg.kind());
        let id = frame.id;
        let result = match frame.msg {
            ClientMessage::Join { room, meta } => self.v1_join(&room, meta, id, ctx),
            ClientMessage::Leave { room } => {
                if RoomName::v1(&room).is_ok_and(|name| self.leave_room(&name)) {
                    let ack = ServerMessage::Left { room: &room, reason: None, id }.to_json();
                    self.send(ack, "left", ctx);
                    Ok(())
                } else {
                    Err(not_joined(&room))
                }
            }
            ClientMessage::Signal { room, to, data } => self.v1_relay(&room, Some(to), data, id, received_at),
            ClientMessage::Broadcast { room, data } => self.v1_relay(&room, None, data, id, received_at),
            ClientMessage::Ping => {
                let last_cseq = Some(self.replay.last_cseq).filter(|n| *n > 0);
                let pong = ServerMessage::Pong { id, last_cseq }.to_json();
                self.send(pong, "pong", ctx);
                Ok(())
            }
            ClientMessage::Ack { .. } => Ok(()),
        };
        if let Err(err) = result {
            self.fail(&err, id, ctx);
        }
    }

    fn v1_join(
        &mut self,
        room: &str,
        meta: Option<&RawValue>,
        id: Option<&RawValue>,
        ctx: &mut Context<Self>,
    ) -> Result<(), ProtocolError> {
        let name = RoomName::v1(room)?;
        self.admit_join(&name)?;
        let meta = match meta {
            None => None,
            Some(m) if m.get() == "null" => None,
            Some(m) => {
                let max = self.state.config.max_meta_bytes;
                if !m.get().starts_with('{') || m.get().len() > max {
                    return Err(ProtocolError::new(
                        ErrorCode::BadMeta,
                        format!("`meta` must be a JSON object of at most {max} bytes"),
                    ));
                }
                Some(Arc::from(m.to_owned()))
            }
        };
        self.pending.push(name.clone());
        let join = Join {
            peer: self.id,
            session: Homed::here(ctx.address()),
            meta,
            seed_user: None,
            user: self.grant.as_ref().map(|g| Arc::clone(&g.user)),
            role: self.grant.as_ref().map(|g| g.role),
            id: id.map(RawValue::to_owned),
            repeat: false,
        };
        self.state.registry.do_send(Route { room: name, join, arbiter: Arbiter::current() });
        Ok(())
    }

    fn v1_relay(
        &mut self,
        room: &str,
        to: Option<PeerId>,
        data: &RawValue,
        id: Option<&RawValue>,
        received_at: Instant,
    ) -> Result<(), ProtocolError> {
        let Some(joined) = self.room(room) else { return Err(not_joined(room)) };
        let addr = joined.addr.clone();
        if to == Some(self.id) {
            return Err(ProtocolError::new(ErrorCode::SelfAddressed, "a signal cannot be addressed to its sender"));
        }
        if let (None, Some(grant)) = (to, &self.grant) {
            grant.check_broadcast()?;
        }
        let kind = shape::classify(data)?;
        self.admission.signal(kind, negotiation_key(room, to), received_at)?;
        let (text, label) = match to {
            Some(_) => (ServerMessage::Signal { room, from: self.id, data }.to_json(), "signal"),
            None => (ServerMessage::Broadcast { room, from: self.id, data }.to_json(), "broadcast"),
        };
        addr.do_send(Relay {
            from: self.id,
            to,
            frame: Bytes::from(text),
            kind: label,
            received_at,
            id: id.map(RawValue::to_owned),
        });
        Ok(())
    }
}

pub(super) fn not_joined(room: &str) -> ProtocolError {
    let shown: String = room.chars().take(64).collect();
    ProtocolError::new(
        ErrorCode::NotJoined,
        format!("not a member of room `{shown}` (join it first and wait for `joined`)"),
    )
}
