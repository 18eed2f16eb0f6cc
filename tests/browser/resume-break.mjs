// Two demo pages in a call keep it through breaks of one page's network to its node (issue 13).
//
// Page A is served by node A but signals through a TCP proxy in front of it (the test's: it
// resets and stalls on command); page B is on node B. Once they decode each other's video,
// the proxy is cut twice, each time while both pages send chat — over the data channel and,
// through the server, as `broadcast`s (which ride the signaling session that breaks):
//
// 1. reset: every connection through the proxy gets an RST. A's socket closes (1006) and the
//    SDK resumes at once, through the proxy again.
// 2. stall: the proxy forwards nothing for STALL_MS, closing nothing. A's SDK finds its socket
//    dead (no answer to its ping, ~2 heartbeats) and starts a resume that hangs in the stalled
//    path; node A idles the socket out (4000) and holds the session. Then the proxy heals and
//    the resume that was waiting goes through.
//
// Expected, each time: A says `resuming` (cause `break`), then `connected` with `resumed`, same
// peer id; B's tile of A shows "reconnecting…" (`peer-presence`), then not; no `peer-left` or
// `peer-joined` anywhere, no error; the very same RTCPeerConnection object on both pages (tagged
// before the breaks), and their remote video keeps decoding (`framesDecoded` from getStats
// grows); every chat line and broadcast sent around the break arrives exactly once, in order,
// both ways. Screenshots: resume-break-b-reconnecting.png (B during the stall), resume-break-a.png
// and resume-break-b.png (after it).
//
// The test process holds the proxy: `control reset|stall|heal` on stdout, the answer on stdin.
//
// Usage: node resume-break.mjs ARTIFACT_DIR BASE_A BASE_B PROXY_WS_URL
import { createInterface } from 'node:readline';
import { at, scenario, sleep, untilDecodingFrom } from './lib.mjs';

/** How long the stall lasts: past node A's idle timeout, so that it takes the socket for lost. */
const STALL_MS = 5000;

const stdin = createInterface({ input: process.stdin });
const answers = stdin[Symbol.asyncIterator]();
/** Asks the test to act on the proxy; resolves with its answer. @param {string} command */
async function control(command) {
  console.log(`control ${command}`);
  const { value } = await answers.next();
  return value;
}

