// Types for Switchboard's browser SDK, `switchboard.js` (served next to it as
// `/switchboard.d.ts`). The SDK stays plain JavaScript with no build step; this file describes
// what that JavaScript does, so it changes with it. gateway/tests/typescript.rs holds it to
// the code: its exports, events, options and error codes, and tsc over an example.
//
//   import { connect, type SwitchboardErrorCode } from './switchboard.js';
//
// Events are DOM events on an EventTarget (there is no `on`): `addEventListener` knows each
// event's fields from its name through `SwitchboardEventMap`.

// ---- JSON ----------------------------------------------------------------------------------

/** A JSON value as the server relays it. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object: a join's `meta`. */
export type JsonObject = { [key: string]: JsonValue };

// ---- protocol constants ------------------------------------------------------------------------

/** The WebSocket subprotocol that pins protocol v1. */
export declare const SUBPROTOCOL: 'switchboard.v1';
/** The protocol version this SDK speaks. */
export declare const PROTOCOL_VERSION: 1;

/**
 * Every `code` of a server `error` frame (docs/protocol.md, "Error codes"; `ErrorCode::ALL`
 * in shared/src/protocol/error.rs). The SDK also derives `unauthorized` and `forbidden` from
 * close codes 4401 and 4403 when no frame explained them.
 */
export type ServerErrorCode =
  | 'bad-json'
  | 'bad-message'
  | 'unknown-type'
  | 'binary-unsupported'
  | 'message-too-big'
  | 'rate-limited'
  | 'bad-room'
  | 'bad-peer-id'
  | 'room-limit'
  | 'room-full'
  | 'not-joined'
  | 'already-joined'
  | 'unknown-peer'
  | 'self-addressed'
  | 'bad-sdp'
  | 'bad-candidate'
  | 'candidate-limit'
  | 'bad-meta'
  | 'too-deep'
  | 'too-many-connections'
  | 'origin-refused'
  | 'shutting-down'
  | 'slow-consumer'
  | 'idle-timeout'
  | 'replaced'
  | 'undeliverable'
  | 'internal'
  | 'unauthorized'
  | 'token-expired'
  | 'token-invalid'
  | 'forbidden'
  | 'resume-failed';

/**
 * The SDK's own codes (`CLIENT_CODES` in switchboard-protocol.js), for failures no server
 * reports: `unreachable` (no connection could be opened, or `reconnect.maxAttempts` ran out),
 * `disconnected` (the connection dropped while a request waited), `closed` (the client was
 * closed, or left, before a join completed), `protocol-mismatch`, `ice-servers-unavailable`
 * (going on without STUN/TURN; not fatal), `token` (the token callback threw).
 */
export type ClientErrorCode = 'unreachable' | 'disconnected' | 'closed' | 'protocol-mismatch' | 'ice-servers-unavailable' | 'token';

/**
 * What an `error` event's `code` can be. `resume-failed` (not fatal) also comes from the SDK
 * when no node took the session back within the server's window: either way the session is
 * lost, and a fresh one (a new peer id, everyone called again) follows.
 */
export type SwitchboardErrorCode = ServerErrorCode | ClientErrorCode;

/**
 * The close codes the server uses (docs/protocol.md, "Close codes"; `protocol::close` in
 * shared). A close the browser reports may carry others (1005, 1006, 1011, …), and the SDK
 * reports 1006 itself for a connection it dropped (no welcome, nothing after a ping) or a
 * draining node that never closed.
 */
export type ServerCloseCode = 1000 | 1001 | 1002 | 1007 | 1009 | 1012 | 1013 | 4000 | 4001 | 4401 | 4403 | 4410;
/** A WebSocket close code: the server's, named, or any other the browser reports. */
export type CloseCode = ServerCloseCode | (number & {});

/** Why the server took us out of a room (`left` with a reason). */
export type RemovedReason = 'kicked' | 'room-closed';

/**
 * A failure the server or the SDK reports. `code` is stable; `message` is for humans. A
 * `join()` the server removed us from before it completed rejects with the removal's reason
 * as its code (`kicked`, `room-closed`), which no `error` event carries.
 */
export declare class SwitchboardError extends Error {
  constructor(code: SwitchboardErrorCode | RemovedReason, message: string, more?: { fatal?: boolean; closeCode?: number });
  name: 'SwitchboardError';
  /** The stable error code. */
  code: SwitchboardErrorCode | RemovedReason;
  /** True when the client gave up (no reconnect follows). */
  fatal: boolean;
  /** The WebSocket close code that came with it, if any. */
  closeCode: CloseCode | undefined;
}

// ---- options -----------------------------------------------------------------------------------

