//! The links' two sides against each other, with the network in between played by the test:
//! what it drops, repeats or delays.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Inlets, Outboxes, Received};
use crate::bus::redis::wire::{self, Decoded, LinkMsg};
use crate::bus::{BusError, NodeId};
use crate::metrics::{BusMetrics, Metrics};

fn metrics() -> BusMetrics {
    Metrics::new("test").expect("metrics").bus
}

struct Net {
    tx: Outboxes,
    rx: Inlets,
    to: NodeId,
    delivered: Vec<u64>,
}

impl Net {
    fn new() -> Net {
        let m = metrics();
        Net {
            tx: Outboxes::new("a".into(), 7, std::time::Duration::from_secs(1), m.clone()),
            rx: Inlets::new("b".into(), m),
            to: "b".into(),
            delivered: Vec::new(),
        }
    }

    /// Puts message `n` (its body says `n`) on the link; returns its payload and outcome.
    fn send(&mut self, n: u64) -> (Bytes, oneshot::Receiver<Result<(), BusError>>) {
        let (reply, settled) = oneshot::channel();
        let Ok((_, payload)) = self.tx.open(&self.to, &n.to_be_bytes(), reply) else { panic!("link full") };
        (payload, settled)
    }

    fn arrive(&mut self, payload: &[u8]) {
        let Ok(Decoded::Link(LinkMsg::Data { src, inc, seq, base, deadline_us, body })) = wire::decode(payload) else {
            panic!("not data")
        };
        if let Received::Deliver(_) = self.rx.receive(src, inc, seq, base, deadline_us, body) {
            self.delivered.push(u64::from_be_bytes(body.try_into().expect("8 bytes")));
        }
        for r in self.rx.ready() {
            self.delivered.push(u64::from_be_bytes(r.body[..].try_into().expect("8 bytes")));
        }
    }

    /// Carries the receiver's statuses back; returns what the sender sends again.
    fn report(&mut self) -> Vec<Bytes> {
        let mut again = Vec::new();
        // Statuses on one link are at least `STATUS_EAGER` apart.
        std::thread::sleep(super::STATUS_EAGER);
        for (node, payload) in self.rx.statuses(true) {
            assert_eq!(node.as_ref(), "a");
            let Ok(Decoded::Link(LinkMsg::Status { from, inc, upto, lost, missing })) = wire::decode(&payload) else {
                panic!("not a status")
            };
            again.extend(self.tx.status(&from.into(), inc, upto, &lost, &missing));
        }
        again
    }
}

fn outcome(rx: &mut oneshot::Receiver<Result<(), BusError>>) -> Option<Result<(), String>> {
    rx.try_recv().ok().map(|r| r.map_err(|e| e.to_string()))
}

#[test]
fn in_order_messages_are_delivered_and_settled() {
    let mut net = Net::new();
    let mut sent: Vec<_> = (1..=3).map(|n| net.send(n)).collect();
    for (p, _) in &sent {
        net.arrive(&p.clone());
    }
    assert_eq!(net.delivered, [1, 2, 3]);
    assert!(net.report().is_empty());
    for (_, s) in &mut sent {
        assert_eq!(outcome(s), Some(Ok(())));
    }
}

#[test]
fn a_gap_is_filled_by_a_retransmit_and_order_holds() {
    let mut net = Net::new();
    let (p1, mut s1) = net.send(1);
    let (_lost, mut s2) = net.send(2);
    let (p3, mut s3) = net.send(3);
    net.arrive(&p1);
    net.arrive(&p3);
    assert_eq!(net.delivered, [1], "3 waits for 2");
    let again = net.report();
    assert_eq!(again.len(), 1, "2 is sent again");
    net.arrive(&again[0]);
    // A duplicate of 3 changes nothing.
    net.arrive(&p3);
    assert_eq!(net.delivered, [1, 2, 3]);
    assert!(net.report().is_empty());
    for s in [&mut s1, &mut s2, &mut s3] {
        assert_eq!(outcome(s), Some(Ok(())));
    }
}

#[test]
fn a_message_nobody_received_is_answered_and_skipped() {
    let mut net = Net::new();
    let (_p1, mut s1) = net.send(1);
    net.tx.published(&"b".into(), 1, Some(0));
    // Perhaps resubscribing: kept for a while, then answered.
    assert_eq!(outcome(&mut s1), None);
    std::thread::sleep(super::outbox::UNREACHABLE_GRACE);
    net.tx.sweep();
    assert_eq!(outcome(&mut s1), Some(Err("the peer's node is not reachable".into())));
    // The next message's base tells the receiver not to wait for 1.
    let (p2, mut s2) = net.send(2);
    net.arrive(&p2);
    assert_eq!(net.delivered, [2]);
    net.report();
    assert_eq!(outcome(&mut s2), Some(Ok(())));
}

#[test]
fn a_missing_message_already_answered_is_skipped() {
    let mut net = Net::new();
    let (p1, _s1) = net.send(1);
    let (_p2, mut s2) = net.send(2);
    let (p3, mut s3) = net.send(3);
    net.arrive(&p1);
    net.arrive(&p3);
    // The sender answered 2 (its node unreachable for a while) before hearing it is missing.
    net.tx.published(&"b".into(), 2, Some(0));
    std::thread::sleep(super::outbox::UNREACHABLE_GRACE);
    net.tx.sweep();
    let again = net.report();
    assert_eq!(again.len(), 1);
    net.arrive(&again[0]);
    assert_eq!(net.delivered, [1, 3]);
    net.report();
    assert!(matches!(outcome(&mut s2), Some(Err(_))));
    assert_eq!(outcome(&mut s3), Some(Ok(())));
}

