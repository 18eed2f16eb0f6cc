//! A TCP proxy the test controls, to break a path the way networks do: a node's connection to
//! Redis (issue 12), a client's socket to its node (issue 13).
//!
//! It listens on a free loopback port and forwards every connection to one target. It runs on
//! a thread and runtime of its own, so sync and async tests drive it alike, and dropping it
//! closes everything it holds.
//!
//! - [`stall`](Proxy::stall): a black hole. Nothing is forwarded in either direction and no new
//!   connection is accepted, but every socket stays open: no FIN, no RST. Bytes already read
//!   (at most one buffer per direction) are held, not lost; the rest waits in the kernel's
//!   socket buffers and then in the sender's, as on a path that stopped carrying packets. A
//!   connection attempted meanwhile completes its handshake in the listener's backlog (the
//!   kernel answers it) and then hears nothing.
//! - [`heal`](Proxy::heal): forwarding resumes where it stopped, nothing lost or reordered.
//!   Connections that arrived during the stall are accepted and forwarded now, unless their
//!   client gave up meanwhile (then their target sees a connection that closes at once).
//! - [`reset`](Proxy::reset): every connection being forwarded is closed with an RST on both
//!   sides (`SO_LINGER` 0). Connections still waiting in the backlog are not touched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Acknowledges that a connection was closed with RST.
type Ack = mpsc::Sender<()>;

