// What one signaling session keeps across its sockets (a resume changes the socket, not the
// session) — the numbering of both directions and the requests waiting for replies — and the
// `Link` to whichever socket is current, with its liveness probe. `switchboard-signaling.js`
// owns them.
//
// The numbering (docs/protocol.md, "Resume") is what makes a resume lose and repeat nothing:
// - Server → client: every frame after `welcome` carries `seq`. We remember the highest one
//   (`lastSeq`, sent back as `last_seq` on a resume) and acknowledge it (`{"type":"ack"}`),
//   because the server holds every unacknowledged frame for a resume and gives the session up
//   when that buffer overflows (1024 frames by default): an ack every 32 frames stays far
//   below it, and one within a second of any frame keeps a quiet session's buffer empty.
// - Client → server: every message but `ack` carries `cseq` (1, 2, 3… per session). We keep
//   each until the server says it processed it (`pong.last_cseq`, a resumed `welcome`'s
//   `last_cseq`), because a message written into a socket that then died may or may not have
//   arrived; after a resume we send again everything after `last_cseq`, and the server drops
//   what it has seen, so sending again is always safe. An ack is not numbered: acks are
//   cumulative, so a lost one is repaired by the next, or by the resume's `last_seq`.

import { SwitchboardError } from './switchboard-protocol.js';

/** Acknowledge after this many frames at the latest, */
const ACK_EVERY_FRAMES = 32;
/** and within this long of the first unacknowledged one. */
const ACK_AFTER_MS = 1000;
/** Unconfirmed messages kept; pongs confirm them every heartbeat, so this is far from reached. */
const OUTBOX_MAX = 1000;
/** The shortest ping interval, whatever the server's heartbeat. */
const MIN_HEARTBEAT_MS = 500;
/** A ping with nothing at all arriving for this many heartbeats after it: the socket is dead. */
const PROBE_HEARTBEATS = 1.5;

/** @typedef {{cseq: number, text: string, written: boolean}} Outgoing A message as sent. */

/** Both directions' numbering of one signaling session. */
export class Sequencer {
  /** The highest `seq` received. */
  lastSeq = 0;
  /** Whether the server numbers this session (its `welcome` had a `resume_token`). */
  numbered = false;

  /** The highest `seq` the server knows we have. */
  #acked = 0;
  #ackTimer = 0;
  #nextCseq = 1;
  /** Sent (or waiting to be) and not yet confirmed, in order. @type {Outgoing[]} */
  #outbox = [];
  /** The highest `cseq` dropped from the outbox before it was confirmed (0: none). */
  #dropped = 0;
  /** Writes a text frame on the live socket if there is one; false when there is none. */
  #write;

  /** @param {(text: string) => boolean} write */
  constructor(write) {
    this.#write = write;
  }

  /**
   * A fresh session: nothing is kept from the last one.
   * @param {boolean} numbered
   */
  reset(numbered) {
    this.pause();
    this.numbered = numbered;
    this.lastSeq = this.#acked = this.#dropped = 0;
    this.#nextCseq = 1;
    this.#outbox = [];
  }

  /** The socket is gone: no ack until there is one again. */
  pause() {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = 0;
  }

