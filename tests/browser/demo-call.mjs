// Two tabs of the node's demo page call each other in headless Chromium with a fake camera:
// both must decode the other's video, a data-channel message must cross, and a hang-up must be
// seen by the other side. Usage: node demo-call.mjs BASE_URL ARTIFACT_DIR
// Prints one JSON line; exits non-zero with the reason on any failure.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// What the pages logged, printed with a failure (the page's own account of the call).
const logs = [];
const fail = (why) => {
  console.error(`demo-call: ${why}`);
  for (const l of logs.slice(-60)) console.error(l);
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
  // Playwright gives every launch a fresh, temporary profile (it refuses --user-data-dir).
});
try {
  const ctx = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const [a, b] = [await ctx.newPage(), await ctx.newPage()];
  for (const [name, p] of [['A', a], ['B', b]]) {
    p.on('console', (m) => logs.push(`${name} ${m.type()}: ${m.text()}`));
    p.on('pageerror', (e) => logs.push(`${name} pageerror: ${e.message}`));
  }
  const room = `demo-${Date.now()}`;
  for (const p of [a, b]) await p.goto(`${base}/?room=${room}`);
  await a.click('#joinBtn');
  await sleep(300);
  await b.click('#joinBtn');

  // Frames of the remote video that were decoded and presented.
  const frames = (p) => p.evaluate(() => {
    const v = document.getElementById('remoteVideo');
    return v && v.srcObject ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
  });
  let fa = 0, fb = 0;
  for (let i = 0; i < 60 && (fa === 0 || fb === 0); i++) {
    await sleep(250);
    [fa, fb] = [await frames(a), await frames(b)];
  }
  if (fa === 0 || fb === 0) {
    for (const [name, p] of [['A', a], ['B', b]]) {
      const lines = await p.evaluate(() => [...document.querySelectorAll('#log div')].map((d) => d.textContent));
      for (const l of lines) logs.push(`${name} page: ${l}`);
    }
    fail(`no remote video decoded (A ${fa} frames, B ${fb})`);
  }

  await a.waitForSelector('#chatInput:not([disabled])', { timeout: 10000 });
  const text = `hello ${room}`;
  await a.fill('#chatInput', text);
  await a.click('#chatBtn');
  await b.waitForFunction((t) => document.getElementById('chat').textContent.includes(t), text, { timeout: 5000 })
    .catch(() => fail('the data-channel message did not arrive'));

  await a.screenshot({ path: join(artifacts, 'demo-a.png') });
  await b.screenshot({ path: join(artifacts, 'demo-b.png') });

  await a.click('#hangupBtn');
  await b.waitForFunction(() => document.getElementById('notice').textContent.includes('Peer left'), null, { timeout: 5000 })
    .catch(() => fail('B never saw A hang up'));
  console.log(JSON.stringify({ ok: true, frames_a: fa, frames_b: fb, artifacts }));
} finally {
  await browser.close();
}
