// Switchboard's browser SDK: an ES module, no build step, no dependency.
//
//   import { connect } from '/switchboard.js';
//   const client = connect({ token });               // same-origin node, protocol v1
//   await client.setLocalStream(await navigator.mediaDevices.getUserMedia({ video: true, audio: true }));
//   client.addEventListener('track', (e) => attach(e.peerId, e.stream));
//   client.addEventListener('message', (e) => console.log(e.peerId, e.text));
//   await client.join('lobby', { name: 'Ann' });
//   client.send('hello everyone');                   // over each peer's data channel
//
// A client is one signaling connection (`switchboard-signaling.js`) in at most one room, and a
// full mesh: one RTCPeerConnection per other member (`switchboard-rtc.js`). The newcomer calls
// the members already there; they answer. When the connection drops — or a draining node asks
// it to move — the session resumes, on any node it knows (`url`, `urls`): same peer id, same
// room, the calls untouched (the same RTCPeerConnections, an ICE restart where the network
// broke them too), nothing lost or repeated either way; `connection-state` (`resuming`, then
// `connected` with `resumed`) shows it, and the other members see `peer-presence`. If the
// server cannot resume it, the client says so (`error` `resume-failed`), reconnects with
// backoff and jitter, joins again with a new peer id and calls everyone again. The wire
// protocol is docs/protocol.md (v1 at `/v1/ws`).

import { SwitchboardEvent } from './switchboard-events.js';
import { IceServers } from './switchboard-ice.js';
import { KINDS, RemotePeer } from './switchboard-rtc.js';
import { PROTOCOL_VERSION, SUBPROTOCOL, Signaling, SwitchboardError } from './switchboard-signaling.js';

export { PROTOCOL_VERSION, RemotePeer, SUBPROTOCOL, SwitchboardError, SwitchboardEvent };

/**
 * @typedef {object} ConnectOptions
 * @property {string} [url] The v1 endpoint; default `ws(s)://<this page's host>/v1/ws`.
 * @property {string[]} [urls] More v1 endpoints of the same cluster (other nodes, other routes
 *   to them): a resume or reconnect goes round `url` and these.
 * @property {string|null|(() => string|Promise<string>)} [token] An access token (the JWT of
 *   `POST /v1/tokens`), sent as subprotocol `access_token.<jwt>` next to `switchboard.v1`. A
 *   function is called before every connection attempt, so a reconnect after `token-expired`
 *   can bring a fresh token.
 * @property {RTCIceServer[]} [iceServers] Use these and skip `GET /v1/ice-servers`.
 * @property {string|null} [iceServersUrl] Where to fetch ICE servers (with the token as
 *   Bearer); default this page's origin + `/v1/ice-servers`; null: fetch nothing.
 * @property {{baseMs?: number, maxMs?: number, maxAttempts?: number}} [reconnect] Backoff:
 *   attempt n waits between half and all of min(maxMs, baseMs·2ⁿ) (default 250 ms, 10 s, no limit).
 * @property {(line: string) => void} [log] Receives diagnostic lines (default: none).
 */

/**
 * Opens a client and starts connecting at once.
 * @param {ConnectOptions} [options]
 * @returns {SwitchboardClient}
 */
export function connect(options = {}) {
  const client = new SwitchboardClient(options);
  client.open();
  return client;
}

/** A signaling connection, the room it is in, and a peer connection per other member. */
export class SwitchboardClient extends EventTarget {
  /** The v1 endpoint. */
  url;
  /** Signaling state (see `connection-state`). */
  state = 'idle';
  /** Our peer id on the current connection (a new one after each reconnect; kept by a resume). @type {string|null} */
  peerId = null;
  /** The node we are connected to. @type {string|null} */
  nodeId = null;
  /** The limits the node announced in `welcome`. @type {object|null} */
  limits = null;
  /** Whether the node reaches its cluster bus: `{connected, redis}`; null on a lone node. @type {{connected: boolean, redis: string|null}|null} */
  cluster = null;
  /** The room we are in or joining. @type {string|null} */
  room = null;
  /** The other members, by peer id. @type {Map<string, RemotePeer>} */
  peers = new Map();

