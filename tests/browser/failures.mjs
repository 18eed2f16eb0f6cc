// What the demo says and does when things go wrong.
//
// 1. Camera refused: a browser that blocks camera and microphone still joins, receive-only,
//    with a notice saying so, and decodes the video of a peer that has a camera.
// 2. Server unreachable: a page pointed at a port where no node listens says it cannot reach
//    the server and keeps retrying with backoff. Then a node starts on that port (in the
//    cluster of BASE's node): the page connects, joins and calls the peer waiting on BASE's
//    node. Then that node is killed: the page says it lost the connection; the node comes back
//    on the same port, and the page reconnects, joins again and calls again — video flows anew.
// Screenshots: failures-denied.png, failures-unreachable.png, failures-recalled.png.
//
// Usage: node failures.mjs ARTIFACT_DIR BASE NODE_BIN NODE_ARGS… (the cluster's: --redis-url …)
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { at, scenario, untilDecodingFrom } from './lib.mjs';

/** A loopback port nothing listens on (bound, then released). */
async function closedPort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Starts a node on `port` (in BASE's cluster) and resolves once it listens; killed with the scenario.
 * @param {import('./lib.mjs').Scenario} s
 */
function startNode(s, bin, port, nodeArgs) {
  const child = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--log', 'warn', ...nodeArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  s.closers.push({ close: async () => void child.kill('SIGKILL') });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    createInterface({ input: /** @type {any} */ (child.stdout) }).once('line', (line) =>
      line.startsWith('listening on') ? resolve(child) : reject(new Error(`node did not start: ${line}`)),
    );
  });
}

await scenario('failures', 110000, async (s, [base, bin, ...nodeArgs]) => {
  // ---- 1. camera refused ----------------------------------------------------------------------
  const blocked = await s.browser({ media: 'deny' });
  const allowed = await s.browser();
  const room1 = `denied-${Date.now()}`;
  const dee = await s.page(blocked, 'dee', at(base, '/', { room: room1, user: 'dee', autojoin: '1', res: '320x240' }));
  const deniedNotice = await s.until(
    dee,
    'no camera-refused notice, or the page did not join receive-only',
    () => demo.localMedia === 'denied' && demo.state === 'waiting' && document.querySelector('#notices [data-kind="media-denied"]')?.textContent,
  );
  const cam = await s.page(allowed, 'cam', at(base, '/', { room: room1, user: 'cam', autojoin: '1', res: '320x240' }));
  const deeFrames = await untilDecodingFrom(s, dee, 'dee (receive-only)', 1);
  await s.until(cam, 'cam never connected to the receive-only peer', () => Object.values(demo.peers)[0]?.state === 'connected');
  const denied = await s.screenshot(dee, 'failures-denied.png');
  await cam.click('#hangupBtn');

  // ---- 2. unreachable, reachable, killed, back --------------------------------------------------
  const port = await closedPort();
  const room2 = `unreachable-${Date.now()}`;
  const ws = `ws://127.0.0.1:${port}/v1/ws`;
  const uma = await s.page(allowed, 'uma', at(base, '/', { room: room2, user: 'uma', autojoin: '1', res: '320x240', ws }));
  const unreachable = await s.until(
    uma,
    'no server-unreachable notice after two attempts',
    () => {
      const text = document.querySelector('#notices [data-kind="unreachable"]')?.textContent ?? '';
      return demo.connection === 'reconnecting' && /attempt [2-9]/.test(text) && text;
    },
    undefined,
    15000,
  );
  const unreachableShot = await s.screenshot(uma, 'failures-unreachable.png');
  const vic = await s.page(allowed, 'vic', at(base, '/', { room: room2, user: 'vic', autojoin: '1', res: '320x240' }));
  await s.until(vic, 'vic never joined', () => demo.state === 'waiting');

  let node = await startNode(s, bin, port, nodeArgs);
  const t0 = Date.now();
  await untilDecodingFrom(s, uma, 'uma (after the server came up)', 1, 40000);
  const firstCallMs = Date.now() - t0;
  await s.until(uma, 'the unreachable notice outlived the connection', () => !demo.notices.unreachable);

  node.kill('SIGKILL');
  const lost = await s.until(uma, 'uma never noticed its node died', () => demo.connection === 'reconnecting' && (demo.notices.reconnecting || demo.notices.unreachable), undefined, 40000);
  // The cluster tells vic once the dead node's lease runs out.
  await s.until(vic, 'vic never saw uma go with her node', () => Object.keys(demo.peers).length === 0, undefined, 20000);
  node = await startNode(s, bin, port, nodeArgs);
  const t1 = Date.now();
  const umaFrames = await untilDecodingFrom(s, uma, 'uma (after her node came back)', 1, 40000);
  const vicFrames = await untilDecodingFrom(s, vic, 'vic (after uma came back)', 1, 40000);
  const recallMs = Date.now() - t1;
  const recalled = await s.screenshot(uma, 'failures-recalled.png');
  return {
    denied: { notice: deniedNotice, frames: deeFrames },
    unreachable: { notice: unreachable, first_call_ms: firstCallMs, lost_notice: lost },
    recalled: { ms: recallMs, uma: umaFrames, vic: vicFrames },
    screenshots: [denied, unreachableShot, recalled],
  };
});
