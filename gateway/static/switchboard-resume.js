// One resume of a signaling connection (docs/protocol.md, "Drain and resume"): what happens
// between a draining node's `reconnect` and the resumed `welcome`, or giving up.
// `switchboard-signaling.js` keeps the sockets and the session; a `Resumption` holds the
// resume's state (token, peer id, deadline, the messages queued meanwhile) and its schedule,
// and asks its connection to dial.
//
// The schedule: the old socket is closed (1000) and the node's close awaited, at most 3 s; then
// the same URL plus `resume=<token>` is dialled after 0–100 ms of jitter, and again after 100,
// 200, 400 ms … (at most 1.6 s apart) while `within_ms` lasts. A refusal (`resume-failed`, close
// 4410) or the end of `within_ms` gives up: the connection then starts a fresh session.

/** After `reconnect` and our close: how long to wait for the server's close (1012). */
const DRAIN_TIMEOUT_MS = 3000;
/** Resume attempts: the first after 0–100 ms, the next after 100 ms doubling to 1.6 s. */
const RESUME_JITTER_MS = 100;
const RESUME_BACKOFF_MS = 100;
const RESUME_BACKOFF_MAX_MS = 1600;
/** The close code of a refused resume (after the `error` `resume-failed`). */
export const CLOSE_RESUME_FAILED = 4410;

/**
 * @typedef {object} ResumeHost What a resume asks of its connection.
 * @property {(url: string, welcomeTimeoutMs: number) => void} dial Opens one attempt.
 * @property {() => void} drainTimedOut The draining node never closed: drop its socket, then
 *   report the close (`closed`) as for any other.
 * @property {(why: string) => void} abandon Gives up: the session is lost, a fresh one follows.
 * @property {(state: string, fields: object) => void} state
 * @property {(line: string) => void} log
 */

/** A resume under way, from `reconnect` to the resumed `welcome` or giving up. */
export class Resumption {
  /** The peer id to keep: a `welcome` with any other is not our session. @type {string} */
  peerId;
  /** Attempts dialled so far; 0 while the old socket is still closing. */
  attempt = 0;

  /** The server's resume token, sent back as `resume=<token>`. @type {string} */
  #token;
  /** The connection's URL; each attempt's is it plus `resume=<token>`. @type {string} */
  #url;
  /** When the `reconnect` arrived, for the gap reported after a resume. @type {number} */
  #since;
  /** How long the server keeps the session, as it said; no attempt starts after it. */
  #withinMs;
  #deadline;
  #backoffMs = RESUME_BACKOFF_MS;
  /** Messages sent while resuming, to go out after the resumed `welcome`. @type {string[]} */
  #queue = [];
  /** The drain timeout, then the next attempt: one at a time. */
  #timer = 0;
  /** @type {ResumeHost} */
  #host;

  /**
   * @param {{token: string, peerId: string, withinMs: number, url: string}} resume
   * @param {ResumeHost} host
   */
  constructor({ token, peerId, withinMs, url }, host) {
    this.peerId = peerId;
    this.#token = token;
    this.#url = url;
    this.#since = Date.now();
    this.#withinMs = withinMs;
    this.#deadline = this.#since + withinMs;
    this.#host = host;
  }

  /**
   * The resume a `reconnect` asks for, or null when it cannot be one (no token, or no session
   * of ours to keep). A missing or odd `within_ms` counts as 0: one attempt, no retries.
   * @param {{resume_token?: unknown, within_ms?: unknown}} msg
   * @param {string|null} peerId
   * @param {string} url
   * @param {ResumeHost} host
   */
  static from(msg, peerId, url, host) {
    if (!peerId || typeof msg.resume_token !== 'string') return null;
    const withinMs = Math.max(0, Number(msg.within_ms) || 0);
    return new Resumption({ token: msg.resume_token, peerId, withinMs, url }, host);
  }

  /**
   * Leaves the draining node: close its socket (1000) and wait for its close, which `closed`
   * reports — or, should it never come, for `DRAIN_TIMEOUT_MS`.
   * @param {WebSocket} ws
   */
  begin(ws) {
    this.#host.log(`the node is draining; resuming within ${this.#withinMs} ms`);
    this.#host.state('resuming', { withinMs: this.#withinMs });
    ws.close(1000, 'resume');
    this.#timer = setTimeout(() => {
      this.#timer = 0;
      this.#host.log('no close from the draining node in time; resuming anyway');
      this.#host.drainTimedOut();
    }, DRAIN_TIMEOUT_MS);
  }

  /**
   * The draining socket or an attempt closed (and is forgotten): try (again) while `within_ms`
   * lasts, unless the server refused the token, which no retry can change.
   * @param {number} code
   * @param {string} reason
   * @param {{code: string, message: string}|null} error The `error` frame before the close.
   */
  closed(code, reason, error) {
    clearTimeout(this.#timer);
    this.#timer = 0;
    if (error?.code === 'resume-failed' || code === CLOSE_RESUME_FAILED) {
      return this.#host.abandon(`refused (${error?.message ?? reason})`);
    }
    let delayMs;
    if (this.attempt === 0) {
      // The old socket: go at once, with a little jitter so a wave of clients spreads out.
      delayMs = Math.round(Math.random() * RESUME_JITTER_MS);
    } else {
      const left = this.#deadline - Date.now();
      if (left <= 0) return this.#host.abandon(`no node took it within the server's window (last close ${code} ${reason})`);
      delayMs = Math.min(this.#backoffMs, left);
      this.#backoffMs = Math.min(RESUME_BACKOFF_MAX_MS, this.#backoffMs * 2);
    }
    this.#timer = setTimeout(() => this.#dial(), delayMs);
  }

  /** Stops what is scheduled: the resume is over (resumed, abandoned or closed). */
  cancel() {
    clearTimeout(this.#timer);
    this.#timer = 0;
  }

  /**
   * Only a resumed welcome with our own peer id answers a resume (a fresh one never should).
   * @param {{resumed?: unknown, peer_id?: unknown}} welcome
   */
  accepts(welcome) {
    return welcome.resumed === true && welcome.peer_id === this.peerId;
  }

  /** How long the session was away, since the `reconnect`. */
  gapMs() {
    return Date.now() - this.#since;
  }

  /** @param {string} text A serialized message, kept in order. */
  queue(text) {
    this.#queue.push(text);
  }

  /** The queued messages, in order; the queue is empty afterwards. */
  takeQueue() {
    const queued = this.#queue;
    this.#queue = [];
    return queued;
  }

  /**
   * One attempt. Its state change comes from the second on (the first is the `resuming` of
   * `begin`). A node that took the TCP connection but says nothing gets until the deadline to
   * send `welcome`, yet at least 1 s (the last attempt may start just before it).
   */
  #dial() {
    this.#timer = 0;
    if (this.attempt > 0) this.#host.state('resuming', { attempt: this.attempt });
    this.attempt += 1;
    this.#host.dial(withResume(this.#url, this.#token), Math.max(1000, this.#deadline - Date.now()));
  }
}

/**
 * `url` with `resume=<token>` added to its query, the token percent-encoded; what is there
 * (`access_token`, `room`, …) stays as it was, byte for byte.
 * @param {string} url
 * @param {string} token
 */
export function withResume(url, token) {
  const sep = !url.includes('?') ? '?' : /[?&]$/.test(url) ? '' : '&';
  return `${url}${sep}resume=${encodeURIComponent(token)}`;
}
