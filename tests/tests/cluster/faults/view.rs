//! Membership views: each member's view of its room, replayed from the frames it recorded, and
//! the check that every view is its room's open members (checks 4 and 5 of the module's notes).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::SETTLE;
use super::member::{Record, Seen};
use super::scenario::Run;
use crate::cluster::flow::secs;

/// A member's view of its room, replayed from its frames.
#[derive(Default)]
pub struct Replay {
    pub view: BTreeSet<String>,
    /// `(when, peer)` of every change.
    pub changes: Vec<(Duration, String)>,
    /// Frames that contradict the view they arrived in.
    pub contradictions: Vec<String>,
}

impl Record {
    /// `names` maps peer ids to member names, for the messages.
    pub fn replay(&self, names: &BTreeMap<String, String>) -> Replay {
        let name = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
        let mut r = Replay { view: self.listed.iter().cloned().collect(), ..Replay::default() };
        let mut strangers: Vec<(Duration, String)> = Vec::new();
        for (at, seen) in &self.seen {
            match seen {
                Seen::PeerJoined(p) => {
                    if !r.view.insert(p.clone()) {
                        r.contradictions.push(format!("{} peer-joined {}, already in the view", secs(*at), name(p)));
                    }
                    r.changes.push((*at, p.clone()));
                }
                Seen::PeerLeft(p, why) => {
                    if !r.view.remove(p) {
                        r.contradictions.push(format!("{} peer-left {} ({why}), not in the view", secs(*at), name(p)));
                    }
                    r.changes.push((*at, p.clone()));
                }
                Seen::SignalFrom(p) if !r.view.contains(p) => strangers.push((*at, name(p))),
                Seen::SignalFrom(_) => {}
            }
        }
        if let (Some(first), Some(last)) = (strangers.first(), strangers.last()) {
            r.contradictions.push(format!(
                "{} signal(s) from a peer not in the view, {} from {} .. {} from {}",
                strangers.len(),
                secs(first.0),
                first.1,
                secs(last.0),
                last.1
            ));
        }
        r
    }

    /// `joined` and the membership frames, compactly: `joined [..], 2.209s -x1(node-lost), ...`.
    pub fn membership(&self, names: &BTreeMap<String, String>) -> String {
        let name = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
        let listed: Vec<String> = self.listed.iter().map(name).collect();
        let mut out = format!("joined [{}]", listed.join(" "));
        for (at, seen) in &self.seen {
            match seen {
                Seen::PeerJoined(p) => out.push_str(&format!(", {} +{}", secs(*at), name(p))),
                Seen::PeerLeft(p, why) => out.push_str(&format!(", {} -{}({why})", secs(*at), name(p))),
                Seen::SignalFrom(_) => {}
            }
        }
        out
    }
}

impl Run {
    /// Member names by peer id, for the messages.
    pub(super) fn names(&self) -> BTreeMap<String, String> {
        self.members.iter().map(|m| (m.id.clone(), m.name.clone())).collect()
    }

    /// The members of each room whose socket is open.
    fn truth(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &self.members {
            let rec = m.record();
            let room = rooms.entry(m.room.clone()).or_default();
            if rec.closed.is_none() && rec.ended.is_none() {
                room.insert(m.id.clone());
            }
        }
        rooms
    }

    /// Each open member whose view plus itself is not its room's open members, explained.
    pub(super) fn wrong_views(&self) -> Vec<String> {
        let (truth, names) = (self.truth(), self.names());
        let name = |ids: &mut dyn Iterator<Item = &String>| -> String {
            ids.map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone())).collect::<Vec<_>>().join(" ")
        };
        let mut wrong = Vec::new();
        for m in &self.members {
            let Some(room) = truth.get(&m.room).filter(|r| r.contains(&m.id)) else { continue };
            let mut view = m.record().replay(&names).view;
            view.insert(m.id.clone());
            if &view != room {
                wrong.push(format!(
                    "{} (n{}) in {}: missing [{}], ghosts [{}]",
                    m.name,
                    m.node,
                    m.room,
                    name(&mut room.difference(&view)),
                    name(&mut view.difference(room))
                ));
            }
        }
        wrong
    }

    /// Checks 4 and 5 on the members' final records (`wrong_views` taken before they finished),
    /// printing each member's membership frames (but the fresh joiners'); returns how long after
    /// `heal` the last view changed, or `None` if some view was wrong.
    pub(super) fn check_views(
        &self,
        records: &BTreeMap<String, Record>,
        fresh: &BTreeSet<String>,
        wrong_views: &[String],
        problems: &mut Vec<String>,
    ) -> Option<Duration> {
        let names = self.names();
        let mut last_change = Duration::ZERO;
        for m in &self.members {
            let rec = &records[&m.name];
            let replay = rec.replay(&names);
            for c in &replay.contradictions {
                problems.push(format!("{} (n{}) in {}: {c}", m.name, m.node, m.room));
            }
            let last = replay.changes.iter().filter(|(_, p)| !fresh.contains(p)).map(|c| c.0).max();
            if rec.closed.is_none() && !fresh.contains(&m.id) {
                last_change = last_change.max(last.unwrap_or_default().saturating_sub(self.heal));
            }
            if !fresh.contains(&m.id) {
                println!("  {} (n{}) in {}: {}", m.name, m.node, m.room, rec.membership(&names));
            }
        }
        let convergence = wrong_views.is_empty().then_some(last_change);
        match convergence {
            Some(c) => println!(
                "views: every member's view of its room is its open members (= a fresh joiner's view); last change \
                 {} ms after the heal",
                c.as_millis()
            ),
            None => println!("views: {} wrong: {wrong_views:?}", wrong_views.len()),
        }
        problems.extend(wrong_views.iter().map(|w| format!("view {w}")));
        if last_change > SETTLE {
            problems.push(format!(
                "membership converged {} ms after the heal (bound {} ms)",
                last_change.as_millis(),
                SETTLE.as_millis()
            ));
        }
        convergence
    }
}
