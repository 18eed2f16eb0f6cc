// One remote peer of a Switchboard room and the RTCPeerConnection to it: perfect negotiation,
// trickle ICE, the data channel, the outgoing tracks and live statistics. Used by
// `switchboard.js`; applications reach it as `client.peers.get(id)` and through the client's
// events, and never need to construct one.

/** The media kinds a call sends: one outgoing track of each at most. */
export const KINDS = /** @type {const} */ (['audio', 'video']);

/**
 * How long the side that did *not* start the connection waits for the other side's first offer
 * before offering itself. The newcomer to a room always calls (it knows who is there); the peer
 * already there waits, so the two never offer at once on first contact. Perfect negotiation would
 * resolve that glare, but Chromium sometimes never connects the side that rolled back its first
 * offer (seen in the browser tests). The fallback covers a newcomer that never offers at all.
 */
const FIRST_OFFER_WAIT_MS = 4000;

/**
 * @typedef {object} PeerInfo What the server says about a member of the room.
 * @property {string} peer_id
 * @property {string} [user] The user named by its access token, if it had one.
 * @property {string} [role] `participant` or `viewer`, from its access token.
 * @property {object} [meta] What it attached to its `join`.
 */

/**
 * @typedef {object} PeerHost What a RemotePeer needs from its client.
 * @property {(to: string, data: object) => void} signal Sends v1 `signal` data to the peer.
 * @property {(type: string, fields: object) => void} emit Dispatches a client event.
 * @property {(text: string) => void} log Diagnostic log line.
 */

/**
 * @typedef {object} PeerStats One sample of a peer connection's statistics, from `getStats()`.
 * @property {string} peerId
 * @property {RTCPeerConnectionState} connectionState
 * @property {number|null} rttMs Round-trip time of the selected candidate pair (STUN checks).
 * @property {number|null} inboundKbps Everything received on the selected pair since the last sample, kbit/s.
 * @property {number|null} outboundKbps Everything sent on the selected pair since the last sample, kbit/s.
 * @property {string|null} localCandidateType `host`, `srflx`, `prflx` or `relay`.
 * @property {string|null} remoteCandidateType
 * @property {number} framesDecoded Video frames decoded from this peer so far.
 * @property {number} framesPerSecond Decoded video frame rate (0 when none).
 * @property {string|null} resolution Decoded video size, e.g. `640x480`.
 * @property {number} packetsLost RTP packets from this peer that never arrived.
 */

/**
 * A remote member of the room and our RTCPeerConnection to it.
 *
 * Negotiation is *perfect negotiation* (W3C WebRTC 1.0 §10.7): either side may offer whenever
 * it needs to (a track added, an ICE restart); when two offers cross, the **polite** peer — the
 * one whose peer id is the larger, as both sides can tell without talking — rolls its own offer
 * back and answers, and the impolite one ignores the offer it received. Remote signals are
 * applied strictly one at a time, in arrival order.
 */
export class RemotePeer {
  /** The remote peer id (server-assigned, opaque). @type {string} */
  id;
  /** Its user, from its access token. @type {string|null} */
  user;
  /** Its role, from its access token. @type {string|null} */
  role;
  /** What it attached to its join. @type {object|null} */
  meta;
  /** Whether we yield when offers cross. @type {boolean} */
  polite;
  /** Whether we started this connection (we are the newcomer). @type {boolean} */
  initiator;
  /** @type {RTCPeerConnection} */
  pc;
  /** The peer's tracks, one per kind at most: what a `<video>` should play. */
  stream = new MediaStream();
  /** The data channel messages go out on (the first to open). @type {RTCDataChannel|null} */
  channel = null;
  /** What the peer says it muted (its `setMuted`): a disabled track looks live from here. */
  muted = { audio: false, video: false };
  /** Its signaling connection, as the server says (`peer-presence`): `connected` or `reconnecting`. */
  presence = 'connected';

  #host;
  #makingOffer = false;
  #ignoreOffer = false;
  #settingRemoteAnswer = false;
  #everNegotiated = false;
  #closed = false;
  /** Remote signals, applied one after another. */
  #inbox = Promise.resolve();
  /** Remote candidates that came before any remote description. @type {RTCIceCandidateInit[]} */
  #heldCandidates = [];
  /** Our sender per kind, once we send (or have sent) that kind. */
  #senders = /** @type {Record<string, RTCRtpSender|null>} */ ({ audio: null, video: null });
  #firstOfferTimer = 0;
  /** @type {{at: number, sent: number, received: number}|null} */
  #lastSample = null;

