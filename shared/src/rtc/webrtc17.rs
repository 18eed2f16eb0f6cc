//! The engine: webrtc-rs 0.17 (callbacks on an `RTCPeerConnection`, one tokio task per
//! transport). Everything that names a webrtc-rs type lives here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::data_channel::RTCDataChannel;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::sdp_type::RTCSdpType;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::signaling_state::RTCSignalingState;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_remote::TrackRemote;

use super::media::{Kind, Received, Source};
use super::{
    ChannelEvent, ConnectionState, Message, PeerConfig, PeerEvent, PeerEvents, RtcChannel, RtcError, RtcPeer,
    SendSignal,
};

impl From<webrtc::Error> for RtcError {
    fn from(e: webrtc::Error) -> Self {
        RtcError::Engine(e.to_string())
    }
}

/// How often the ICE agent checks while connecting (webrtc-ice's default: 200 ms).
const CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Checks per candidate pair before it fails: webrtc-ice's 7 at 200 ms, the same 1.4 s at 20 ms.
const CHECKS_PER_PAIR: u16 = 70;

fn state(s: RTCPeerConnectionState) -> ConnectionState {
    match s {
        RTCPeerConnectionState::Connecting => ConnectionState::Connecting,
        RTCPeerConnectionState::Connected => ConnectionState::Connected,
        RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
        RTCPeerConnectionState::Failed => ConnectionState::Failed,
        RTCPeerConnectionState::Closed => ConnectionState::Closed,
        RTCPeerConnectionState::New | RTCPeerConnectionState::Unspecified => ConnectionState::New,
    }
}

struct Negotiation {
    polite: bool,
    /// Set while `add` makes several changes: negotiation-needed then only notes it, and `add`
    /// offers once at the end.
    held: AtomicBool,
    wanted: AtomicBool,
    making_offer: AtomicBool,
    ignore_offer: AtomicBool,
    /// Remote candidates that came before the remote description.
    pending: Mutex<Vec<RTCIceCandidateInit>>,
    send: SendSignal,
}

/// A peer connection on webrtc-rs 0.17.
pub struct Peer {
    pc: Arc<RTCPeerConnection>,
    neg: Arc<Negotiation>,
    received: Arc<Received>,
    stop: Arc<AtomicBool>,
}

/// A data channel on webrtc-rs 0.17.
#[derive(Clone)]
pub struct Channel(Arc<RTCDataChannel>);

impl RtcChannel for Channel {
    async fn send(&self, data: &Bytes) -> Result<(), RtcError> {
        self.0.send(data).await?;
        Ok(())
    }

    async fn send_message(&self, message: &Message) -> Result<(), RtcError> {
        if !message.text {
            return self.send(&message.data).await;
        }
        let text = std::str::from_utf8(&message.data).map_err(|_| RtcError::NotUtf8)?;
        self.0.send_text(text).await?;
        Ok(())
    }

    fn events(&self) -> mpsc::UnboundedReceiver<ChannelEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let t = tx.clone();
        self.0.on_open(Box::new(move || {
            let _ = t.send(ChannelEvent::Open);
            Box::pin(async {})
        }));
        let t = tx.clone();
        self.0.on_message(Box::new(move |m| {
            let _ = t.send(ChannelEvent::Message(Message { data: m.data, text: m.is_string }));
            Box::pin(async {})
        }));
        self.0.on_close(Box::new(move || {
            let _ = tx.send(ChannelEvent::Closed);
            Box::pin(async {})
        }));
        rx
    }
}

impl RtcPeer for Peer {
    type Channel = Channel;

