// The signaling connection under a Switchboard client: one session of protocol v1
// (docs/protocol.md) over as many WebSockets as it takes, with request/reply correlation and a
// liveness check. It knows nothing of rooms or peers; `switchboard.js` does.
//
// A session outlives its socket. When the socket breaks — an abnormal close, a reset, the
// server's idle timeout, or no answer to our ping for ~2 heartbeats — or a draining node says
// `reconnect`, `switchboard-resume.js` dials `resume=<token>&last_seq=<n>` on the URLs we know
// while the server holds the session, and `switchboard-session.js` numbers both directions so
// that the gap is replayed each way exactly once. Meanwhile `send` keeps what it is given and
// requests keep waiting. A resumed `welcome` with our peer id ends it: state `connected` with
// `resumed: true` (the owner must not join again). A refusal (`resume-failed`) or the end of
// the server's window starts a fresh session instead: the owner hears `error` `resume-failed`,
// `down`, then `up` with a new peer id, as after any connection that cannot be resumed.

import { CLIENT_CODES, CLOSE_FORBIDDEN, CLOSE_RESUME_FAILED, CLOSE_UNAUTHORIZED, PROTOCOL_VERSION, SUBPROTOCOL, SwitchboardError, mayResumeAfter, openSocket } from './switchboard-protocol.js';
import { Resumption } from './switchboard-resume.js';
import { Link, Requests, Sequencer } from './switchboard-session.js';

export { CLIENT_CODES, PROTOCOL_VERSION, SUBPROTOCOL, SwitchboardError };
export { withResume } from './switchboard-resume.js';

/** How long a connection may take to deliver `welcome`. */
const WELCOME_TIMEOUT_MS = 10000;

/**
 * @typedef {object} SignalingHooks What the connection tells its owner.
 * @property {(token: string|null) => Promise<void>} beforeDial Runs before every fresh attempt.
 * @property {(welcome: any) => void} up A connection is ready (its `welcome` arrived). After a
 *   resume `welcome.resumed` is true: same peer id, same rooms, nothing to redo.
 * @property {(willRetry: boolean) => void} down The session is gone (with its peer id). Not
 *   called for a resume that works.
 * @property {(msg: any) => void} message Every server message but `welcome`, `pong` and
 *   `reconnect`, each once and in order.
 * @property {(state: string, fields: object) => void} state `connecting`, `connected` (with
 *   `resumed: true` and `gapMs` after a resume), `resuming` (`cause` `break`, with the close's
 *   `code`, or `drain`: a draining node asked us to move; with `withinMs`, then `attempt` per
 *   retry), `reconnecting`, `failed` or `closed`, with details.
 * @property {(error: SwitchboardError) => void} error
 * @property {(line: string) => void} log
 */

/**
 * @typedef {object} SignalingOptions
 * @property {string} url
 * @property {string[]} [urls] More URLs of the same service (other nodes), tried in turn.
 * @property {string|null|(() => string|Promise<string>)} [token]
 * @property {{baseMs?: number, maxMs?: number, maxAttempts?: number}} [reconnect]
 */

/** One logical signaling session: as many WebSockets, one after another, as it takes. */
export class Signaling {
  /** Our peer id in the current session. @type {string|null} */
  peerId = null;
  state = 'idle';

  #opts;
  #hooks;
  /** Every URL we may connect to, `url` first, and the one in use (or last used). @type {string[]} */
  #urls;
  #urlIndex = 0;
  /** The current socket. @type {Link|null} */
  #link = null;
  #stopped = false;
  #attempt = 0;
  #retryTimer = 0;
  #welcomeTimer = 0;
  #requests = new Requests();
  #seq = new Sequencer((text) => !this.#resume && !!this.#link?.write(text));
  /** What resumes the session: its latest token and how long the server holds it. */
  #session = { token: /** @type {string|null} */ (null), withinMs: 0 };
  /** A resume under way. @type {Resumption|null} */
  #resume = null;
  /** The last `error` frame, which explains the close that follows it. @type {{code: string, message: string}|null} */
  #lastError = null;
  /** Whether a `token-expired` refusal was retried with a fresh token since the last welcome. */
  #tokenRetried = false;
  /** The token of the last fresh attempt, sent again (unchecked by the node) on resumes. @type {string|null} */
  #lastToken = null;
  /**
   * What a resume asks of this connection. An attempt runs neither the token callback nor
   * `beforeDial`: the node ignores the access token of a resume (the session's grant carries
   * over) and the peer connections keep their ICE servers, so nothing delays it.
   * @type {import('./switchboard-resume.js').ResumeHost}
   */
  #resumeHost = {
    socket: (url) => openSocket(url, this.#lastToken),
    drainTimedOut: () => {
      this.#detach();
      this.#resume?.drained();
    },
    resumed: (ws, welcome, index) => this.#onResumed(ws, welcome, index),
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
    this.#urls = [...new Set([options.url, ...(options.urls ?? [])])];
  }

