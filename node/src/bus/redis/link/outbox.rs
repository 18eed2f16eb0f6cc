//! The sending side of this node's links: what it published and has not yet settled.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{ANSWER_SLACK, PROBE_AFTER, in_ranges};
use crate::bus::redis::wire::{self, LinkMsg, Wire};
use crate::bus::{BusError, NodeId};
use crate::metrics::BusMetrics;

/// Messages one link keeps unsettled at most, and their bytes: past either, new messages are
/// refused (answered at once) rather than sent without a way to recover them.
const MAX_PENDING: usize = 65_536;
const MAX_BYTES: usize = 64 << 20;

/// What one status may have sent again at most (the first message always goes): the
/// statuses that its arrivals bring pace the rest. Resending everything at once could
/// overflow the receiver's subscription again (the very cut being repaired).
const RESEND_BYTES: usize = 128 << 10;
const RESEND_MESSAGES: usize = 256;

/// How long a node may reach no subscriber (Redis cut its subscription; it resubscribes in
/// tens of milliseconds) before it counts as gone and what reached nobody is answered.
pub(super) const UNREACHABLE_GRACE: Duration = Duration::from_millis(500);

/// How long a node cut off from Redis keeps what it sent before the cut unanswered, hoping to
/// learn from the receivers what they delivered; past it, it answers them (a receiver that did
/// deliver one would then have it both delivered and answered: Redis away this long is an
/// outage, not a fault the links ride through).
const GIVE_UP_CUT_OFF: Duration = Duration::from_secs(30);

/// How long the last probe before answering overdue messages waits for a status.
const LAST_WORD: Duration = Duration::from_millis(300);

/// Answers kept for this long, so a bounce for a message already answered is not answered again.
const REMEMBER_ANSWERS: Duration = Duration::from_secs(30);

pub(in crate::bus::redis) type Reply = oneshot::Sender<Result<(), BusError>>;

struct Entry {
    payload: Bytes,
    reply: Reply,
    sent: Instant,
    resent: Option<Instant>,
    /// Its only `PUBLISH` reached no subscriber: it cannot have arrived.
    unheard: bool,
}

/// One link's unsettled messages: `slots[i]` is sequence number `base + i`.
struct Outbox {
    next: u64,
    base: u64,
    slots: VecDeque<Option<Entry>>,
    bytes: usize,
    probed: Option<Instant>,
    /// Since when every `PUBLISH` to the node reached no subscriber.
    unreachable: Option<Instant>,
    /// When the last word was asked for before answering what waited too long (see `sweep`).
    asked: Option<Instant>,
}

impl Outbox {
    fn entry(&mut self, seq: u64) -> Option<&mut Option<Entry>> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)
    }

    fn advance(&mut self) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        if self.slots.is_empty() {
            self.base = self.next;
        }
    }
}

/// What to do with a bounce for a message of this node's.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::bus::redis) enum BounceVerdict {
    /// It was still unsettled: answered now through its publish.
    Answered,
    /// The link answered it already.
    AlreadyAnswered,
    /// It was settled as delivered: its sender must be answered from the bounce itself.
    Deliver,
}

/// Every link from this node, keyed by the receiving node. Owned by the writer task.
pub(in crate::bus::redis) struct Outboxes {
    /// Since when this node's writer has been connected to Redis (`None`: cut off, since
    /// `cut_off`).
    connected: Option<Instant>,
    cut_off: Instant,
    node: NodeId,
    incarnation: u64,
    deadline: Duration,
    boxes: HashMap<NodeId, Outbox>,
    answered: VecDeque<(NodeId, u64, Instant)>,
    metrics: BusMetrics,
}

impl Outboxes {
    pub(in crate::bus::redis) fn new(node: NodeId, incarnation: u64, deadline: Duration, metrics: BusMetrics) -> Self {
        let now = Instant::now();
        Self {
            connected: Some(now),
            cut_off: now,
            node,
            incarnation,
            deadline,
            boxes: HashMap::new(),
            answered: VecDeque::new(),
            metrics,
        }
    }

    /// The writer reached Redis (`true`) or lost it.
    pub(in crate::bus::redis) fn reachable(&mut self, up: bool) {
        match (up, self.connected) {
            (true, None) => self.connected = Some(Instant::now()),
            (false, Some(_)) => {
                self.connected = None;
                self.cut_off = Instant::now();
            }
            _ => {}
        }
    }