    async fn new(polite: bool, config: &PeerConfig, send: SendSignal) -> Result<(Peer, PeerEvents<Channel>), RtcError> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let registry = register_default_interceptors(webrtc::interceptor::registry::Registry::new(), &mut media)?;
        // With trickle ICE the remote's connectivity check often arrives before its candidate
        // does, so the first working pair is peer-reflexive; webrtc-rs waits a full second
        // before nominating such a pair (its default), which one call in ten paid. Browsers
        // nominate it at once, and so does this peer.
        let mut settings = SettingEngine::default();
        settings.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
        // Unless the other side's check happens to trigger it, the controlling side nominates a
        // pair that succeeded only on the agent's next check run, every 200 ms by default (a
        // lone call took ~12 ms or ~210 ms; BENCHMARKS.md). Every 20 ms instead, with 10× the
        // checks per pair so that a pair is still tried for 1.4 s before it counts as failed.
        // (Setters of our webrtc patch: patches/webrtc-0.17.2/PATCH.md.)
        settings.set_ice_check_interval(Some(CHECK_INTERVAL));
        settings.set_ice_max_binding_requests(Some(CHECKS_PER_PAIR));
        // A relay pair waits 2 s by default, in case a direct pair turns up; relay-only, none
        // can, so the wait is only delay.
        if config.relay_only {
            settings.set_relay_acceptance_min_wait(Some(Duration::ZERO));
        }
        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let ice_servers = config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let ice_transport_policy =
            if config.relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
        let pc = Arc::new(
            api.new_peer_connection(RTCConfiguration { ice_servers, ice_transport_policy, ..Default::default() })
                .await?,
        );
        let neg = Arc::new(Negotiation {
            polite,
            held: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
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
                if n.held.load(Ordering::SeqCst) {
                    n.wanted.store(true, Ordering::SeqCst);
                    return;
                }
                if let Some(pc) = weak.upgrade()
                    && let Err(e) = offer(&pc, &n).await
                {
                    let _ = t.send(PeerEvent::NegotiationFailed(e.to_string()));
                }
            })
        }));
        let t = tx.clone();
        pc.on_peer_connection_state_change(Box::new(move |s| {
            let _ = t.send(PeerEvent::State(state(s)));
            Box::pin(async {})
        }));
        let t = tx.clone();
        pc.on_data_channel(Box::new(move |dc| {
            let _ = t.send(PeerEvent::DataChannel(Channel(dc)));
            Box::pin(async {})
        }));
        let r = Arc::clone(&received);
        pc.on_track(Box::new(move |track, _, _| {
            tokio::spawn(count(Arc::clone(&r), track));
            Box::pin(async {})
        }));
        Ok((Peer { pc, neg, received, stop: Arc::new(AtomicBool::new(false)) }, events))
    }

    async fn create_data_channel(&self, label: &str) -> Result<Channel, RtcError> {
        let init = RTCDataChannelInit { ordered: Some(true), ..Default::default() };
        Ok(Channel(self.pc.create_data_channel(label, Some(init)).await?))
    }

    async fn add(&self, label: Option<&str>, sources: Vec<Source>) -> Result<Option<Channel>, RtcError> {
        self.neg.held.store(true, Ordering::SeqCst);
        let added = async {
            let channel = match label {
                Some(l) => Some(self.create_data_channel(l).await?),
                None => None,
            };
            for s in sources {
                self.add_source(s).await?;
            }
            Ok(channel)
        }
        .await;
        self.neg.held.store(false, Ordering::SeqCst);
        if self.neg.wanted.swap(false, Ordering::SeqCst) {
            offer(&self.pc, &self.neg).await?;
        }
        added
    }

    async fn add_source(&self, source: Source) -> Result<(), RtcError> {
        let mime = match source.kind {
            Kind::Video => MIME_TYPE_VP8,
            Kind::Audio => MIME_TYPE_OPUS,
        };
        let cap = RTCRtpCodecCapability { mime_type: mime.to_owned(), ..Default::default() };
        let track = Arc::new(TrackLocalStaticSample::new(cap, source.id.clone(), "switchboard-peer".to_owned()));
        let sender = self.pc.add_track(Arc::clone(&track) as _).await?;
        // RTCP must be read for the interceptors (NACK, reports) to work.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });
        tokio::spawn(play(track, source, Arc::clone(&self.stop)));
        Ok(())
    }

    async fn handle_signal(&self, data: Value) -> Result<(), RtcError> {
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

    fn received(&self) -> &Arc<Received> {
        &self.received
    }

    fn connection_state(&self) -> ConnectionState {
        state(self.pc.connection_state())
    }

    async fn restart_ice(&self) -> Result<(), RtcError> {
        // `RTCPeerConnection::restart_ice` restarts the agent but raises no negotiation-needed
        // in webrtc-rs 0.17 (its check does not look at ICE credentials), so the offer is made
        // here, with `ice_restart` (new ufrag and password, gathering again).
        offer_with(&self.pc, &self.neg, Some(RTCOfferOptions { ice_restart: true, ..Default::default() })).await
    }

    async fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pc.close().await;
    }
}

/// The negotiation-needed step: create an offer, set it, send it.
async fn offer(pc: &RTCPeerConnection, neg: &Negotiation) -> Result<(), RtcError> {
    offer_with(pc, neg, None).await
}