  get connected() {
    return this.state === 'connected';
  }

  /** Between a lost socket (or `reconnect`) and the resumed session: what is sent now waits. */
  get resuming() {
    return this.#resume !== null;
  }

  /** Starts connecting. */
  open() {
    if (this.#link || this.#retryTimer || this.#resume || this.connected) return;
    this.#stopped = false;
    this.#attempt = 0;
    this.#dial();
  }

  /** Ends the session at once (a close frame: the server holds nothing for a resume) and for good. */
  close() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = 0;
    const ws = this.#link?.ws;
    this.#teardown(false);
    ws?.close(1000, 'bye');
    this.#setState('closed', {});
  }

  /**
   * Sends one message; false when there is no session (nothing was sent). While resuming it
   * is kept (true) and goes out on the resumed session, or is dropped if the resume fails.
   * @param {object} msg
   */
  send(msg) {
    // `peerId`, not `connected`: the owner sends its join from `up`, just before `connected`.
    if (!this.#resume && !(this.peerId !== null && this.#link?.open)) return false;
    this.#seq.send(this.#seq.number(msg));
    return true;
  }

  /**
   * Sends `msg` with a fresh `id`; resolves with the reply that echoes it (`joined`, `left`,
   * `pong`) or rejects with the `error` that does, or with `disconnected`. A resume keeps it
   * waiting (the numbering gets it to the server once, and its reply back once); sent anew, a
   * `join` would fail as `already-joined`. If the resume fails it rejects with `disconnected`.
   * @param {object} msg
   * @returns {Promise<any>}
   */
  request(msg) {
    return this.#requests.request(msg, (m) => this.send(m));
  }

  // ---- fresh connections ---------------------------------------------------------------------

  async #dial() {
    this.#retryTimer = 0;
    const url = this.#urls[this.#urlIndex];
    this.#setState(this.#attempt === 0 ? 'connecting' : 'reconnecting', { attempt: this.#attempt, url });
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
    let ws;
    try {
      ws = openSocket(url, token);
    } catch (e) {
      // A malformed URL: no retry will fix it.
      return this.#fail(new SwitchboardError('unreachable', `cannot open ${url}: ${e}`, { fatal: true }));
    }
    const link = this.#adopt(ws, false);
    this.#lastError = null;
    this.#welcomeTimer = setTimeout(() => {
      if (link !== this.#link) return;
      this.#hooks.log('no welcome in time; dropping the connection');
      ws.close();
      this.#onClose(1006, 'no welcome');
    }, WELCOME_TIMEOUT_MS);
  }

  /**
   * Makes `ws` the session's socket.
   * @param {WebSocket} ws
   * @param {boolean} opened
   */
  #adopt(ws, opened) {
    const link = new Link(ws, opened, {
      frame: (text) => link === this.#link && this.#onFrame(text),
      closed: (code, reason) => link === this.#link && this.#onClose(code, reason),
    });
    return (this.#link = link);
  }

  /** @param {string} text */
  #onFrame(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return this.#hooks.log(`not JSON: ${String(text).slice(0, 80)}`);
    }
    if (msg.type === 'welcome') return this.#onWelcome(msg);
    if (!this.#seq.received(msg.seq)) return this.#hooks.log(`frame ${msg.seq} came twice; dropped`);
    if (msg.type === 'reconnect') return this.#onReconnect(msg);
    if (msg.type === 'error') {
      const err = new SwitchboardError(msg.code, msg.message);
      this.#lastError = { code: msg.code, message: msg.message };
      this.#requests.settle(msg.id, null, err);
      this.#hooks.error(err);
      return;
    }
    if (msg.type === 'pong') {
      this.#seq.confirm(msg.last_cseq);
      return this.#requests.settle(msg.id, msg);
    }
    // `joined` and `left` answer requests and are news to the owner too.
    if (msg.type === 'joined' || msg.type === 'left') this.#requests.settle(msg.id, msg);
    this.#hooks.message(msg);
  }

  /** @param {any} msg A fresh session's welcome. */
  #onWelcome(msg) {
    clearTimeout(this.#welcomeTimer);
    if (msg.protocol !== PROTOCOL_VERSION) {
      const why = `the server speaks protocol ${msg.protocol}, this SDK ${PROTOCOL_VERSION}`;
      return this.#fail(new SwitchboardError('protocol-mismatch', why, { fatal: true }));
    }
    this.peerId = msg.peer_id;
    this.#attempt = 0;
    this.#tokenRetried = false;
    this.#takeSession(msg);
    this.#seq.reset(this.#session.token !== null);
    this.#startHeartbeat(msg.heartbeat_ms);
    // The owner learns its peer id before anyone hears it is connected.
    this.#hooks.up(msg);
    this.#setState('connected', { peerId: msg.peer_id, nodeId: msg.node_id, url: this.#urls[this.#urlIndex] });
  }

  /** @param {any} msg A welcome: what resumes its session from now on. */
  #takeSession(msg) {
    const token = typeof msg.resume_token === 'string' ? msg.resume_token : null;
    this.#session = { token, withinMs: Math.max(0, Number(msg.resume_within_ms ?? this.#session.withinMs) || 0) };
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #onClose(code, reason) {
    const opened = this.#link?.opened ?? false;
    const explained = this.#lastError;
    if (this.#stopped) return this.#teardown(false);
    if (this.#resume) {
      // The draining node closed: now the resume dials.
      this.#detach();
      return this.#resume.drained();
    }
    if (code === CLOSE_UNAUTHORIZED || code === CLOSE_FORBIDDEN) {
      // The same token would be refused again; a token callback may bring a fresh one, once.
      const retry = explained?.code === 'token-expired' && typeof this.#opts.token === 'function' && !this.#tokenRetried;
      if (!retry) {
        const why = explained ?? { code: code === CLOSE_FORBIDDEN ? 'forbidden' : 'unauthorized', message: reason || 'refused' };
        return this.#fail(new SwitchboardError(why.code, why.message, { fatal: true, closeCode: code }));
      }
      this.#tokenRetried = true;
    }
    if (this.#resumable(code)) {
      this.#detach();
      return this.#startResume(code, reason || explained?.code || '', null);
    }
    const max = this.#opts.reconnect?.maxAttempts ?? Infinity;
    if (this.#attempt >= max) {
      return this.#fail(new SwitchboardError('unreachable', `gave up after ${this.#attempt} attempts`, { fatal: true, closeCode: code }));
    }
    this.#teardown(true);
    this.#scheduleReconnect(code, reason, opened);
  }

  /**
   * The next fresh attempt, after the backoff; on the next URL when this one never opened.
   * @param {number} code
   * @param {string} reason
   * @param {boolean} opened
   */
  #scheduleReconnect(code, reason, opened) {
    if (!opened) this.#urlIndex = (this.#urlIndex + 1) % this.#urls.length;
    const base = this.#opts.reconnect?.baseMs ?? 250;
    const cap = Math.min(this.#opts.reconnect?.maxMs ?? 10000, base * 2 ** this.#attempt);
    // "Equal jitter": at least half the backoff, so a crowd of clients dropped by one node
    // restart spreads out without any of them retrying in a tight loop.
    const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
    this.#attempt += 1;
    this.#setState('reconnecting', { attempt: this.#attempt, delayMs, code, reason, unreachable: !opened });
    this.#retryTimer = setTimeout(() => this.#dial(), delayMs);
  }

  // ---- resuming ------------------------------------------------------------------------------

  /**
   * Whether the server holds the session after its socket closed with `code`.
   * @param {number} code
   */
  #resumable(code) {
    return this.connected && this.peerId !== null && this.#session.token !== null && this.#session.withinMs > 0 && mayResumeAfter(code);
  }

  /** Where and from what a resume starts. */
  #where() {
    return { peerId: this.peerId, urls: this.#urls, first: this.#urlIndex, lastSeq: () => this.#seq.lastSeq };
  }

  /**
   * The socket broke: resume the session.
   * @param {number} code
   * @param {string} reason
   * @param {WebSocket|null} dead The socket, if it never closed.
   */
  #startResume(code, reason, dead) {
    this.#seq.pause();
    const where = { ...this.#where(), peerId: /** @type {string} */ (this.peerId) };
    this.#resume = new Resumption({ ...where, token: /** @type {string} */ (this.#session.token), withinMs: this.#session.withinMs }, this.#resumeHost);
    this.#resume.afterBreak(code, reason, dead);
  }

  /**
   * A draining node asks us to move (see Resumption.begin); what is sent from now on is kept.
   * @param {{resume_token: string, within_ms: number}} msg
   */
  #onReconnect(msg) {
    const link = this.#link;
    if (!link || this.#resume) return;
    this.#resume = Resumption.fromReconnect(msg, this.#where(), this.#resumeHost);
    if (!this.#resume) return;
    // Nothing more on this socket, not even a ping or an ack.
    link.quiet();
    this.#seq.pause();
    this.#resume.begin(link.ws);
  }

  /**
   * A resume attempt got our session back: its socket is the session's now.
   * @param {WebSocket} ws
   * @param {any} msg The resumed welcome.
   * @param {number} index Which URL it came through.
   */
  #onResumed(ws, msg, index) {
    const gapMs = this.#resume?.gapMs() ?? 0;
    this.#resume = null;
    this.#urlIndex = index;
    this.#attempt = 0;
    this.#adopt(ws, true);
    this.#takeSession(msg);
    this.#seq.resumed();
    const again = this.#seq.unconfirmed(msg.last_cseq);
    if (!again) return this.#abandonResume(`more messages went unconfirmed than the SDK keeps (last_cseq ${msg.last_cseq})`);
    this.#startHeartbeat(msg.heartbeat_ms);
    // The frames of the gap follow this welcome; ours go out now, in order.
    for (const entry of again) this.#seq.send(entry);
    this.#hooks.up(msg);
    this.#setState('connected', { peerId: msg.peer_id, nodeId: msg.node_id, url: this.#urls[index], resumed: true, gapMs });
  }

  /**
   * Gives up resuming: the session is lost as on any dropped connection (kept messages
   * dropped, waiting requests rejected, `down`), and a fresh connection follows.
   * @param {string} why
   */
  #abandonResume(why) {
    const ws = this.#link?.ws;
    this.#hooks.log(`resume failed: ${why}; connecting fresh`);
    // The application hears it: its calls start over (a new peer id, everyone called again).
    this.#hooks.error(new SwitchboardError('resume-failed', `the session could not be resumed: ${why}`));
    this.#teardown(true);
    ws?.close(1000, 'bye');
    this.#scheduleReconnect(CLOSE_RESUME_FAILED, 'resume-failed', true);
  }

  // ---- liveness and endings ------------------------------------------------------------------

  /** @param {number} ms The server's heartbeat. */
  #startHeartbeat(ms) {
    const link = /** @type {Link} */ (this.#link);
    link.heartbeat(ms, () => link === this.#link && this.send({ type: 'ping' }), (why) => this.#lost(link, why));
  }

  /**
   * The socket is dead though it never closed. If the session can resume, the resume keeps
   * the socket open (see switchboard-resume.js); else it is closed and we start afresh.
   * @param {Link} link
   * @param {string} why
   */
  #lost(link, why) {
    if (link !== this.#link) return;
    this.#hooks.log(`${why}: taking the connection for dead`);
    if (!this.#resumable(1006)) {
      link.ws.close();
      return this.#onClose(1006, why);
    }
    this.#startResume(1006, why, this.#detach());
  }

  /** Forgets the current socket (left as it is) and its timers; a resume (if any) goes on. */
  #detach() {
    clearTimeout(this.#welcomeTimer);
    const ws = this.#link?.detach() ?? null;
    this.#link = null;
    return ws;
  }

  /**
   * Forgets the current socket and the session: timers, a resume under way, what was kept
   * for it, waiting requests; tells the owner.
   * @param {boolean} willRetry
   */
  #teardown(willRetry) {
    this.#detach();
    this.#resume?.cancel();
    this.#resume = null;
    this.#seq.pause();
    this.#session = { token: null, withinMs: 0 };
    this.peerId = null;
    this.#requests.dropAll();
    this.#hooks.down(willRetry);
  }

  /**
   * Gives up for good: no reconnect follows.
   * @param {SwitchboardError} err
   */
  #fail(err) {
    const ws = this.#link?.ws;
    this.#stopped = true;
    this.#teardown(false);
    ws?.close(1000, 'bye');
    this.#hooks.error(err);
    this.#setState('failed', { code: err.closeCode, reason: err.message, error: err });
  }

  /**
   * @param {string} state
   * @param {object} fields
   */
  #setState(state, fields) {
    this.state = state;
    this.#hooks.state(state, fields);
  }
}
