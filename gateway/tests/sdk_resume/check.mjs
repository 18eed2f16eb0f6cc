// The SDK's signaling session against a scripted server: a fake WebSocket stands in for the
// browser's, and each check plays the server's side of docs/protocol.md ("Resume") by hand —
// numbering, acks, a break, a silent socket, a refusal, a drain, a second URL, a clean close.
// It needs no node and no browser: gateway/tests/sdk_resume.rs copies the SDK's modules next
// to this script and runs it with Node. It prints `ok <name>` per check, and exits 1 on the
// first failure.
//
// Usage: node check.mjs (from a directory holding it and the SDK's switchboard-*.js)

import assert from 'node:assert/strict';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** A browser WebSocket as the SDK uses it, driven by the check (the "server"). */
class FakeSocket {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static CLOSING = CLOSING;
  static CLOSED = CLOSED;
  /** @type {FakeSocket[]} */
  static all = [];

  /** @param {string} url @param {string[]} protocols */
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = CONNECTING;
    /** @type {any[]} */
    this.sent = [];
    /** @type {{code?: number, reason?: string}|null} */
    this.closedWith = null;
    /** Answers pings with pongs by itself (with the next `seq` of `server`). */
    this.autoPong = false;
    /** @type {{seq: number}} */
    this.server = { seq: 0 };
    /** @type {any} */ this.onopen = null;
    /** @type {any} */ this.onmessage = null;
    /** @type {any} */ this.onclose = null;
    FakeSocket.all.push(this);
  }

  /** @param {string} text */
  send(text) {
    if (this.readyState !== OPEN) throw new Error(`send on a socket in state ${this.readyState}`);
    const msg = JSON.parse(text);
    this.sent.push(msg);
    if (this.autoPong && msg.type === 'ping') setTimeout(() => this.frame({ type: 'pong', last_cseq: msg.cseq }), 1);
  }

  /** @param {number} [code] @param {string} [reason] */
  close(code, reason) {
    if (this.closedWith) return;
    this.closedWith = { code, reason };
    if (this.readyState === CONNECTING) {
      // A browser fails a connection still being made: no close frame, a 1006 close event.
      this.readyState = CLOSED;
      setTimeout(() => this.onclose?.({ code: 1006, reason: '' }), 0);
    } else if (this.readyState === OPEN) this.readyState = CLOSING;
  }

  // ---- the server's side ----

  open() {
    this.readyState = OPEN;
    this.onopen?.({});
  }

  /** Delivers `msg` as is (a welcome, or a frame with its own seq). @param {object} msg */
  deliver(msg) {
    if (this.readyState !== OPEN) return;
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  /** Delivers `msg` numbered with the server's next seq. @param {object} msg */
  frame(msg) {
    this.deliver({ seq: ++this.server.seq, ...msg });
  }

  /** The connection ends (a close frame from the server, or a reset: 1006). @param {number} code */
  end(code, reason = '') {
    this.readyState = CLOSED;
    this.onclose?.({ code, reason });
  }

  /** What the client sent, by type. @param {string} type */
  sentOf(type) {
    return this.sent.filter((m) => m.type === type);
  }
}

Object.assign(globalThis, { WebSocket: FakeSocket });
const { Signaling } = await import('./switchboard-signaling.js');

const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/** @template T @param {() => T} f @param {string} what @returns {Promise<NonNullable<T>>} */
async function until(f, what, ms = 4000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return /** @type {NonNullable<T>} */ (v);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * A Signaling with every hook recorded; like the SDK's client, it joins from `up` (before the
 * state says `connected`) unless the welcome resumed.
 * @param {object} [opts]
 */
