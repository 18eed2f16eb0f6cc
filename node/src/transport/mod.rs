//! The WebSocket transport under a session actor: a frame reader and a bounded writer that run
//! as futures inside the actor's own context.
//!
//! Why not actix-web-actors or actix-ws: the first queues outbound frames in an unbounded
//! buffer with no flush signal; the second is bounded but keeps actix-web's HTTP/1 dispatcher
//! (two 8 KiB buffers) alive under every socket — 16 KiB per idle session measured here. The
//! node takes the TCP stream at the upgrade (actix-http's upgrade hook) and runs actix-http's
//! WebSocket codec over it directly, so that:
//! - an idle session holds no buffer at all (both buffers are released whenever they empty);
//! - the outbound queue is a byte count the session checks on every push: a client that stops
//!   reading is cut off as a slow consumer instead of growing the node's memory;
//! - frames are handed to the actor synchronously, with no channel hop in between.

use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use actix::{Actor, ActorFuture, AsyncContext};
use actix_http::ws::{CloseReason, Codec, Frame, Message, OpCode, Parser, ProtocolError};
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::io::poll_read_buf;

/// Frames handed to the actor per wake-up before the reader yields, so one chatty socket
/// cannot starve the others on its worker thread.
const READ_BUDGET: usize = 32;
/// How much room a read asks for when the buffer is empty.
const READ_CHUNK: usize = 4096;
/// The largest WebSocket frame header: 2 bytes, a 64-bit length, a mask key.
const MAX_FRAME_HEADER: usize = 14;
/// How a numbered frame opens (see `switchboard::protocol::v1::seq_prefix`).
const SEQ_OPEN: &[u8] = b"{\"seq\":";

/// The first allocation of an outbound burst.
const OUTBOX_CHUNK: usize = 8192;

/// The outbound queue: encoded frames waiting for the socket, bounded in bytes, and the
/// socket's write half.
pub struct Outbox {
    /// `None` while the session has no socket (its client's broke; it waits for a resume).
    io: Option<OwnedWriteHalf>,
    buf: BytesMut,
    limit: usize,
    waker: Option<Waker>,
    closing: bool,
    shut: bool,
}

/// The queue passed its bound while the socket would take no more: the client is not reading.
#[derive(Debug)]
pub struct Overflow;

impl Outbox {
    pub fn new(io: OwnedWriteHalf, limit: usize) -> Self {
        Self { io: Some(io), buf: BytesMut::new(), limit, waker: None, closing: false, shut: false }
    }

    /// Lets go of the socket (what was queued for it goes too: the session keeps numbered
    /// frames for a resume itself), first pushing into it what it takes right away.
    pub fn drop_socket(&mut self) {
        self.write_now();
        self.io = None;
        self.buf = BytesMut::new();
        self.closing = false;
        self.shut = false;
        self.waker = None;
    }

    /// Writes to `io` from now on (a resumed client's new socket).
    pub fn attach(&mut self, io: OwnedWriteHalf) {
        self.drop_socket();
        self.io = Some(io);
    }

    pub fn has_socket(&self) -> bool {
        self.io.is_some()
    }

    /// Queues one text frame. Fails, queueing nothing, when it would pass the bound.
    ///
    /// Frames pile up here while the actor handles a burst of messages, before the writer gets
    /// to run; so before calling the client slow, the queue is pushed into the socket. Only a
    /// socket whose kernel buffer is full — a client that really is not reading — overflows.
    pub fn text(&mut self, payload: &[u8]) -> Result<(), Overflow> {
        if self.closing {
            return Ok(());
        }
        if self.buf.len() + payload.len() > self.limit {
            self.write_now();
            if self.buf.len() + payload.len() > self.limit {
                return Err(Overflow);
            }
        }
        if self.buf.capacity() == 0 {
            // A burst usually carries a few frames (an answer and its candidates): one
            // allocation for them instead of a doubling per frame.
            self.buf.reserve((payload.len() + 16).max(OUTBOX_CHUNK));
        }
        Parser::write_message(&mut self.buf, payload, OpCode::Text, true, false);
        self.wake();
        Ok(())
    }

    /// Queues a text frame numbered `seq`: `{"seq":N,` is written in place of the payload's
    /// opening `{` (the payload is shared by every recipient; only this copy is numbered).
    pub fn numbered(&mut self, seq: u64, payload: &[u8]) -> Result<(), Overflow> {
        if self.closing {
            return Ok(());
        }
        let Some(rest) = payload.strip_prefix(b"{") else { return self.text(payload) };
        // `{"seq":` + the digits + `,`, written straight into the buffer (no allocation).
        let digits = seq.checked_ilog10().unwrap_or(0) as usize + 1;
        let len = SEQ_OPEN.len() + digits + 1 + rest.len();
        if self.buf.len() + len > self.limit {
            self.write_now();
            if self.buf.len() + len > self.limit {
                return Err(Overflow);
            }
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve((len + 16).max(OUTBOX_CHUNK));
        }
        // RFC 6455 §5.2, server to client: FIN + text, unmasked, then the length.
        self.buf.put_u8(0x81);
        match len {
            0..=125 => self.buf.put_u8(len as u8),
            126..=0xffff => {
                self.buf.put_u8(126);
                self.buf.put_u16(len as u16);
            }
            _ => {
                self.buf.put_u8(127);
                self.buf.put_u64(len as u64);
            }
        }
        self.buf.extend_from_slice(SEQ_OPEN);
        let _ = write!(self.buf, "{seq},");
        self.buf.extend_from_slice(rest);
        self.wake();
        Ok(())
    }

