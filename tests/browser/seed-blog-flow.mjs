// The seed blog's own React client flow (transcribed as seed-blog-client.html), two pages per
// call, one on each node, on Switchboard's /ws:
//
// 1. Alice and Bob type their ids and a channel and press Join; Alice, who joined first, presses
//    Join again and must see Bob in her `joined` list; she presses Call, and the call completes
//    (the offer and answer go only once ICE gathering has finished, as the blog's client does).
// 2. Carol leaves her id empty (types only the channel) and presses Join; Dave joins and calls
//    her: the page without an id is called and the call completes.
//
// Each page has also joined with an empty channel and id the moment its socket opened.
// As in the blog (a React dev server on one port, the signaling server on another), the page
// comes from a web server of its own, here on 127.0.0.1, and its socket goes to a node's /ws.
// Screenshots: seed-blog-*.png.
//
// Usage: node seed-blog-flow.mjs ARTIFACT_DIR BASE_A BASE_B
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { scenario } from './lib.mjs';

const html = readFileSync(new URL('./seed-blog-client.html', import.meta.url), 'utf8');

await scenario('seed-blog', 110000, async (s, [baseA, baseB]) => {
  const server = createServer((_, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html));
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  s.closers.push({ close: () => new Promise((ok) => server.close(() => ok())) });
  const site = `http://127.0.0.1:${server.address().port}/`;
  const browser = await s.browser();
  const open = async (name, base) => {
    const ws = new URL('/ws', base.replace(/^http/, 'ws')).toString();
    const page = await s.page(browser, name, `${site}?ws=${encodeURIComponent(ws)}`);
    await s.until(page, `${name}: no camera stream`, () => window.seedBlog.hasStream());
    await s.until(page, `${name}: the join on open was not answered`, () => window.seedBlog.frames.length > 0);
    return page;
  };
  const frames = (page) => page.evaluate(() => window.seedBlog.frames);
  const joinedLists = async (page) => (await frames(page)).filter((f) => f.type === 'joined').map((f) => f.body);
  const press = async (page, user, channel) => {
    await page.fill('#userId', user);
    await page.fill('#channelName', channel);
    const before = (await frames(page)).length;
    await page.click('#joinBtn');
    // The answer: `joined` or an error (a `quit` from the unnamed channel may come first).
    return s.until(
      page,
      `Join by "${user}" in "${channel}" was not answered`,
      (n) => window.seedBlog.frames.slice(n).find((f) => f.type === 'joined' || f.type === 'error'),
      before,
    );
  };
  const untilCall = async (pairs) => {
    for (const [name, page] of pairs) {
      await s.until(page, `${name}: the call never carried video`, () => window.seedBlog.pcState() === 'connected' && window.seedBlog.framesDecoded > 0, undefined, 30000);
    }
    return Promise.all(pairs.map(([, page]) => page.evaluate(() => window.seedBlog.framesDecoded)));
  };

  // 1. The first joiner learns of the second by pressing Join again, then calls.
  const channel = `blog ${Date.now()}`;
  const a = await open('alice', baseA);
  const b = await open('bob', baseB);
  const onOpen = (await frames(a))[0];
  await press(a, 'alice', channel);
  await press(b, 'bob', channel);
  const again = await press(a, 'alice', channel);
  if (again.type !== 'joined') s.fail(`Alice's second Join was answered with ${JSON.stringify(again)}`);
  await a.click('#callBtn');
  const call1 = await untilCall([['alice', a], ['bob', b]]);
  const shots = [await s.screenshot(a, 'seed-blog-alice.png'), await s.screenshot(b, 'seed-blog-bob.png')];
  const errors = [];
  for (const page of [a, b]) errors.push(...(await frames(page)).filter((f) => f.type === 'error').map((f) => f.body));
  const [aliceJoined, bobJoined] = [await joinedLists(a), await joinedLists(b)];
  // Two pages in a call at a time: four encoders at once are too much for a small machine.
  await Promise.all([a.close(), b.close()]);

  // 2. A page that left its id empty is called.
  const channel2 = `blog-anon ${Date.now()}`;
  const c = await open('carol', baseB);
  const d = await open('dave', baseA);
  const carolJoined = await press(c, '', channel2);
  const daveJoined = await press(d, 'dave', channel2);
  await d.click('#callBtn');
  const call2 = await untilCall([['dave', d], ['carol', c]]);

  shots.push(await s.screenshot(c, 'seed-blog-carol.png'), await s.screenshot(d, 'seed-blog-dave.png'));
  for (const page of [c, d]) errors.push(...(await frames(page)).filter((f) => f.type === 'error').map((f) => f.body));
  return {
    on_open: onOpen,
    alice_joined: aliceJoined,
    bob_joined: bobJoined,
    frames_call1: call1,
    carol_joined: carolJoined,
    dave_joined: daveJoined,
    frames_call2: call2,
    errors,
    screenshots: shots,
  };
});
