//! A WebRTC peer for smoke and load tests (feature `rtc`).
//!
//! This module is the seam between the `switchboard-peer` subcommands and a WebRTC engine.
//! Callers see [`RtcPeer`] and [`RtcChannel`]: JSON signals in and out (the same shapes a browser
//! puts in v1 `signal.data`: `{type, sdp}` and `{candidate, sdpMid, sdpMLineIndex}`), a reliable
//! ordered data channel, media from [`media::Source`]s and counters of what arrived — never an
//! engine type. [`Peer`] names the engine in use: webrtc-rs 0.17 ([`webrtc17`]); the 0.21 line
//! (sans-io core, event-handler API) would be a second implementation of the same two traits
//! (`BENCHMARKS.md` has why 0.17 is the one: its loopback connect is faster here).
//!
//! Negotiation follows *perfect negotiation* (W3C WebRTC §10.7): either side may start one at
//! any time; on an offer collision the impolite peer ignores the remote offer and the polite
//! one rolls back and answers. One limit of webrtc-rs 0.17: it refuses to roll back a local
//! offer (its signaling state machine has no have-local-offer → stable rollback), so a polite
//! peer caught in glare reports the failure instead of yielding; callers sequence their
//! negotiations so that glare does not happen (in a room, the later joiner offers; the one
//! already there adds its own media only once connected). Remote candidates that arrive before
//! the remote description are held and applied after it.

pub mod ledger;
pub mod media;
pub mod signaling;
pub mod webrtc17;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use media::{Received, Source};

/// The engine `switchboard-peer` runs on.
pub type Peer = webrtc17::Peer;
/// Its data channel.
pub type DataChannel = <Peer as RtcPeer>::Channel;

/// What can go wrong in a peer. `code()` is a stable, kebab-case name for reports.
#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    /// The engine refused an operation (its own message).
    #[error("webrtc: {0}")]
    Engine(String),
    #[error("a signal is not a description or a candidate: {0}")]
    BadSignal(String),
    /// A text message to send is not UTF-8 (a text message arriving so is passed on as is, but
    /// webrtc-rs sends text only from a `String`).
    #[error("a text data-channel message is not UTF-8")]
    NotUtf8,
}

impl RtcError {
    pub fn code(&self) -> &'static str {
        match self {
            RtcError::Engine(_) => "engine",
            RtcError::BadSignal(_) => "bad-signal",
            RtcError::NotUtf8 => "not-utf8",
        }
    }
}

/// A STUN or TURN server.
#[derive(Clone, Debug, Default)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

impl From<crate::api::IceServer> for IceServer {
    fn from(s: crate::api::IceServer) -> Self {
        IceServer {
            urls: s.urls,
            username: s.username.unwrap_or_default(),
            credential: s.credential.unwrap_or_default(),
        }
    }
}

/// How a peer connection finds its way to the other side.
#[derive(Clone, Debug, Default)]
pub struct PeerConfig {
    pub ice_servers: Vec<IceServer>,
    /// Gather and use relay (TURN) candidates only: the call connects through a TURN server or
    /// not at all (`iceTransportPolicy: "relay"`).
    pub relay_only: bool,
}

/// `RTCPeerConnectionState`, engine-neutral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl ConnectionState {
    /// The W3C name (`connected`, `failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::New => "new",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Failed => "failed",
            ConnectionState::Closed => "closed",
        }
    }
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a peer reports while it runs.
pub enum PeerEvent<C> {
    /// The connection state changed.
    State(ConnectionState),
    /// The remote peer opened a data channel.
    DataChannel(C),
    /// A negotiation this side started failed.
    NegotiationFailed(String),
}

/// One data-channel message and its kind: a browser's `send("…")` arrives as text and
/// `send(ArrayBuffer)` as binary (SCTP payload protocol ids 51 and 53), and its `onmessage` hands
/// the two over as a string or an `ArrayBuffer`, so whoever answers must keep the kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub data: Bytes,
    /// Sent as text (a string); the bytes are then its UTF-8.
    pub text: bool,
}

impl Message {
    pub fn binary(data: Bytes) -> Self {
        Message { data, text: false }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Message { data: Bytes::from(text.into()), text: true }
    }
}

/// What happens on a data channel.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    Open,
    Message(Message),
    Closed,
}

/// The stream of a peer's events.
pub type PeerEvents<C> = mpsc::UnboundedReceiver<PeerEvent<C>>;

/// Sends signal data to the remote peer (through whatever signaling the caller uses).
pub type SendSignal = Arc<dyn Fn(Value) + Send + Sync>;

/// One peer connection to one remote peer.
pub trait RtcPeer: Sized + Send + Sync + 'static {
    type Channel: RtcChannel;

    /// A peer connection with host candidates (and `config`'s ICE servers), and the stream of
    /// what happens to it. `polite` decides who yields on an offer collision; the two sides
    /// must differ. Local descriptions and candidates go out through `send` as they come.
    fn new(
        polite: bool,
        config: &PeerConfig,
        send: SendSignal,
    ) -> impl Future<Output = Result<(Self, PeerEvents<Self::Channel>), RtcError>> + Send;

    /// Opens a reliable, ordered data channel (this starts a negotiation).
    fn create_data_channel(&self, label: &str) -> impl Future<Output = Result<Self::Channel, RtcError>> + Send;

    /// Opens a data channel (when `label` is given) and adds `sources` in one negotiation: one
    /// offer for all of it. Separately, each change starts a negotiation of its own, and one
    /// that lags behind the answer makes a second offer that can meet the other side's.
    fn add(
        &self,
        label: Option<&str>,
        sources: Vec<Source>,
    ) -> impl Future<Output = Result<Option<Self::Channel>, RtcError>> + Send;

    /// Adds a local track and starts sending the source's frames (this starts a negotiation).
    fn add_source(&self, source: Source) -> impl Future<Output = Result<(), RtcError>> + Send;

    /// Applies one signal from the remote peer. Call in arrival order.
    fn handle_signal(&self, data: Value) -> impl Future<Output = Result<(), RtcError>> + Send;

    /// What arrived on the remote tracks so far.
    fn received(&self) -> &Arc<Received>;

    /// The connection's state now.
    fn connection_state(&self) -> ConnectionState;

    /// Restarts ICE (`restartIce()`): new credentials, new candidates, and a negotiation this
    /// side offers (perfect negotiation's rules apply to it like to any other). The same
    /// connection goes on: tracks, data channels and DTLS stay.
    fn restart_ice(&self) -> impl Future<Output = Result<(), RtcError>> + Send;

    /// Stops the media senders and closes the connection.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// A reliable, ordered data channel.
pub trait RtcChannel: Clone + Send + Sync + 'static {
    /// Sends one binary message.
    fn send(&self, data: &Bytes) -> impl Future<Output = Result<(), RtcError>> + Send;

    /// Sends one message as what it is, text or binary.
    fn send_message(&self, message: &Message) -> impl Future<Output = Result<(), RtcError>> + Send;

    /// The channel's events from now on. One consumer per channel: a second call takes the
    /// events away from the first.
    fn events(&self) -> mpsc::UnboundedReceiver<ChannelEvent>;
}