  #opts;
  #signaling;
  /** The caller of join(), resolved by the first `joined`. @type {{resolve: Function, reject: Function}|null} */
  #joinWaiter = null;
  #meta = null;
  #ice;
  /** Our outgoing track per kind, and the stream that groups them. */
  #outgoing = /** @type {Record<string, MediaStreamTrack|null>} */ ({ audio: null, video: null });
  /** @type {MediaStream|null} */
  #stream = null;
  /** What we told (and tell every new) peer of our mute state. */
  #muted = { audio: false, video: false };
  /** What each RemotePeer may ask of us. */
  #host = {
    /** @param {string} to @param {object} data */
    signal: (to, data) => this.room && this.#signaling.send({ type: 'signal', room: this.room, to, data }),
    /** @param {string} type @param {object} fields */
    emit: (type, fields) => this.#emit(type, fields),
    /** @param {string} line */
    log: (line) => this.#log(line),
  };

  /** @param {ConnectOptions} [options] */
  constructor(options = {}) {
    super();
    this.#opts = options;
    this.url = options.url ?? defaultUrl();
    this.#ice = new IceServers(options.iceServers, options.iceServersUrl);
    this.#signaling = new Signaling(
      { url: this.url, urls: options.urls, token: options.token, reconnect: options.reconnect },
      {
        beforeDial: async (token) => {
          const trouble = await this.#ice.refresh(token);
          if (trouble) this.#error(new SwitchboardError('ice-servers-unavailable', trouble));
        },
        up: (welcome) => this.#onUp(welcome),
        down: (willRetry) => this.#onDown(willRetry),
        message: (msg) => this.#onMessage(msg),
        state: (state, fields) => {
          this.state = state;
          const retry = fields.delayMs !== undefined ? ` (attempt ${fields.attempt} in ${fields.delayMs} ms)` : '';
          this.#log(`connection ${state}${retry}`);
          this.#emit('connection-state', { state, url: this.url, ...fields });
        },
        error: (err) => this.#error(err),
        log: (line) => this.#log(line),
      },
    );
  }

  /** ICE servers in use. @type {RTCIceServer[]} */
  get iceServers() {
    return this.#ice.servers;
  }

  /** Starts connecting (connect() calls it). */
  open() {
    this.#signaling.open();
  }

  /**
   * Joins `room` (one per client) and calls everyone there. Resolves with the first `joined`;
   * while the connection is down it waits for the reconnect. After a later reconnect the
   * client joins again by itself. Rejects with the server's error (`forbidden`, `room-full`,
   * `bad-room`, …) or when the client fails or is closed.
   * @param {string} room A v1 room name (1–128 of `A-Z a-z 0-9 _ - . : @`).
   * @param {object|null} [meta] Shown to the other members as `peer.meta` (at most 1 KiB of JSON).
   * @returns {Promise<{room: string, peerId: string, peers: object[]}>}
   */
  join(room, meta = null) {
    if (this.room && this.room !== room) {
      return Promise.reject(new SwitchboardError('already-joined', `this client is in room ${this.room}; leave it first`));
    }
    this.room = room;
    this.#meta = meta;
    const joined = new Promise((resolve, reject) => (this.#joinWaiter = { resolve, reject }));
    // While resuming the join is queued and goes out on the resumed session (a resumed welcome
    // joins nothing by itself); if the resume fails, the fresh welcome sends it.
    if (this.#signaling.connected || this.#signaling.resuming) this.#sendJoin();
    return joined;
  }

  /** Leaves the room and hangs up on everyone; the connection stays open for another join. */
  async leave() {
    const room = this.room;
    if (!room) return;
    this.room = null;
    this.#closePeers('hung-up');
    this.#settleJoin(null, new SwitchboardError('closed', 'left before the join completed'));
    await this.#signaling.request({ type: 'leave', room }).catch(() => {});
  }

  /** Leaves, closes the connection and stops reconnecting. */
  close() {
    if (this.room) this.#signaling.send({ type: 'leave', room: this.room });
    this.room = null;
    this.#closePeers('hung-up');
    this.#settleJoin(null, new SwitchboardError('closed', 'the client was closed'));
    this.#signaling.close();
  }

  /**
   * Sends our media: the stream's first audio and first video track go to every peer, now and
   * later (null sends nothing; peers still receive). Kinds already sent are swapped in place.
   * @param {MediaStream|null} stream
   */
  async setLocalStream(stream) {
    this.#stream = stream;
    await Promise.all(KINDS.map((kind) => this.replaceTrack(kind, stream?.getTracks().find((t) => t.kind === kind) ?? null)));
  }

  /**
   * Replaces our outgoing track of one kind on every peer connection, without renegotiating
   * when that kind is already being sent — the way to share a screen (a `getDisplayMedia`
   * track in place of the camera's) and to go back.
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack|null} track
   */
  async replaceTrack(kind, track) {
    this.#outgoing[kind] = track;
    await Promise.all([...this.peers.values()].map((p) => p.setTrack(kind, track, this.#stream)));
  }

  /**
   * Mutes or unmutes our outgoing track of `kind`: a muted camera sends black frames and a
   * muted microphone silence, with nothing renegotiated (it is the track's `enabled` flag, so
   * a local preview of the same track goes black too). A disabled track fires no event at the
   * other end, so every peer is also told, as `signal` data `{"muted": {audio, video}}` (a
   * peer joining later when something is muted); theirs show it as `peer-muted`.
   * @param {'audio'|'video'} kind
   * @param {boolean} muted
   */
  setMuted(kind, muted) {
    const track = this.#outgoing[kind];
    if (track) track.enabled = !muted;
    if (this.#muted[kind] === muted) return;
    this.#muted[kind] = muted;
    for (const id of this.peers.keys()) this.#tellMuted(id);
  }

  /**
   * Sends `data` over the data channel to one peer, or to every peer.
   * @param {string|ArrayBuffer|ArrayBufferView|Blob} data
   * @param {string} [peerId]
   * @returns {number} how many peers it went to (channels not yet open are skipped).
   */
  send(data, peerId) {
    const targets = peerId ? [this.peers.get(peerId)] : [...this.peers.values()];
    return targets.filter((p) => p?.send(data)).length;
  }

  /**
   * Sends JSON `data` to every other member through the server (v1 `broadcast`): it arrives as
   * a `broadcast` event even where no peer connection is up. Viewers may not broadcast.
   * @param {any} data
   * @returns {boolean} false when not connected or not in a room.
   */
  broadcast(data) {
    return !!this.room && this.#signaling.send({ type: 'broadcast', room: this.room, data });
  }

  /**
   * Statistics of one peer connection, or of each.
   * @param {string} [peerId]
   * @returns {Promise<import('./switchboard-rtc.js').PeerStats[]>}
   */
  async getStats(peerId) {
    const peers = peerId ? [this.peers.get(peerId)] : [...this.peers.values()];
    return Promise.all(peers.filter((p) => p !== undefined).map((p) => /** @type {RemotePeer} */ (p).stats()));
  }

  // ---- signaling -----------------------------------------------------------------------------

  /** @param {any} welcome */
  #onUp(welcome) {
    this.peerId = welcome.peer_id;
    this.nodeId = welcome.node_id;
    this.limits = welcome.limits;
    this.#onCluster(welcome.cluster ?? null);
    // A resumed session is still in its room and its peers heard only `peer-presence`: no join,
    // no new calls. A join or leave that was under way finishes by itself (Signaling.request).
    if (welcome.resumed) {
      this.#log(`resumed on node ${welcome.node_id} as ${welcome.peer_id}`);
      for (const peer of this.peers.values()) peer.recover();
      return;
    }
    if (this.room) this.#sendJoin();
  }

  /** @param {boolean} willRetry */
  #onDown(willRetry) {
    this.peerId = null;
    this.cluster = null; // the next node's welcome says what it knows
    // The others see our old peer id leave; after the rejoin we call them again as newcomers.
    this.#closePeers(willRetry ? 'reconnecting' : 'hung-up');
    if (!willRetry) this.#settleJoin(null, new SwitchboardError('closed', 'the connection was closed'));
  }

  #sendJoin() {
    const room = this.room;
    this.#signaling.request({ type: 'join', room, meta: this.#meta }).catch((e) => {
      // A refused join (forbidden, room-full, bad-room) is final; a dropped connection is
      // not: the next welcome joins again.
      if (e.code === 'disconnected' || this.room !== room) return;
      this.room = null;
      this.#settleJoin(null, e);
    });
  }

  /**
   * What the node says of its cluster bus (in `welcome`, then on each change).
   * @param {{connected: boolean, redis?: string}|null} status
   */
  #onCluster(status) {
    const was = this.cluster;
    this.cluster = status && { connected: status.connected !== false, redis: status.redis ?? null };
    // A lone node says nothing; after a cluster node that had said something, that is news.
    if (this.cluster || was) this.#emit('cluster-status', this.cluster ?? { connected: true, redis: null });
  }

  /** @param {any} msg */
  #onMessage(msg) {
    if (msg.type === 'cluster-status') return this.#onCluster(msg);
    if (msg.room !== this.room) return; // a late frame of a room we left
    switch (msg.type) {
      case 'joined':
        this.#emit('joined', { room: msg.room, peerId: msg.peer_id, peers: msg.peers });
        // We are the newcomer: we call everyone who is here.
        for (const info of msg.peers) this.#addPeer(info, true);
        return this.#settleJoin({ room: msg.room, peerId: msg.peer_id, peers: msg.peers });
      case 'peer-joined':
        return void this.#addPeer(msg.peer, false);
      case 'peer-left':
        return this.#removePeer(msg.peer_id, msg.reason);
      case 'peer-state': {
        // The member's signaling connection, not our peer connection to it (that is `peer-state`).
        const peer = this.peers.get(msg.peer_id);
        if (!peer || (msg.state !== 'reconnecting' && msg.state !== 'connected')) return;
        peer.presence = msg.state;
        return this.#emit('peer-presence', { peerId: peer.id, peer, state: msg.state });
      }
      case 'signal':
        // The server sends peer-joined before any signal from a member, so we know the sender.
        return (this.peers.get(msg.from) ?? this.#addPeer({ peer_id: msg.from }, false)).handleSignal(msg.data);
      case 'broadcast':
        return this.#emit('broadcast', { peerId: msg.from, data: msg.data });
      case 'left':
        // A reply to our own leave comes after we forgot the room; one with a reason is the
        // server removing us (an operator's kick or room close).
        if (msg.reason) this.#removed(msg.reason);
        return;
      default:
        this.#log(`unknown message type ${msg.type}`);
    }
  }

  /**
   * The server took us out of the room: hang up on everyone and stay out (no rejoin after a
   * reconnect). When the room was closed, the others went too and nobody says so but this.
   * @param {string} reason `kicked` or `room-closed`
   */
  #removed(reason) {
    const room = this.room;
    this.room = null;
    this.#closePeers(reason === 'room-closed' ? 'room-closed' : 'hung-up');
    this.#settleJoin(null, new SwitchboardError(reason, `removed from ${room} (${reason})`));
    this.#log(`removed from ${room}: ${reason}`);
    this.#emit('left', { room, reason });
  }

  /**
   * @param {any} result
   * @param {SwitchboardError} [err]
   */
  #settleJoin(result, err) {
    const waiter = this.#joinWaiter;
    this.#joinWaiter = null;
    if (err) waiter?.reject(err);
    else waiter?.resolve(result);
  }

  // ---- peers ---------------------------------------------------------------------------------

  /**
   * @param {import('./switchboard-rtc.js').PeerInfo} info
   * @param {boolean} initiator
   */
  #addPeer(info, initiator) {
    this.#removePeer(info.peer_id, 'replaced', true);
    const peer = new RemotePeer(this.#host, info, {
      selfId: this.peerId ?? '',
      initiator,
      iceServers: this.#ice.servers,
      outgoing: this.#outgoing,
      stream: this.#stream,
    });
    this.peers.set(peer.id, peer);
    this.#emit('peer-joined', { peerId: peer.id, peer, initiator });
    if (this.#muted.audio || this.#muted.video) this.#tellMuted(peer.id);
    return peer;
  }

  /** @param {string} peerId */
  #tellMuted(peerId) {
    this.#host.signal(peerId, { muted: { ...this.#muted } });
  }

  /**
   * @param {string} peerId
   * @param {string} reason
   * @param {boolean} [quiet]
   */
  #removePeer(peerId, reason, quiet = false) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    this.peers.delete(peerId);
    peer.close();
    if (!quiet) this.#emit('peer-left', { peerId, peer, reason });
  }

  /** @param {string} reason */
  #closePeers(reason) {
    for (const id of [...this.peers.keys()]) this.#removePeer(id, reason);
  }

  // ---- events --------------------------------------------------------------------------------

  /** @param {SwitchboardError} error */
  #error(error) {
    this.#log(`error ${error.code}: ${error.message}`);
    this.#emit('error', { code: error.code, message: error.message, fatal: error.fatal, error });
  }

  /**
   * @param {string} type
   * @param {Record<string, any>} fields
   */
  #emit(type, fields) {
    this.dispatchEvent(new SwitchboardEvent(type, fields));
  }

  /** @param {string} line */
  #log(line) {
    this.#opts.log?.(line);
  }
}

/** `ws(s)://<this page's host>/v1/ws`. */
function defaultUrl() {
  const scheme = globalThis.location?.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${globalThis.location?.host || 'localhost:8090'}/v1/ws`;
}
