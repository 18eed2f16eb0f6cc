//! A WebRTC peer for smoke and load tests, on webrtc-rs (feature `rtc`).
//!
//! [`Peer`] is the seam: callers see JSON signals in and out (the same shapes a browser puts in
//! v1 `signal.data`: `{type, sdp}` and `{candidate, sdpMid, sdpMLineIndex}`), a reliable
//! ordered data channel, synthetic media ([`media`]) and counters — never a webrtc-rs type
//! beyond the data channel handle. Swapping the engine (webrtc 0.17 for the 0.21 line) stays a
//! change inside this module.
//!
//! Negotiation follows *perfect negotiation* (W3C WebRTC §10.7): either side may start one at
//! any time; on an offer collision the impolite peer ignores the remote offer and the polite
//! one rolls back and answers. One limit of webrtc-rs 0.17: it refuses to roll back a local
//! offer (its signaling state machine has no have-local-offer → stable rollback), so a polite
//! peer caught in glare reports the failure instead of yielding; callers that control both
//! sides (like `smoke`) sequence their negotiations. Remote candidates that arrive before the
//! remote description are held and applied after it.

pub mod media;
pub mod signaling;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::data_channel::RTCDataChannel;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::sdp_type::RTCSdpType;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;

use media::{Received, Source};

#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("a signal is not a description or a candidate: {0}")]
    BadSignal(String),
}

/// A STUN or TURN server.
#[derive(Clone, Debug, Default)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// What a peer reports while it runs.
pub enum PeerEvent {
    /// The connection state changed (`connected`, `failed`, ...).
    State(RTCPeerConnectionState),
    /// The remote peer opened a data channel.
    DataChannel(Arc<RTCDataChannel>),
    /// A negotiation this side started failed.
    NegotiationFailed(String),
}

/// Sends signal data to the remote peer (through whatever signaling the caller uses).
pub type SendSignal = Arc<dyn Fn(Value) + Send + Sync>;

struct Negotiation {
    polite: bool,
    making_offer: AtomicBool,
    ignore_offer: AtomicBool,
    /// Remote candidates that came before the remote description.
    pending: Mutex<Vec<RTCIceCandidateInit>>,
    send: SendSignal,
}

pub struct Peer {
    pc: Arc<RTCPeerConnection>,
    neg: Arc<Negotiation>,
    /// What arrived on the remote tracks.
    pub received: Arc<Received>,
    stop: Arc<AtomicBool>,
}