    fn cut_off_for(&self, now: Instant) -> Duration {
        if self.connected.is_some() { Duration::ZERO } else { now - self.cut_off }
    }

    /// Puts `body` on the link to `to`: its sequence number and the payload to publish, or the
    /// reply back if the link is full.
    pub(in crate::bus::redis) fn open(
        &mut self,
        to: &NodeId,
        body: &[u8],
        reply: Reply,
    ) -> Result<(u64, Bytes), Reply> {
        let b = self.boxes.entry(to.clone()).or_insert_with(|| Outbox {
            next: 1,
            base: 1,
            slots: VecDeque::new(),
            bytes: 0,
            probed: None,
            unreachable: None,
            asked: None,
        });
        if b.slots.len() >= MAX_PENDING || b.bytes + body.len() > MAX_BYTES {
            return Err(reply);
        }
        let seq = b.next;
        b.next += 1;
        let deadline_us = wire::now_us() + self.deadline.as_micros() as u64;
        let payload = super::data(&self.node, self.incarnation, seq, b.base, deadline_us, body);
        b.bytes += payload.len();
        b.slots.push_back(Some(Entry {
            payload: payload.clone(),
            reply,
            sent: Instant::now(),
            resent: None,
            unheard: false,
        }));
        self.metrics.link_pending.inc();
        Ok((seq, payload))
    }

    /// `PUBLISH` of `seq` to `to` reached `receivers` subscribers (`None`: unknown, the
    /// pipeline failed). None at all: it has not arrived. If the node has been unreachable for
    /// [`UNREACHABLE_GRACE`] it is gone: answer now; else it may be resubscribing (Redis cut
    /// it): keep the message for the node to ask for it again.
    pub(in crate::bus::redis) fn published(&mut self, to: &NodeId, seq: u64, receivers: Option<i64>) {
        let Some(b) = self.boxes.get_mut(to) else { return };
        match receivers {
            Some(0) => {
                let since = *b.unreachable.get_or_insert_with(Instant::now);
                if since.elapsed() >= UNREACHABLE_GRACE {
                    self.settle(to, seq, Some(BusError::NodeGone));
                } else if let Some(Some(e)) = b.entry(seq) {
                    e.unheard = true;
                }
            }
            Some(_) => b.unreachable = None,
            None => {}
        }
    }

    fn settle(&mut self, to: &NodeId, seq: u64, lost: Option<BusError>) {
        let Some(b) = self.boxes.get_mut(to) else { return };
        let Some(slot) = b.entry(seq) else { return };
        let Some(e) = slot.take() else { return };
        b.bytes -= e.payload.len();
        self.metrics.link_pending.dec();
        let _ = e.reply.send(match lost {
            None => Ok(()),
            Some(e) => {
                self.metrics.answered.inc();
                self.answered.push_back((to.clone(), seq, Instant::now()));
                Err(e)
            }
        });
        b.advance();
    }

