//! The receiving side of the links into this node: order, gaps, duplicates and deadlines.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{STATUS_EAGER, STATUS_EVERY, push_range};
use crate::bus::redis::wire::{self, LinkMsg, Wire};
use crate::bus::{LinkSeq, NodeId};
use crate::metrics::BusMetrics;

/// Messages held behind a gap per link at most, and their bytes: past either, the gap is given
/// up (reported lost) rather than the node's memory.
const MAX_HELD: usize = 4096;
const MAX_HELD_BYTES: usize = 16 << 20;

/// Lost ranges one status reports at most; the rest follow once the sender has settled these.
const MAX_LOST_RANGES: usize = 256;

/// A link with nothing held, nothing lost to report and no traffic for this long is forgotten
/// (the sender's `base` tells a new one where to start).
const IDLE: Duration = Duration::from_secs(600);

/// A status repeats this often while it has losses to report (a status can be lost too).
const REPEAT: Duration = Duration::from_millis(500);

struct Held {
    deadline_us: u64,
    body: Bytes,
}

struct Inlet {
    /// The sending node.
    src: NodeId,
    inc: u64,
    /// The next sequence number to deliver.
    expected: u64,
    held: BTreeMap<u64, Held>,
    held_bytes: usize,
    /// Settled here without delivery; forgotten once the sender's base passes them.
    lost: Vec<(u64, u64)>,
    /// The highest number the sender said it sent (a probe), for a gap at the tail.
    last: u64,
    /// Something was settled since the last status.
    dirty: bool,
    /// The sender needs a status now (a gap, a probe, a duplicate).
    urgent: bool,
    reported: Instant,
    seen: Instant,
}

/// A message released from behind a gap, to deliver.
pub(in crate::bus::redis) struct Released {
    pub src: NodeId,
    pub link: LinkSeq,
    pub deadline_us: u64,
    pub body: Bytes,
}

/// What [`Inlets::receive`] makes of a message.
pub(in crate::bus::redis) enum Received {
    /// Deliver its body now, then whatever [`Inlets::ready`] gives.
    Deliver(LinkSeq),
    /// Not now (held behind a gap) or never (a duplicate, a skip, too late).
    Drop,
}

/// Every link into this node, by sending node. Only the subscriber task uses it.
pub(in crate::bus::redis) struct Inlets {
    node: NodeId,
    links: HashMap<NodeId, Inlet>,
    ready: Vec<Released>,
    metrics: BusMetrics,
}

impl Inlet {
    fn new(src: &str, inc: u64, base: u64) -> Self {
        let now = Instant::now();
        Inlet {
            src: NodeId::from(src),
            inc,
            expected: base.max(1),
            held: BTreeMap::new(),
            held_bytes: 0,
            lost: Vec::new(),
            last: 0,
            dirty: false,
            urgent: false,
            // The first status may go at once.
            reported: now.checked_sub(STATUS_EVERY).unwrap_or(now),
            seen: now,
        }
    }

    /// The sender has settled everything below `base`: nothing before it is owed.
    fn floor(&mut self, base: u64) {
        self.lost.retain(|&(_, end)| end >= base);
        if let Some(first) = self.lost.first_mut() {
            first.0 = first.0.max(base);
        }
        if base > self.expected {
            // Never delivered here, so the sender answered them; what is held below is stale.
            while let Some(e) = self.held.first_entry().filter(|e| *e.key() < base) {
                self.held_bytes -= e.remove().body.len();
            }
            self.expected = base;
            self.dirty = true;
        }
    }

    fn lose(&mut self, seq: u64, metrics: &BusMetrics) {
        metrics.expired.inc();
        push_range(&mut self.lost, seq);
        self.dirty = true;
        self.urgent = true;
    }

    /// Gives up the gap before the first held message: what is missing there is lost.
    fn give_up(&mut self, metrics: &BusMetrics) {
        let Some((&first, _)) = self.held.first_key_value() else { return };
        for seq in self.expected..first {
            self.lose(seq, metrics);
        }
        self.expected = first;
    }
}

impl Inlets {
    pub(in crate::bus::redis) fn new(node: NodeId, metrics: BusMetrics) -> Self {
        Self { node, links: HashMap::new(), ready: Vec::new(), metrics }
    }

