//! The transport's tests: frames as the codec reads them, and sockets swapped under a session.

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
