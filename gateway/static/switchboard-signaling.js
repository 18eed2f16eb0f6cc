// The signaling connection under a Switchboard client: one WebSocket speaking protocol v1
// (docs/protocol.md), opened again with backoff whenever it drops, with request/reply
// correlation and a liveness check. It knows nothing of rooms or peers; `switchboard.js` does.
//
// A draining node says `reconnect` (with a resume token and `within_ms`) before it goes: then
// the connection moves to another node and keeps its peer id and rooms. What is sent meanwhile
// waits in a queue while `switchboard-resume.js` closes the old socket and dials the same URL
// plus `resume=<token>` (its header has the schedule) while `within_ms` lasts. A `welcome` with
// `resumed: true` and our peer id ends it: state `connected` with `resumed: true` (the owner
// must not join again), then the queue goes out. A `resume-failed` (close 4410), a fresh
// session or the end of `within_ms` fall back to a fresh reconnect: the owner hears `down`,
// then `up` with a new peer id, as after any dropped connection.

import { CLOSE_RESUME_FAILED, Resumption } from './switchboard-resume.js';

export { withResume } from './switchboard-resume.js';

/** The WebSocket subprotocol that pins protocol v1. */
export const SUBPROTOCOL = 'switchboard.v1';
/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/** Optional frames (`?notify=`), sent only to clients that ask: `cluster-status` (docs/protocol.md). */
const NOTIFY = 'cluster-status';

/** Close codes after which reconnecting cannot help: the token, not the network, is the problem. */
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;
/** How long a connection may take to deliver `welcome`. */
const WELCOME_TIMEOUT_MS = 10000;

/**
 * The SDK's own error codes, for failures no server reports: `unreachable` (no connection
 * could be opened), `disconnected` (the connection dropped while a request waited), `closed`
 * (the client was closed), `protocol-mismatch`, `ice-servers-unavailable` (going on without
 * STUN/TURN), `token` (the token callback failed). Every other code the SDK names is the
 * server's; gateway/tests/sdk_codes.rs holds both to the protocol's list in `shared`, so a new
 * client-side code must be added here, and may not take a server code's name.
 */
export const CLIENT_CODES = Object.freeze(['unreachable', 'disconnected', 'closed', 'protocol-mismatch', 'ice-servers-unavailable', 'token']);

/**
 * A failure the server (or the SDK) reports. `code` is the protocol's stable error code
 * (docs/protocol.md, "Error codes") — `forbidden`, `room-full`, `token-expired`, … — or one of
 * the SDK's own, `CLIENT_CODES`.
 */
export class SwitchboardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{fatal?: boolean, closeCode?: number}} [more]
   */
  constructor(code, message, { fatal = false, closeCode } = {}) {
    super(message);
    this.name = 'SwitchboardError';
    /** The stable error code. */
    this.code = code;
    /** True when the client gave up (no reconnect follows). */
    this.fatal = fatal;
    /** The WebSocket close code that came with it, if any. */
    this.closeCode = closeCode;
  }
}

/**
 * @typedef {object} SignalingHooks What the connection tells its owner.
 * @property {(token: string|null) => Promise<void>} beforeDial Runs before every attempt.
 * @property {(welcome: any) => void} up A connection is ready (its `welcome` arrived). After a
 *   resume `welcome.resumed` is true: same peer id, same rooms, nothing to redo.
 * @property {(willRetry: boolean) => void} down The connection is gone (with its peer id). Not
 *   called for a resume that works.
 * @property {(msg: any) => void} message Every server message but `welcome`, `pong` and
 *   `reconnect`.
 * @property {(state: string, fields: object) => void} state `connecting`, `connected` (with
 *   `resumed: true` and `gapMs` after a resume), `resuming` (a draining node asked us to move;
 *   with `withinMs`, then `attempt` per retry), `reconnecting`, `failed` or `closed`, with details.
 * @property {(error: SwitchboardError) => void} error
 * @property {(line: string) => void} log
 */

/**
 * @typedef {object} SignalingOptions
 * @property {string} url
 * @property {string|null|(() => string|Promise<string>)} [token]
 * @property {{baseMs?: number, maxMs?: number, maxAttempts?: number}} [reconnect]
 */

/** One logical signaling connection: as many WebSockets, one after another, as it takes. */
export class Signaling {
  /** Our peer id on the current WebSocket. @type {string|null} */
  peerId = null;
  state = 'idle';