    /// One message on the link from `src`.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::bus::redis) fn receive(
        &mut self,
        src: &str,
        inc: u64,
        seq: u64,
        base: u64,
        deadline_us: u64,
        body: &[u8],
    ) -> Received {
        let metrics = &self.metrics;
        match self.links.get(src) {
            // From an earlier process of that node, arriving late: that link is gone.
            Some(l) if inc < l.inc => {
                metrics.duplicates.inc();
                return Received::Drop;
            }
            Some(l) if inc == l.inc => {}
            // A new incarnation of the sender: its earlier link is gone with it.
            _ => {
                self.links.insert(NodeId::from(src), Inlet::new(src, inc, base));
            }
        }
        let Some(link) = self.links.get_mut(src) else { return Received::Drop };
        link.seen = Instant::now();
        let now = wire::now_us();
        link.floor(base);
        // What the sender settled may have been all a held message waited for.
        Self::drain(link, now, metrics, &mut self.ready);
        if seq < link.expected || link.held.contains_key(&seq) {
            // A retransmit that crossed the status which made it unnecessary: nothing to say.
            metrics.duplicates.inc();
            return Received::Drop;
        }
        if seq > link.expected {
            // A new gap is reported at once; what piles up behind it goes with the next status.
            let new_gap = link.held.last_key_value().is_none_or(|(&last, _)| seq > last + 1);
            if link.held.is_empty() {
                metrics.gaps.inc();
            }
            link.urgent |= new_gap;
            link.dirty = true;
            link.held_bytes += body.len();
            link.held.insert(seq, Held { deadline_us, body: Bytes::copy_from_slice(body) });
            if link.held.len() > MAX_HELD || link.held_bytes > MAX_HELD_BYTES {
                link.give_up(metrics);
                Self::drain(link, now, metrics, &mut self.ready);
            }
            return Received::Drop;
        }
        link.expected += 1;
        link.dirty = true;
        let verdict = if body.is_empty() {
            Received::Drop
        } else if deadline_us < now {
            link.lose(seq, metrics);
            Received::Drop
        } else if !self.ready.is_empty() {
            // Messages released just before this one go first.
            let src = link.src.clone();
            let body = Bytes::copy_from_slice(body);
            self.ready.push(Released { src, link: LinkSeq { incarnation: inc, seq }, deadline_us, body });
            Received::Drop
        } else {
            Received::Deliver(LinkSeq { incarnation: inc, seq })
        };
        Self::drain(link, now, metrics, &mut self.ready);
        verdict
    }

    /// Moves what the gap no longer holds back to `ready`, in order.
    fn drain(link: &mut Inlet, now: u64, metrics: &BusMetrics, ready: &mut Vec<Released>) {
        while let Some(e) = link.held.first_entry().filter(|e| *e.key() == link.expected) {
            let seq = *e.key();
            let held = e.remove();
            link.held_bytes -= held.body.len();
            link.expected += 1;
            link.dirty = true;
            if held.body.is_empty() {
                continue;
            }
            if held.deadline_us < now {
                link.lose(seq, metrics);
            } else {
                let (src, deadline_us) = (link.src.clone(), held.deadline_us);
                ready.push(Released {
                    src,
                    link: LinkSeq { incarnation: link.inc, seq },
                    deadline_us,
                    body: held.body,
                });
            }
        }
    }

    /// Messages released from behind a gap, to deliver in this order, with their sender.
    pub(in crate::bus::redis) fn ready(&mut self) -> Vec<Released> {
        std::mem::take(&mut self.ready)
    }

    /// The sender of `src`'s link says it sent up to `last`: report what is missing.
    pub(in crate::bus::redis) fn probe(&mut self, src: &str, inc: u64, last: u64, base: u64) {
        match self.links.get(src) {
            Some(l) if inc < l.inc => return,
            Some(l) if inc == l.inc => {}
            _ => {
                self.links.insert(NodeId::from(src), Inlet::new(src, inc, base));
            }
        }
        let Some(link) = self.links.get_mut(src) else { return };
        link.seen = Instant::now();
        link.floor(base);
        Self::drain(link, wire::now_us(), &self.metrics, &mut self.ready);
        link.last = link.last.max(last);
        link.urgent = true;
    }

    /// Gives up gaps whose time has passed (their messages could no longer be delivered).
    pub(in crate::bus::redis) fn expire(&mut self) {
        let now = wire::now_us();
        for link in self.links.values_mut() {
            if link.held.first_key_value().is_some_and(|(_, h)| h.deadline_us < now) {
                link.give_up(&self.metrics);
                Self::drain(link, now, &self.metrics, &mut self.ready);
            }
        }
        let idle = |l: &Inlet| l.held.is_empty() && l.lost.is_empty() && l.seen.elapsed() > IDLE;
        self.links.retain(|_, l| !idle(l));
    }

    /// True if some link owes its sender a status now (or `eager`: whenever anything changed).
    pub(in crate::bus::redis) fn owed(&self, eager: bool) -> bool {
        self.links.values().any(|l| l.urgent || (l.dirty && l.reported.elapsed() >= Self::wait(eager)))
    }

    fn wait(eager: bool) -> Duration {
        if eager { STATUS_EAGER } else { STATUS_EVERY }
    }

    /// The statuses owed, as (sending node, payload). `eager`: the subscriber is idle, so
    /// acknowledge at once what was delivered.
    pub(in crate::bus::redis) fn statuses(&mut self, eager: bool) -> Vec<(NodeId, Bytes)> {
        let mut out = Vec::new();
        for (src, l) in &mut self.links {
            let repeat = !l.lost.is_empty() && l.reported.elapsed() >= REPEAT;
            let due = l.urgent || repeat || (l.dirty && l.reported.elapsed() >= Self::wait(eager));
            if !due {
                continue;
            }
            let mut upto = l.expected - 1;
            let lost: Vec<(u64, u64)> = l.lost.iter().take(MAX_LOST_RANGES).copied().collect();
            if l.lost.len() > MAX_LOST_RANGES
                && let Some(&(_, end)) = lost.last()
            {
                // Never settle a loss as a delivery: stop where the reported ranges stop.
                upto = end;
            }
            let mut missing = Vec::new();
            let mut from = l.expected;
            for &seq in l.held.keys() {
                if seq > from {
                    missing.push((from, seq - 1));
                }
                from = seq + 1;
                if missing.len() >= 64 {
                    break;
                }
            }
            if l.last >= from && missing.len() < 64 {
                missing.push((from, l.last));
            }
            let status = Wire::Link(LinkMsg::Status { from: &self.node, inc: l.inc, upto, lost, missing });
            out.push((src.clone(), Bytes::from(wire::encode(&status))));
            l.urgent = false;
            l.dirty = false;
            l.reported = Instant::now();
        }
        out
    }
}
