//! A change of the node's cluster bus, for clients that asked to hear of it.

use actix::{Context, Handler, Message};
use bytes::Bytes;

use super::Session;

/// A `cluster-status` frame, serialized once for every session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClusterChanged(pub Bytes);

impl Handler<ClusterChanged> for Session {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, ctx: &mut Context<Self>) {
        // Not to a session being handed over: it will get the status of its next node in that
        // node's `welcome`, and this node's, kept for the resume, would arrive after it.
        if !self.cluster_status || self.handoff.is_some() {
            return;
        }
        self.send(msg.0, "cluster-status", ctx);
    }
}
