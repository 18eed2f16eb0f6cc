//! Switchboard's shared crate.
//!
//! [`protocol`] is the one place the wire protocol lives: the v1 protocol spoken at `/v1/ws`
//! and the seed demo's protocol spoken at `/ws`. Node, gateway, SDK tests and the reference
//! peer all speak through these types, so a change to the wire is a change here.
//!
//! With the `peer` feature the crate also builds `switchboard-peer`, the signaling client
//! and load generator used by benchmarks and smoke tests; with `rtc`, also the reference
//! WebRTC peer ([`rtc`]) behind `switchboard-peer smoke`.

pub mod api;
pub mod cluster;
pub mod protocol;

#[cfg(feature = "auth")]
pub mod auth;

#[cfg(feature = "peer")]
pub mod client;

#[cfg(feature = "rtc")]
pub mod rtc;
