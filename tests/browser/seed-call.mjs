// The seed's page flow across two nodes: two pages of /seed.html speak exactly the seed
// protocol on /ws (`join`, `send_offer`, `send_answer`, `send_ice_candidate`, `quit`). Alice
// presses Call; both must decode the other's video, a data-channel message must cross each
// way through the seed's send/receive boxes, Alice's hang-up (`quit`) must reach Bob, and
// Alice's next Call must join and call again.
// Screenshots: seed-a.png and seed-b.png.
//
// Usage: node seed-call.mjs ARTIFACT_DIR BASE_A BASE_B
import { at, scenario, sleep } from './lib.mjs';

await scenario('seed', 100000, async (s, [baseA, baseB]) => {
  const browser = await s.browser();
  // Seed channel names are free text: a space and a non-Latin script on purpose.
  const channel = `회의실 ${Date.now()}`;
  const b = await s.page(browser, 'B', at(baseB, '/seed.html', { user: 'bob', channel }));
  await s.until(b, 'Bob never joined the channel', () => seed.joined);
  const a = await s.page(browser, 'A', at(baseA, '/seed.html', { user: 'alice', channel }));
  const members = await s.until(a, 'Alice never joined with Bob there', () => seed.joined && seed.members.length === 2 && seed.members);

  await a.click('#callBtn');
  for (const [name, page] of [['Alice', a], ['Bob', b]]) {
    await s.until(page, `${name} never decoded the other's video`, () => seed.state === 'in-call' && seed.framesDecoded > 0, undefined, 30000);
  }
  for (const [from, to, text] of [[a, b, `hello bob in ${channel}`], [b, a, 'hello alice']]) {
    await s.until(from, 'the data channel never opened', () => !document.getElementById('sendBtn').disabled, undefined, 10000);
    await from.fill('#sendMessage', text);
    await from.click('#sendBtn');
    await s.until(to, `"${text}" never arrived`, (t) => document.getElementById('receiveMessage').value === t, text, 10000);
  }
  const frames = [await a.evaluate(() => seed.framesDecoded), await b.evaluate(() => seed.framesDecoded)];
  await sleep(300);
  const shots = [await s.screenshot(a, 'seed-a.png'), await s.screenshot(b, 'seed-b.png')];

  await a.click('#hangupBtn');
  await s.until(b, 'Bob never saw Alice hang up', () => seed.quits.includes('alice') && seed.state === 'ended', undefined, 10000);
  // Call again: the seed page joins the channel again and calls.
  await a.click('#callBtn');
  for (const [name, page] of [['Alice', a], ['Bob', b]]) {
    await s.until(page, `${name} never got back into a call`, () => seed.state === 'in-call', undefined, 20000);
  }
  await a.click('#hangupBtn');
  const errors = [...(await a.evaluate(() => seed.errors)), ...(await b.evaluate(() => seed.errors))];
  if (errors.length) s.fail(`the server refused part of the seed flow: ${JSON.stringify(errors)}`);
  return { channel, members, frames_alice: frames[0], frames_bob: frames[1], screenshots: shots };
});