function client(opts = {}) {
  const seen = { joins: /** @type {Promise<any>[]} */ ([]), states: /** @type {any[]} */ ([]), up: /** @type {any[]} */ ([]), down: /** @type {boolean[]} */ ([]), messages: /** @type {any[]} */ ([]), errors: /** @type {string[]} */ ([]), lines: /** @type {string[]} */ ([]) };
  const sig = new Signaling(
    { url: 'ws://a.test/v1/ws', ...opts },
    {
      beforeDial: async () => {},
      up: (w) => {
        seen.up.push(w);
        if (!w.resumed) seen.joins.push(sig.request({ type: 'join', room: 'r' }).catch((e) => e.code));
      },
      down: (r) => seen.down.push(r),
      message: (m) => seen.messages.push(m),
      state: (state, fields) => seen.states.push({ state, ...fields }),
      error: (e) => seen.errors.push(e.code),
      log: (l) => seen.lines.push(l),
    },
  );
  return { sig, seen };
}

const welcome = (/** @type {object} */ extra = {}) => ({ type: 'welcome', protocol: 1, peer_id: 'p1', node_id: 'n0', heartbeat_ms: 500, resume_token: 'p1.t1', resume_within_ms: 3000, ...extra });
/** The socket made after `n` sockets existed. */
const socketAfter = (/** @type {number} */ n) => until(() => FakeSocket.all[n], `socket #${n}`);
const broadcast = (/** @type {any} */ data) => ({ type: 'broadcast', room: 'r', data });

/** A connected client on a fresh socket. @param {object} [opts] @param {object} [w] */
async function connected(opts, w) {
  const c = client(opts);
  const n = FakeSocket.all.length;
  c.sig.open();
  const ws = await socketAfter(n);
  ws.open();
  ws.deliver(welcome(w));
  assert.equal(c.sig.state, 'connected');
  return { ...c, ws };
}

/** @param {string} name @param {() => Promise<void>} body */
async function check(name, body) {
  try {
    await body();
    console.log(`ok ${name}`);
  } catch (e) {
    console.error(`FAILED ${name}: ${e instanceof Error ? e.stack : e}`);
    process.exit(1);
  }
}

await check('numbering: cseq on what we send, acks every 32 frames or within 1 s, duplicates dropped', async () => {
  const { sig, seen, ws } = await connected();
  sig.send(broadcast(1));
  sig.send(broadcast(2));
  // The join went out from `up`, before the state said `connected`.
  assert.deepEqual(ws.sentOf('join').map((m) => m.cseq), [1]);
  assert.deepEqual(ws.sentOf('broadcast').map((m) => m.cseq), [2, 3]);
  for (let i = 0; i < 40; i++) ws.frame(broadcast(i));
  // The 32nd frame is acknowledged at once, the rest within a second.
  assert.deepEqual(ws.sentOf('ack'), [{ type: 'ack', seq: 32 }]);
  assert.ok(ws.sentOf('ack').every((a) => a.cseq === undefined), 'an ack is not numbered');
  ws.deliver({ seq: 7, ...broadcast('again') });
  assert.equal(seen.messages.length, 40, 'a frame seen before is dropped');
  await until(() => ws.sentOf('ack').length === 2, 'the ack of the last 8 frames', 1500);
  assert.deepEqual(ws.sentOf('ack')[1], { type: 'ack', seq: 40 });
  // Pings are numbered too.
  const ping = await until(() => ws.sentOf('ping')[0], 'a ping', 1000);
  assert.equal(ping.cseq, 4);
  sig.close();
});

