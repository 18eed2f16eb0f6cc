//! Prometheus metrics, served as text at `/metrics`.
//!
//! Label handles are resolved once at start-up into plain counters, so the relay path pays
//! one atomic increment per count and never a label hash or a registry lock.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use switchboard::protocol::ErrorCode;

use crate::dialect::Dialect;

/// Message types counted in and out, per dialect. Anything else counts as `other`.
const V1_TYPES: [&str; 19] = [
    "join",
    "leave",
    "signal",
    "broadcast",
    "ping",
    "welcome",
    "joined",
    "left",
    "peer-joined",
    "peer-left",
    "pong",
    "error",
    "reconnect",
    "ack",
    "peer-state",
    "replay",
    "duplicate",
    "invalid",
    "other",
];
const SEED_TYPES: [&str; 12] = [
    "join",
    "quit",
    "send_offer",
    "send_answer",
    "send_ice_candidate",
    "joined",
    "offer_sdp_received",
    "answer_sdp_received",
    "ice_candidate_received",
    "error",
    "invalid",
    "other",
];

pub struct Metrics {
    registry: Registry,
    pub connections: [IntGauge; 2],
    pub connections_total: [IntCounter; 2],
    pub rooms: IntGauge,
    pub members: IntGauge,
    messages_in: [Vec<IntCounter>; 2],
    messages_out: [Vec<IntCounter>; 2],
    errors: Vec<IntCounter>,
    pub relay_latency: Histogram,
    pub ready: IntGauge,
    /// Sessions whose socket broke without a close, held for a resume.
    pub detached: IntCounter,
    /// Sessions resumed on the node that held them (a new socket after a break).
    pub resumed_here: IntCounter,
    pub bus: BusMetrics,
}

/// The cluster bus's own counters (all zero on the embedded bus).
#[derive(Clone)]
pub struct BusMetrics {
    /// 1 while the bus's connection to Redis is up.
    pub up: IntGauge,
    pub published: IntCounter,
    /// Publishes that reached no subscriber (the target node is gone or not subscribed).
    pub undelivered: IntCounter,
    pub received: IntCounter,
    /// Relays that arrived after their sender's deadline and were dropped.
    pub expired: IntCounter,
    /// From a relay's hand-off to the bus on its sender's node to its arrival here (wall clocks
    /// of two nodes: as good as their clock sync).
    pub transit: Histogram,
    pub errors: IntCounter,
    pub reconnects: IntCounter,
    /// Master switches the sentinels announced (Sentinel only).
    pub failovers: IntCounter,
    pub nodes_lost: IntCounter,
    /// Sessions this node parked while draining (told to reconnect with a resume token).
    pub parked: IntCounter,
    /// Sessions that resumed here (took over a session another node parked).
    pub resumed: IntCounter,
    /// Messages this node sent to other nodes that are not settled yet (delivered or answered).
    pub link_pending: IntGauge,
    /// Gaps a link into this node saw (a message arrived before an earlier one).
    pub gaps: IntCounter,
    /// Messages this node sent again because a receiver reported them missing.
    pub retransmits: IntCounter,
    /// Messages that reached this node more than once (dropped).
    pub duplicates: IntCounter,
    /// Relays from this node answered `undeliverable` because their delivery failed or could
    /// not be confirmed (lost on the way, too late, nobody subscribed, a target not there).
    pub answered: IntCounter,
    /// Relays from other nodes that a room here could not deliver, answered to their sender.
    pub bounced: IntCounter,
    /// Times this node's subscription ended or was torn down (what was in flight is recovered
    /// by the links, or answered).
    pub subscription_cuts: IntCounter,
    /// Messages lost with no answer to anyone. Zero by construction: every drop on the way is
    /// reported back to the sender; alert on any increase.
    pub silent_loss: IntCounter,
    /// Members a room added or removed when its view disagreed with the cluster's records.
    pub repairs: IntCounter,
}

impl BusMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            up: gauge("bus_up", "1 while the cluster bus is connected to Redis.")?,
            published: counter("bus_published_total", "Messages published to other nodes.")?,
            undelivered: counter("bus_undelivered_total", "Publishes that no node received.")?,
            received: counter("bus_received_total", "Messages received from other nodes.")?,
            expired: counter("bus_expired_total", "Relays from other nodes dropped for arriving too late.")?,
            transit: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "bus_transit_seconds",
                        "Time from a relay's hand-off to the bus on another node to its arrival on this one.",
                    )
                    .buckets(vec![0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0]),
                )?;
                registry.register(Box::new(h.clone()))?;
                h
            },
            errors: counter("bus_errors_total", "Cluster bus operations that failed.")?,
            reconnects: counter("bus_reconnects_total", "Lost connections to Redis.")?,
            failovers: counter(
                "bus_failovers_total",
                "Master switches announced by the Redis sentinels (+switch-master), each followed by a reconnect.",
            )?,
            nodes_lost: counter("bus_nodes_lost_total", "Other nodes declared lost (lease expired).")?,
            parked: counter("sessions_parked_total", "Sessions parked for a resume elsewhere while draining.")?,
            resumed: counter(
                "sessions_resumed_total",
                "Sessions resumed here that another node held (after its drain, or a break).",
            )?,
            link_pending: gauge("bus_link_pending", "Messages sent to other nodes and not settled yet.")?,
            gaps: counter("bus_link_gaps_total", "Gaps seen on links from other nodes.")?,
            retransmits: counter("bus_link_retransmits_total", "Messages sent again to a node that missed them.")?,
            duplicates: counter("bus_link_duplicates_total", "Messages from other nodes received twice (dropped).")?,
            answered: counter(
                "bus_answered_total",
                "Relays from this node answered undeliverable: not delivered, or not known to be.",
            )?,
            bounced: counter("bus_bounced_total", "Relays from other nodes a room here could not deliver (answered).")?,
            subscription_cuts: counter("bus_subscription_cuts_total", "Times the cluster subscription was lost.")?,
            silent_loss: counter(
                "bus_silent_loss_total",
                "Messages lost without an answer to their sender (0 by construction: alert on any).",
            )?,
            repairs: counter(
                "membership_repairs_total",
                "Members added or removed when a room's view disagreed with the cluster's records.",
            )?,
        })
    }
}

