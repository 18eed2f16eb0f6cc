//! ICE server flags shared by the WebRTC subcommands.

use switchboard::rtc::IceServer;

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
}