await check('an abnormal close resumes: same session, the gap replayed both ways once', async () => {
  const { sig, seen, ws } = await connected();
  ws.autoPong = true;
  const joined = seen.joins[0];
  sig.send(broadcast('a')); // cseq 2 (the join is 1)
  sig.send(broadcast('b')); // cseq 3
  const join = ws.sentOf('join')[0];
  for (let i = 0; i < 3; i++) ws.frame(broadcast(i));
  const lastSeq = ws.server.seq;
  ws.end(1006);
  const resuming = seen.states.at(-1);
  assert.equal(resuming.state, 'resuming');
  assert.equal(resuming.cause, 'break');
  assert.equal(resuming.code, 1006);
  assert.equal(sig.send(broadcast('c')), true, 'sent during the gap: kept');
  const n = FakeSocket.all.length;
  const again = await socketAfter(n);
  assert.match(again.url, new RegExp(`[?&]resume=p1\\.t1&last_seq=${lastSeq}(&|$)`));
  assert.deepEqual(again.protocols, ['switchboard.v1']);
  again.server = ws.server;
  again.open();
  // The server had processed the join and 'a' (cseq 2); 'b' and 'c' must come again, in order.
  again.deliver(welcome({ resumed: true, last_cseq: 2, resume_token: 'p1.t2' }));
  assert.deepEqual(again.sent.filter((m) => m.type !== 'ping').map((m) => [m.cseq, m.data]), [[3, 'b'], [4, 'c']]);
  const connectedState = seen.states.at(-1);
  assert.equal(connectedState.state, 'connected');
  assert.equal(connectedState.resumed, true);
  assert.deepEqual(seen.down, [], 'the session was not lost');
  // The join's reply arrives in the replay; a frame from before the break is dropped.
  again.frame({ type: 'joined', room: 'r', peer_id: 'p1', peers: [], id: join.id });
  again.deliver({ seq: lastSeq, ...broadcast('old') });
  assert.equal(seen.messages.filter((m) => m.data === 'old').length, 0);
  assert.equal(seen.messages.filter((m) => m.type === 'joined').length, 1);
  assert.equal((await joined).peer_id, 'p1', 'the request sent before the break got its reply');
  // The next break uses the fresh token.
  again.end(1006);
  const third = await socketAfter(n + 1);
  assert.match(third.url, /resume=p1\.t2&last_seq=\d+/);
  sig.close();
});

await check('a silent socket is taken for dead after ~2 heartbeats and resumed; it is closed only then', async () => {
  const { sig, seen, ws } = await connected();
  const n = FakeSocket.all.length;
  const t0 = Date.now();
  // No pong: 500 ms to the first ping, 750 more to the verdict.
  const again = await socketAfter(n);
  const took = Date.now() - t0;
  assert.ok(took >= 1100 && took < 2200, `dead after ${took} ms`);
  assert.equal(seen.states.at(-1).cause, 'break');
  assert.equal(ws.closedWith, null, 'a close frame could end the session if it got through later');
  again.open();
  again.deliver(welcome({ resumed: true, last_cseq: 1 }));
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'bye' }, 'closed once resumed');
  sig.close();
});

await check('resume-failed: the app hears it, the session starts afresh', async () => {
  const { sig, seen, ws } = await connected();
  sig.send(broadcast('lost'));
  ws.end(4000, 'idle-timeout');
  const n = FakeSocket.all.length;
  const attempt = await socketAfter(n);
  attempt.open();
  attempt.deliver({ type: 'error', code: 'resume-failed', message: 'unknown token' });
  attempt.end(4410, 'resume-failed');
  assert.deepEqual(seen.errors, ['resume-failed']);
  assert.deepEqual(seen.down, [true]);
  const fresh = await socketAfter(n + 1);
  assert.ok(!fresh.url.includes('resume='), fresh.url);
  fresh.open();
  fresh.deliver(welcome({ peer_id: 'p2', resume_token: 'p2.t1' }));
  assert.equal(seen.up.at(-1).peer_id, 'p2');
  sig.send(broadcast('new'));
  assert.deepEqual(fresh.sent.filter((m) => m.type !== 'ping').map((m) => [m.cseq, m.type, m.data]), [[1, 'join', undefined], [2, 'broadcast', 'new']], 'numbering restarts; nothing of the old session');
  assert.equal(await seen.joins[0], 'disconnected', "the old session's join failed");
  sig.close();
});

