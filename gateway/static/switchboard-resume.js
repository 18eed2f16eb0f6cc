// One resume of a signaling session (docs/protocol.md, "Drain and resume"): from a broken
// socket — or a draining node's `reconnect` — to the resumed `welcome`, or giving up.
// `switchboard-signaling.js` keeps the live socket and the session; a `Resumption` holds the
// resume's state (token, peer id, deadline), its schedule and its attempts' sockets, and hands
// the one that resumed back to its connection.
//
// The schedule: after a break at once; after `reconnect` the old socket is closed (1000) and
// the node's close awaited, at most 3 s. Then `resume=<token>&last_seq=<n>` is dialled after
// 0–100 ms of jitter, and again after 100, 200, 400 ms … (at most 1.6 s apart) while the
// server's window (`resume_within_ms`, a drain's `within_ms`) lasts, going round every URL the
// connection knows. A refusal (`resume-failed`, close 4410) or the end of the window gives up:
// the connection then starts a fresh session.
//
// An attempt that hears nothing is left alone, not closed: on a stalled path its request may
// still reach a node once the path heals, and the node would take the session over for it and
// spend the token, so a second attempt on the same path could only be refused. Meanwhile the
// other URLs get an attempt each; the first `welcome` wins (the token is single-use, so the
// others are refused), and a refusal counts only once no attempt is left that may yet win.
//
// The socket found dead is not closed either, until the resume is over: our close frame, should
// it reach the node once the path heals, would end the session there (a clean close does).
// Once resumed, the node has closed that socket itself; once given up, ending it is right.

import { CLOSE_RESUME_FAILED } from './switchboard-protocol.js';

/** After `reconnect` and our close: how long to wait for the server's close (1012). */
const DRAIN_TIMEOUT_MS = 3000;
/** Resume attempts: the first after 0–100 ms, the next after 100 ms doubling to 1.6 s. */
const RESUME_JITTER_MS = 100;
const RESUME_BACKOFF_MS = 100;
const RESUME_BACKOFF_MAX_MS = 1600;
/** While an attempt is silent, how long before another URL gets one too. */
const HEDGE_MS = 1000;
/** An attempt started just before the window closes still gets this long to answer. */
const LAST_ATTEMPT_MS = 1000;

/**
 * @typedef {object} ResumeHost What a resume asks of its connection.
 * @property {(url: string) => WebSocket} socket Opens a WebSocket to `url` (throws if it cannot).
 * @property {() => void} drainTimedOut The draining node never closed: forget its socket,
 *   then call `drained` as for a close.
 * @property {(ws: WebSocket, welcome: any, urlIndex: number) => void} resumed `ws` (whose
 *   handlers are the host's to set) resumed the session.
 * @property {(why: string) => void} abandon Gives up: the session is lost, a fresh one follows.
 * @property {(state: string, fields: object) => void} state
 * @property {(line: string) => void} log
 */

/**
 * @typedef {object} ResumeParams
 * @property {string} token The session's resume token.
 * @property {string} peerId The peer id to keep: a `welcome` with any other is not our session.
 * @property {number} withinMs How long the server holds the session, as it said.
 * @property {string[]} urls Where to resume, tried in turn from `first`.
 * @property {number} first
 * @property {() => number} lastSeq The highest `seq` received, read at each attempt.
 */

/** A resume under way, from the break or `reconnect` to the resumed `welcome` or giving up. */
export class Resumption {
  /** The peer id to keep. @type {string} */
  peerId;
  /** Attempts dialled so far; 0 while the old socket is still closing. */
  attempt = 0;

  #p;
  /** When the session was lost, for the gap reported after a resume. @type {number} */
  #since = Date.now();
  #deadline;
  #backoffMs = RESUME_BACKOFF_MS;
  /** The next URL to try, an index into `urls`. */
  #next;
  /** The next attempt (or the drain timeout): one timer at a time, and when it fires. */
  #timer = 0;
  #timerAt = 0;
  #deadlineTimer = 0;
  /** Attempts under way: socket → its URL's index and the `error` it sent, if any. @type {Map<WebSocket, {index: number, error: any}>} */
  #attempts = new Map();
  /** Why a node refused the token; no attempt starts after a refusal. @type {string|null} */
  #refused = null;
  #over = false;
  /** The socket found dead, kept open while the resume lasts. @type {WebSocket|null} */
  #dead = null;
  /** @type {ResumeHost} */
  #host;