await scenario('resume-break', 90000, async (s, [baseA, baseB, proxyWs]) => {
  const browser = await s.browser();
  const room = `resume-break-${Date.now()}`;
  const ws = new URL('/v1/ws', proxyWs).toString();
  const a = await s.page(browser, 'A', at(baseA, '/', { room, user: 'ann', autojoin: '1', res: '320x240', ws }));
  await s.until(a, 'A never got into the room', () => demo.state === 'waiting');
  const b = await s.page(browser, 'B', at(baseB, '/', { room, user: 'bob', autojoin: '1', res: '320x240' }));
  await untilDecodingFrom(s, a, 'A', 1);
  await untilDecodingFrom(s, b, 'B', 1);
  for (const [p, who] of /** @type {const} */ ([[a, 'A'], [b, 'B']])) {
    await s.until(p, `${who} never decoded 30 frames`, () => Object.values(demo.peers).every((x) => x.framesDecoded >= 30), undefined, 15000);
  }

  // Each page tags its one peer connection and records what its SDK and page say from now on.
  const record = (/** @type {string} */ tag) => {
    const client = /** @type {any} */ (demo.client);
    const [[remoteId, peer]] = [...client.peers.entries()];
    peer.pc.sbTag = tag;
    const rec = {
      client,
      remoteId,
      peer,
      pc: peer.pc,
      tag,
      states: /** @type {any[]} */ ([]),
      presence: /** @type {string[]} */ ([]),
      shown: /** @type {string[]} */ ([]),
      notices: /** @type {string[]} */ ([]),
      peerLeft: /** @type {any[]} */ ([]),
      peerJoined: /** @type {any[]} */ ([]),
      unsent: /** @type {string[]} */ ([]),
    };
    client.addEventListener('connection-state', (/** @type {any} */ e) =>
      rec.states.push({ state: e.state, cause: e.cause, code: e.code, resumed: e.resumed, gapMs: e.gapMs, peerId: e.peerId, at: Date.now() }),
    );
    client.addEventListener('peer-presence', (/** @type {any} */ e) => e.peerId === remoteId && rec.presence.push(e.state));
    client.addEventListener('peer-left', (/** @type {any} */ e) => rec.peerLeft.push({ peerId: e.peerId, reason: e.reason }));
    client.addEventListener('peer-joined', (/** @type {any} */ e) => rec.peerJoined.push({ peerId: e.peerId }));
    // What the page shows: the remote tile's presence line, and its own notice.
    const line = /** @type {HTMLElement} */ (document.querySelector(`[data-peer-id="${CSS.escape(remoteId)}"] .presence`));
    new MutationObserver(() => rec.shown.push(line.textContent ?? '')).observe(line, { childList: true, characterData: true, subtree: true });
    new MutationObserver(() => {
      const text = demo.notices.reconnecting;
      if (text && rec.notices.at(-1) !== text) rec.notices.push(text);
    }).observe(/** @type {HTMLElement} */ (document.getElementById('notices')), { childList: true, characterData: true, subtree: true });
    Object.assign(window, { rec });
  };
  await a.evaluate(record, 'pc-of-ann');
  await b.evaluate(record, 'pc-of-bob');

  /** Frames decoded so far, straight from the tagged peer connection, and whether it is still the client's. */
  const look = (/** @type {import('playwright-core').Page} */ p) =>
    p.evaluate(async () => {
      const rec = /** @type {any} */ (window).rec;
      let frames = 0;
      for (const st of (await rec.pc.getStats()).values()) if (st.type === 'inbound-rtp' && st.kind === 'video') frames += st.framesDecoded ?? 0;
      const current = demo.client?.peers.get(rec.remoteId);
      return {
        frames,
        peerId: demo.peerId,
        samePc: demo.client === rec.client && current === rec.peer && current?.pc === rec.pc && current?.pc.sbTag === rec.tag,
        pcState: rec.pc.connectionState,
      };
    });
  const growing = async (/** @type {import('playwright-core').Page} */ p, /** @type {string} */ who, /** @type {number} */ before) => {
    const t = Date.now();
    while ((await look(p)).frames <= before + 30) {
      if (Date.now() - t > 15000) s.fail(`${who}'s video stopped decoding (${before} frames before the break)`);
      await sleep(250);
    }
  };

  /**
   * Both pages send `count` chat lines and as many broadcasts, one of each every `everyMs`;
   * resolves once they were all handed to the SDK.
   * @param {string} phase @param {number} count @param {number} everyMs
   */
  const pump = (phase, count, everyMs) =>
    Promise.all(
      [[a, 'ann'], [b, 'bob']].map(([p, who]) =>
        /** @type {import('playwright-core').Page} */ (p).evaluate(
          ({ who, phase, count, everyMs }) =>
            new Promise((resolve) => {
              let n = 0;
              const timer = setInterval(() => {
                const text = `${who}-${phase}-${n}`;
                if (!demo.client?.broadcast({ text, who, phase, n })) /** @type {any} */ (window).rec.unsent.push(text);
                if (!demo.say(`chat ${text}`)) /** @type {any} */ (window).rec.unsent.push(`chat ${text}`);
                if (++n === count) {
                  clearInterval(timer);
                  resolve(n);
                }
              }, everyMs);
            }),
          { who, phase, count, everyMs },
        ),
      ),
    );

  /** Waits until `to` has every broadcast and chat line of `from`'s `phase`, then checks: once each, in order. */
  const arrived = async (/** @type {import('playwright-core').Page} */ to, /** @type {string} */ toName, /** @type {string} */ from, /** @type {string} */ phase, /** @type {number} */ count) => {
    const got = () =>
      to.evaluate(
        ({ from, phase }) => ({
          broadcasts: demo.broadcasts.filter((m) => m.data?.who === from && m.data?.phase === phase).map((m) => m.data.n),
          chat: demo.messages.filter((m) => m.text.startsWith(`chat ${from}-${phase}-`)).map((m) => Number(m.text.split('-').at(-1))),
        }),
        { from, phase },
      );
    const t = Date.now();
    let seen = await got();
    while ((seen.broadcasts.length < count || seen.chat.length < count) && Date.now() - t < 15000) {
      await sleep(200);
      seen = await got();
    }
    await sleep(500); // a duplicate would come right behind
    seen = await got();
    const want = JSON.stringify([...Array(count).keys()]);
    for (const [kind, list] of Object.entries(seen)) {
      if (JSON.stringify(list) !== want) s.fail(`${toName} got ${from}'s ${phase} ${kind} as ${JSON.stringify(list)}, not 0..${count - 1} once each in order`);
    }
    return seen.broadcasts.length;
  };

  const history = (/** @type {import('playwright-core').Page} */ p) =>
    p.evaluate(() => {
      const rec = /** @type {any} */ (window).rec;
      return { states: rec.states, presence: rec.presence, shown: rec.shown, notices: rec.notices, peer_left: rec.peerLeft, peer_joined: rec.peerJoined, unsent: rec.unsent, errors: demo.errors };
    });

  /** One break of A's path, and what both pages must show of it. */
  const phase = async (/** @type {string} */ name, /** @type {() => Promise<void>} */ brk, /** @type {number} */ count, /** @type {number} */ everyMs) => {
    const [beforeA, beforeB] = [await look(a), await look(b)];
    const resumesBefore = (await history(a)).states.filter((e) => e.state === 'connected' && e.resumed).length;
    const backBefore = (await history(b)).presence.filter((x) => x === 'connected').length;
    const t0 = Date.now();
    const pumping = pump(name, count, everyMs);
    await brk();
    await s.until(a, `A never resumed after the ${name}`, (n) => /** @type {any} */ (window).rec.states.filter((e) => e.state === 'connected' && e.resumed).length > n, resumesBefore, 20000);
    await s.until(b, `B never saw A back after the ${name}`, (n) => /** @type {any} */ (window).rec.presence.filter((x) => x === 'connected').length > n, backBefore, 20000);
    await pumping;
    const sent = [await arrived(b, 'B', 'ann', name, count), await arrived(a, 'A', 'bob', name, count)];
    await growing(a, 'A', beforeA.frames);
    await growing(b, 'B', beforeB.frames);
    const [afterA, afterB] = [await look(a), await look(b)];
    for (const [who, before, after] of /** @type {const} */ ([['A', beforeA, afterA], ['B', beforeB, afterB]])) {
      if (!after.samePc) s.fail(`${who}'s peer connection was replaced in the ${name}`);
      if (after.peerId !== before.peerId) s.fail(`${who}'s peer id changed in the ${name}: ${before.peerId} -> ${after.peerId}`);
    }
    const resume = (await history(a)).states.filter((e) => e.state === 'connected' && e.resumed).at(-1);
    return { took_ms: Date.now() - t0, gap_ms: resume.gapMs, frames: { a: [beforeA.frames, afterA.frames], b: [beforeB.frames, afterB.frames] }, each_way: sent };
  };

  // ---- 1. a reset ---------------------------------------------------------------------------
  const reset = await phase(
    'reset',
    async () => {
      await sleep(600);
      const answer = await control('reset');
      if (!/^reset [1-9]/.test(answer)) s.fail(`the proxy reset nothing: ${answer}`);
    },
    40,
    50,
  );

  // ---- 2. a stall, then heal --------------------------------------------------------------------
  let stallShot = '';
  let stalledFor = 0;
  const stall = await phase(
    'stall',
    async () => {
      const breaks = (await history(a)).states.filter((e) => e.state === 'resuming' && e.cause).length;
      const t = Date.now();
      await control('stall');
      // A finds its socket dead; B hears that A's is lost (node A's idle timeout).
      await s.until(a, 'A never took its stalled socket for dead', (n) => /** @type {any} */ (window).rec.states.filter((e) => e.state === 'resuming' && e.cause).length > n, breaks, STALL_MS);
      await s.until(b, 'B never showed A reconnecting during the stall', () => /** @type {any} */ (window).rec.presence.at(-1) === 'reconnecting' && document.querySelector('.tile.remote .presence')?.textContent === 'reconnecting…', undefined, STALL_MS + 2000);
      stallShot = await s.screenshot(b, 'resume-break-b-reconnecting.png');
      await sleep(Math.max(0, STALL_MS - (Date.now() - t)));
      stalledFor = Date.now() - t;
      await control('heal');
    },
    25,
    200,
  );

  const [histA, histB] = [await history(a), await history(b)];
  for (const [who, h] of /** @type {const} */ ([['A', histA], ['B', histB]])) {
    for (const list of /** @type {const} */ (['peer_left', 'peer_joined', 'errors', 'unsent'])) {
      if (h[list].length) s.fail(`${who}: ${list}: ${JSON.stringify(h[list])}`);
    }
  }
  const shots = [stallShot, await s.screenshot(a, 'resume-break-a.png'), await s.screenshot(b, 'resume-break-b.png')];
  return { reset, stall: { ...stall, stalled_ms: stalledFor }, a: histA, b: histB, screenshots: shots };
});
stdin.close();
process.stdin.destroy();