pub struct Proxy {
    port: u16,
    control: Arc<Control>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Control {
    /// True while stalled.
    stalled: watch::Sender<bool>,
    /// Every connection being forwarded, by number: where to order it closed with RST.
    conns: Mutex<HashMap<u64, oneshot::Sender<Ack>>>,
}

impl Proxy {
    /// A proxy on a free loopback port (20000..32000, like [`free_port`](crate::free_port))
    /// forwarding to `target` (`host:port`).
    pub fn start(target: &str) -> Proxy {
        let target: SocketAddr = target.parse().unwrap_or_else(|e| panic!("proxy target {target}: {e}"));
        let listener = (0..1000)
            .find_map(|_| std::net::TcpListener::bind(("127.0.0.1", rand::random_range(20_000..32_000))).ok())
            .expect("a free port for the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let control = Arc::new(Control { stalled: watch::Sender::new(false), conns: Mutex::new(HashMap::new()) });
        let (shutdown, stop) = oneshot::channel();
        let shared = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy listener");
                    tokio::select! {
                        _ = stop => {}
                        () = accept(listener, target, shared) => {}
                    }
                });
                // Dropping the runtime drops every connection task and closes its sockets.
            })
            .expect("proxy thread");
        Proxy { port, control, shutdown: Some(shutdown), thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `scheme://127.0.0.1:PORT` (`redis`, `ws`, ...).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops forwarding and accepting; every socket stays open.
    pub fn stall(&self) {
        self.control.stalled.send_replace(true);
    }

    /// Forwards again (see the module's notes).
    pub fn heal(&self) {
        self.control.stalled.send_replace(false);
    }

    /// Closes every connection being forwarded with RST on both sides; returns once they are
    /// closed, with how many it closed.
    pub fn reset(&self) -> usize {
        let conns: Vec<oneshot::Sender<Ack>> =
            self.control.conns.lock().expect("proxy lock").drain().map(|c| c.1).collect();
        let (ack, acked) = mpsc::channel();
        for conn in conns {
            let _ = conn.send(ack.clone());
        }
        drop(ack);
        // Ends once every connection acknowledged or ended by itself (dropping its `Ack`).
        acked.iter().count()
    }

    /// Connections being forwarded (or held by a stall) now.
    pub fn connections(&self) -> usize {
        self.control.conns.lock().expect("proxy lock").len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the proxy is not stalled.
async fn open(gate: &mut watch::Receiver<bool>) {
    // An error means the proxy is being dropped: its runtime ends this task anyway.
    let _ = gate.wait_for(|stalled| !*stalled).await;
}

async fn accept(listener: TcpListener, target: SocketAddr, control: Arc<Control>) {
    let mut gate = control.stalled.subscribe();
    let mut next = 0;
    loop {
        open(&mut gate).await;
        let Ok((client, _)) = listener.accept().await else { continue };
        next += 1;
        let (order, kill) = oneshot::channel();
        control.conns.lock().expect("proxy lock").insert(next, order);
        tokio::spawn(forward(next, client, target, Arc::clone(&control), kill));
    }
}

/// Forwards one connection until both directions end, or until [`Proxy::reset`] kills it.
async fn forward(
    id: u64,
    mut client: TcpStream,
    target: SocketAddr,
    control: Arc<Control>,
    kill: oneshot::Receiver<Ack>,
) {
    let gate = control.stalled.subscribe();
    let mut upstream: Option<TcpStream> = None;
    let killed = tokio::select! {
        Ok(ack) = kill => Some(ack),
        () = async {
            // A connection accepted just as a stall began waits for the heal before going on.
            open(&mut gate.clone()).await;
            let Ok(up) = TcpStream::connect(target).await else { return };
            let up = upstream.insert(up);
            let _ = (client.set_nodelay(true), up.set_nodelay(true));
            let (client_in, client_out) = client.split();
            let (up_in, up_out) = up.split();
            let _ = tokio::try_join!(pipe(client_in, up_out, gate.clone()), pipe(up_in, client_out, gate.clone()));
        } => None,
    };
    control.conns.lock().expect("proxy lock").remove(&id);
    if let Some(ack) = killed {
        for s in std::iter::once(&client).chain(upstream.as_ref()) {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
        drop((client, upstream));
        let _ = ack.send(());
    }
}

/// Copies `from` to `to` while not stalled; passes an end of stream on as a half close.
async fn pipe(mut from: ReadHalf<'_>, mut to: WriteHalf<'_>, mut gate: watch::Receiver<bool>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        open(&mut gate).await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let mut done = 0;
        while done < n {
            open(&mut gate).await;
            match to.write(&buf[done..n]).await? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                written => done += written,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::Proxy;

    fn silent(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
    }

    fn read4(s: &mut TcpStream) -> [u8; 4] {
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("4 bytes");
        buf
    }

    fn accept_within(l: &TcpListener, t: Duration) -> Option<TcpStream> {
        l.set_nonblocking(true).expect("non-blocking");
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Ok((s, _)) = l.accept() {
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn forwards_stalls_without_closing_heals_and_resets() {
        let target = TcpListener::bind("127.0.0.1:0").expect("target");
        let proxy = Proxy::start(&target.local_addr().expect("addr").to_string());
        let mut client = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect");
        client.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let mut server = accept_within(&target, Duration::from_secs(2)).expect("forwarded");
        client.write_all(b"ping").expect("write");
        assert_eq!(&read4(&mut server), b"ping");

        proxy.stall();
        client.write_all(b"held").expect("write");
        server.write_all(b"back").expect("write");
        // Nothing arrives, and neither side sees an end (no FIN, no RST).
        assert!(silent(&mut server) && silent(&mut client));
        // A connection made during the stall is not forwarded yet.
        let mut late = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect");
        assert!(accept_within(&target, Duration::from_millis(300)).is_none());

        proxy.heal();
        assert_eq!(&read4(&mut server), b"held");
        assert_eq!(&read4(&mut client), b"back");
        let mut late_server = accept_within(&target, Duration::from_secs(2)).expect("forwarded after the heal");
        late.write_all(b"late").expect("write");
        assert_eq!(&read4(&mut late_server), b"late");

        assert_eq!(proxy.reset(), 2);
        for s in [&mut client, &mut server, &mut late, &mut late_server] {
            let mut buf = [0u8; 4];
            assert_eq!(s.read(&mut buf).map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
        }
    }
}
