// Two demo pages in a call survive a drain of their node without renegotiating.
//
// Both pages load the demo through nginx (BASE) and give the SDK `/v1/ws?room=<room>` on it, as
// the Ingress wants (room affinity: both land on one node). They join one room, decode each
// other's video, and then their node gets SIGTERM. Expected, on both pages: the SDK says
// `resuming`, then `connected` with `resumed: true` (its `gapMs` is reported); the peer id is
// the same and the node is the other one; no `peer-left` and no `peer-joined` (nobody left or
// came); the very same RTCPeerConnection (object identity), whose signaling state never moved
// and whose `framesDecoded` keeps growing past its pre-drain count; chat over the data channel
// and a server `broadcast` (through the resumed signaling session) cross both ways afterwards.
// Screenshots: resume-a.png and resume-b.png (after the resume).
//
// Usage: node resume.mjs ARTIFACT_DIR BASE NODE_ID=PID…
import { at, framesByPeer, scenario, untilDecodingFrom } from './lib.mjs';

await scenario('resume', 100000, async (s, [base, ...nodes]) => {
  /** @type {Record<string, number>} */
  const pids = Object.fromEntries(nodes.map((n) => n.split('=')).map(([id, pid]) => [id, Number(pid)]));
  const browser = await s.browser();
  const room = `resume-${Date.now()}`;
  const ws = new URL('/v1/ws', base);
  ws.protocol = ws.protocol === 'https:' ? 'wss:' : 'ws:';
  ws.searchParams.set('room', room);
  const page = (/** @type {string} */ who, /** @type {string} */ user) =>
    s.page(browser, who, at(base, '/', { room, user, autojoin: '1', res: '320x240', ws: ws.toString() }));

  const a = await page('A', 'ann');
  await s.until(a, 'A never got into the room', () => demo.state === 'waiting');
  const b = await page('B', 'bob');
  await untilDecodingFrom(s, a, 'A', 1);
  await untilDecodingFrom(s, b, 'B', 1);
  // A call well under way before the drain, not one still starting.
  for (const [p, who] of /** @type {const} */ ([[a, 'A'], [b, 'B']])) {
    await s.until(p, `${who} never decoded 30 frames`, () => Object.values(demo.peers).every((x) => x.framesDecoded >= 30), undefined, 15000);
  }

  // From here on, each page records what its SDK client says and keeps a hand on its one peer
  // connection: a resume must neither replace it nor renegotiate it.
  const record = () => {
    const client = /** @type {any} */ (demo.client);
    const [[remoteId, peer]] = [...client.peers.entries()];
    const rec = {
      client,
      remoteId,
      peer,
      pc: peer.pc,
      states: /** @type {any[]} */ ([]),
      peerLeft: /** @type {any[]} */ ([]),
      peerJoined: /** @type {any[]} */ ([]),
      signalingChanges: /** @type {string[]} */ ([]),
      broadcasts: /** @type {any[]} */ ([]),
    };
    client.addEventListener('connection-state', (/** @type {any} */ e) =>
      rec.states.push({ state: e.state, resumed: e.resumed, gapMs: e.gapMs, withinMs: e.withinMs, peerId: e.peerId, nodeId: e.nodeId, code: e.code, reason: e.reason }),
    );
    client.addEventListener('peer-left', (/** @type {any} */ e) => rec.peerLeft.push({ peerId: e.peerId, reason: e.reason }));
    client.addEventListener('peer-joined', (/** @type {any} */ e) => rec.peerJoined.push({ peerId: e.peerId }));
    client.addEventListener('broadcast', (/** @type {any} */ e) => rec.broadcasts.push({ from: e.peerId, data: e.data }));
    peer.pc.addEventListener('signalingstatechange', () => rec.signalingChanges.push(peer.pc.signalingState));
    Object.assign(window, { resumeRec: rec });
  };
  await a.evaluate(record);
  await b.evaluate(record);

  /** What a page's client and its one peer connection look like now. */
  const look = (/** @type {import('playwright-core').Page} */ p) =>
    p.evaluate(async () => {
      const rec = /** @type {any} */ (window).resumeRec;
      const client = demo.client;
      // Straight from the peer connection: the SDK's getStats() rates compare with its previous
      // call, which is the demo's once-a-second sample; another caller would skew them.
      let framesDecoded = 0;
      for (const st of (await rec.pc.getStats()).values()) if (st.type === 'inbound-rtp' && st.kind === 'video') framesDecoded += st.framesDecoded ?? 0;
      return {
        peerId: demo.peerId,
        nodeId: demo.nodeId,
        clientNodeId: client?.nodeId ?? null,
        connection: demo.connection,
        sameClient: client === rec.client,
        remotes: client ? [...client.peers.keys()] : [],
        samePeer: client?.peers.get(rec.remoteId) === rec.peer,
        samePc: client?.peers.get(rec.remoteId)?.pc === rec.pc,
        pcState: rec.pc.connectionState,
        signalingState: rec.pc.signalingState,
        framesDecoded,
      };
    });

  const beforeA = await look(a);
  const beforeB = await look(b);
  if (beforeA.nodeId !== beforeB.nodeId) {
    s.fail(`the pages are on two nodes (${beforeA.nodeId}, ${beforeB.nodeId}): nginx's room hash should put them on one`);
  }
  const drained = /** @type {string} */ (beforeA.nodeId);
  if (!(drained in pids)) s.fail(`node ${drained} is not among the nodes given (${nodes.join(' ')})`);

  // ---- the drain ----------------------------------------------------------------------------
  const t0 = Date.now();
  process.kill(pids[drained], 'SIGTERM');
  const resumed = async (/** @type {import('playwright-core').Page} */ p, /** @type {string} */ who) => {
    const state = await s.until(
      p,
      `${who} never resumed after its node's drain`,
      () => /** @type {any} */ (window).resumeRec.states.find((/** @type {any} */ e) => e.state === 'connected') ?? false,
      undefined,
      20000,
    );
    return { ...state, seenAfterMs: Date.now() - t0 };
  };
  const [resumedA, resumedB] = await Promise.all([resumed(a, 'A'), resumed(b, 'B')]);
  for (const [who, r] of /** @type {const} */ ([['A', resumedA], ['B', resumedB]])) {
    if (r.resumed !== true) s.fail(`${who} came back with a fresh session, not a resume: ${JSON.stringify(r)}`);
  }

  // The same calls keep decoding: frames grow well past their count before the drain.
  const growing = async (/** @type {import('playwright-core').Page} */ p, /** @type {string} */ who, /** @type {number} */ before) => {
    await s.until(
      p,
      `${who}'s peer connection stopped decoding after the resume (before: ${before} frames)`,
      // demo.peers[id].framesDecoded: the page's own getStats() sample, once a second.
      (n) => (demo.peers[/** @type {any} */ (window).resumeRec.remoteId]?.framesDecoded ?? 0) > n + 30,
      before,
      15000,
    );
  };
  await growing(a, 'A', beforeA.framesDecoded);
  await growing(b, 'B', beforeB.framesDecoded);

  // Chat over the data channel, typed as a user would, both ways.
  const chat = [];
  for (const [from, to, text] of /** @type {const} */ ([[a, b, `ann after the drain of ${drained}`], [b, a, 'bob after the drain too']])) {
    await from.fill('#chatInput', text);
    await from.click('#chatBtn');
    await s.until(to, `"${text}" never arrived after the resume`, (t) => demo.messages.some((m) => m.text === t), text, 10000);
    chat.push(text);
  }
  // And through the server: a v1 broadcast goes over the resumed signaling session.
  const broadcasts = [];
  for (const [from, to, tag] of /** @type {const} */ ([[a, b, 'from-ann'], [b, a, 'from-bob']])) {
    const sent = await from.evaluate((tag) => demo.client.broadcast({ tag }), tag);
    if (!sent) s.fail(`${tag}: the client would not broadcast after the resume`);
    await s.until(to, `broadcast ${tag} never arrived after the resume`, (t) => /** @type {any} */ (window).resumeRec.broadcasts.some((m) => m.data?.tag === t), tag, 10000);
    broadcasts.push(tag);
  }

  const afterA = await look(a);
  const afterB = await look(b);
  const shots = [await s.screenshot(a, 'resume-a.png'), await s.screenshot(b, 'resume-b.png')];
  const events = (/** @type {import('playwright-core').Page} */ p) =>
    p.evaluate(() => {
      const rec = /** @type {any} */ (window).resumeRec;
      return {
        states: rec.states,
        peer_left: rec.peerLeft,
        peer_joined: rec.peerJoined,
        signaling_changes: rec.signalingChanges,
        peer_left_notice: demo.notices['peer-left'] ?? null,
        errors: demo.errors,
      };
    });
  const side = (/** @type {any} */ before, /** @type {any} */ after, /** @type {any} */ r, /** @type {any} */ ev) => ({
    peer_id: { before: before.peerId, after: after.peerId },
    node: { before: before.nodeId, after: after.nodeId, client: after.clientNodeId },
    gap_ms: r.gapMs,
    seen_after_ms: r.seenAfterMs,
    frames: { before: before.framesDecoded, after: after.framesDecoded },
    same_pc: after.samePc && after.samePeer && after.sameClient,
    remotes: { before: before.remotes, after: after.remotes },
    pc_state: after.pcState,
    signaling_state: after.signalingState,
    ...ev,
  });
  return {
    drained,
    a: side(beforeA, afterA, resumedA, await events(a)),
    b: side(beforeB, afterB, resumedB, await events(b)),
    chat,
    broadcasts,
    frames_by_peer: { a: await framesByPeer(a), b: await framesByPeer(b) },
    screenshots: shots,
  };
});