  /**
   * @param {ResumeParams} params
   * @param {ResumeHost} host
   */
  constructor(params, host) {
    this.#p = params;
    this.peerId = params.peerId;
    this.#next = params.first;
    this.#deadline = this.#since + params.withinMs;
    this.#host = host;
  }

  /**
   * The resume a draining node's `reconnect` asks for, or null when it cannot be one (no
   * token, or no session of ours to keep). A missing or odd `within_ms` counts as 0: one
   * attempt, no retries.
   * @param {{resume_token?: unknown, within_ms?: unknown}} msg
   * @param {Omit<ResumeParams, 'token'|'withinMs'|'peerId'> & {peerId: string|null}} where
   * @param {ResumeHost} host
   */
  static fromReconnect(msg, where, host) {
    if (!where.peerId || typeof msg.resume_token !== 'string') return null;
    const withinMs = Math.max(0, Number(msg.within_ms) || 0);
    return new Resumption({ ...where, peerId: where.peerId, token: msg.resume_token, withinMs }, host);
  }

  /**
   * Leaves the draining node: close its socket (1000) and wait for its close, which `drained`
   * reports — or, should it never come, for `DRAIN_TIMEOUT_MS`. Frames that arrive before it
   * are handled as usual — where they arrive at all: a browser delivers none after `close()`
   * (WHATWG WebSockets: a message is dropped unless the socket is OPEN), so the node must not
   * write anything after `reconnect` but its close (later frames belong in the parked session).
   * @param {WebSocket} ws
   */
  begin(ws) {
    this.#host.log(`the node is draining; resuming within ${this.#p.withinMs} ms`);
    this.#host.state('resuming', { withinMs: this.#p.withinMs, cause: 'drain' });
    ws.close(1000, 'resume');
    this.#schedule(DRAIN_TIMEOUT_MS, () => {
      this.#host.log('no close from the draining node in time; resuming anyway');
      this.#host.drainTimedOut();
    });
  }

  /** The draining socket closed (or we stopped waiting for it): go, with a little jitter. */
  drained() {
    if (this.#over) return;
    this.#start();
  }

  /**
   * The socket broke (`code`: its close, or 1006 for one we found dead): resume at once.
   * @param {number} code
   * @param {string} reason
   * @param {WebSocket|null} dead The socket, when it never closed.
   */
  afterBreak(code, reason, dead) {
    this.#dead = dead;
    this.#host.log(`connection lost (${code} ${reason}); resuming within ${this.#p.withinMs} ms`);
    this.#host.state('resuming', { withinMs: this.#p.withinMs, cause: 'break', code, reason });
    this.#start();
  }

  /** Ends the resume: stops what is scheduled and closes the attempts still under way. */
  cancel() {
    this.#over = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#deadlineTimer);
    this.#timer = 0;
    for (const ws of this.#attempts.keys()) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close(1000, 'bye');
    }
    this.#attempts.clear();
    this.#dead?.close(1000, 'bye');
    this.#dead = null;
  }

  /** How long the session was away, since the break or the `reconnect`. */
  gapMs() {
    return Date.now() - this.#since;
  }

  // ---- attempts ------------------------------------------------------------------------------

  #start() {
    // A wave of clients dropped at once spreads out.
    this.#schedule(Math.round(Math.random() * RESUME_JITTER_MS), () => this.#dial());
    const left = Math.max(0, this.#deadline - Date.now());
    this.#deadlineTimer = setTimeout(() => this.#giveUp(`no node took it within the server's window of ${this.#p.withinMs} ms`), left + LAST_ATTEMPT_MS);
  }

  /**
   * Runs `f` in `delayMs`, unless something is due sooner already.
   * @param {number} delayMs
   * @param {() => void} f
   */
  #schedule(delayMs, f) {
    const at = Date.now() + delayMs;
    if (this.#timer && this.#timerAt <= at) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = 0;
      if (!this.#over) f();
    }, delayMs);
  }

  /** One attempt, on the next URL that has none under way. */
  #dial() {
    const { urls, token } = this.#p;
    // The first attempt goes whatever the window (a drain's `within_ms` of 0 still gets one).
    if (this.#refused || (this.attempt > 0 && Date.now() >= this.#deadline)) return;
    const busy = new Set([...this.#attempts.values()].map((a) => a.index));
    let index = -1;
    for (let i = 0; i < urls.length && index < 0; i++) if (!busy.has((this.#next + i) % urls.length)) index = (this.#next + i) % urls.length;
    if (index < 0) return; // every URL has a silent attempt: a close reschedules
    this.#next = (index + 1) % urls.length;
    // The first attempt's state is the `resuming` that began it.
    if (this.attempt > 0) this.#host.state('resuming', { attempt: this.attempt, url: urls[index] });
    this.attempt += 1;
    let ws;
    try {
      ws = this.#host.socket(withResume(urls[index], token, this.#p.lastSeq()));
    } catch (e) {
      return this.#giveUp(`cannot open ${urls[index]}: ${e}`);
    }
    this.#attempts.set(ws, { index, error: null });
    ws.onmessage = (ev) => this.#onFrame(ws, ev.data);
    ws.onclose = (ev) => this.#onClose(ws, ev.code, ev.reason);
    if (busy.size + 1 < urls.length) this.#schedule(HEDGE_MS, () => this.#dial());
  }

  /**
   * @param {WebSocket} ws
   * @param {string} text
   */
  #onFrame(ws, text) {
    const a = this.#attempts.get(ws);
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return this.#host.log(`not JSON: ${String(text).slice(0, 80)}`);
    }
    if (!a) return;
    if (msg.type === 'error') {
      a.error = msg;
      return this.#host.log(`resume attempt refused: ${msg.code}: ${msg.message}`);
    }
    if (msg.type !== 'welcome') return this.#host.log(`${msg.type} before the resumed welcome; ignored`);
    // Only a resumed welcome with our own peer id answers a resume (a fresh one never should).
    if (msg.resumed !== true || msg.peer_id !== this.peerId) {
      return this.#giveUp(`a fresh session (${msg.peer_id}) instead of ${this.peerId}`);
    }
    this.#attempts.delete(ws);
    ws.onopen = ws.onmessage = ws.onclose = null;
    this.cancel();
    this.#host.resumed(ws, msg, a.index);
  }

  /**
   * An attempt closed without a resumed welcome: try again while the window lasts, unless a
   * node refused the token, which no retry can change.
   * @param {WebSocket} ws
   * @param {number} code
   * @param {string} reason
   */
  #onClose(ws, code, reason) {
    const a = this.#attempts.get(ws);
    this.#attempts.delete(ws);
    if (!a || this.#over) return;
    if (a.error?.code === 'resume-failed' || code === CLOSE_RESUME_FAILED) this.#refused ??= `refused (${a.error?.message ?? reason})`;
    if (this.#refused) {
      // Another attempt may still hold the session (it spent the token this one was refused).
      if (this.#attempts.size === 0) this.#giveUp(this.#refused);
      return;
    }
    if (Date.now() >= this.#deadline) {
      if (this.#attempts.size === 0) this.#giveUp(`no node took it within the server's window (last close ${code} ${reason})`);
      return;
    }
    const delayMs = Math.min(this.#backoffMs, this.#deadline - Date.now());
    this.#backoffMs = Math.min(RESUME_BACKOFF_MAX_MS, this.#backoffMs * 2);
    this.#schedule(delayMs, () => this.#dial());
  }

  /** @param {string} why */
  #giveUp(why) {
    if (this.#over) return;
    this.cancel();
    this.#host.abandon(why);
  }
}

/**
 * `url` with `resume=<token>` (percent-encoded) and, when given, `last_seq=<n>` added to its
 * query; what is there (`access_token`, `room`, …) stays as it was, byte for byte.
 * @param {string} url
 * @param {string} token
 * @param {number} [lastSeq]
 */
export function withResume(url, token, lastSeq) {
  const sep = !url.includes('?') ? '?' : /[?&]$/.test(url) ? '' : '&';
  const seq = lastSeq === undefined ? '' : `&last_seq=${lastSeq}`;
  return `${url}${sep}resume=${encodeURIComponent(token)}${seq}`;
}