#[test]
fn a_message_past_its_deadline_is_not_delivered_but_answered() {
    let mut net = Net::new();
    let (p1, mut s1) = net.send(1);
    let Ok(Decoded::Link(LinkMsg::Data { src, inc, seq, base, body, .. })) = wire::decode(&p1) else { panic!() };
    // Arrives after its deadline.
    assert!(matches!(net.rx.receive(src, inc, seq, base, 1, body), Received::Drop));
    let (p2, mut s2) = net.send(2);
    net.arrive(&p2);
    assert_eq!(net.delivered, [2]);
    net.report();
    assert_eq!(outcome(&mut s1), Some(Err("the peer's node received it too late to deliver".into())));
    assert_eq!(outcome(&mut s2), Some(Ok(())));
}

#[test]
fn a_bounce_is_answered_once() {
    let mut net = Net::new();
    let (p1, mut s1) = net.send(1);
    let (_p2, _s2) = net.send(2);
    net.arrive(&p1);
    // Still unsettled: the bounce answers through the publish itself.
    assert_eq!(net.tx.bounce(&"b".into(), 7, 1, "gone"), super::BounceVerdict::Answered);
    assert_eq!(outcome(&mut s1), Some(Err("gone".into())));
    // Answered already: a second bounce is dropped.
    assert_eq!(net.tx.bounce(&"b".into(), 7, 1, "gone"), super::BounceVerdict::AlreadyAnswered);
    // Settled as delivered: the bounce itself must reach the sender.
    let (p3, _s3) = net.send(3);
    net.tx.published(&"b".into(), 2, Some(0));
    std::thread::sleep(super::outbox::UNREACHABLE_GRACE);
    net.tx.sweep();
    net.arrive(&p3);
    for skip in net.report() {
        net.arrive(&skip);
    }
    net.report();
    assert_eq!(net.delivered, [1, 3]);
    assert_eq!(net.tx.bounce(&"b".into(), 7, 3, "gone"), super::BounceVerdict::Deliver);
}

#[test]
fn a_sender_restarted_starts_a_new_link() {
    let mut net = Net::new();
    let (p1, _) = net.send(1);
    net.arrive(&p1);
    net.tx = Outboxes::new("a".into(), 8, std::time::Duration::from_secs(1), metrics());
    let (p1, mut s1) = net.send(1);
    net.arrive(&p1);
    assert_eq!(net.delivered, [1, 1]);
    net.report();
    assert_eq!(outcome(&mut s1), Some(Ok(())));
}

#[test]
fn a_payload_built_by_appending_the_body_decodes_like_an_encoded_one() {
    for len in [0usize, 1, 127, 128, 300, 70_000] {
        let body = vec![7u8; len];
        let payload = super::data("a", 9, 3, 2, 123, &body);
        let encoded = wire::encode(&wire::Wire::Link(wire::LinkMsg::Data {
            src: "a",
            inc: 9,
            seq: 3,
            base: 2,
            deadline_us: 123,
            body: &body,
        }));
        assert_eq!(&payload[..], &encoded[..], "body of {len} bytes");
    }
}

#[test]
fn a_message_that_reached_no_subscriber_during_a_resubscribe_is_recovered() {
    let mut net = Net::new();
    let (_p1, mut s1) = net.send(1);
    net.tx.published(&"b".into(), 1, Some(0));
    // The receiver is back: the next message shows the gap, and 1 is sent again.
    let (p2, mut s2) = net.send(2);
    net.tx.published(&"b".into(), 2, Some(1));
    net.arrive(&p2);
    let again = net.report();
    assert_eq!(again.len(), 1);
    net.arrive(&again[0]);
    net.report();
    assert_eq!(net.delivered, [1, 2]);
    assert_eq!(outcome(&mut s1), Some(Ok(())));
    assert_eq!(outcome(&mut s2), Some(Ok(())));
}

#[test]
fn messages_released_by_the_senders_base_are_delivered_before_the_next_one() {
    let mut net = Net::new();
    let (_p1, _s1) = net.send(1);
    let (p2, _s2) = net.send(2);
    let (p3, _s3) = net.send(3);
    net.arrive(&p2);
    net.arrive(&p3);
    assert!(net.delivered.is_empty(), "2 and 3 wait for 1");
    // The sender gives up on 1 (its node seemed gone); its next message says so in its base.
    net.tx.published(&"b".into(), 1, Some(0));
    std::thread::sleep(super::outbox::UNREACHABLE_GRACE);
    net.tx.sweep();
    let (p4, _s4) = net.send(4);
    net.arrive(&p4);
    assert_eq!(net.delivered, [2, 3, 4]);
}

#[test]
fn a_node_cut_off_from_redis_answers_nothing_it_sent_until_it_can_hear_again() {
    let mut net = Net::new();
    let (p1, mut s1) = net.send(1);
    // Delivered just before Redis went away; its status never came back.
    net.arrive(&p1);
    net.tx.reachable(false);
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    net.tx.sweep();
    std::thread::sleep(std::time::Duration::from_millis(400));
    net.tx.sweep();
    assert_eq!(outcome(&mut s1), None, "not answered while nothing can be heard");
    // Redis is back: the probe brings the receiver's status, which settles it as delivered.
    net.tx.reachable(true);
    net.tx.sweep();
    net.report();
    assert_eq!(outcome(&mut s1), Some(Ok(())));
}
