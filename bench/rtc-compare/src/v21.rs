//! One loopback call on webrtc 0.21.1 (an event-handler trait on a `PeerConnectionBuilder`'s
//! connection; the sans-io `rtc` core driven by the crate's tokio runtime).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use webrtc21 as w;
use w::data_channel::{DataChannel, DataChannelEvent};
use w::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

use crate::{Sig, Timing, ms};

struct Handler {
    out: mpsc::UnboundedSender<Sig>,
    connected: Mutex<Option<oneshot::Sender<f64>>>,
    t0: Instant,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.out.send(Sig::Cand(serde_json::to_string(&c).unwrap_or_default()));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected
            && let Some(tx) = self.connected.lock().ok().and_then(|mut t| t.take())
        {
            let _ = tx.send(ms(self.t0));
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        // Drain the answerer's channel so its events never back up.
        tokio::spawn(async move { while dc.poll().await.is_some() {} });
    }
}

/// `check_every`: the ICE connectivity-check interval (`None`: the crate's 200 ms default).
async fn pc(handler: Arc<Handler>, check_every: Option<Duration>) -> Result<Arc<dyn PeerConnection>, String> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(|e| e.to_string())?;
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(|e| e.to_string())?;
    let mut settings = SettingEngineBuilder::new().with_prflx_acceptance_min_wait(Some(Duration::ZERO));
    if check_every.is_some() {
        // As the crate's own examples set it: the answerer is the DTLS server.
        settings = settings
            .with_ice_connection_attempts(check_every, None)
            .with_answering_dtls_role(rtc21::peer_connection::transport::RTCDtlsRole::Server);
    }
    let settings = settings.build();
    let runtime = w::runtime::default_runtime().ok_or("no runtime")?;
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(handler)
        .with_runtime(runtime)
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(pc))
}

/// Applies the other side's signals in order.
fn apply(pc: Arc<dyn PeerConnection>, out: mpsc::UnboundedSender<Sig>, mut inbox: mpsc::UnboundedReceiver<Sig>) {
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut have_remote = false;
        while let Some(sig) = inbox.recv().await {
            match sig {
                Sig::Desc(text) => {
                    let Ok(desc) = serde_json::from_str::<RTCSessionDescription>(&text) else { return };
                    let offer = desc.sdp_type == RTCSdpType::Offer;
                    if pc.set_remote_description(desc).await.is_err() {
                        return;
                    }
                    have_remote = true;
                    for c in held.drain(..) {
                        let _ = pc.add_ice_candidate(c).await;
                    }
                    if offer {
                        let Ok(answer) = pc.create_answer(None).await else { return };
                        if pc.set_local_description(answer).await.is_err() {
                            return;
                        }
                        if let Some(l) = pc.local_description().await {
                            let _ = out.send(Sig::Desc(serde_json::to_string(&l).unwrap_or_default()));
                        }
                    }
                }
                Sig::Cand(text) => {
                    let Ok(c) = serde_json::from_str::<RTCIceCandidateInit>(&text) else { continue };
                    if have_remote {
                        let _ = pc.add_ice_candidate(c).await;
                    } else {
                        held.push(c);
                    }
                }
            }
        }
    });
}

pub async fn call(check_every: Option<Duration>) -> Result<Timing, String> {
    let t0 = Instant::now();
    let (to_b, inbox_b) = mpsc::unbounded_channel();
    let (to_a, inbox_a) = mpsc::unbounded_channel();
    let (conn_tx, conn_rx) = oneshot::channel();
    let a = pc(Arc::new(Handler { out: to_b.clone(), connected: Mutex::new(Some(conn_tx)), t0 }), check_every).await?;
    let b = pc(Arc::new(Handler { out: to_a.clone(), connected: Mutex::new(None), t0 }), check_every).await?;
    apply(Arc::clone(&a), to_b.clone(), inbox_a);
    apply(Arc::clone(&b), to_a, inbox_b);
    let dc = a.create_data_channel("bench", None).await.map_err(|e| e.to_string())?;
    let (open_tx, open_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut open_tx = Some(open_tx);
        while let Some(ev) = dc.poll().await {
            if matches!(ev, DataChannelEvent::OnOpen)
                && let Some(tx) = open_tx.take()
            {
                let _ = tx.send(ms(t0));
            }
        }
    });
    let offer = a.create_offer(None).await.map_err(|e| e.to_string())?;
    a.set_local_description(offer).await.map_err(|e| e.to_string())?;
    let local = a.local_description().await.ok_or("no local description")?;
    let _ = to_b.send(Sig::Desc(serde_json::to_string(&local).map_err(|e| e.to_string())?));
    let connected_ms = conn_rx.await.map_err(|_| "never connected")?;
    let open_ms = open_rx.await.map_err(|_| "channel never opened")?;
    let _ = a.close().await;
    let _ = b.close().await;
    Ok(Timing { connected_ms, open_ms })
}
