//! Messages between actors on different worker threads, handed over in batches.
//!
//! Each worker thread runs its actors on a tokio `LocalSet`, which polls the tasks woken on its
//! own thread first and takes one woken from another thread only every 31st poll, or when it has
//! nothing local left. A session's frames come from a room that usually lives on another worker
//! (the room starts where its first member is), so under saturation every such delivery waited
//! behind whatever its worker kept finding to do, and the relay p99 grew with the load (31 ms
//! at 800 rooms on two cores, 23 ms with the post; BENCHMARKS.md, "Fairness under saturation").
//!
//! So every worker has a post: a channel and one task that drains it. A message for an actor on
//! another worker goes into that worker's post; the task, woken once for the whole batch, hands
//! each message to its actor with a same-thread wake, which queues it behind the local work in
//! arrival order. A message for an actor on the sender's own worker goes straight to it.
//!
//! Order: messages one sender sends through one [`Homed`] arrive in the order sent, whichever
//! path they take, because a sender on the target's worker never uses the post and a sender on
//! another worker always does. Mixing a `Homed` and its bare `Addr` for one target would not
//! keep that order, so code that messages a member's session or a session's room goes through
//! the `Homed`.

use std::cell::{Cell, OnceCell};
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Messages the post task hands out per wake-up before it yields to the rest of the worker.
const BATCH: usize = 512;

type Parcel = Box<dyn FnOnce() + Send>;

/// One worker thread's post.
#[derive(Clone)]
struct Post {
    worker: usize,
    tx: UnboundedSender<Parcel>,
}

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
    static POST: OnceCell<Post> = const { OnceCell::new() };
}

/// This thread's worker number (from 1; 0 is never a worker).
fn worker() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    WORKER.with(|w| {
        if w.get() == 0 {
            w.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        w.get()
    })
}

/// This worker's post, its task started on first use. Must be called on an actix arbiter
/// (inside an actor), where the task can be spawned.
fn here() -> Post {
    POST.with(|cell| {
        cell.get_or_init(|| {
            let (tx, rx) = unbounded_channel();
            actix::spawn(deliver(rx));
            Post { worker: worker(), tx }
        })
        .clone()
    })
}

async fn deliver(mut rx: UnboundedReceiver<Parcel>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for parcel in batch.drain(..) {
            parcel();
        }
    }
}

/// An actor's address that knows which worker the actor lives on.
pub struct Homed<A: Actor> {
    addr: Addr<A>,
    post: Post,
}

impl<A: Actor> Clone for Homed<A> {
    fn clone(&self) -> Self {
        Self { addr: self.addr.clone(), post: self.post.clone() }
    }
}

impl<A: Actor> Homed<A> {
    /// `addr`'s actor must live on the calling thread: call this from inside the actor (or one
    /// beside it on the same worker).
    pub fn here(addr: Addr<A>) -> Self {
        Self { addr, post: here() }
    }

    /// Sends `msg` without waiting for an answer, like [`Addr::do_send`]: directly from the
    /// actor's own worker, through its post from any other.
    /// Whether the actor still takes messages (false once it has stopped).
    pub fn connected(&self) -> bool {
        self.addr.connected()
    }

    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        if worker() == self.post.worker {
            return self.addr.do_send(msg);
        }
        let addr = self.addr.clone();
        // A closed post means the worker is gone, and its actors with it: as with `do_send` to a
        // stopped actor, there is no one left to tell.
        let _ = self.post.tx.send(Box::new(move || addr.do_send(msg)));
    }
}

impl<A: Actor> PartialEq<Addr<A>> for Homed<A> {
    fn eq(&self, other: &Addr<A>) -> bool {
        self.addr == *other
    }
}

impl<A: Actor> PartialEq for Homed<A> {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}

impl<A: Actor> Deref for Homed<A> {
    type Target = Addr<A>;
    fn deref(&self) -> &Addr<A> {
        &self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::{Arbiter, Context, System};
    use std::sync::mpsc;

    struct Counter {
        seen: Vec<u32>,
        done: mpsc::Sender<Vec<u32>>,
    }
    impl Actor for Counter {
        type Context = Context<Self>;
    }

    const PER_SENDER: u32 = 5_000;

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Num(u32);

    impl Handler<Num> for Counter {
        type Result = ();
        fn handle(&mut self, Num(n): Num, _: &mut Context<Self>) {
            self.seen.push(n);
            if self.seen.len() == 2 * PER_SENDER as usize {
                let _ = self.done.send(std::mem::take(&mut self.seen));
            }
        }
    }

    /// Messages from one sender arrive in order and complete, from the actor's own worker and
    /// through the post from another, however the two are interleaved.
    #[test]
    fn one_senders_messages_arrive_in_order_across_workers() {
        let (tx, rx) = mpsc::channel();
        let sys = System::new();
        sys.block_on(async move {
            let home = Arbiter::new();
            let away = Arbiter::new();
            let (addr_tx, addr_rx) = mpsc::channel();
            home.spawn_fn(move || {
                let addr = Counter { seen: Vec::new(), done: tx }.start();
                let _ = addr_tx.send(Homed::here(addr));
            });
            let homed: Homed<Counter> = addr_rx.recv().expect("the actor starts");
            let near = homed.clone();
            // Half from the actor's own worker (direct), half from another (posted): each
            // sender's own numbers must stay in order.
            home.spawn_fn(move || (0..PER_SENDER).for_each(|n| near.do_send(Num(n * 2))));
            away.spawn_fn(move || (0..PER_SENDER).for_each(|n| homed.do_send(Num(n * 2 + 1))));
        });
        let seen = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("every message arrives");
        let from = |parity: u32| seen.iter().copied().filter(|n| n % 2 == parity).collect::<Vec<_>>();
        assert_eq!(from(0), (0..PER_SENDER).map(|n| n * 2).collect::<Vec<_>>(), "direct, from the actor's worker");
        assert_eq!(from(1), (0..PER_SENDER).map(|n| n * 2 + 1).collect::<Vec<_>>(), "posted, from another worker");
    }
}
