// The demo page and the reference peer (`switchboard-peer join`, on webrtc-rs) interoperate:
// the peer waits in a room; the page joins as the newcomer and calls it (the page's perfect
// negotiation on one side, the peer's on the other). The page must decode the peer's video
// (framesDecoded > 0) and get the peer's data-channel echo of a chat message; the peer must
// have received the page's audio and video. Screenshot: peer-interop.png.
//
// The peer's own generated video is shaped like VP8 but is no picture, so a browser can decode
// none of it; the peer sends real VP8 from an IVF file instead, and Chromium makes that file
// first (WebCodecs' VP8 encoder over a canvas): no video tool needed on the machine.
//
// Usage: node peer-interop.mjs ARTIFACT_DIR BASE PEER_BIN WS_URL
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { at, scenario, sleep, untilDecodingFrom } from './lib.mjs';

const FPS = 30;

/** Encodes two seconds of a moving test card as VP8 (a key frame every half second); IVF bytes. */
async function makeClip(page) {
  const bytes = await page.evaluate(async (fps) => {
    const [w, h, count] = [320, 240, fps * 2];
    const canvas = new OffscreenCanvas(w, h);
    const g = canvas.getContext('2d');
    /** @type {Uint8Array[]} */
    const chunks = [];
    const encoder = new VideoEncoder({
      output: (chunk) => {
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        chunks.push(data);
      },
      error: (e) => {
        throw e;
      },
    });
    encoder.configure({ codec: 'vp8', width: w, height: h, bitrate: 300_000, framerate: fps });
    for (let i = 0; i < count; i++) {
      g.fillStyle = `hsl(${(i * 6) % 360} 70% 45%)`;
      g.fillRect(0, 0, w, h);
      g.fillStyle = '#fff';
      g.font = 'bold 40px sans-serif';
      g.fillText(`switchboard-peer ${i}`, 10 + (i % 20), 130);
      const frame = new VideoFrame(canvas, { timestamp: (i * 1e6) / fps });
      // Key frames often: the peer loops the clip and a browser may start anywhere in it.
      encoder.encode(frame, { keyFrame: i % (fps / 2) === 0 });
      frame.close();
    }
    await encoder.flush();
    // IVF: a 32-byte file header, then per frame a 12-byte header (size, timestamp) and the frame.
    const size = 32 + chunks.reduce((n, c) => n + 12 + c.length, 0);
    const out = new DataView(new ArrayBuffer(size));
    const bytes = new Uint8Array(out.buffer);
    bytes.set(new TextEncoder().encode('DKIF'), 0);
    out.setUint16(4, 0, true);
    out.setUint16(6, 32, true);
    bytes.set(new TextEncoder().encode('VP80'), 8);
    out.setUint16(12, w, true);
    out.setUint16(14, h, true);
    out.setUint32(16, fps, true); // time base denominator (rate)
    out.setUint32(20, 1, true); // time base numerator (scale): one frame per 1/fps s
    out.setUint32(24, chunks.length, true);
    let at = 32;
    for (const [i, c] of chunks.entries()) {
      out.setUint32(at, c.length, true);
      out.setBigUint64(at + 4, BigInt(i), true);
      bytes.set(c, at + 12);
      at += 12 + c.length;
    }
    return Array.from(bytes);
  }, FPS);
  return Buffer.from(bytes);
}

/** Starts `switchboard-peer join` and resolves with it once it has joined. */
function startPeer(s, bin, url, room, clip) {
  const child = spawn(bin, ['join', '--url', url, '--room', room, '--video-file', clip], { stdio: ['ignore', 'pipe', 'pipe'] });
  /** @type {any[]} */
  const events = [];
  child.stderr?.on('data', (d) => s.logs.push(`peer stderr: ${String(d).trim()}`));
  s.closers.push({ close: async () => void child.kill('SIGKILL') });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`switchboard-peer exited (${code}) before joining`)));
    createInterface({ input: /** @type {any} */ (child.stdout) }).on('line', (line) => {
      s.logs.push(`peer: ${line}`);
      try {
        const ev = JSON.parse(line);
        events.push(ev);
        if (ev.event === 'joined') resolve({ child, events });
      } catch {
        // not an event line
      }
    });
  });
}

await scenario('peer-interop', 100000, async (s, [base, bin, url]) => {
  const browser = await s.browser();
  const room = `interop-${Date.now()}`;
  const encoderPage = await s.page(browser, 'encoder', at(base, '/seed.html'));
  const clip = join(s.artifacts, 'peer-interop.ivf');
  writeFileSync(clip, await makeClip(encoderPage));
  await encoderPage.close();

  const peer = await startPeer(s, bin, url, room, clip);
  const page = await s.page(browser, 'page', at(base, '/', { room, user: 'browser', autojoin: '1', res: '320x240' }));
  const frames = await untilDecodingFrom(s, page, 'the page', 1, 40000);
  const text = `echo me ${Date.now()} ✓`;
  await page.fill('#chatInput', text);
  await page.click('#chatBtn');
  const echo = await s.until(page, 'the reference peer never echoed the message', (t) => demo.messages.find((m) => m.text === t), text, 10000);
  await sleep(500);
  const stats = await page.evaluate(() => Object.values(demo.peers)[0].stats);
  const shot = await s.screenshot(page, 'peer-interop.png');

  // The peer's own account: what it received from the page.
  peer.child.kill('SIGINT');
  await new Promise((r) => peer.child.once('exit', r));
  const done = peer.events.find((e) => e.event === 'done');
  const received = done ? Object.values(done.received)[0] : null;
  if (!received || received.video_packets === 0 || received.audio_packets === 0) {
    s.fail(`the reference peer received no media from the page: ${JSON.stringify(done)}`);
  }
  return { frames, echo, stats, peer_received: received, screenshot: shot };
});