    /// Queues a control frame; control frames are tiny and never refused.
    pub fn control(&mut self, msg: Message) {
        if self.closing {
            return;
        }
        let mut codec = Codec::new();
        let _ = codec.encode(msg, &mut self.buf);
        self.wake();
    }

    /// Queues a close frame; the writer flushes what is queued, then shuts the socket.
    pub fn close(&mut self, reason: Option<CloseReason>) {
        self.control(Message::Close(reason));
        self.closing = true;
        self.wake();
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Writes what the socket takes right now, without waiting.
    fn write_now(&mut self) {
        let Some(io) = &self.io else { return };
        while !self.buf.is_empty() {
            match io.try_write(&self.buf) {
                Ok(n) if n > 0 => self.buf.advance(n),
                // WouldBlock, or an error the writer will meet and report on its next poll.
                _ => return,
            }
        }
    }

    /// Drives the queue into the socket: `Ready(true)` once closed, `Ready(false)` on a dead
    /// socket, `Pending` while waiting for the socket or for frames.
    fn poll_drain(&mut self, task: &mut Context<'_>) -> Poll<bool> {
        let Some(io) = self.io.as_mut() else { return Poll::Ready(false) };
        while !self.buf.is_empty() {
            match Pin::new(&mut *io).poll_write(task, &self.buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(false),
                Poll::Ready(Ok(n)) => self.buf.advance(n),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Nothing queued: give the allocation back (an idle session holds no buffer).
        if self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        if self.closing {
            if !self.shut {
                match Pin::new(&mut *io).poll_shutdown(task) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(_) => self.shut = true,
                }
            }
            return Poll::Ready(true);
        }
        self.waker = Some(task.waker().clone());
        Poll::Pending
    }
}

/// What a session must offer its transport.
pub trait Connection: Actor<Context = actix::Context<Self>> {
    fn outbox(&mut self) -> &mut Outbox;
    /// One complete frame from the client.
    fn on_frame(&mut self, frame: Frame, ctx: &mut Self::Context);
    /// The client broke the WebSocket framing (bad opcode, oversized frame, unmasked…).
    fn on_protocol_error(&mut self, err: ProtocolError, ctx: &mut Self::Context);
    /// The socket ended: EOF, an I/O error, or the writer finished closing.
    fn on_closed(&mut self, ctx: &mut Self::Context);
}

/// Reads frames off the socket and hands each to the actor.
pub struct Reader {
    io: OwnedReadHalf,
    buf: BytesMut,
    codec: Codec,
    max_frame: usize,
    stopped: Stopped,
}

impl Reader {
    /// `leftover` is what the HTTP parser read past the upgrade request, if anything.
    pub fn new(io: OwnedReadHalf, leftover: BytesMut, max_frame: usize) -> Self {
        let mut buf = BytesMut::new();
        if !leftover.is_empty() {
            buf.extend_from_slice(&leftover);
        }
        Self { io, buf, codec: Codec::new().max_size(max_frame), max_frame, stopped: Stopped::default() }
    }
}

/// Set once a socket's futures are stopped. actix cancels a spawned future lazily (it is
/// removed only after some other future of the actor returns `Pending`), so a reader cancelled
/// while its actor handles a message can still be polled once more in the same pass: without
/// this flag, the old socket's end (a resumed client's stalled path, healing) would be reported
/// as the end of the socket that replaced it.
#[derive(Clone, Default)]
struct Stopped(std::rc::Rc<std::cell::Cell<bool>>);

impl Stopped {
    fn get(&self) -> bool {
        self.0.get()
    }
}

thread_local! {
    /// Each worker reads into one shared buffer; a session keeps bytes of its own only while a
    /// frame is incomplete. Actors on a worker run one at a time, so one buffer serves them all,
    /// and a wake-up costs no allocation.
    static SCRATCH: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}

/// The scratch buffer's size: one read takes up to this much.
const SCRATCH_BYTES: usize = 64 * 1024;

enum Decoded {
    /// Everything decodable was handed over.
    Drained,
    /// The read budget ran out with frames left.
    Budget,
    /// The reader must stop (protocol error or closing).
    Stop,
}

impl Reader {
    /// Hands every complete frame in `buf` to the actor, within `budget`.
    fn decode<A: Connection>(
        stopped: &Stopped,
        codec: &mut Codec,
        buf: &mut BytesMut,
        budget: &mut usize,
        act: &mut A,
        ctx: &mut A::Context,
    ) -> Decoded {
        loop {
            if act.outbox().is_closing() || stopped.get() {
                return Decoded::Stop;
            }
            if *budget == 0 {
                return Decoded::Budget;
            }
            match codec.decode(buf) {
                Ok(Some(frame)) => {
                    act.on_frame(frame, ctx);
                    *budget -= 1;
                }
                Ok(None) => return Decoded::Drained,
                Err(err) => {
                    act.on_protocol_error(err, ctx);
                    return Decoded::Stop;
                }
            }
        }
    }
}

impl<A: Connection> ActorFuture<A> for Reader {
    type Output = ();

    fn poll(self: Pin<&mut Self>, act: &mut A, ctx: &mut A::Context, task: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.stopped.get() {
            return Poll::Ready(());
        }
        let mut budget = READ_BUDGET;
        loop {
            match Self::decode(&this.stopped, &mut this.codec, &mut this.buf, &mut budget, act, ctx) {
                Decoded::Drained => {}
                Decoded::Stop => return Poll::Ready(()),
                Decoded::Budget => {
                    task.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            if !this.buf.is_empty() {
                // An incomplete frame. The codec checks a frame's size only once all of it has
                // arrived, so a frame that declares a gigabyte would be buffered whole: refuse
                // it from its header, and in any case before more than the limit is buffered.
                let declared = declared_payload_len(&this.buf).unwrap_or(0);
                if declared > this.max_frame as u64 || this.buf.len() > this.max_frame + MAX_FRAME_HEADER {
                    act.on_protocol_error(ProtocolError::Overflow, ctx);
                    return Poll::Ready(());
                }
                // Read the rest into the session's own buffer.
                this.buf.reserve(READ_CHUNK);
                match poll_read_buf(Pin::new(&mut this.io), task, &mut this.buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        act.on_closed(ctx);
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Pending => return Poll::Pending,
                }
            }
            // An idle session keeps no read buffer at all.
            if this.buf.capacity() > 0 {
                this.buf = BytesMut::new();
            }
            let mut scratch = SCRATCH.take();
            scratch.clear();
            // Reuses the allocation once the frames split off the last read are gone.
            scratch.reserve(SCRATCH_BYTES);
            let mut closed = false;
            let outcome = match poll_read_buf(Pin::new(&mut this.io), task, &mut scratch) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    closed = true;
                    Some(Poll::Ready(()))
                }
                Poll::Pending => Some(Poll::Pending),
                Poll::Ready(Ok(_)) => {
                    match Self::decode(&this.stopped, &mut this.codec, &mut scratch, &mut budget, act, ctx) {
                        Decoded::Stop => Some(Poll::Ready(())),
                        Decoded::Drained => None,
                        Decoded::Budget => {
                            task.waker().wake_by_ref();
                            Some(Poll::Pending)
                        }
                    }
                }
            };
            if !scratch.is_empty() {
                // Keep what this session still needs; the scratch belongs to the worker.
                this.buf.extend_from_slice(&scratch);
                scratch.clear();
            }
            SCRATCH.set(scratch);
            if closed {
                act.on_closed(ctx);
            }
            match outcome {
                Some(p) => return p,
                None => continue,
            }
        }
    }
}

/// The payload length a frame header declares, once enough of the header has arrived.
fn declared_payload_len(buf: &[u8]) -> Option<u64> {
    let len7 = buf.get(1)? & 0x7f;
    match len7 {
        126 => Some(u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]))),
        127 => Some(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => Some(u64::from(n)),
    }
}