await check('no node within the window: resume-failed, then afresh', async () => {
  const { sig, seen, ws } = await connected(undefined, { resume_within_ms: 600 });
  const n = FakeSocket.all.length;
  ws.end(1006);
  // Every attempt is refused at the TCP level (the node is down).
  const started = Date.now();
  while (!seen.errors.includes('resume-failed')) {
    const last = FakeSocket.all.at(-1);
    if (last && FakeSocket.all.length > n && last.readyState === CONNECTING && !last.closedWith) last.end(1006);
    if (Date.now() - started > 4000) throw new Error('never gave up');
    await sleep(10);
  }
  const attempts = FakeSocket.all.slice(n).filter((s) => s.url.includes('resume='));
  assert.ok(attempts.length >= 3, `${attempts.length} attempts with backoff`);
  assert.deepEqual(seen.down, [true]);
  sig.close();
});

await check('a second URL gets an attempt while the first is silent; the first is closed once resumed', async () => {
  const { sig, seen, ws } = await connected({ urls: ['ws://b.test/v1/ws'] });
  const n = FakeSocket.all.length;
  ws.end(1006);
  const silent = await socketAfter(n);
  assert.ok(silent.url.startsWith('ws://a.test/'), silent.url);
  const other = await socketAfter(n + 1);
  assert.ok(other.url.startsWith('ws://b.test/') && other.url.includes('resume=p1.t1'), other.url);
  assert.equal(silent.closedWith, null, 'the silent attempt is left alone');
  other.open();
  other.deliver(welcome({ resumed: true, node_id: 'n1', last_cseq: 0 }));
  assert.equal(seen.states.at(-1).url, 'ws://b.test/v1/ws');
  assert.ok(silent.closedWith, 'closed once another resumed');
  sig.close();
});

await check('a drain: close 1000, wait for the node, resume with last_seq; what was sent meanwhile goes once', async () => {
  const { sig, seen, ws } = await connected();
  ws.frame(broadcast('x'));
  ws.frame({ type: 'reconnect', resume_token: 'p1.t1', within_ms: 2000 });
  assert.equal(seen.states.at(-1).cause, 'drain');
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'resume' });
  sig.send(broadcast('meanwhile'));
  assert.equal(ws.sentOf('broadcast').length, 0, 'nothing more on the draining socket');
  const n = FakeSocket.all.length;
  ws.end(1012, 'service-restart');
  const again = await socketAfter(n);
  assert.match(again.url, /resume=p1\.t1&last_seq=2/);
  again.open();
  again.deliver(welcome({ resumed: true, last_cseq: 0 }));
  assert.deepEqual(again.sentOf('broadcast').map((m) => m.data), ['meanwhile']);
  sig.close();
});

await check('close() ends the session at once with a close frame, also while resuming', async () => {
  const a = await connected();
  a.sig.close();
  assert.deepEqual(a.ws.closedWith, { code: 1000, reason: 'bye' });
  assert.equal(a.seen.states.at(-1).state, 'closed');
  const b = await connected();
  const n = FakeSocket.all.length;
  b.ws.end(1006);
  const attempt = await socketAfter(n);
  b.sig.close();
  assert.ok(attempt.closedWith, 'the attempt is dropped');
  await sleep(300);
  assert.equal(FakeSocket.all.length, n + 1, 'nothing dialled after close()');
});

await check('no resume token (an older node): a break reconnects afresh as before', async () => {
  const { sig, seen, ws } = await connected(undefined, { resume_token: undefined });
  sig.send(broadcast(1));
  assert.equal(ws.sentOf('broadcast')[0].cseq, undefined, 'an unnumbered session sends no cseq');
  ws.deliver(broadcast('n'));
  await sleep(1100);
  assert.equal(ws.sentOf('ack').length, 0, 'nothing numbered, nothing acknowledged');
  ws.end(1006);
  assert.equal(seen.states.at(-1).state, 'reconnecting');
  sig.close();
});