  #opts;
  #hooks;
  /** @type {WebSocket|null} */
  #ws = null;
  #opened = false;
  #stopped = false;
  #attempt = 0;
  #retryTimer = 0;
  #welcomeTimer = 0;
  #pingTimer = 0;
  #awaitingPong = false;
  #nextId = 1;
  /** Requests waiting for their reply, by id. @type {Map<string, {resolve: Function, reject: Function}>} */
  #pending = new Map();
  /** The last `error` frame, which explains the close that follows it. @type {{code: string, message: string}|null} */
  #lastError = null;
  /** Whether a `token-expired` refusal was retried with a fresh token since the last welcome. */
  #tokenRetried = false;
  /** The token of the last attempt, sent again (unchecked by the node) on resume attempts. @type {string|null} */
  #lastToken = null;
  /** A resume under way, with its queue; dropping it drops the queue. @type {Resumption|null} */
  #resume = null;
  /**
   * What a resume asks of this connection. An attempt runs neither the token callback nor
   * `beforeDial`: the node ignores the access token of a resume (the parked session's grant
   * carries over) and the peer connections keep their ICE servers, so nothing delays it.
   * @type {import('./switchboard-resume.js').ResumeHost}
   */
  #resumeHost = {
    dial: (url, welcomeTimeoutMs) => this.#stopped || this.#connect(url, this.#lastToken, welcomeTimeoutMs),
    drainTimedOut: () => this.#onResumeClose(1006, 'no close in time'),
    abandon: (why) => this.#abandonResume(why),
    state: (state, fields) => this.#setState(state, fields),
    log: (line) => this.#hooks.log(line),
  };

  /**
   * @param {SignalingOptions} options
   * @param {SignalingHooks} hooks
   */
  constructor(options, hooks) {
    this.#opts = options;
    this.#hooks = hooks;
  }

  get connected() {
    return this.state === 'connected';
  }

  /** Moving to another node after `reconnect`: what is sent now is queued, not lost. */
  get resuming() {
    return this.#resume !== null;
  }

  /** Starts connecting. */
  open() {
    if (this.#ws || this.#retryTimer || this.#resume || this.connected) return;
    this.#stopped = false;
    this.#attempt = 0;
    this.#dial();
  }

  /** Closes for good (close code 1000): no reconnect. */
  close() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = 0;
    const ws = this.#ws;
    this.#teardown(false);
    ws?.close(1000, 'bye');
    this.#setState('closed', {});
  }

  /**
   * Sends one message; false when not connected (nothing was sent). While resuming it is
   * queued (true) and goes out after the resumed `welcome`, or is dropped if the resume fails.
   * @param {object} msg
   */
  send(msg) {
    if (this.#resume) {
      this.#resume.queue(JSON.stringify(msg));
      return true;
    }
    if (this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Sends `msg` with a fresh `id`; resolves with the reply that echoes it (`joined`, `left`,
   * `pong`) or rejects with the `error` that does, or with `disconnected`.
   *
   * A resume keeps requests waiting, neither sent again nor failed: one sent before the
   * `reconnect` was read by the old node, whose reply comes before its close or, parked with
   * the session, after the resumed `welcome` (exactly once); one sent while resuming is queued
   * and goes out after it. Sending again would make a `join` fail as `already-joined`. If the
   * resume fails they reject with `disconnected`, as on any lost connection.
   * @param {object} msg
   * @returns {Promise<any>}
   */
  request(msg) {
    const id = `c${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...msg, id })) return reject(new SwitchboardError('disconnected', 'not connected'));
      this.#pending.set(id, { resolve, reject });
    });
  }

  // ---- one attempt ---------------------------------------------------------------------------

  async #dial() {
    this.#retryTimer = 0;
    this.#setState(this.#attempt === 0 ? 'connecting' : 'reconnecting', { attempt: this.#attempt });
    let token = null;
    try {
      const t = this.#opts.token;
      token = typeof t === 'function' ? await t() : (t ?? null);
    } catch (e) {
      return this.#fail(new SwitchboardError('token', `the token callback failed: ${e}`, { fatal: true }));
    }
    await this.#hooks.beforeDial(token);
    if (this.#stopped) return;
    this.#lastToken = token;
    this.#connect(this.#opts.url, token, WELCOME_TIMEOUT_MS);
  }

  /**
   * Opens one WebSocket.
   * @param {string} url
   * @param {string|null} token
   * @param {number} welcomeTimeoutMs
   */
  #connect(url, token, welcomeTimeoutMs) {
    const protocols = [SUBPROTOCOL];
    // A JWT is base64url and dots: a valid subprotocol token (RFC 6455 §4.1), and unlike a
    // query parameter it stays out of access logs.
    if (token) protocols.push(`access_token.${token}`);
    let ws;
    try {
      ws = new WebSocket(withNotify(url), protocols);
    } catch (e) {
      // A malformed URL: no retry will fix it.
      return this.#fail(new SwitchboardError('unreachable', `cannot open ${url}: ${e}`, { fatal: true }));
    }
    this.#ws = ws;
    this.#opened = false;
    this.#lastError = null;
    ws.onopen = () => {
      if (ws === this.#ws) this.#opened = true;
    };
    ws.onmessage = (ev) => {
      if (ws === this.#ws) this.#onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws === this.#ws) this.#onClose(ev.code, ev.reason);
    };
    this.#welcomeTimer = setTimeout(() => {
      if (ws !== this.#ws) return;
      this.#hooks.log('no welcome in time; dropping the connection');
      this.#drop(ws, 'no welcome');
    }, welcomeTimeoutMs);
  }

  /** @param {string} text */
  #onFrame(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return this.#hooks.log(`not JSON: ${String(text).slice(0, 80)}`);
    }
    this.#awaitingPong = false; // anything that arrives proves the connection alive
    if (msg.type === 'welcome') return this.#onWelcome(msg);
    if (msg.type === 'reconnect') return this.#onReconnect(msg);
    if (msg.type === 'error') {
      const err = new SwitchboardError(msg.code, msg.message);
      this.#lastError = { code: msg.code, message: msg.message };
      // Not the owner's concern: the close that follows falls back to a fresh connection.
      if (msg.code === 'resume-failed' && this.#resume) return this.#hooks.log(`resume refused: ${msg.message}`);
      this.#settle(msg.id, null, err);
      this.#hooks.error(err);
      return;
    }
    if (msg.type === 'pong') return this.#settle(msg.id, msg);
    // `joined` and `left` answer requests and are news to the owner too.
    if (msg.type === 'joined' || msg.type === 'left') this.#settle(msg.id, msg);
    this.#hooks.message(msg);
  }

  #onWelcome(msg) {
    clearTimeout(this.#welcomeTimer);
    if (msg.protocol !== PROTOCOL_VERSION) {
      const why = `the server speaks protocol ${msg.protocol}, this SDK ${PROTOCOL_VERSION}`;
      return this.#fail(new SwitchboardError('protocol-mismatch', why, { fatal: true }));
    }
    const r = this.#resume;
    if (r) {
      // Only a resumed welcome with our own peer id answers a resume (a fresh one never should):
      // anything else, and we start over the usual way.
      if (!r.accepts(msg)) {
        return this.#abandonResume(`a fresh session (${msg.peer_id}) instead of ${r.peerId}`);
      }
      this.#resume = null;
      this.#attempt = 0;
      this.#startHeartbeat(msg.heartbeat_ms);
      // The frames of the gap follow this welcome; ours go out now, in order.
      for (const text of r.takeQueue()) this.#ws?.send(text);
      this.#hooks.up(msg);
      this.#setState('connected', { peerId: msg.peer_id, nodeId: msg.node_id, resumed: true, gapMs: r.gapMs() });
      return;
    }
    this.peerId = msg.peer_id;
    this.#attempt = 0;
    this.#tokenRetried = false;
    this.#startHeartbeat(msg.heartbeat_ms);
    // The owner learns its peer id before anyone hears it is connected.
    this.#hooks.up(msg);
    this.#setState('connected', { peerId: msg.peer_id, nodeId: msg.node_id });
  }

  /**
   * A draining node asks us to move: queue what is sent from now on, close (1000) and wait for
   * the node's close before resuming elsewhere. Frames that arrive before it are handled as
   * usual — where they arrive at all: a browser delivers none after `close()` (WHATWG
   * WebSockets: a message is dropped unless the socket is OPEN), so the node must not write
   * anything after `reconnect` but its close (later frames belong in the parked session).
   * @param {{resume_token: string, within_ms: number}} msg
   */
  #onReconnect(msg) {
    const ws = this.#ws;
    if (!ws || this.#resume) return;
    this.#resume = Resumption.from(msg, this.peerId, this.#opts.url, this.#resumeHost);
    if (!this.#resume) return;
    clearInterval(this.#pingTimer); // nothing more on this socket, not even a ping
    this.#resume.begin(ws);
  }

  /**
   * The draining socket or a resume attempt closed: forget it; the resume decides what next.
   * @param {number} code
   * @param {string} reason
   */
  #onResumeClose(code, reason) {
    const r = this.#resume;
    if (!r) return;
    this.#detach();
    r.closed(code, reason, this.#lastError);
  }

  /**
   * Gives up resuming: the session is lost as on any dropped connection (queued messages
   * dropped, waiting requests rejected, `down`), and a fresh connection follows.
   * @param {string} why
   */
  #abandonResume(why) {
    const ws = this.#ws;
    this.#hooks.log(`resume failed: ${why}; connecting fresh`);
    this.#teardown(true);
    ws?.close(1000, 'bye');
    this.#scheduleReconnect(CLOSE_RESUME_FAILED, 'resume-failed', true);
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #onClose(code, reason) {
    const opened = this.#opened;
    const explained = this.#lastError;
    if (this.#stopped) return this.#teardown(false);
    if (this.#resume) return this.#onResumeClose(code, reason);
    if (code === CLOSE_UNAUTHORIZED || code === CLOSE_FORBIDDEN) {
      // The same token would be refused again; a token callback may bring a fresh one, once.
      const retry = explained?.code === 'token-expired' && typeof this.#opts.token === 'function' && !this.#tokenRetried;
      if (!retry) {
        const why = explained ?? { code: code === CLOSE_FORBIDDEN ? 'forbidden' : 'unauthorized', message: reason || 'refused' };
        return this.#fail(new SwitchboardError(why.code, why.message, { fatal: true, closeCode: code }));
      }
      this.#tokenRetried = true;
    }
    const max = this.#opts.reconnect?.maxAttempts ?? Infinity;
    if (this.#attempt >= max) {
      return this.#fail(new SwitchboardError('unreachable', `gave up after ${this.#attempt} attempts`, { fatal: true, closeCode: code }));
    }
    this.#teardown(true);
    this.#scheduleReconnect(code, reason, opened);
  }

  /**
   * The next fresh attempt, after the backoff.
   * @param {number} code
   * @param {string} reason
   * @param {boolean} opened
   */
  #scheduleReconnect(code, reason, opened) {
    const base = this.#opts.reconnect?.baseMs ?? 250;
    const cap = Math.min(this.#opts.reconnect?.maxMs ?? 10000, base * 2 ** this.#attempt);
    // "Equal jitter": at least half the backoff, so a crowd of clients dropped by one node
    // restart spreads out without any of them retrying in a tight loop.
    const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
    this.#attempt += 1;
    this.#setState('reconnecting', { attempt: this.#attempt, delayMs, code, reason, unreachable: !opened });
    this.#retryTimer = setTimeout(() => this.#dial(), delayMs);
  }

  /** Forgets the current WebSocket and its timers; a resume (if any) goes on. */
  #detach() {
    clearTimeout(this.#welcomeTimer);
    clearInterval(this.#pingTimer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
  }

  /**
   * Forgets the current WebSocket and the session: timers, a resume under way and its queue,
   * waiting requests; tells the owner.
   * @param {boolean} willRetry
   */
  #teardown(willRetry) {
    this.#detach();
    this.#resume?.cancel();
    this.#resume = null;
    this.peerId = null;
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      p.reject(new SwitchboardError('disconnected', 'the connection dropped'));
    }
    this.#hooks.down(willRetry);
  }

  /** Gives up a connection we consider dead: it may not even deliver its close event. */
  #drop(ws, reason) {
    ws.close();
    this.#onClose(1006, reason);
  }

  /**
   * Gives up for good: no reconnect follows.
   * @param {SwitchboardError} err
   */
  #fail(err) {
    const ws = this.#ws;
    this.#stopped = true;
    this.#teardown(false);
    ws?.close(1000, 'bye');
    this.#hooks.error(err);
    this.#setState('failed', { code: err.closeCode, reason: err.message, error: err });
  }

  /**
   * The server pings at the WebSocket level, which a page never sees; our own `ping` finds a
   * half-open connection (a laptop that slept, a NAT that forgot us) within two intervals.
   * @param {number} ms
   */
  #startHeartbeat(ms) {
    clearInterval(this.#pingTimer);
    this.#awaitingPong = false;
    const ws = this.#ws;
    this.#pingTimer = setInterval(() => {
      if (!ws || ws !== this.#ws) return;
      if (this.#awaitingPong) return this.#drop(ws, 'no pong');
      this.#awaitingPong = true;
      this.send({ type: 'ping' });
    }, Math.max(5000, ms || 15000));
  }

  #settle(id, reply, err) {
    if (id === undefined || id === null) return;
    const waiter = this.#pending.get(String(id));
    if (!waiter) return;
    this.#pending.delete(String(id));
    if (err) waiter.reject(err);
    else waiter.resolve(reply);
  }

  #setState(state, fields) {
    this.state = state;
    this.#hooks.state(state, fields);
  }
}

/** `url` asking for the optional frames this SDK handles, unless it names its own `notify`. @param {string} url */
function withNotify(url) {
  try {
    const u = new URL(url);
    if (!u.searchParams.has('notify')) u.searchParams.set('notify', NOTIFY);
    return u.toString();
  } catch {
    return url; // WebSocket reports it
  }
}