    /// A receiver's status: settles what it covers and returns what to send it again.
    pub(in crate::bus::redis) fn status(
        &mut self,
        from: &NodeId,
        inc: u64,
        upto: u64,
        lost: &[(u64, u64)],
        missing: &[(u64, u64)],
    ) -> Vec<Bytes> {
        if inc != self.incarnation {
            return Vec::new();
        }
        let Some(b) = self.boxes.get_mut(from) else { return Vec::new() };
        b.unreachable = None;
        b.asked = None;
        let (base, next) = (b.base, b.next);
        for seq in base..=upto.min(next.saturating_sub(1)) {
            let why = in_ranges(lost, seq).then(|| lost_err("the peer's node received it too late to deliver"));
            self.settle(from, seq, why);
        }
        let mut again = Vec::new();
        let Some(b) = self.boxes.get_mut(from) else { return again };
        let now = Instant::now();
        let mut budget = RESEND_BYTES;
        'ranges: for &(first, last) in missing {
            for seq in first.max(1)..=last.min(next.saturating_sub(1)) {
                match b.entry(seq) {
                    Some(Some(e)) => {
                        // Once per probe interval at most: a status repeats what is missing.
                        if e.resent.is_none_or(|t| now - t >= PROBE_AFTER) {
                            if budget < e.payload.len() && budget < RESEND_BYTES {
                                break 'ranges;
                            }
                            budget = budget.saturating_sub(e.payload.len());
                            e.resent = Some(now);
                            // Sent again, it may arrive now: only its receiver can settle it.
                            e.unheard = false;
                            again.push(e.payload.clone());
                            self.metrics.retransmits.inc();
                        }
                    }
                    // Settled here already (answered): the receiver may move past it.
                    _ => again.push(skip(&self.node, self.incarnation, seq, b.base)),
                }
                if again.len() >= RESEND_MESSAGES {
                    break 'ranges;
                }
            }
        }
        again
    }

    /// A receiver could not deliver `seq` after the link had: answer it once.
    pub(in crate::bus::redis) fn bounce(&mut self, from: &NodeId, inc: u64, seq: u64, why: &str) -> BounceVerdict {
        if inc != self.incarnation {
            return BounceVerdict::Deliver;
        }
        if let Some(Some(Some(_))) = self.boxes.get_mut(from).map(|b| b.entry(seq)) {
            self.settle(from, seq, Some(lost_err(why)));
            return BounceVerdict::Answered;
        }
        if self.answered.iter().any(|(n, s, _)| n == from && *s == seq) {
            return BounceVerdict::AlreadyAnswered;
        }
        BounceVerdict::Deliver
    }

    /// Answers what waited too long for a word, and returns the probes to send.
    pub(in crate::bus::redis) fn sweep(&mut self) -> Vec<(NodeId, Bytes)> {
        let now = Instant::now();
        while self.answered.front().is_some_and(|(_, _, t)| now - *t > REMEMBER_ANSWERS) {
            self.answered.pop_front();
        }
        let give_up = self.deadline + ANSWER_SLACK;
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        let mut probes = Vec::new();
        let cut_off = self.connected.is_none();
        let cut_off_for = self.cut_off_for(now);
        for (node, b) in &mut self.boxes {
            if b.unreachable.is_some_and(|t| now - t >= UNREACHABLE_GRACE) {
                for (i, slot) in b.slots.iter().enumerate() {
                    if slot.as_ref().is_some_and(|e| e.unheard) {
                        gone.push((node.clone(), b.base + i as u64));
                    }
                }
            }
            let mut oldest = None;
            let mut overdue = Vec::new();
            for (i, slot) in b.slots.iter().enumerate() {
                let Some(e) = slot else { continue };
                if now - e.sent >= give_up {
                    overdue.push((node.clone(), b.base + i as u64));
                } else {
                    oldest = oldest.or(Some(e.sent));
                    break;
                }
            }
            // Before answering, ask once more and give the answer time to come: this node may
            // itself have been paused with the receiver's status waiting in its socket.
            let mut ask = false;
            // Cut off from Redis, this node cannot hear the receiver: what it delivered meanwhile
            // is only known once Redis is back. Past `GIVE_UP_CUT_OFF` without Redis, answer.
            let hopeless = !overdue.is_empty() && cut_off && cut_off_for >= GIVE_UP_CUT_OFF;
            if cut_off {
                b.asked = None;
            }
            if hopeless {
                expired.extend(overdue);
            } else if !overdue.is_empty() && !cut_off {
                match b.asked {
                    Some(t) if now - t >= LAST_WORD => {
                        expired.extend(overdue);
                        b.asked = None;
                    }
                    Some(_) => {}
                    None => {
                        b.asked = Some(now);
                        ask = true;
                    }
                }
            }
            let quiet = oldest.is_some_and(|t| now - t >= PROBE_AFTER);
            if ask || (quiet && b.probed.is_none_or(|t| now - t >= PROBE_AFTER)) {
                b.probed = Some(now);
                let probe = Wire::Link(LinkMsg::Probe {
                    src: &self.node,
                    inc: self.incarnation,
                    last: b.next - 1,
                    base: b.base,
                });
                probes.push((node.clone(), Bytes::from(wire::encode(&probe))));
            }
        }
        for (node, seq) in gone {
            self.settle(&node, seq, Some(BusError::NodeGone));
        }
        for (node, seq) in expired {
            self.settle(&node, seq, Some(lost_err("no word from the peer's node in time")));
        }
        probes
    }
}

fn lost_err(why: &str) -> BusError {
    BusError::Lost(why.to_string())
}

/// A message with no body: the receiver moves past `seq`, which the sender answered itself.
fn skip(node: &str, inc: u64, seq: u64, base: u64) -> Bytes {
    super::data(node, inc, seq, base, 0, &[])
}