impl Peer {
    /// A peer connection with host candidates (and `ice` servers, if any), and the stream of
    /// what happens to it. `polite` decides who yields on an offer collision; the two sides
    /// must differ.
    pub async fn new(
        polite: bool,
        ice: &[IceServer],
        send: SendSignal,
    ) -> Result<(Peer, mpsc::UnboundedReceiver<PeerEvent>), RtcError> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let registry = register_default_interceptors(Registry::new(), &mut media)?;
        // With trickle ICE the remote's connectivity check often arrives before its candidate
        // does, so the first working pair is peer-reflexive; webrtc-rs waits a full second
        // before nominating such a pair (its default), which one call in ten paid. Browsers
        // nominate it at once, and so does this peer.
        let mut settings = SettingEngine::default();
        settings.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let ice_servers = ice
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration { ice_servers, ..Default::default() }).await?);
        let neg = Arc::new(Negotiation {
            polite,
            making_offer: AtomicBool::new(false),
            ignore_offer: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            send,
        });
        let (tx, events) = mpsc::unbounded_channel();
        let received = Arc::new(Received::default());

        let n = Arc::clone(&neg);
        pc.on_ice_candidate(Box::new(move |c| {
            let n = Arc::clone(&n);
            Box::pin(async move {
                if let Some(Ok(c)) = c.map(|c| c.to_json()) {
                    (n.send)(
                        json!({"candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_mline_index}),
                    );
                }
            })
        }));
        let (weak, n, t) = (Arc::downgrade(&pc), Arc::clone(&neg), tx.clone());
        pc.on_negotiation_needed(Box::new(move || {
            let (weak, n, t) = (weak.clone(), Arc::clone(&n), t.clone());
            Box::pin(async move {
                if let Some(pc) = weak.upgrade()
                    && let Err(e) = offer(&pc, &n).await
                {
                    let _ = t.send(PeerEvent::NegotiationFailed(e.to_string()));
                }
            })
        }));
        let t = tx.clone();
        pc.on_peer_connection_state_change(Box::new(move |s| {
            let _ = t.send(PeerEvent::State(s));
            Box::pin(async {})
        }));
        let t = tx.clone();
        pc.on_data_channel(Box::new(move |dc| {
            let _ = t.send(PeerEvent::DataChannel(dc));
            Box::pin(async {})
        }));
        let r = Arc::clone(&received);
        pc.on_track(Box::new(move |track, _, _| {
            tokio::spawn(Arc::clone(&r).count(track));
            Box::pin(async {})
        }));
        Ok((Peer { pc, neg, received, stop: Arc::new(AtomicBool::new(false)) }, events))
    }

    /// Opens a reliable, ordered data channel (this starts a negotiation).
    pub async fn create_data_channel(&self, label: &str) -> Result<Arc<RTCDataChannel>, RtcError> {
        let init = RTCDataChannelInit { ordered: Some(true), ..Default::default() };
        Ok(self.pc.create_data_channel(label, Some(init)).await?)
    }

    /// Adds a local track and starts sending its frames (this starts a negotiation).
    pub async fn add_source(&self, source: Source) -> Result<(), RtcError> {
        let sender = self.pc.add_track(Arc::clone(&source.track) as _).await?;
        // RTCP must be read for the interceptors (NACK, reports) to work.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });
        tokio::spawn(source.run(Arc::clone(&self.stop)));
        Ok(())
    }

    /// Applies one signal from the remote peer. Call in arrival order.
    pub async fn handle_signal(&self, data: Value) -> Result<(), RtcError> {
        let (pc, neg) = (&self.pc, &self.neg);
        if data.get("sdp").is_some() {
            let desc: RTCSessionDescription =
                serde_json::from_value(data).map_err(|e| RtcError::BadSignal(e.to_string()))?;
            let is_offer = desc.sdp_type == RTCSdpType::Offer;
            let collision = is_offer
                && (neg.making_offer.load(Ordering::SeqCst) || pc.signaling_state() != RTCSignalingState::Stable);
            let ignore = !neg.polite && collision;
            neg.ignore_offer.store(ignore, Ordering::SeqCst);
            if ignore {
                return Ok(());
            }
            if collision {
                // webrtc-rs refuses an empty rollback (its JSEP 5.4 check wants an SDP to parse);
                // the offer being rolled back serves.
                let mut rollback = pc.local_description().await.unwrap_or_default();
                rollback.sdp_type = RTCSdpType::Rollback;
                pc.set_local_description(rollback).await?;
            }
            pc.set_remote_description(desc).await?;
            let held: Vec<_> = std::mem::take(&mut *neg.pending.lock().unwrap_or_else(PoisonError::into_inner));
            for c in held {
                let _ = pc.add_ice_candidate(c).await;
            }
            if is_offer {
                let answer = pc.create_answer(None).await?;
                pc.set_local_description(answer).await?;
                send_local(pc, neg).await;
            }
            return Ok(());
        }
        if data.get("candidate").is_some() {
            let c: RTCIceCandidateInit =
                serde_json::from_value(data).map_err(|e| RtcError::BadSignal(e.to_string()))?;
            if c.candidate.is_empty() {
                return Ok(()); // end of candidates
            }
            if pc.remote_description().await.is_none() {
                neg.pending.lock().unwrap_or_else(PoisonError::into_inner).push(c);
                return Ok(());
            }
            return match pc.add_ice_candidate(c).await {
                Err(_) if neg.ignore_offer.load(Ordering::SeqCst) => Ok(()),
                r => Ok(r?),
            };
        }
        Err(RtcError::BadSignal(data.to_string()))
    }

    /// Stops the media senders and closes the connection.
    pub async fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pc.close().await;
    }
}

/// The negotiation-needed step: create an offer, set it, send it.
async fn offer(pc: &RTCPeerConnection, neg: &Negotiation) -> Result<(), RtcError> {
    neg.making_offer.store(true, Ordering::SeqCst);
    let result = async {
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        send_local(pc, neg).await;
        Ok(())
    }
    .await;
    neg.making_offer.store(false, Ordering::SeqCst);
    result
}

async fn send_local(pc: &RTCPeerConnection, neg: &Negotiation) {
    if let Some(local) = pc.local_description().await {
        (neg.send)(json!({"type": local.sdp_type.to_string(), "sdp": local.sdp}));
    }
}

/// A data channel's messages, as a stream.
pub fn messages(dc: &Arc<RTCDataChannel>) -> mpsc::UnboundedReceiver<Bytes> {
    let (tx, rx) = mpsc::unbounded_channel();
    dc.on_message(Box::new(move |m| {
        let _ = tx.send(m.data);
        Box::pin(async {})
    }));
    rx
}