/** What `connect()` and `new SwitchboardClient()` read. */
export interface ConnectOptions {
  /** The v1 endpoint; default `ws(s)://<this page's host>/v1/ws`. */
  url?: string;
  /**
   * More v1 endpoints of the same cluster (other nodes, other routes to them): a resume (a
   * session is resumed on any node) or a reconnect goes round `url` and these.
   */
  urls?: string[];
  /**
   * An access token (the JWT of `POST /v1/tokens`), sent as subprotocol `access_token.<jwt>`.
   * A function is called before every fresh connection attempt, so a reconnect after
   * `token-expired` can bring a fresh token; null, or a function that returns null, sends none.
   */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** Use these and skip `GET /v1/ice-servers`. */
  iceServers?: RTCIceServer[];
  /** Where to fetch ICE servers (with the token as Bearer); default this page's origin + `/v1/ice-servers`; null: fetch nothing. */
  iceServersUrl?: string | null;
  /** Backoff: attempt n waits between half and all of min(maxMs, baseMs·2ⁿ) (default 250 ms, 10 s, no limit on attempts). */
  reconnect?: { baseMs?: number; maxMs?: number; maxAttempts?: number };
  /** Receives diagnostic lines (default: none). */
  log?: (line: string) => void;
}

// ---- what the server says ----------------------------------------------------------------------

/** A token's role in its room. */
export type Role = 'participant' | 'viewer';

/**
 * A member's own signaling connection, as the server tells the others (`peer-presence`):
 * `reconnecting` while it broke and the server holds its place for its resume (its media may go
 * on meanwhile), `connected` once it resumed. One that never comes back leaves (`timeout`).
 */
export type PeerPresence = 'reconnecting' | 'connected';

/** A member of the room as the server describes it (wire form: snake_case). */
export interface PeerInfo {
  peer_id: string;
  /** What it attached to its `join`, when it attached something. */
  meta?: JsonObject;
  /** The user its access token names, when it joined with one. */
  user?: string;
  /** Its access token's role, when it joined with one. */
  role?: Role;
}

/** The limits the node announced in `welcome` (docs/protocol.md); 0 for a rate means unlimited. */
export interface Limits {
  max_message_bytes: number;
  max_rooms: number;
  max_peers_per_room: number;
  messages_per_sec: number;
  candidates_per_sec: number;
  descriptions_per_min: number;
  max_candidates_per_negotiation: number;
  max_meta_bytes: number;
  /** 0 from nodes older than this field. */
  max_json_depth: number;
}

/** Whether the node reaches its cluster bus (Redis). */
export interface ClusterStatus {
  connected: boolean;
  /** `host:port` of the node's Redis; null when the node does not say (`--production`). */
  redis: string | null;
}

/** What `join()` resolves with, as the `joined` event says it. */
export interface JoinResult {
  room: string;
  /** Ours. */
  peerId: string;
  /** Those already there (not us). */
  peers: PeerInfo[];
}

/**
 * Why a peer left: the protocol's reasons, or the SDK's — `reconnecting` (our own connection
 * dropped; we call it again after the rejoin) and `hung-up` (we left, were kicked, or closed).
 */
export type PeerLeftReason =
  | 'left'
  | 'disconnected'
  | 'timeout'
  | 'slow-consumer'
  | 'shutdown'
  | 'replaced'
  | 'node-lost'
  | 'kicked'
  | 'room-closed'
  | 'reconnecting'
  | 'hung-up';

// ---- peers -------------------------------------------------------------------------------------

/** The media kinds a call sends: one outgoing track of each at most. */
export type MediaKind = 'audio' | 'video';

/** One sample of a peer connection's statistics. */
export interface PeerStats {
  peerId: string;
  connectionState: RTCPeerConnectionState;
  /** Round-trip time of the selected candidate pair. */
  rttMs: number | null;
  /** Received on the selected pair since the previous sample, kbit/s; null on the first. */
  inboundKbps: number | null;
  /** Sent on the selected pair since the previous sample, kbit/s; null on the first. */
  outboundKbps: number | null;
  localCandidateType: RTCIceCandidateType | null;
  remoteCandidateType: RTCIceCandidateType | null;
  framesDecoded: number;
  framesPerSecond: number;
  /** Decoded video size, e.g. `640x480`. */
  resolution: string | null;
  packetsLost: number;
}

/** What a RemotePeer asks of its client (the client builds it; applications need not). */
export interface PeerHost {
  signal(to: string, data: object): unknown;
  emit(type: string, fields: object): void;
  log(text: string): void;
}

/** A RemotePeer's construction options (the client's business). */
export interface RemotePeerOptions {
  /** Our own peer id (decides politeness). */
  selfId: string;
  /** True when we are the newcomer and call. */
  initiator: boolean;
  iceServers: RTCIceServer[];
  /** Our current track per kind. */
  outgoing: Record<MediaKind, MediaStreamTrack | null>;
  /** The stream our tracks belong to. */
  stream: MediaStream | null;
}

