//! One loopback call on webrtc 0.17.2 (callbacks on an `RTCPeerConnection`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use webrtc17 as w;
use w::api::APIBuilder;
use w::api::interceptor_registry::register_default_interceptors;
use w::api::media_engine::MediaEngine;
use w::api::setting_engine::SettingEngine;
use w::ice_transport::ice_candidate::RTCIceCandidateInit;
use w::interceptor::registry::Registry;
use w::peer_connection::RTCPeerConnection;
use w::peer_connection::configuration::RTCConfiguration;
use w::peer_connection::peer_connection_state::RTCPeerConnectionState;
use w::peer_connection::sdp::sdp_type::RTCSdpType;
use w::peer_connection::sdp::session_description::RTCSessionDescription;

use crate::{Sig, Timing, ms};

async fn pc() -> Result<Arc<RTCPeerConnection>, String> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(|e| e.to_string())?;
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(|e| e.to_string())?;
    let mut settings = SettingEngine::default();
    settings.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    Ok(Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.map_err(|e| e.to_string())?))
}

/// Sends local candidates to the other side; applies its signals in order.
fn wire(pc: &Arc<RTCPeerConnection>, out: mpsc::UnboundedSender<Sig>, mut inbox: mpsc::UnboundedReceiver<Sig>) {
    let o = out.clone();
    pc.on_ice_candidate(Box::new(move |c| {
        if let Some(Ok(c)) = c.map(|c| c.to_json()) {
            let _ = o.send(Sig::Cand(serde_json::to_string(&c).unwrap_or_default()));
        }
        Box::pin(async {})
    }));
    let pc = Arc::clone(pc);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(sig) = inbox.recv().await {
            match sig {
                Sig::Desc(text) => {
                    let Ok(desc) = serde_json::from_str::<RTCSessionDescription>(&text) else { return };
                    let offer = desc.sdp_type == RTCSdpType::Offer;
                    if pc.set_remote_description(desc).await.is_err() {
                        return;
                    }
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
                    if pc.remote_description().await.is_none() {
                        held.push(c);
                    } else {
                        let _ = pc.add_ice_candidate(c).await;
                    }
                }
            }
        }
    });
}

pub async fn call() -> Result<Timing, String> {
    let t0 = Instant::now();
    let (a, b) = (pc().await?, pc().await?);
    let (to_b, inbox_b) = mpsc::unbounded_channel();
    let (to_a, inbox_a) = mpsc::unbounded_channel();
    wire(&a, to_b.clone(), inbox_a);
    wire(&b, to_a, inbox_b);
    let (conn_tx, conn_rx) = oneshot::channel();
    let conn_tx = std::sync::Mutex::new(Some(conn_tx));
    a.on_peer_connection_state_change(Box::new(move |s| {
        if s == RTCPeerConnectionState::Connected
            && let Some(tx) = conn_tx.lock().ok().and_then(|mut t| t.take())
        {
            let _ = tx.send(ms(t0));
        }
        Box::pin(async {})
    }));
    let dc = a.create_data_channel("bench", None).await.map_err(|e| e.to_string())?;
    let (open_tx, open_rx) = oneshot::channel();
    let open_tx = std::sync::Mutex::new(Some(open_tx));
    dc.on_open(Box::new(move || {
        if let Some(tx) = open_tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(ms(t0));
        }
        Box::pin(async {})
    }));
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
