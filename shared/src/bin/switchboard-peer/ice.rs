//! ICE server and media flags shared by the WebRTC subcommands.

use std::path::PathBuf;

use switchboard::rtc::IceServer;
use switchboard::rtc::media::Source;

/// Which candidates a peer may use (`RTCConfiguration.iceTransportPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IcePolicy {
    /// Host, server-reflexive and relay candidates.
    All,
    /// Relay (TURN) candidates only: the call goes through the TURN server or fails.
    Relay,
}

#[derive(clap::Args, Debug, Clone)]
pub struct IceArgs {
    /// STUN server URLs (stun:host:port). None needed on loopback: host candidates connect.
    #[arg(long)]
    stun: Vec<String>,
    /// A TURN server URL (turn:host:port?transport=udp), with --turn-username/--turn-credential.
    #[arg(long)]
    turn: Option<String>,
    #[arg(long, default_value = "")]
    turn_username: String,
    #[arg(long, default_value = "")]
    turn_credential: String,
    /// `relay`: use TURN relay candidates only, so a call connects through the TURN server
    /// (from --turn or the gateway) or not at all.
    #[arg(long, value_enum, default_value = "all")]
    ice_transport_policy: IcePolicy,
}

impl IceArgs {
    pub fn servers(&self) -> Vec<IceServer> {
        let mut servers: Vec<IceServer> =
            self.stun.iter().map(|u| IceServer { urls: vec![u.clone()], ..Default::default() }).collect();
        if let Some(turn) = &self.turn {
            servers.push(IceServer {
                urls: vec![turn.clone()],
                username: self.turn_username.clone(),
                credential: self.turn_credential.clone(),
            });
        }
        servers
    }

    pub fn relay_only(&self) -> bool {
        self.ice_transport_policy == IcePolicy::Relay
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct MediaArgs {
    /// Send this IVF file's VP8 frames as video (in a loop) instead of generated frames.
    #[arg(long)]
    video_file: Option<PathBuf>,
    /// Send this Ogg file's Opus pages as audio (in a loop) instead of generated frames.
    #[arg(long)]
    audio_file: Option<PathBuf>,
}

impl MediaArgs {
    /// A video and an audio source, from the files when given.
    pub fn sources(&self) -> Result<[Source; 2], String> {
        let video = match &self.video_file {
            Some(path) => Source::video_file("video", path)?,
            None => Source::video("video"),
        };
        let audio = match &self.audio_file {
            Some(path) => Source::audio_file("audio", path)?,
            None => Source::audio("audio"),
        };
        Ok([video, audio])
    }
}
