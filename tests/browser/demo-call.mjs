// Two pages of the demo call each other: page A from BASE_A, page B from BASE_B (two nodes of a
// cluster, or one node twice). Both must decode the other's video (framesDecoded > 0 from
// getStats), a data-channel message must cross each way, A turns its camera off and on (B's
// picture goes black and comes back) and mutes its microphone — B's tile of A says so, and stops
// saying so when A unmutes — swaps its camera for a screen share and back (replaceTrack: B keeps
// decoding), and A's hang-up must reach B as `peer-left`, in words ("ann left the call.").
// Screenshots of both pages are saved as NAME-a.png and NAME-b.png.
//
// Usage: node demo-call.mjs ARTIFACT_DIR NAME BASE_A BASE_B
import { at, brightness, scenario, untilDecodingFrom, sleep } from './lib.mjs';

const [, name = 'demo'] = process.argv.slice(2);

await scenario(name, 100000, async (s, [, baseA, baseB]) => {
  const browser = await s.browser();
  const room = `${name}-${Date.now()}`;
  const a = await s.page(browser, 'A', at(baseA, '/', { room, user: 'ann', autojoin: '1', res: '320x240' }));
  await s.until(a, 'A never got into the room', () => demo.state === 'waiting');
  const b = await s.page(browser, 'B', at(baseB, '/', { room, user: 'bob', autojoin: '1', res: '320x240' }));

  const framesA = await untilDecodingFrom(s, a, 'A', 1);
  const framesB = await untilDecodingFrom(s, b, 'B', 1);
  const [nodeA, nodeB] = [await a.evaluate(() => demo.nodeId), await b.evaluate(() => demo.nodeId)];

  // Chat both ways, typed into the page as a user would.
  for (const [from, to, text] of [[a, b, `hello from ann in ${room}`], [b, a, `hi ann, bob here`]]) {
    await from.fill('#chatInput', text);
    await from.click('#chatBtn');
    await s.until(to, `"${text}" never arrived`, (t) => demo.messages.some((m) => m.text === t), text, 10000);
  }
  const chatShown = await b.evaluate((t) => document.getElementById('chat').textContent.includes(t), `hello from ann in ${room}`);
  if (!chatShown) s.fail('B received the message but did not show it');

  // Camera off: B's picture of A goes black (frames keep coming: the track is disabled, not
  // removed); back on, it lights up again. The microphone mutes the same way.
  const remote = '#videos .tile.remote video';
  const lit = await brightness(b, remote);
  if (lit < 30) s.fail(`B's picture of A is dark (${lit}) before any mute`);
  await a.click('#camBtn');
  await a.click('#micBtn');
  await s.until(a, 'A never showed itself muted', () => demo.muted.video && demo.muted.audio && document.getElementById('camBtn').getAttribute('aria-pressed') === 'true', undefined, 3000);
  let dark = lit;
  for (let i = 0; i < 50 && dark > 15; i++) [dark] = [await brightness(b, remote), await sleep(100)];
  if (dark > 15) s.fail(`B still sees A's camera (brightness ${dark}) after A turned it off`);
  // A disabled track fires nothing at B: B knows only because A's page told it.
  const badges = '#videos .tile.remote .badges';
  const mutedShown = await s.until(b, "B's tile of A never showed A muted", (sel) => {
    const peer = Object.values(demo.peers)[0];
    return peer?.muted.audio && peer.muted.video && document.querySelector(sel)?.textContent;
  }, badges, 5000);
  await a.click('#camBtn');
  await a.click('#micBtn');
  await s.until(b, "B's tile of A still shows A muted after A unmuted", (sel) => {
    const peer = Object.values(demo.peers)[0];
    return peer && !peer.muted.audio && !peer.muted.video && document.querySelector(sel)?.textContent === '';
  }, badges, 5000);
  let back = dark;
  for (let i = 0; i < 50 && back < 30; i++) [back] = [await brightness(b, remote), await sleep(100)];
  if (back < 30) s.fail(`B's picture of A stayed dark (${back}) after A turned the camera on`);

  // Screen share: A's outgoing video becomes a display capture; B must keep decoding.
  let shared = false;
  await a.click('#shareBtn');
  const sharing = await s.until(a, 'A never settled its screen share', () => demo.sharing || demo.notices.share, undefined, 10000);
  if (sharing === true) {
    const before = (await b.evaluate(() => Object.values(demo.peers)[0].framesDecoded));
    await s.until(b, 'B stopped decoding during the screen share', (n) => Object.values(demo.peers)[0].framesDecoded > n + 10, before, 15000);
    await a.click('#shareBtn');
    await s.until(a, 'A never went back to its camera', () => !demo.sharing, undefined, 5000);
    shared = true;
  }

  await sleep(500); // a few more frames for the pictures
  const shots = [await s.screenshot(a, `${name}-a.png`), await s.screenshot(b, `${name}-b.png`)];

  await a.click('#hangupBtn');
  const left = await s.until(b, 'B never saw A hang up', () => Object.keys(demo.peers).length === 0 && demo.notices['peer-left'], undefined, 10000);
  await s.until(a, 'A is not idle after hanging up', () => demo.state === 'idle', undefined, 5000);
  return { nodes: [nodeA, nodeB], frames_a: framesA, frames_b: framesB, brightness: { lit, dark, back }, muted_shown: mutedShown, screen_share: shared, b_saw: left, screenshots: shots };
});