/**
 * A remote member of the room and our RTCPeerConnection to it: `client.peers.get(id)` and the
 * `peer` of every peer event. The client creates and closes them.
 */
export declare class RemotePeer {
  constructor(host: PeerHost, info: PeerInfo, options: RemotePeerOptions);
  /** The remote peer id (server-assigned, opaque). */
  readonly id: string;
  /** Its user, from its access token. */
  readonly user: string | null;
  /** Its role, from its access token. */
  readonly role: Role | null;
  /** What it attached to its join. */
  readonly meta: JsonObject | null;
  /** Whether we yield when offers cross (perfect negotiation). */
  readonly polite: boolean;
  /** Whether we started this connection (we are the newcomer). */
  readonly initiator: boolean;
  readonly pc: RTCPeerConnection;
  /** The peer's tracks, one per kind at most: what a `<video>` should play. */
  readonly stream: MediaStream;
  /** The data channel messages go out on, once there is one. */
  readonly channel: RTCDataChannel | null;
  /** What the peer says it muted (its `setMuted`): a disabled track looks live from here. */
  readonly muted: { readonly audio: boolean; readonly video: boolean };
  /** Its signaling connection, as the server says (`peer-presence`). */
  readonly presence: PeerPresence;
  readonly connectionState: RTCPeerConnectionState;
  /** Applies one `signal.data` from this peer (the client feeds these in). */
  handleSignal(data: unknown): void;
  /** Sends on the data channel; false when it is not open (nothing was sent). */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob): boolean;
  /** Makes `track` our outgoing track of `kind` on this connection (the client's replaceTrack does it for every peer). */
  setTrack(kind: MediaKind, track: MediaStreamTrack | null, stream: MediaStream | null): Promise<void>;
  /** Samples statistics; bit rates compare with the previous call. */
  stats(): Promise<PeerStats>;
  /** After our session resumed: restarts ICE if the connection's path broke too (the client calls it). */
  recover(): void;
  /** Closes the connection for good (the client does, when the peer or we leave). */
  close(): void;
}

// ---- events ------------------------------------------------------------------------------------

/** Every event the client dispatches: an Event with its fields set on it. */
export declare class SwitchboardEvent extends Event {
  constructor(type: string, fields: object);
}

/** The signaling states `connection-state` reports. */
export type ConnectionState = 'connecting' | 'connected' | 'resuming' | 'reconnecting' | 'failed' | 'closed';

/**
 * `connection-state`'s fields by state; `attempt` counts fresh attempts (resume attempts while
 * resuming); `url` (on every state) is the endpoint the attempt or connection uses.
 */
export type ConnectionStateDetail =
  | { state: 'connecting'; attempt: 0 }
  /** Dialling again (after the wait). */
  | { state: 'reconnecting'; attempt: number; delayMs?: undefined }
  /** The connection closed: the next attempt follows after `delayMs`. */
  | {
      state: 'reconnecting';
      attempt: number;
      delayMs: number;
      /** The close's code (4410 after a failed resume). */
      code: CloseCode;
      reason: string;
      /** True when the socket never opened. */
      unreachable: boolean;
    }
  | { state: 'connected'; peerId: string; nodeId: string; resumed?: undefined; gapMs?: undefined }
  /** After a resume: the peer id, room and calls are the ones before; nothing was joined again. */
  | { state: 'connected'; peerId: string; nodeId: string; resumed: true; gapMs: number }
  /**
   * The session is being resumed within `withinMs` (the server's window); what is sent
   * meanwhile waits, and goes out once. `cause`: a draining node asked us to move (`drain`), or
   * the socket broke (`break`: closed with `code`, or 1006 when it went silent).
   */
  | { state: 'resuming'; withinMs: number; cause: 'drain'; attempt?: undefined }
  | { state: 'resuming'; withinMs: number; cause: 'break'; code: CloseCode; reason: string; attempt?: undefined }
  /** Another resume attempt. */
  | { state: 'resuming'; attempt: number; withinMs?: undefined }
  /** The client gave up; `error` says why (also sent as an `error` event). */
  | { state: 'failed'; code: CloseCode | undefined; reason: string; error: SwitchboardError }
  | { state: 'closed' };

