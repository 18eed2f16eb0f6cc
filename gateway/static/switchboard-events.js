// The events a Switchboard client dispatches (`switchboard.js`, and its peers through it): DOM
// events on the client, an EventTarget, each with its fields set on the event.
// `switchboard.d.ts` types each one's fields (`SwitchboardEventFields`).

/**
 * Every event the client dispatches is a SwitchboardEvent with its fields set on the event:
 *
 * | type | fields |
 * | --- | --- |
 * | `connection-state` | `state` (`connecting`, `connected`, `resuming`, `reconnecting`, `failed`, `closed`), `url`, `attempt`, `delayMs` (before the next attempt), `code`/`reason` (of the close), `unreachable` (the socket never opened), `peerId`/`nodeId` (when connected), `resumed` and `gapMs` (`connected` after a resume: the peer id, room and calls are the ones before), `cause` and `withinMs` (`resuming`: the socket `break`-ed, or a node's `drain` asked us to move; messages wait meanwhile) |
 * | `joined` | `room`, `peerId` (ours), `peers` (what the server said of those already there) — after every (re)join |
 * | `left` | `room`, `reason` (`kicked`, `room-closed`): an operator removed us; the client stays connected and does not rejoin |
 * | `peer-joined` | `peerId`, `peer` (RemotePeer: `user`, `role`, `meta`), `initiator` (true: we call it) |
 * | `peer-left` | `peerId`, `peer`, `reason`: the protocol's (`left`, `disconnected`, `timeout`, `kicked`, `room-closed`, `node-lost`, …), or the SDK's `reconnecting` (our own connection dropped; we call again after the rejoin) and `hung-up` (we left, or were removed) |
 * | `peer-state` | `peerId`, `peer`, `state` (RTCPeerConnectionState) |
 * | `peer-presence` | `peerId`, `peer`, `state`: `reconnecting` (the peer's own signaling connection broke; the server holds its place while it resumes — its media may well go on) or `connected` (it resumed); also as `peer.presence` |
 * | `peer-muted` | `peerId`, `peer`, `audio`, `video` (true: muted): the peer's `setMuted`, also as `peer.muted` |
 * | `cluster-status` | `connected` (false: the node cannot reach its cluster's Redis — peers on other nodes are out of reach), `redis` (`host:port`, when the node shows it); also as `client.cluster` |
 * | `track` | `peerId`, `peer`, `track`, `stream` (the peer's MediaStream: play it) |
 * | `channel-open`, `channel-close` | `peerId`, `peer`, `channel` |
 * | `message` | `peerId`, `peer`, `data` (string or ArrayBuffer), `text` (decoded) — from the data channel |
 * | `broadcast` | `peerId`, `data` — relayed by the server (`client.broadcast`) |
 * | `error` | `code`, `message`, `fatal` (the client gave up), `error` (SwitchboardError); `resume-failed` (not fatal): the session was lost, a fresh one with a new peer id follows |
 */
export class SwitchboardEvent extends Event {
  /**
   * @param {string} type
   * @param {Record<string, any>} fields
   */
  constructor(type, fields) {
    super(type);
    Object.assign(this, fields);
  }
}