  /**
   * Takes a frame's `seq`. False for one seen before: a duplicate, to be dropped (the server
   * never sends one, but the exactly-once promise is ours to keep too).
   * @param {unknown} seq
   */
  received(seq) {
    if (typeof seq !== 'number') return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    if (this.lastSeq - this.#acked >= ACK_EVERY_FRAMES) this.ack();
    else if (!this.#ackTimer) this.#ackTimer = setTimeout(() => this.ack(), ACK_AFTER_MS);
    return true;
  }

  /** Acknowledges everything received, if there is anything new and a socket to say it on. */
  ack() {
    this.pause();
    if (this.lastSeq <= this.#acked) return;
    if (this.#write(JSON.stringify({ type: 'ack', seq: this.lastSeq }))) this.#acked = this.lastSeq;
  }

  /** A resume carried `last_seq`: that acknowledges everything received so far. */
  resumed() {
    this.#acked = this.lastSeq;
  }

  /**
   * Numbers `msg` (when the session is numbered) and keeps it until it is confirmed.
   * @param {object} msg
   * @returns {Outgoing}
   */
  number(msg) {
    const cseq = this.#nextCseq++;
    const entry = { cseq, text: JSON.stringify(this.numbered ? { ...msg, cseq } : msg), written: false };
    this.#outbox.push(entry);
    if (this.#outbox.length > OUTBOX_MAX) this.#dropped = /** @type {Outgoing} */ (this.#outbox.shift()).cseq;
    return entry;
  }

  /**
   * Writes `entry` on the live socket, if there is one (else it waits for a resume). A server
   * that does not number its session confirms nothing: there, only what was never written is
   * kept (for a drain's resume, which such a server supports).
   * @param {Outgoing} entry
   */
  send(entry) {
    entry.written = this.#write(entry.text);
    if (entry.written && !this.numbered) this.#outbox = this.#outbox.filter((e) => e !== entry);
    return entry.written;
  }

  /**
   * The server processed every message up to `lastCseq`.
   * @param {unknown} lastCseq
   */
  confirm(lastCseq) {
    if (typeof lastCseq !== 'number') return;
    let i = 0;
    while (i < this.#outbox.length && this.#outbox[i].cseq <= lastCseq) i++;
    if (i > 0) this.#outbox.splice(0, i);
  }

  /**
   * What to send again after a resumed `welcome` (`last_cseq`, absent from servers that do not
   * number): in order; null when some of it was dropped from the full outbox (then the session
   * cannot go on as if nothing happened).
   * @param {unknown} lastCseq
   * @returns {Outgoing[]|null}
   */
  unconfirmed(lastCseq) {
    if (typeof lastCseq !== 'number') return this.#outbox.filter((e) => !e.written);
    this.confirm(lastCseq);
    if (this.#dropped > lastCseq) return null;
    return [...this.#outbox];
  }
}

/**
 * Requests waiting for their reply (`joined`, `left`, `pong`), matched by the `id` they carry.
 * They survive a resume: the numbering gets each to the server once and its reply back once.
 */
export class Requests {
  #nextId = 1;
  /** @type {Map<string, {resolve: Function, reject: Function}>} */
  #pending = new Map();

  /**
   * Sends `msg` with a fresh `id` through `send`; resolves with the reply that echoes it or
   * rejects with the `error` that does, or with `disconnected` (not sent, or the session ended).
   * @param {object} msg
   * @param {(msg: object) => boolean} send
   * @returns {Promise<any>}
   */
  request(msg, send) {
    const id = `c${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      if (!send({ ...msg, id })) return reject(new SwitchboardError('disconnected', 'not connected'));
      this.#pending.set(id, { resolve, reject });
    });
  }

  /**
   * @param {unknown} id
   * @param {any} reply
   * @param {SwitchboardError} [err]
   */
  settle(id, reply, err) {
    if (id === undefined || id === null) return;
    const waiter = this.#pending.get(String(id));
    if (!waiter) return;
    this.#pending.delete(String(id));
    if (err) waiter.reject(err);
    else waiter.resolve(reply);
  }

  /** The session ended: every request fails with `disconnected`. */
  dropAll() {
    const waiting = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of waiting) p.reject(new SwitchboardError('disconnected', 'the connection dropped'));
  }
}

/**
 * The session's current socket: its events go to the session, and its liveness is watched.
 *
 * The server pings at the WebSocket level, which a page never sees, and a path that stopped
 * carrying packets (a NAT that forgot us, a laptop that slept, a stalled proxy) closes nothing
 * for minutes: our own `ping` each heartbeat finds it. Nothing at all arriving for 1.5
 * heartbeats after a ping makes the socket dead — about two heartbeats after the path stopped;
 * the server, hearing nothing either, holds the session for its resume. A background tab's
 * late timers only delay that verdict, never cause one: it asks what arrived after the ping.
 */
export class Link {
  /** @type {WebSocket} */
  ws;
  /** Whether it opened (a socket that never did means the URL is unreachable). */
  opened;
  #pingTimer = 0;
  /** Set while a ping waits for anything at all to arrive. */
  #probeTimer = 0;

  /**
   * @param {WebSocket} ws
   * @param {boolean} opened
   * @param {{frame: (text: string) => void, closed: (code: number, reason: string) => void}} on
   */
  constructor(ws, opened, on) {
    this.ws = ws;
    this.opened = opened;
    ws.onopen = () => {
      this.opened = true;
    };
    ws.onmessage = (ev) => {
      this.#alive();
      on.frame(ev.data);
    };
    ws.onclose = (ev) => on.closed(ev.code, ev.reason);
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** @param {string} text */
  write(text) {
    if (!this.open) return false;
    this.ws.send(text);
    return true;
  }

  /**
   * Pings every heartbeat and reports the socket dead as above.
   * @param {number} ms The server's heartbeat (`welcome.heartbeat_ms`).
   * @param {() => boolean} ping Sends a ping; false when it could not.
   * @param {(why: string) => void} dead
   */
  heartbeat(ms, ping, dead) {
    this.quiet();
    const every = Math.max(MIN_HEARTBEAT_MS, Number(ms) || 15000);
    const probeMs = PROBE_HEARTBEATS * every;
    this.#pingTimer = setInterval(() => {
      if (!ping() || this.#probeTimer) return;
      this.#probeTimer = setTimeout(() => {
        this.quiet();
        dead(`nothing arrived for ${probeMs} ms after a ping`);
      }, probeMs);
    }, every);
  }

  /** No more pings (nor verdicts) on this socket. */
  quiet() {
    clearInterval(this.#pingTimer);
    this.#alive();
    this.#pingTimer = 0;
  }

  /** Stops listening to the socket (which stays as it is) and returns it. */
  detach() {
    this.quiet();
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
    return this.ws;
  }

  #alive() {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = 0;
  }
}