/** The fields of each event, by name. */
export interface SwitchboardEventFields {
  'connection-state': ConnectionStateDetail & { url: string };
  /** After every (re)join. */
  joined: JoinResult;
  /** An operator removed us: the client stays connected and does not rejoin. */
  left: { room: string; reason: RemovedReason };
  'peer-joined': { peerId: string; peer: RemotePeer; initiator: boolean };
  'peer-left': { peerId: string; peer: RemotePeer; reason: PeerLeftReason };
  /** Our RTCPeerConnection to the peer. */
  'peer-state': { peerId: string; peer: RemotePeer; state: RTCPeerConnectionState };
  /** The peer's own signaling connection broke, or it resumed; also as `peer.presence`. */
  'peer-presence': { peerId: string; peer: RemotePeer; state: PeerPresence };
  /** The peer's `setMuted`, also as `peer.muted`. */
  'peer-muted': { peerId: string; peer: RemotePeer; audio: boolean; video: boolean };
  /** Also as `client.cluster`; a node that stops saying anything reports `{connected: true, redis: null}`. */
  'cluster-status': ClusterStatus;
  /** `stream` is the peer's MediaStream: play it. */
  track: { peerId: string; peer: RemotePeer; track: MediaStreamTrack; stream: MediaStream };
  'channel-open': { peerId: string; peer: RemotePeer; channel: RTCDataChannel };
  'channel-close': { peerId: string; peer: RemotePeer; channel: RTCDataChannel };
  /** From the data channel; `text` is `data` decoded as UTF-8. */
  message: { peerId: string; peer: RemotePeer; data: string | ArrayBuffer; text: string };
  /** Relayed by the server (`client.broadcast`). */
  broadcast: { peerId: string; data: JsonValue };
  /** `fatal`: the client gave up. */
  error: { code: SwitchboardErrorCode; message: string; fatal: boolean; error: SwitchboardError & { code: SwitchboardErrorCode } };
}

/** The event object of each event name; a union's members narrow on their fields (`e.state`). */
export type SwitchboardEventMap = {
  [K in keyof SwitchboardEventFields]: SwitchboardEvent & { readonly type: K } & Readonly<SwitchboardEventFields[K]>;
};

/** Every event name the client dispatches. */
export type SwitchboardEventName = keyof SwitchboardEventMap;

// ---- the client --------------------------------------------------------------------------------

/** Signaling state: `idle` until `open()`, then what `connection-state` last said. */
export type ClientState = 'idle' | ConnectionState;

/** A signaling connection, the room it is in, and a peer connection per other member. */
export declare class SwitchboardClient extends EventTarget {
  constructor(options?: ConnectOptions);
  /** The v1 endpoint. */
  readonly url: string;
  readonly state: ClientState;
  /** Our peer id on the current connection (a new one after each reconnect; kept by a resume). */
  readonly peerId: string | null;
  /** The node we are connected to. */
  readonly nodeId: string | null;
  /** The limits the node announced in `welcome`. */
  readonly limits: Limits | null;
  /** Whether the node reaches its cluster bus; null on a lone node. */
  readonly cluster: ClusterStatus | null;
  /** The room we are in or joining. */
  readonly room: string | null;
  /** The other members, by peer id. */
  readonly peers: Map<string, RemotePeer>;
  /** ICE servers in use. */
  readonly iceServers: RTCIceServer[];

  /** Starts connecting (connect() calls it). */
  open(): void;
  /**
   * Joins `room` (one per client) and calls everyone there. Rejects with a SwitchboardError:
   * the server's (`forbidden`, `room-full`, `bad-room`, …), `already-joined` for another
   * room, `closed`, or a removal's reason.
   * @param room A v1 room name (1–128 of `A-Z a-z 0-9 _ - . : @`).
   * @param meta Shown to the other members as `peer.meta` (at most 1 KiB of JSON).
   */
  join(room: string, meta?: object | null): Promise<JoinResult>;
  /** Leaves the room and hangs up on everyone; the connection stays open for another join. */
  leave(): Promise<void>;
  /** Leaves, closes the connection and stops reconnecting. */
  close(): void;
  /** Sends the stream's first audio and first video track to every peer, now and later (null: nothing). */
  setLocalStream(stream: MediaStream | null): Promise<void>;
  /** Swaps our outgoing track of `kind` on every peer connection (screen share and back). */
  replaceTrack(kind: MediaKind, track: MediaStreamTrack | null): Promise<void>;
  /** Mutes or unmutes our outgoing `kind`, and tells every peer (their `peer-muted`). */
  setMuted(kind: MediaKind, muted: boolean): void;
  /** Sends over the data channel to one peer, or every peer; returns how many it went to. */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob, peerId?: string): number;
  /**
   * Sends JSON to every other member through the server (their `broadcast`); false when not
   * connected or not in a room. `undefined` is not JSON: the server would refuse the message.
   */
  broadcast(data: {} | null): boolean;
  /** Statistics of one peer connection, or of each. */
  getStats(peerId?: string): Promise<PeerStats[]>;

  addEventListener<K extends SwitchboardEventName>(
    type: K,
    listener: ((this: SwitchboardClient, ev: SwitchboardEventMap[K]) => unknown) | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends SwitchboardEventName>(
    type: K,
    listener: ((this: SwitchboardClient, ev: SwitchboardEventMap[K]) => unknown) | null,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** Opens a client and starts connecting at once. */
export declare function connect(options?: ConnectOptions): SwitchboardClient;
