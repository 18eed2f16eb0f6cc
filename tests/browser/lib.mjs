// What every browser scenario shares: launching Debian's Chromium (never a downloaded one)
// with a fresh profile and a fake camera, collecting each page's console, bounded waits that
// fail with the reason and the pages' own account of what happened, and a global deadline.
//
// A scenario is `scenario(name, async (s) => { ... })`; it prints one JSON line (`{"ok":true,…}`)
// on success, or the failure and the last lines of every page's console on stderr (exit 1).
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--use-fake-device-for-media-stream',
  // Pages in background tabs must keep decoding and sending at full rate.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  // Autoplay of remote <video> elements without a click.
  '--autoplay-policy=no-user-gesture-required',
];

class Failure extends Error {}

/** One scenario run: its browsers, its pages' logs, its artifacts directory. */
export class Scenario {
  /** @param {string} name @param {string} artifacts */
  constructor(name, artifacts) {
    this.name = name;
    this.artifacts = artifacts;
    /** @type {string[]} */
    this.logs = [];
    /** @type {{close: () => Promise<void>}[]} */
    this.closers = [];
    /** @type {[string, import('playwright-core').Page][]} */
    this.pages = [];
    mkdirSync(artifacts, { recursive: true });
  }

  /**
   * A browser of its own (own profile dir, removed afterwards). With `media: 'deny'` the page's
   * camera and microphone requests are refused, as when a user clicks "Block".
   * @param {{media?: 'allow'|'deny'}} [opts]
   */
  async browser({ media = 'allow' } = {}) {
    const profile = mkdtempSync(join(tmpdir(), 'switchboard-chromium-'));
    const args = [...FLAGS];
    // Fake UI auto-accepts every permission prompt (camera, microphone, screen capture).
    if (media === 'allow') args.push('--use-fake-ui-for-media-stream', '--auto-accept-this-tab-capture');
    else args.push('--deny-permission-prompts');
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args,
      viewport: { width: 1100, height: 900 },
      permissions: media === 'allow' ? ['camera', 'microphone'] : [],
    });
    this.closers.push({
      close: async () => {
        await context.close().catch(() => {});
        rmSync(profile, { recursive: true, force: true });
      },
    });
    // A persistent context opens with one blank page; scenarios make their own.
    for (const p of context.pages()) await p.close();
    return context;
  }

  /**
   * Opens `url` in a new page of `context`, recording its console under `name`.
   * @param {import('playwright-core').BrowserContext} context @param {string} name @param {string} url
   */
  async page(context, name, url) {
    const page = await context.newPage();
    page.on('console', (m) => this.logs.push(`${name} ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => this.logs.push(`${name} pageerror: ${e.message}`));
    page.on('requestfailed', (r) => this.logs.push(`${name} requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    this.pages.push([name, page]);
    await page.goto(url);
    return page;
  }

  /**
   * Waits until `fn(arg)` is truthy in `page`; fails with `what` after `timeout` ms.
   * @template T
   * @param {import('playwright-core').Page} page @param {string} what
   * @param {(arg: T) => any} fn @param {T} [arg] @param {number} [timeout]
   */
  async until(page, what, fn, arg, timeout = 20000) {
    try {
      const handle = await page.waitForFunction(fn, arg, { timeout, polling: 200 });
      return await handle.jsonValue();
    } catch (e) {
      throw new Failure(`${what} (${e instanceof Error ? e.message.split('\n')[0] : e})`);
    }
  }

  /** @param {string} why */
  fail(why) {
    throw new Failure(why);
  }

  /** @param {import('playwright-core').Page} page @param {string} file */
  async screenshot(page, file) {
    const path = join(this.artifacts, file);
    await page.screenshot({ path, fullPage: true });
    return path;
  }

  async close() {
    for (const c of this.closers.reverse()) await c.close();
  }
}

/**
 * Runs a scenario with a global deadline. argv after the script are handed to `body` as is.
 * @param {string} name
 * @param {number} deadlineMs
 * @param {(s: Scenario, args: string[]) => Promise<object>} body
 */
export async function scenario(name, deadlineMs, body) {
  const args = process.argv.slice(2);
  const artifacts = args[0];
  const s = new Scenario(name, artifacts);
  const report = async (why) => {
    console.error(`${name}: ${why}`);
    // The pages' own account: their demo logs and state, then the last console lines.
    for (const [pageName, page] of s.pages) {
      const state = await page
        .evaluate(() => JSON.stringify(globalThis.demo ?? globalThis.seed ?? null, (k, v) => (k === 'client' ? undefined : v)))
        .catch(() => 'unavailable');
      console.error(`${pageName} state: ${state}`);
      await s.screenshot(page, `${name}-failed-${pageName}.png`).catch(() => {});
    }
    for (const l of s.logs.slice(-150)) console.error(l);
  };
  const timer = setTimeout(async () => {
    await report(`did not finish within ${deadlineMs} ms`);
    process.exit(1);
  }, deadlineMs);
  try {
    const result = await body(s, args.slice(1));
    console.log(JSON.stringify({ ok: true, scenario: name, ...result }));
  } catch (e) {
    await report(e instanceof Failure ? e.message : `${e instanceof Error ? e.stack : e}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    await s.close();
  }
}

// ---- the demo page's contract ---------------------------------------------------------------------

/** Frames decoded from every remote peer of a demo page, by peer id. */
export const framesByPeer = (page) =>
  page.evaluate(() => Object.fromEntries(Object.entries(globalThis.demo.peers).map(([id, p]) => [id, p.framesDecoded])));

/**
 * Waits until a demo page has `n` remote peers, each connected and decoding video.
 * @param {Scenario} s @param {import('playwright-core').Page} page @param {string} name @param {number} n
 */
export async function untilDecodingFrom(s, page, name, n, timeout = 30000) {
  await s.until(
    page,
    `${name} never decoded video from ${n} peer(s)`,
    (n) => {
      const peers = Object.values(globalThis.demo.peers);
      return peers.length === n && peers.every((p) => p.state === 'connected' && p.framesDecoded > 0 && p.channelOpen);
    },
    n,
    timeout,
  );
  return framesByPeer(page);
}

/**
 * The URL of `path` on `base` with `params`; query parameters already on `base` are kept (a
 * base of `http://host/?ws=…` points every page at another signaling endpoint).
 * @param {string} base @param {string} path @param {Record<string, string>} [params]
 */
export function at(base, path, params = {}) {
  const b = new URL(base);
  const u = new URL(path, b.origin);
  for (const [k, v] of b.searchParams) u.searchParams.set(k, v);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/**
 * Mean brightness (0–255) of what a `<video>` shows right now, sampled through a canvas: how a
 * test sees that a muted camera really arrives black at the other end.
 * @param {import('playwright-core').Page} page @param {string} selector
 */
export const brightness = (page, selector) =>
  page.evaluate((sel) => {
    const video = /** @type {HTMLVideoElement|null} */ (document.querySelector(sel));
    if (!video || video.readyState < 2) return -1;
    const canvas = Object.assign(document.createElement('canvas'), { width: 32, height: 24 });
    const g = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d', { willReadFrequently: true }));
    g.drawImage(video, 0, 0, 32, 24);
    const px = g.getImageData(0, 0, 32, 24).data;
    let sum = 0;
    for (let i = 0; i < px.length; i += 4) sum += (px[i] + px[i + 1] + px[i + 2]) / 3;
    return sum / (px.length / 4);
  }, selector);