fn dialect_index(d: Dialect) -> usize {
    match d {
        Dialect::V1 => 0,
        Dialect::Seed => 1,
    }
}

fn types_of(d: Dialect) -> &'static [&'static str] {
    match d {
        Dialect::V1 => &V1_TYPES,
        Dialect::Seed => &SEED_TYPES,
    }
}

impl Metrics {
    pub fn new(node_id: &str) -> Result<Self, prometheus::Error> {
        let registry =
            Registry::new_custom(Some("switchboard".into()), Some([("node".to_string(), node_id.to_string())].into()))?;
        let conns = IntGaugeVec::new(Opts::new("connections", "Open WebSocket sessions."), &["protocol"])?;
        let conns_total =
            IntCounterVec::new(Opts::new("connections_total", "WebSocket sessions opened."), &["protocol"])?;
        let rooms = IntGauge::new("rooms", "Rooms with at least one member on this node.")?;
        let members = IntGauge::new("room_members", "Room memberships held by sessions on this node.")?;
        let msg_in = IntCounterVec::new(
            Opts::new("messages_in_total", "Client messages received, by type."),
            &["protocol", "type"],
        )?;
        let msg_out = IntCounterVec::new(
            Opts::new("messages_out_total", "Messages sent to clients, by type."),
            &["protocol", "type"],
        )?;
        let errors = IntCounterVec::new(Opts::new("errors_total", "Errors reported to clients, by code."), &["code"])?;
        let relay_latency = Histogram::with_opts(
            HistogramOpts::new(
                "relay_latency_seconds",
                "Time from a message's arrival on this node to its hand-off to the receiving socket.",
            )
            .buckets(vec![
                0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                1.0,
            ]),
        )?;
        let ready = IntGauge::new("ready", "1 while the node accepts new sessions.")?;
        let detached = IntCounter::new(
            "sessions_held_total",
            "Sessions whose socket broke without a close frame, held for their client's resume.",
        )?;
        let resumed_here = IntCounter::new(
            "sessions_resumed_in_place_total",
            "Sessions resumed on the node that held them, on a new socket after a break.",
        )?;
        for c in [
            Box::new(conns.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(conns_total.clone()),
            Box::new(rooms.clone()),
            Box::new(members.clone()),
            Box::new(msg_in.clone()),
            Box::new(msg_out.clone()),
            Box::new(errors.clone()),
            Box::new(relay_latency.clone()),
            Box::new(ready.clone()),
            Box::new(detached.clone()),
            Box::new(resumed_here.clone()),
        ] {
            registry.register(c)?;
        }
        let per = |vec: &IntCounterVec, d: Dialect, proto: &str| -> Vec<IntCounter> {
            types_of(d).iter().map(|t| vec.with_label_values(&[proto, t])).collect()
        };
        Ok(Self {
            connections: [conns.with_label_values(&["v1"]), conns.with_label_values(&["seed"])],
            connections_total: [conns_total.with_label_values(&["v1"]), conns_total.with_label_values(&["seed"])],
            rooms,
            members,
            messages_in: [per(&msg_in, Dialect::V1, "v1"), per(&msg_in, Dialect::Seed, "seed")],
            messages_out: [per(&msg_out, Dialect::V1, "v1"), per(&msg_out, Dialect::Seed, "seed")],
            errors: ErrorCode::ALL.iter().map(|c| errors.with_label_values(&[c.as_str()])).collect(),
            relay_latency,
            ready,
            detached,
            resumed_here,
            bus: BusMetrics::new(&registry)?,
            registry,
        })
    }

    fn counter<'a>(set: &'a [Vec<IntCounter>; 2], d: Dialect, kind: &str) -> &'a IntCounter {
        let types = types_of(d);
        let i = types.iter().position(|t| *t == kind).unwrap_or(types.len() - 1);
        &set[dialect_index(d)][i]
    }

    pub fn message_in(&self, d: Dialect, kind: &str) {
        Self::counter(&self.messages_in, d, kind).inc();
    }

    pub fn message_out(&self, d: Dialect, kind: &str) {
        Self::counter(&self.messages_out, d, kind).inc();
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].inc();
        }
    }

    pub fn connection_opened(&self, d: Dialect) {
        self.connections[dialect_index(d)].inc();
        self.connections_total[dialect_index(d)].inc();
    }

    pub fn connection_closed(&self, d: Dialect) {
        self.connections[dialect_index(d)].dec();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
