// The demo with access tokens, on nodes that require them. Tokens are minted by
// `POST /v1/tokens` (API key) on the nodes themselves. Ann (on BASE_A) and Bob (on BASE_B) join
// with `?token=` and call each other; each sees the other under the user its token names, and
// each page got its ICE servers from `/v1/ice-servers` with its token. Then the refusals, as
// the page shows them: Eve's token is for another room (`forbidden`), Mal comes without a token
// (`unauthorized`), Old's token has expired (`token-expired`) — none retries in a loop.
// Last, operator actions through the admin API: Bob is kicked (and calls again), then the room
// is closed; each page says what happened. Screenshots: tokens-a.png, tokens-forbidden.png,
// tokens-room-closed.png.
//
// Usage: node tokens.mjs ARTIFACT_DIR BASE_A BASE_B API_KEY
import { at, scenario, sleep, untilDecodingFrom } from './lib.mjs';

/** Mints a token on `base` for `{room, user, ttl_secs}`. */
async function mint(base, apiKey, body) {
  const res = await fetch(new URL('/v1/tokens', base), {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status !== 200 || !json.token) throw new Error(`POST /v1/tokens ${res.status}: ${JSON.stringify(json)}`);
  return json.token;
}

await scenario('tokens', 100000, async (s, [baseA, baseB, apiKey]) => {
  const room = `tokens-${Date.now()}`;
  // Minted first so it has expired (past the verifier's 5 s leeway) by the time it is used.
  const stale = await mint(baseA, apiKey, { room, user: 'old', ttl_secs: 1 });
  const staleAt = Date.now();
  const [ann, bob, eve] = await Promise.all([
    mint(baseA, apiKey, { room, user: 'ann' }),
    mint(baseB, apiKey, { room, user: 'bob' }),
    mint(baseA, apiKey, { room: `${room}-other`, user: 'eve' }),
  ]);

  const browser = await s.browser();
  const a = await s.page(browser, 'ann', at(baseA, '/', { room, token: ann, autojoin: '1', res: '320x240' }));
  await s.until(a, 'ann never got into the room with her token', () => demo.state === 'waiting');
  const b = await s.page(browser, 'bob', at(baseB, '/', { room, token: bob, autojoin: '1', res: '320x240' }));
  await untilDecodingFrom(s, a, 'ann', 1);
  await untilDecodingFrom(s, b, 'bob', 1);
  const names = [await a.evaluate(() => Object.values(demo.peers)[0].name), await b.evaluate(() => Object.values(demo.peers)[0].name)];
  if (names[0] !== 'bob' || names[1] !== 'ann') s.fail(`the pages show ${names}, not the users their tokens name`);
  const ice = await a.evaluate(() => ({ servers: demo.client.iceServers, errors: demo.errors.filter((e) => e.code === 'ice-servers-unavailable') }));
  if (ice.errors.length) s.fail(`the page could not fetch /v1/ice-servers with its token: ${JSON.stringify(ice.errors)}`);
  const shotA = await s.screenshot(a, 'tokens-a.png');

  // A refusal shows as a notice with its code, and the page stops (no reconnect loop).
  const refused = async (name, params, code) => {
    const page = await s.page(browser, name, at(baseA, '/', { room, autojoin: '1', media: '0', ...params }));
    const text = await s.until(
      page,
      `${name} never showed the ${code} refusal`,
      (c) => document.querySelector(`#notices [data-kind="auth"][data-code="${c}"]`)?.textContent,
      code,
      10000,
    );
    await sleep(1500);
    const after = await page.evaluate(() => ({ state: demo.state, connection: demo.connection, peers: Object.keys(demo.peers).length }));
    if (after.connection === 'reconnecting' || after.connection === 'connecting' || after.peers > 0) {
      s.fail(`${name} did not stop after ${code}: ${JSON.stringify(after)}`);
    }
    return { page, text, after };
  };
  const forbidden = await refused('eve', { token: eve }, 'forbidden');
  const shotForbidden = await s.screenshot(forbidden.page, 'tokens-forbidden.png');
  const unauthorized = await refused('mal', {}, 'unauthorized');
  await sleep(Math.max(0, staleAt + 7000 - Date.now()));
  const expired = await refused('old', { token: stale }, 'token-expired');

  // Ann and Bob never saw any of them.
  const peers = await a.evaluate(() => Object.keys(demo.peers).length);
  if (peers !== 1) s.fail(`ann sees ${peers} peers; a refused page got into the room`);

  // Operator actions through the admin API: kick Bob (he sees why; Ann sees him go), Bob calls
  // again (a kick is not a ban), then the room is closed under both.
  const admin = async (path) => {
    const res = await fetch(new URL(path, baseA), { method: 'DELETE', headers: { Authorization: `Bearer ${apiKey}` } });
    if (res.status !== 200) s.fail(`DELETE ${path}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  const bobId = await b.evaluate(() => demo.peerId);
  const kicked = await admin(`/v1/rooms/${room}/members/${bobId}`);
  const kickNotice = await s.until(b, 'bob never learnt he was kicked', () => demo.state === 'idle' && document.querySelector('#notices [data-kind="removed"][data-code="kicked"]')?.textContent, undefined, 10000);
  const kickSeen = await s.until(a, 'ann never saw bob kicked', () => Object.keys(demo.peers).length === 0 && document.querySelector('#notices [data-kind="peer-left"][data-code="kicked"]')?.textContent, undefined, 10000);
  await b.click('#callBtn');
  await untilDecodingFrom(s, a, 'ann (bob back after the kick)', 1);
  const closed = await admin(`/v1/rooms/${room}`);
  for (const [name, page] of [['ann', a], ['bob', b]]) {
    await s.until(page, `${name} never learnt the room was closed`, () => demo.state === 'idle' && document.querySelector('#notices [data-kind="removed"][data-code="room-closed"]'), undefined, 10000);
  }
  const shotClosed = await s.screenshot(a, 'tokens-room-closed.png');
  return {
    operator: { kicked, kick_notice: kickNotice, kick_seen: kickSeen, closed },
    users: names,
    ice_servers: ice.servers,
    refusals: { forbidden: forbidden.text, unauthorized: unauthorized.text, expired: expired.text },
    screenshots: [shotA, shotForbidden, shotClosed],
  };
});
