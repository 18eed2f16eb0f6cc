// The signaling connection under a Switchboard client: one WebSocket speaking protocol v1
// (docs/protocol.md), opened again with backoff whenever it drops, with request/reply
// correlation and a liveness check. It knows nothing of rooms or peers; `switchboard.js` does.

/** The WebSocket subprotocol that pins protocol v1. */
export const SUBPROTOCOL = 'switchboard.v1';
/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/** Close codes after which reconnecting cannot help: the token, not the network, is the problem. */
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;
/** How long a connection may take to deliver `welcome`. */
const WELCOME_TIMEOUT_MS = 10000;

/**
 * A failure the server (or the SDK) reports. `code` is the protocol's stable error code
 * (docs/protocol.md, "Error codes") — `forbidden`, `room-full`, `token-expired`, … — or one of
 * the SDK's own: `unreachable` (no connection could be opened), `disconnected` (the connection
 * dropped while a request waited), `closed` (the client was closed), `protocol-mismatch`,
 * `ice-servers-unavailable` (going on without STUN/TURN), `token` (the token callback failed).
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
 * @property {(welcome: any) => void} up A connection is ready (its `welcome` arrived).
 * @property {(willRetry: boolean) => void} down The connection is gone.
 * @property {(msg: any) => void} message Every server message but `welcome` and `pong`.
 * @property {(state: string, fields: object) => void} state `connecting`, `connected`,
 *   `reconnecting`, `failed` or `closed`, with details.
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

  /** Starts connecting. */
  open() {
    if (this.#ws || this.#retryTimer || this.connected) return;
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
   * Sends one message; false when not connected (nothing was sent).
   * @param {object} msg
   */
  send(msg) {
    if (this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Sends `msg` with a fresh `id`; resolves with the reply that echoes it (`joined`, `left`,
   * `pong`) or rejects with the `error` that does, or with `disconnected`.
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
    const protocols = [SUBPROTOCOL];
    // A JWT is base64url and dots: a valid subprotocol token (RFC 6455 §4.1), and unlike a
    // query parameter it stays out of access logs.
    if (token) protocols.push(`access_token.${token}`);
    let ws;
    try {
      ws = new WebSocket(this.#opts.url, protocols);
    } catch (e) {
      // A malformed URL: no retry will fix it.
      return this.#fail(new SwitchboardError('unreachable', `cannot open ${this.#opts.url}: ${e}`, { fatal: true }));
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
    }, WELCOME_TIMEOUT_MS);
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
    if (msg.type === 'error') {
      const err = new SwitchboardError(msg.code, msg.message);
      this.#lastError = { code: msg.code, message: msg.message };
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
    this.peerId = msg.peer_id;
    this.#attempt = 0;
    this.#tokenRetried = false;
    this.#startHeartbeat(msg.heartbeat_ms);
    // The owner learns its peer id before anyone hears it is connected.
    this.#hooks.up(msg);
    this.#setState('connected', { peerId: msg.peer_id, nodeId: msg.node_id });
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #onClose(code, reason) {
    const opened = this.#opened;
    const explained = this.#lastError;
    if (this.#stopped) return this.#teardown(false);
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
    const base = this.#opts.reconnect?.baseMs ?? 250;
    const cap = Math.min(this.#opts.reconnect?.maxMs ?? 10000, base * 2 ** this.#attempt);
    // "Equal jitter": at least half the backoff, so a crowd of clients dropped by one node
    // restart spreads out without any of them retrying in a tight loop.
    const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
    this.#attempt += 1;
    this.#setState('reconnecting', { attempt: this.#attempt, delayMs, code, reason, unreachable: !opened });
    this.#retryTimer = setTimeout(() => this.#dial(), delayMs);
  }

  /**
   * Forgets the current WebSocket: timers, waiting requests; tells the owner.
   * @param {boolean} willRetry
   */
  #teardown(willRetry) {
    clearTimeout(this.#welcomeTimer);
    clearInterval(this.#pingTimer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
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