/// Drains the session's outbox into its socket; after a close frame, flushes and shuts the
/// socket down.
pub struct Writer {
    stopped: Stopped,
}

impl<A: Connection> ActorFuture<A> for Writer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, act: &mut A, ctx: &mut A::Context, task: &mut Context<'_>) -> Poll<()> {
        if self.stopped.get() {
            return Poll::Ready(());
        }
        match act.outbox().poll_drain(task) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                act.on_closed(ctx);
                Poll::Ready(())
            }
        }
    }
}

/// The reader and writer futures of one socket, to stop them when the session takes another.
pub struct Running {
    reader: actix::SpawnHandle,
    writer: actix::SpawnHandle,
    stopped: Stopped,
}

impl Running {
    /// Stops both: nothing more is read from the socket or reported about it, from now on.
    pub fn stop<A: Connection>(self, ctx: &mut A::Context) {
        self.stopped.0.set(true);
        ctx.cancel_future(self.reader);
        ctx.cancel_future(self.writer);
    }
}

/// Starts the reader and writer for a freshly upgraded socket inside `ctx`.
pub fn start<A: Connection>(ctx: &mut A::Context, reader: Reader) -> Running {
    // The writer is spawned after the reader so that, within one poll of the actor, frames
    // queued while reading are flushed in the same pass.
    let stopped = reader.stopped.clone();
    let reader = ctx.spawn(reader);
    let writer = ctx.spawn(Writer { stopped: stopped.clone() });
    Running { reader, writer, stopped }
}

#[cfg(test)]
mod tests;