  /**
   * @param {PeerHost} host
   * @param {PeerInfo} info
   * @param {object} options
   * @param {string} options.selfId Our own peer id (decides politeness).
   * @param {boolean} options.initiator True when we are the newcomer and call.
   * @param {RTCIceServer[]} options.iceServers
   * @param {Record<string, MediaStreamTrack|null>} options.outgoing Our current track per kind.
   * @param {MediaStream|null} options.stream The stream our tracks belong to (their msid).
   */
  constructor(host, info, { selfId, initiator, iceServers, outgoing, stream }) {
    this.#host = host;
    this.id = info.peer_id;
    this.user = info.user ?? null;
    this.role = info.role ?? null;
    this.meta = info.meta ?? null;
    this.initiator = initiator;
    this.polite = selfId > this.id;

    const pc = (this.pc = new RTCPeerConnection({ iceServers }));
    pc.onicecandidate = ({ candidate }) => {
      // The null candidate (gathering done) is not sent: the node refuses `null` data, and
      // end-of-candidates is optional with trickle ICE.
      if (candidate && !this.#closed) host.signal(this.id, candidate.toJSON());
    };
    pc.onnegotiationneeded = () => this.#offer(false);
    pc.ontrack = ({ track }) => this.#addRemoteTrack(track);
    pc.ondatachannel = ({ channel }) => this.#adopt(channel);
    pc.onconnectionstatechange = () => this.#onConnectionState();

    for (const kind of KINDS) {
      const track = outgoing[kind];
      // Tracks added before the remote offer arrives are matched to its m-lines (JSEP §5.10),
      // so the answer already sends them: no second negotiation on first contact.
      if (track) this.#senders[kind] = stream ? pc.addTrack(track, stream) : pc.addTrack(track);
      // A caller without this kind still asks for the peer's.
      else if (initiator) pc.addTransceiver(kind, { direction: 'recvonly' });
    }
    if (initiator) {
      this.#adopt(pc.createDataChannel('chat', { ordered: true }));
    } else {
      this.#firstOfferTimer = setTimeout(() => this.#takeOverCalling(), FIRST_OFFER_WAIT_MS);
    }
  }

  /** The connection's state (`new`, `connecting`, `connected`, `disconnected`, `failed`, `closed`). */
  get connectionState() {
    return this.pc.connectionState;
  }

  /**
   * Applies one `signal.data` from this peer: a session description, an ICE candidate, or its
   * mute state (`{muted: {audio, video}}`).
   * Signals are queued and applied in order; a failure is logged, never thrown.
   * @param {any} data
   */
  handleSignal(data) {
    // Not negotiation: applied at once (still in order among themselves).
    if (data && typeof data === 'object' && !('type' in data) && !('candidate' in data) && typeof data.muted === 'object') {
      this.muted = { audio: data.muted?.audio === true, video: data.muted?.video === true };
      return this.#host.emit('peer-muted', { peerId: this.id, peer: this, ...this.muted });
    }
    this.#inbox = this.#inbox
      .then(() => this.#apply(data))
      .catch((e) => this.#host.log(`signal from ${this.id} failed: ${e}`));
  }

  /**
   * Sends `data` on the data channel (reliable and ordered).
   * @param {string|ArrayBuffer|ArrayBufferView|Blob} data
   * @returns {boolean} false when the channel is not open (nothing was sent).
   */
  send(data) {
    if (this.channel?.readyState !== 'open') return false;
    this.channel.send(/** @type {any} */ (data));
    return true;
  }

  /**
   * Makes `track` our outgoing track of `kind` (null stops sending that kind). A kind we already
   * send is swapped in place with `replaceTrack` — no renegotiation, so switching the camera for
   * a screen share is instant; a kind we never sent reuses a receive-only transceiver of that
   * kind, or adds one, and that renegotiates.
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack|null} track
   * @param {MediaStream|null} stream
   */
  async setTrack(kind, track, stream) {
    if (this.#closed) return;
    let sender = this.#senders[kind];
    if (!sender) {
      if (!track) return;
      const spare = this.pc
        .getTransceivers()
        .find((t) => t.direction !== 'stopped' && t.receiver.track.kind === kind && !t.sender.track && !Object.values(this.#senders).includes(t.sender));
      if (!spare) {
        this.#senders[kind] = stream ? this.pc.addTrack(track, stream) : this.pc.addTrack(track);
        return;
      }
      sender = this.#senders[kind] = spare.sender;
    }
    await sender.replaceTrack(track);
    if (!track) return;
    const transceiver = this.pc.getTransceivers().find((t) => t.sender === sender);
    if (transceiver?.direction === 'recvonly') transceiver.direction = 'sendrecv';
    else if (transceiver?.direction === 'inactive') transceiver.direction = 'sendonly';
    if (stream) sender.setStreams?.(stream);
  }

  /**
   * Samples the connection's statistics. Bit rates compare with the previous call, so call it
   * periodically (the demo does once a second).
   * @returns {Promise<PeerStats>}
   */
  async stats() {
    const report = await this.pc.getStats();
    /** @type {any} */ let pair = null;
    let framesDecoded = 0;
    let framesPerSecond = 0;
    let packetsLost = 0;
    /** @type {string|null} */ let resolution = null;
    for (const s of report.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) ?? pair;
      if (s.type === 'inbound-rtp') {
        packetsLost += s.packetsLost ?? 0;
        if (s.kind === 'video') {
          framesDecoded += s.framesDecoded ?? 0;
          framesPerSecond += s.framesPerSecond ?? 0;
          if (s.frameWidth) resolution = `${s.frameWidth}x${s.frameHeight}`;
        }
      }
    }
    if (!pair) {
      for (const s of report.values()) if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    }
    const now = performance.now();
    const sent = pair?.bytesSent ?? 0;
    const received = pair?.bytesReceived ?? 0;
    const last = this.#lastSample;
    // Bytes per millisecond × 8 = kbit/s.
    const rate = (bytes, before) => (last && now > last.at ? Math.max(0, ((bytes - before) * 8) / (now - last.at)) : null);
    const stats = {
      peerId: this.id,
      connectionState: this.pc.connectionState,
      rttMs: typeof pair?.currentRoundTripTime === 'number' ? pair.currentRoundTripTime * 1000 : null,
      inboundKbps: rate(received, last?.received ?? 0),
      outboundKbps: rate(sent, last?.sent ?? 0),
      localCandidateType: report.get(pair?.localCandidateId)?.candidateType ?? null,
      remoteCandidateType: report.get(pair?.remoteCandidateId)?.candidateType ?? null,
      framesDecoded,
      framesPerSecond,
      resolution,
      packetsLost,
    };
    this.#lastSample = { at: now, sent, received };
    return stats;
  }

  /**
   * Our signaling session resumed: if the network that broke it broke this connection's path
   * too, restart ICE (new candidates; the offer and candidates go out on the resumed session).
   * A path that is fine is left alone: the media never stopped.
   */
  recover() {
    const ice = this.pc.iceConnectionState;
    if (this.#closed || (ice !== 'disconnected' && ice !== 'failed' && this.pc.connectionState !== 'failed')) return;
    this.#host.log(`ICE ${ice} with ${this.id} after the resume: restarting ICE`);
    this.pc.restartIce();
  }

  /** Closes the connection for good (the peer left, or we did). */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#firstOfferTimer);
    this.channel?.close();
    this.pc.close();
    for (const t of this.stream.getTracks()) t.stop();
  }

  // ---- negotiation ---------------------------------------------------------------------------

  /**
   * The `negotiationneeded` step of perfect negotiation: make an offer and send it.
   * @param {boolean} forced true when we take over calling from a silent initiator.
   */
  async #offer(forced) {
    if (this.#closed) return;
    // Until the newcomer's first offer has arrived, the side that was there first keeps still
    // (see FIRST_OFFER_WAIT_MS). Its tracks are already attached and ride in that answer; if
    // anything is still left to negotiate afterwards, the browser fires negotiationneeded again
    // once the state is back to stable.
    if (!forced && !this.initiator && !this.#everNegotiated) return;
    if (this.#makingOffer || this.pc.signalingState !== 'stable') return;
    try {
      this.#makingOffer = true;
      await this.pc.setLocalDescription();
      const local = this.pc.localDescription;
      if (local) this.#host.signal(this.id, local.toJSON());
    } catch (e) {
      this.#host.log(`offer to ${this.id} failed: ${e}`);
    } finally {
      this.#makingOffer = false;
    }
  }

  /** The newcomer never called: call it ourselves, with a data channel of our own. */
  #takeOverCalling() {
    if (this.#closed || this.#everNegotiated) return;
    this.#host.log(`${this.id} has not called in ${FIRST_OFFER_WAIT_MS} ms: calling it`);
    this.initiator = true;
    if (!this.channel) this.#adopt(this.pc.createDataChannel('chat', { ordered: true }));
    this.#offer(true);
  }

  /** @param {any} data */
  async #apply(data) {
    if (this.#closed || !data || typeof data !== 'object') return;
    const pc = this.pc;
    if (typeof data.type === 'string') {
      const description = /** @type {RTCSessionDescriptionInit} */ (data);
      // An answer being applied ends our offer: an offer arriving meanwhile is no collision.
      const readyForOffer = !this.#makingOffer && (pc.signalingState === 'stable' || this.#settingRemoteAnswer);
      const collision = description.type === 'offer' && !readyForOffer;
      this.#ignoreOffer = !this.polite && collision;
      if (this.#ignoreOffer) {
        this.#host.log(`offers crossed with ${this.id}: ignoring theirs (we are impolite)`);
        return;
      }
      if (collision) this.#host.log(`offers crossed with ${this.id}: rolling ours back (we are polite)`);
      this.#settingRemoteAnswer = description.type === 'answer';
      try {
        // On a collision this rolls our own offer back first (implicit rollback, queued behind
        // a setLocalDescription still in flight — an explicit one could overtake it and fail).
        await pc.setRemoteDescription(description);
      } finally {
        this.#settingRemoteAnswer = false;
      }
      this.#everNegotiated = true;
      clearTimeout(this.#firstOfferTimer);
      for (const c of this.#heldCandidates.splice(0)) await pc.addIceCandidate(c).catch(() => {});
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        const local = pc.localDescription;
        if (local) this.#host.signal(this.id, local.toJSON());
      }
    } else if ('candidate' in data) {
      if (!pc.remoteDescription) {
        this.#heldCandidates.push(data);
        return;
      }
      try {
        await pc.addIceCandidate(data);
      } catch (e) {
        // Candidates of an offer we ignored have no m-line to go to.
        if (!this.#ignoreOffer) throw e;
      }
    }
  }

  // ---- media, data, state --------------------------------------------------------------------

  /** @param {MediaStreamTrack} track */
  #addRemoteTrack(track) {
    // One track per kind: a later transceiver of the same kind (the peer renegotiated its
    // camera, say) replaces what the <video> plays.
    for (const old of this.stream.getTracks()) if (old.kind === track.kind && old !== track) this.stream.removeTrack(old);
    this.stream.addTrack(track);
    this.#host.emit('track', { peerId: this.id, peer: this, track, stream: this.stream });
  }

  /** @param {RTCDataChannel} channel */
  #adopt(channel) {
    // Binary messages (the reference peer echoes bytes) arrive as ArrayBuffer, decodable at once.
    channel.binaryType = 'arraybuffer';
    if (!this.channel) this.channel = channel;
    channel.onopen = () => {
      // Two sides that both opened one (a take-over racing a late offer) keep both for
      // receiving and send on the first that opened.
      if (this.channel?.readyState !== 'open') this.channel = channel;
      this.#host.emit('channel-open', { peerId: this.id, peer: this, channel });
    };
    channel.onclose = () => {
      if (this.channel === channel && !this.#closed) this.#host.emit('channel-close', { peerId: this.id, peer: this, channel });
    };
    channel.onmessage = ({ data }) => {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
      this.#host.emit('message', { peerId: this.id, peer: this, data, text });
    };
  }

  #onConnectionState() {
    if (this.#closed) return;
    const state = this.pc.connectionState;
    this.#host.emit('peer-state', { peerId: this.id, peer: this, state });
    // A path that broke (a network change) gets new candidates: restartIce() makes the next
    // offer an ICE restart; both sides may do it, perfect negotiation sorts out the crossing.
    if (state === 'failed') this.pc.restartIce();
  }
}
