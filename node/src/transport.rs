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
mod tests {
    use super::declared_payload_len;
    use actix_http::ws::{Frame, ProtocolError};
    use bytes::BytesMut;

    /// A numbered frame decodes as the text `{"seq":N,` + the payload's rest, at every length
    /// encoding.
    #[actix_rt::test]
    async fn numbered_frames_decode_with_their_seq() {
        use actix_http::ws::{Codec, Frame};
        use tokio_util::codec::Decoder;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (_rd, wr) = server.unwrap().0.into_split();
        let mut out = super::Outbox::new(wr, 1 << 20);
        let mut codec = Codec::new().max_size(1 << 20).client_mode();
        for (seq, size) in [(1, 0usize), (9, 100), (10, 200), (u64::MAX, 70_000), (99_999, 104)] {
            let payload = format!(r#"{{"type":"x","pad":"{}"}}"#, "a".repeat(size));
            out.numbered(seq, payload.as_bytes()).unwrap();
            let expected = format!("{}{}", switchboard::protocol::v1::seq_prefix(seq), &payload[1..]);
            let mut buf = bytes::BytesMut::from(&out.buf[..]);
            out.buf.clear();
            let Some(Frame::Text(text)) = codec.decode(&mut buf).unwrap() else { panic!("not a text frame") };
            assert_eq!(&text[..], expected.as_bytes());
            assert!(buf.is_empty(), "the declared length is the payload's");
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
            assert_eq!((v["seq"].as_u64(), v["pad"].as_str().map(str::len)), (Some(seq), Some(size)));
        }
        drop(client);
    }

    /// A socket stopped for another one while its own end is already read must report
    /// nothing more: not its frames, not its end. (It once reported the old socket's end as
    /// the new one's, and a session resumed in place lost the socket it had just taken.) Here
    /// the swap happens inside the old reader's own poll, where it is deterministic; the flag
    /// covers a swap in a message handler alike.
    #[actix_rt::test]
    async fn a_stopped_socket_reports_nothing_about_its_successor() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

        use actix::{Actor, ActorContext, Context};
        use actix_http::ws::{Codec, Message};
        use tokio::io::AsyncWriteExt;
        use tokio::net::{TcpListener, TcpStream};
        use tokio_util::codec::Encoder;

        struct Conn {
            out: super::Outbox,
            io: Option<super::Running>,
            next: Option<TcpStream>,
            frames: Arc<AtomicUsize>,
            closed: Arc<AtomicUsize>,
        }
        impl Actor for Conn {
            type Context = Context<Self>;
        }
        impl super::Connection for Conn {
            fn outbox(&mut self) -> &mut super::Outbox {
                &mut self.out
            }
            /// Each frame swaps the socket for the next one, as a resume does.
            fn on_frame(&mut self, _: Frame, ctx: &mut Context<Self>) {
                self.frames.fetch_add(1, SeqCst);
                if let Some(old) = self.io.take() {
                    old.stop::<Conn>(ctx);
                }
                if let Some(io) = self.next.take() {
                    let (rd, wr) = io.into_split();
                    self.out.attach(wr);
                    self.io = Some(super::start::<Conn>(ctx, super::Reader::new(rd, BytesMut::new(), 1024)));
                }
            }
            fn on_protocol_error(&mut self, _: ProtocolError, ctx: &mut Context<Self>) {
                ctx.stop();
            }
            fn on_closed(&mut self, _: &mut Context<Self>) {
                self.closed.fetch_add(1, SeqCst);
            }
        }

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pair = || async {
            let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
            (client.unwrap(), server.unwrap().0)
        };
        let (mut old_client, old_server) = pair().await;
        let (new_client, new_server) = pair().await;
        // The old client's last two frames and its end are all there before the first read.
        let mut bytes = BytesMut::new();
        let mut codec = Codec::new().client_mode();
        for _ in 0..2 {
            codec.encode(Message::Text("swap".into()), &mut bytes).unwrap();
        }
        old_client.write_all(&bytes).await.unwrap();
        old_client.shutdown().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;

        let (frames, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (rd, wr) = old_server.into_split();
        let (f, c) = (frames.clone(), closed.clone());
        let _conn = Conn::create(move |ctx| {
            let io = super::start::<Conn>(ctx, super::Reader::new(rd, BytesMut::new(), 1024));
            Conn { out: super::Outbox::new(wr, 1 << 16), io: Some(io), next: Some(new_server), frames: f, closed: c }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(frames.load(SeqCst), 1, "the old socket's second frame was read after the swap");
        assert_eq!(closed.load(SeqCst), 0, "the old socket's end was reported as the new one's");
        // The new socket's own end is reported.
        drop(new_client);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(closed.load(SeqCst) >= 1, "the new socket's end was not reported");
    }

    #[test]
    fn reads_declared_lengths_from_partial_headers() {
        assert_eq!(declared_payload_len(&[0x81]), None);
        assert_eq!(declared_payload_len(&[0x81, 0x85]), Some(5));
        assert_eq!(declared_payload_len(&[0x81, 0xfe, 0x01]), None);
        assert_eq!(declared_payload_len(&[0x81, 0xfe, 0x01, 0x00]), Some(256));
        let mut huge = vec![0x81, 0xff];
        huge.extend_from_slice(&(1u64 << 30).to_be_bytes());
        assert_eq!(declared_payload_len(&huge), Some(1 << 30));
        assert_eq!(declared_payload_len(&huge[..6]), None);
    }
}
