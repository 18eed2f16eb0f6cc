// A three-person mesh in one browser context: three pages of the demo (spread over the given
// nodes in turn) join one room; each must be connected to both others and decode video from
// both, a chat message from one must reach the two others, and when one hangs up the other two
// go on with each other. Screenshot: mesh-1.png (three tiles).
//
// Usage: node mesh.mjs ARTIFACT_DIR BASE [BASE…]
import { at, framesByPeer, scenario, sleep, untilDecodingFrom } from './lib.mjs';

await scenario('mesh', 110000, async (s, bases) => {
  const browser = await s.browser();
  const room = `mesh-${Date.now()}`;
  const names = ['ann', 'bob', 'cid'];
  const pages = [];
  for (const [i, user] of names.entries()) {
    const page = await s.page(browser, user, at(bases[i % bases.length], '/', { room, user, autojoin: '1', res: '320x240' }));
    pages.push(page);
    // One at a time: each newcomer calls everyone already there.
    await s.until(page, `${user} never joined`, () => demo.state === 'waiting' || demo.state === 'in-call');
  }
  const frames = {};
  for (const [i, page] of pages.entries()) frames[names[i]] = await untilDecodingFrom(s, page, names[i], 2, 40000);
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => demo.peerId)));
  for (const [i, page] of pages.entries()) {
    const seen = Object.keys(await framesByPeer(page)).sort();
    const others = ids.filter((_, j) => j !== i).sort();
    if (JSON.stringify(seen) !== JSON.stringify(others)) s.fail(`${names[i]} sees ${seen}, expected ${others}`);
  }

  const text = `hello mesh ${room}`;
  await pages[0].fill('#chatInput', text);
  await pages[0].click('#chatBtn');
  for (const [i, page] of pages.entries()) {
    if (i > 0) await s.until(page, `${names[i]} never got the chat message`, (t) => demo.messages.some((m) => m.text === t), text, 10000);
  }
  await sleep(300);
  const shot = await s.screenshot(pages[0], 'mesh-1.png');

  await pages[1].click('#hangupBtn');
  for (const i of [0, 2]) {
    await s.until(pages[i], `${names[i]} never saw bob leave`, () => Object.keys(demo.peers).length === 1 && demo.notices['peer-left'], undefined, 10000);
  }
  const [before] = Object.values(await framesByPeer(pages[0]));
  await s.until(pages[0], 'ann and cid stopped decoding each other after bob left', (n) => Object.values(demo.peers)[0].framesDecoded > n + 5, before, 10000);
  const nodes = await Promise.all(pages.map((p) => p.evaluate(() => demo.nodeId)));
  return { nodes, frames, screenshot: shot };
});
