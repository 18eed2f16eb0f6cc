// What the demo page says when its node cannot reach Redis. The node (BASE) was started with
// `--redis-url redis://:PASSWORD@127.0.0.1:PORT` and nothing listens on PORT yet: it serves,
// and to a page that only says "waiting for others…" it would look healthy.
//
// 1. A page joins and says that this node cannot reach Redis, naming 127.0.0.1:PORT — and never
//    the password (from its `welcome`, or the `cluster-status` frame if it came before the node
//    gave up on Redis). A second page opened now learns it from its `welcome`.
// 2. A redis-server (with that password) comes up on PORT: both notices go away (a frame).
// 3. That redis-server is killed: the notice comes back (a frame).
// Screenshots: cluster-status-down.png, cluster-status-up.png.
//
// Usage: node cluster-status.mjs ARTIFACT_DIR BASE PORT PASSWORD
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { at, scenario, sleep } from './lib.mjs';

/** The page's Redis notice, or '' when there is none. */
const clusterNotice = () => document.querySelector('#notices [data-kind="cluster"]')?.textContent ?? '';

/**
 * Starts redis-server on `port` with `password`; resolves once it answers. Killed with the scenario.
 * @param {import('./lib.mjs').Scenario} s @param {string} port @param {string} password
 */
async function startRedis(s, port, password) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-redis-'));
  const args = ['--port', port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--requirepass', password];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  s.closers.push({ close: async () => void (child.kill('SIGKILL'), rmSync(dir, { recursive: true, force: true })) });
  await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.on('data', (b) => String(b).includes('Ready to accept connections') && resolve(undefined));
    setTimeout(() => reject(new Error(`redis-server on ${port} did not start`)), 10000);
  });
  return child;
}

await scenario('cluster-status', 100000, async (s, [base, port, password]) => {
  const browser = await s.browser();
  const room = `cut-${Date.now()}`;
  const page = (name) => s.page(browser, name, at(base, '/', { room, user: name, autojoin: '1', media: '0' }));
  const leaks = async (p) => {
    const seen = await p.evaluate(() => document.body.innerText + JSON.stringify(demo.client?.cluster ?? null));
    if (seen.includes(password)) s.fail(`the page shows the Redis password: ${seen}`);
  };

  // ---- 1. no Redis: the page says so -------------------------------------------------------------
  const ann = await page('ann');
  await s.until(ann, 'ann never got into the room', () => demo.state === 'waiting');
  const down = await s.until(ann, 'no notice that the node cannot reach Redis', clusterNotice, undefined, 15000);
  if (!down.includes(`127.0.0.1:${port}`)) s.fail(`the notice does not name the address: ${down}`);
  const status = await ann.evaluate(() => document.getElementById('status').textContent);
  await leaks(ann);
  // A page arriving now hears it in its welcome: no change is announced to it.
  const bob = await page('bob');
  const fromWelcome = await s.until(bob, 'the welcome did not tell the second page', clusterNotice, undefined, 5000);
  await leaks(bob);
  const shotDown = await s.screenshot(ann, 'cluster-status-down.png');

  // ---- 2. Redis comes up: the notice goes away --------------------------------------------------
  const redis = await startRedis(s, port, password);
  const upAt = Date.now();
  for (const [name, p] of [['ann', ann], ['bob', bob]]) {
    await s.until(p, `${name}'s notice stayed after Redis came up`, () => !document.querySelector('#notices [data-kind="cluster"]') && demo.cluster?.connected === true, undefined, 20000);
  }
  const clearedAfterMs = Date.now() - upAt;
  const statusUp = await ann.evaluate(() => document.getElementById('status').textContent);
  if (statusUp.includes('cut off')) s.fail(`the status still says the node is cut off: ${statusUp}`);
  const shotUp = await s.screenshot(ann, 'cluster-status-up.png');

  // ---- 3. Redis is killed: the notice comes back ------------------------------------------------
  redis.kill('SIGKILL');
  const killedAt = Date.now();
  const again = await s.until(ann, 'no notice after Redis was killed', clusterNotice, undefined, 20000);
  const backAfterMs = Date.now() - killedAt;
  await sleep(200);
  return {
    notice: down,
    status,
    from_welcome: fromWelcome,
    again,
    cleared_after_ms: clearedAfterMs,
    back_after_ms: backAfterMs,
    screenshots: [shotDown, shotUp],
  };
});