async fn offer_with(
    pc: &RTCPeerConnection,
    neg: &Negotiation,
    options: Option<RTCOfferOptions>,
) -> Result<(), RtcError> {
    neg.making_offer.store(true, Ordering::SeqCst);
    let result = async {
        let offer = pc.create_offer(options).await?;
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

/// Reads a remote track until it ends, counting.
async fn count(received: Arc<Received>, track: Arc<TrackRemote>) {
    received.track_added();
    let kind = match track.kind() {
        RTPCodecType::Audio => Kind::Audio,
        _ => Kind::Video,
    };
    while let Ok((pkt, _)) = track.read_rtp().await {
        received.packet(kind, pkt.payload.len());
    }
}

/// Sends the source's frames, in a loop, at its pace, until `stop` is set.
async fn play(track: Arc<TrackLocalStaticSample>, source: Source, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(source.every);
    for frame in source.frames.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        tick.tick().await;
        let sample =
            Sample { data: frame.clone(), timestamp: SystemTime::now(), duration: source.every, ..Default::default() };
        if track.write_sample(&sample).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two peers wired to each other in-process (no signaling server): what an ICE restart does.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde_json::Value;
    use tokio::sync::mpsc;

    use super::Peer;
    use crate::rtc::{
        ChannelEvent, ConnectionState, Message, PeerConfig, PeerEvent, RtcChannel as _, RtcPeer as _, SendSignal,
    };

    const STEP: Duration = Duration::from_secs(10);

    fn ufrag(sdp: &str) -> Option<&str> {
        sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).map(str::trim)
    }

    async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
        tokio::time::timeout(STEP, rx.recv()).await.unwrap_or_else(|_| panic!("no {what} in time")).expect(what)
    }

    /// `restart_ice` offers new ICE credentials on the same connection: it stays connected,
    /// and its data channel carries messages after the restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ice_restart_keeps_the_connection() {
        let (to_b, b_in) = mpsc::unbounded_channel::<Value>();
        let (to_a, a_in) = mpsc::unbounded_channel::<Value>();
        let offers = Arc::new(Mutex::new(Vec::<String>::new()));
        let o = Arc::clone(&offers);
        let send_a: SendSignal = Arc::new(move |v: Value| {
            if v["type"] == "offer" {
                o.lock().unwrap().push(v["sdp"].as_str().unwrap_or_default().to_owned());
            }
            let _ = to_b.send(v);
        });
        let send_b: SendSignal = Arc::new(move |v: Value| drop(to_a.send(v)));
        let (a, mut a_events) = Peer::new(false, &PeerConfig::default(), send_a).await.unwrap();
        let (b, mut b_events) = Peer::new(true, &PeerConfig::default(), send_b).await.unwrap();
        let (a, b) = (Arc::new(a), Arc::new(b));
        for (peer, mut inbox) in [(Arc::clone(&b), b_in), (Arc::clone(&a), a_in)] {
            tokio::spawn(async move {
                while let Some(v) = inbox.recv().await {
                    peer.handle_signal(v).await.expect("a signal applies");
                }
            });
        }
        let dc = a.add(Some("chat"), Vec::new()).await.unwrap().expect("a channel");
        let mut a_channel = dc.events();
        let b_dc = loop {
            if let PeerEvent::DataChannel(c) = next(&mut b_events, "B's data channel").await {
                break c;
            }
        };
        let mut b_channel = b_dc.events();
        assert_eq!(next(&mut a_channel, "open").await, ChannelEvent::Open);
        assert_eq!(a.connection_state(), ConnectionState::Connected);

        a.restart_ice().await.unwrap();
        let deadline = tokio::time::Instant::now() + STEP;
        let (first, second) = loop {
            {
                let offers = offers.lock().unwrap();
                if offers.len() >= 2 {
                    break (offers[0].clone(), offers[1].clone());
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no second offer");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(ufrag(&first).is_some() && ufrag(&first) != ufrag(&second), "the restart kept its ufrag");

        // Messages still cross, both ways, once the restart settled.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        dc.send_message(&Message::text("after")).await.unwrap();
        loop {
            match next(&mut b_channel, "the message").await {
                ChannelEvent::Message(m) => {
                    assert_eq!(m.data.as_ref(), b"after");
                    break;
                }
                ChannelEvent::Open => {}
                ChannelEvent::Closed => panic!("B's channel closed"),
            }
        }
        assert_eq!(a.connection_state(), ConnectionState::Connected);
        assert_eq!(b.connection_state(), ConnectionState::Connected);
        while let Ok(ev) = a_events.try_recv() {
            if let PeerEvent::State(s) = ev {
                assert!(matches!(s, ConnectionState::Connecting | ConnectionState::Connected), "A went {s}");
            }
        }
        a.close().await;
        b.close().await;
    }
}
