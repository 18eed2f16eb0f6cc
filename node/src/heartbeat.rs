//! The node-wide heartbeat: every `--heartbeat-secs`, each session pings its client or, if
//! nothing arrived within `--idle-timeout-secs`, closes it (code 4000).

use std::sync::Arc;

use crate::session::Heartbeat;
use crate::state::NodeState;

pub async fn run(state: Arc<NodeState>) {
    let mut tick = tokio::time::interval(state.config.heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for session in state.sessions.all() {
            session.do_send(Heartbeat);
        }
    }
}
