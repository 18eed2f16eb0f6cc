//! What a v1 session keeps so that a client whose socket broke can resume without losing or
//! repeating a frame: every frame after `welcome` is numbered (`seq`) and kept until the client
//! acknowledges it, within a bound; and the last client message number (`cseq`) it processed,
//! so a message the client sends again is processed once.

use std::collections::VecDeque;

use bytes::Bytes;

/// The bound of what is kept for a client that has not acknowledged it.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub frames: usize,
    pub bytes: usize,
}

/// Frames sent (or to send) to the client, numbered, back to the oldest it has not acknowledged
/// — or as far back as the bound allows.
#[derive(Default)]
pub struct Replay {
    /// The `seq` of `frames[0]`; the next frame gets `first + frames.len()`.
    first: u64,
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The last client `cseq` processed (0: none).
    pub last_cseq: u64,
    /// The client has acknowledged frames: it knows about numbering (an older client never
    /// acknowledges, and resumes only after a drain's `reconnect`).
    acknowledges: bool,
}

/// Why a resume from a given `last_seq` cannot be served.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "the frames after seq {last_seq} are no longer kept (a session keeps at most {} frames / {} bytes its client has not acknowledged)",
        .bound.frames, .bound.bytes
    )]
    Gone { last_seq: u64, bound: BoundShown },
    #[error("last_seq {last_seq} is ahead of the session (its last frame is {sent})")]
    Ahead { last_seq: u64, sent: u64 },
}

/// The bound as an error message shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct BoundShown {
    pub frames: usize,
    pub bytes: usize,
}

impl Replay {
    /// Starts numbering at 1.
    pub fn new() -> Self {
        Self { first: 1, ..Self::default() }
    }

    /// Continues a session that was kept elsewhere: `frames` are numbered from `first`.
    pub fn resumed(first: u64, frames: impl IntoIterator<Item = Bytes>, last_cseq: u64) -> Self {
        let frames: VecDeque<Bytes> = frames.into_iter().collect();
        let bytes = frames.iter().map(Bytes::len).sum();
        Self { first: first.max(1), frames, bytes, last_cseq, acknowledges: true }
    }

    /// The oldest kept frame's `seq` (or the next one's, when nothing is kept).
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The last `seq` given out (0 before the first frame).
    pub fn last_seq(&self) -> u64 {
        self.first + self.frames.len() as u64 - 1
    }

    /// Numbers `frame` and keeps it; forgets the oldest frames past `bound`.
    pub fn push(&mut self, frame: Bytes, bound: Bound) -> u64 {
        let seq = self.first + self.frames.len() as u64;
        self.bytes += frame.len();
        if self.frames.capacity() == 0 {
            // Most sessions keep one or two frames until their next ack: not the default four.
            self.frames.reserve_exact(2);
        }
        self.frames.push_back(frame);
        while self.frames.len() > bound.frames.max(1) || (self.bytes > bound.bytes && self.frames.len() > 1) {
            self.pop();
        }
        seq
    }

    fn pop(&mut self) {
        if let Some(f) = self.frames.pop_front() {
            self.bytes -= f.len();
            self.first += 1;
        }
    }

    /// The client acknowledges every frame up to `seq`.
    pub fn acknowledged(&mut self, seq: u64) {
        self.acknowledges = true;
        self.ack(seq);
    }

    /// Whether the client has ever acknowledged a frame.
    pub fn acknowledges(&self) -> bool {
        self.acknowledges
    }

    /// The client has every frame up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        let seq = seq.min(self.last_seq());
        while self.first <= seq && !self.frames.is_empty() {
            self.pop();
        }
        if self.frames.is_empty() {
            // An idle session keeps no allocation.
            self.frames = VecDeque::new();
        }
    }

    /// Whether a client that has everything up to `last_seq` can be given the rest.
    pub fn check(&self, last_seq: u64, bound: Bound) -> Result<(), ReplayError> {
        if last_seq > self.last_seq() {
            return Err(ReplayError::Ahead { last_seq, sent: self.last_seq() });
        }
        if last_seq + 1 < self.first {
            let bound = BoundShown { frames: bound.frames, bytes: bound.bytes };
            return Err(ReplayError::Gone { last_seq, bound });
        }
        Ok(())
    }

    /// The frames after `last_seq` (after [`check`](Self::check)), with their numbers.
    pub fn after(&self, last_seq: u64) -> impl Iterator<Item = (u64, &Bytes)> {
        let skip = (last_seq + 1).saturating_sub(self.first) as usize;
        (self.first..).zip(self.frames.iter()).skip(skip)
    }

    /// The oldest kept frame's number, and the kept frames (for a session parked for a resume
    /// on another node).
    pub fn export(&self) -> (u64, Vec<String>) {
        (self.first, self.frames.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect())
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Bound = Bound { frames: 4, bytes: 1000 };

    fn frame(n: u64) -> Bytes {
        Bytes::from(format!(r#"{{"n":{n}}}"#))
    }

    fn seqs(r: &Replay, after: u64) -> Vec<u64> {
        r.after(after).map(|(s, _)| s).collect()
    }

    #[test]
    fn numbers_from_one_and_replays_what_follows() {
        let mut r = Replay::new();
        assert_eq!(r.last_seq(), 0);
        assert!(!r.acknowledges(), "an older client never acknowledges");
        assert_eq!(r.check(0, BOUND), Ok(()));
        for n in 1..=3 {
            assert_eq!(r.push(frame(n), BOUND), n);
        }
        assert_eq!(seqs(&r, 0), [1, 2, 3]);
        assert_eq!(seqs(&r, 2), [3]);
        assert!(seqs(&r, 3).is_empty());
        let (_, f) = r.after(1).next().unwrap();
        assert_eq!(&f[..], br#"{"n":2}"#);
    }

    #[test]
    fn acks_free_and_the_bound_forgets_the_oldest() {
        let mut r = Replay::new();
        for n in 1..=6 {
            r.push(frame(n), BOUND);
        }
        // Only 3..=6 are kept: a client that has 2 can resume, one that has 1 cannot.
        assert_eq!(r.check(2, BOUND), Ok(()));
        assert!(matches!(r.check(1, BOUND), Err(ReplayError::Gone { last_seq: 1, .. })));
        assert_eq!(r.check(7, BOUND), Err(ReplayError::Ahead { last_seq: 7, sent: 6 }));
        r.acknowledged(5);
        assert!(r.acknowledges());
        assert_eq!(seqs(&r, 5), [6]);
        r.ack(100);
        assert_eq!((r.last_seq(), r.bytes(), r.frames.capacity()), (6, 0, 0));
        assert_eq!(r.push(frame(7), BOUND), 7);
        // Bytes bound: one frame over it alone is still kept (the latest is never dropped).
        let big = Bytes::from(vec![b'x'; 2000]);
        assert_eq!(r.push(big, BOUND), 8);
        assert_eq!(seqs(&r, 7), [8]);
    }

    #[test]
    fn a_resumed_replay_continues_the_numbering() {
        let r = Replay::resumed(10, [frame(10), frame(11)], 4);
        assert_eq!((r.last_seq(), r.last_cseq), (11, 4));
        assert_eq!(seqs(&r, 9), [10, 11]);
        let (first, frames) = r.export();
        assert_eq!((first, frames.len()), (10, 2));
        let mut empty = Replay::resumed(5, [], 0);
        assert_eq!(empty.last_seq(), 4);
        assert_eq!(empty.push(frame(5), BOUND), 5);
    }
}
