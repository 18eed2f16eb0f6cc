// The demo page: a mesh call of up to six on the switchboard.js SDK — camera and microphone
// (mute each), screen sharing, chat over data channels, live statistics per peer, and plain
// words when the camera is refused or the server cannot be reached.
//
// URL parameters: `room`, `user`, `token` (an access token from POST /v1/tokens; `access_token`,
// the node's own name for it, works too), `autojoin=1`
// (call on load), `ws` (another signaling endpoint; repeat it to name more nodes, which a resume
// or reconnect goes round), `media=0` (join receive-only without asking for the camera),
// `res=WxH` (camera resolution, default 640x480).
//
// For tests, the page keeps a DOM contract (ids, `data-peer-id`, `data-kind`, `data-stat`,
// `body[data-call-state]`) and its state in `window.demo` (see demo-ui.js).

import { connect } from './switchboard.js';
import { $, addTile, chatLine, demo, input, leftSentence, log, nameOf, notice, refreshStats, removeTile, setState, showMuted, showPresence, tileOf, updateCount } from './demo-ui.js';

/** The mesh's size: every peer sends its media to every other, so uplink grows with each. */
const MAX_PEOPLE = 6;
const params = new URLSearchParams(location.search);

Object.assign(demo, { call: () => call(), hangUp: () => hangUp(), say: (/** @type {string} */ text) => say(text), toggleShare: () => toggleShare() });
Object.assign(window, { demo });

/** @type {MediaStream|null} */
let camera = null;
/** @type {MediaStreamTrack|null} */
let screenTrack = null;
let statsTimer = 0;

/** Enables what makes sense in a call (`on`) or out of one. @param {boolean} on */
function inCallControls(on) {
  input('callBtn').disabled = input('room').disabled = input('user').disabled = on;
  input('hangupBtn').disabled = !on;
  const media = on && !!camera;
  input('micBtn').disabled = !media || !camera?.getAudioTracks().length;
  input('camBtn').disabled = !media || !camera?.getVideoTracks().length;
  input('shareBtn').disabled = !on || !navigator.mediaDevices?.getDisplayMedia;
}

// ---- local media --------------------------------------------------------------------------------

/** Asks for camera and microphone; on refusal the call goes on receive-only, and says so. */
async function startCamera() {
  if (params.get('media') === '0') {
    demo.localMedia = 'receive-only';
    return null;
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    demo.localMedia = 'unavailable';
    notice('media-denied', 'This browser gives no camera access here (pages need https:// or localhost): you join receive-only. You will see and hear the others, and chat works.');
    return null;
  }
  const [w, h] = (params.get('res') || '640x480').split('x').map(Number);
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: w }, height: { ideal: h } }, audio: true });
    demo.localMedia = 'camera';
    return stream;
  } catch (e) {
    const err = /** @type {DOMException} */ (e);
    demo.localMedia = err.name === 'NotAllowedError' ? 'denied' : 'unavailable';
    const why = err.name === 'NotAllowedError' ? 'Camera and microphone access was refused'
      : err.name === 'NotFoundError' ? 'No camera or microphone was found'
      : err.name === 'NotReadableError' ? 'The camera or microphone is in use by another program'
      : `The camera could not start (${err.name})`;
    notice('media-denied', `${why}: you join receive-only. The others will not see or hear you, but you see and hear them, and chat works. Allow access and call again to send video.`);
    log(`getUserMedia failed: ${err.name}: ${err.message}`, true);
    return null;
  }
}

async function toggleShare() {
  const client = demo.client;
  if (!client) return;
  if (screenTrack) return stopShare();
  try {
    const display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    screenTrack = display.getVideoTracks()[0];
  } catch (e) {
    notice('share', `Screen sharing did not start (${/** @type {Error} */ (e).name}).`, 'info');
    return;
  }
  notice('share', null);
  // When the user stops sharing from the browser's own bar, go back to the camera.
  screenTrack.addEventListener('ended', () => stopShare());
  await client.replaceTrack('video', screenTrack);
  /** @type {HTMLVideoElement} */ ($('localVideo')).srcObject = new MediaStream([screenTrack]);
  $('localTile').classList.add('sharing');
  input('shareBtn').setAttribute('aria-pressed', 'true');
  input('shareBtn').textContent = 'Stop sharing';
  demo.sharing = true;
  log('sharing the screen');
}

async function stopShare() {
  const track = screenTrack;
  if (!track) return;
  screenTrack = null;
  track.stop();
  await demo.client?.replaceTrack('video', camera?.getVideoTracks()[0] ?? null);
  /** @type {HTMLVideoElement} */ ($('localVideo')).srcObject = camera;
  $('localTile').classList.remove('sharing');
  input('shareBtn').setAttribute('aria-pressed', 'false');
  input('shareBtn').textContent = 'Share screen';
  demo.sharing = false;
  log('back to the camera');
}

/** @param {'audio'|'video'} kind @param {HTMLElement} button @param {[string, string]} labels */
function toggleMute(kind, button, labels) {
  const muted = button.getAttribute('aria-pressed') !== 'true';
  demo.client?.setMuted(kind, muted);
  // The camera's track also feeds the local preview: mute it there too when not sharing.
  for (const t of camera?.getTracks() ?? []) if (t.kind === kind) t.enabled = !muted;
  demo.muted[kind] = muted;
  button.setAttribute('aria-pressed', String(muted));
  button.textContent = labels[muted ? 1 : 0];
  $('localBadges').textContent = [input('micBtn'), input('camBtn')]
    .filter((b) => b.getAttribute('aria-pressed') === 'true')
    .map((b) => (b === input('micBtn') ? 'mic off' : 'camera off'))
    .join(', ');
}

// ---- the call -------------------------------------------------------------------------------------

async function call() {
  const room = input('room').value.trim();
  const user = input('user').value.trim();
  if (!room || demo.client) return;
  params.set('room', room);
  if (user) params.set('user', user);
  history.replaceState(null, '', `?${params}`);
  demo.room = room;
  inCallControls(true);
  input('callBtn').disabled = true;
  setState('starting', 'starting the camera…');
  for (const kind of ['media-denied', 'auth', 'error', 'removed', 'room-full', 'peer-left']) notice(kind, null);
  camera = await startCamera();
  /** @type {HTMLVideoElement} */ ($('localVideo')).srcObject = camera;
  if (demo.room !== room) return camera?.getTracks().forEach((t) => t.stop()); // hung up meanwhile

  const token = params.get('token') || params.get('access_token') || null;
  const [url, ...urls] = params.getAll('ws').filter(Boolean);
  const client = connect({ url, urls, token, log });
  demo.client = client;
  wire(client);
  await client.setLocalStream(camera);
  inCallControls(true);
  setState('connecting', 'connecting…');
  try {
    const joined = await client.join(room, user ? { name: user } : null);
    if (joined.peers.length >= MAX_PEOPLE) {
      notice('room-full', `“${room}” already has ${joined.peers.length} people; this demo's mesh takes ${MAX_PEOPLE} at most. Try another channel name.`, 'error');
      return hangUp(true);
    }
    updateCount();
  } catch (e) {
    const err = /** @type {any} */ (e);
    if (err.code !== 'closed') log(`join failed: ${err.code}: ${err.message}`, true);
    if (demo.client === client) hangUp(true);
  }
}

/** @param {import('./switchboard.js').SwitchboardClient} client */
function wire(client) {
  const on = (/** @type {string} */ type, /** @type {(e: any) => void} */ f) => client.addEventListener(type, f);
  on('connection-state', (e) => {
    demo.connection = e.state;
    demo.peerId = client.peerId;
    demo.nodeId = client.nodeId;
    if (e.state === 'connected') {
      notice('unreachable', null);
      notice('reconnecting', null);
      $('identity').textContent = `you are ${e.peerId} on node ${e.nodeId}`;
      updateCount();
    } else if (e.state === 'reconnecting' && e.delayMs !== undefined) {
      clusterNotice(null); // that node's; the next one says its own
      const when = `Trying again in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt}).`;
      if (e.unreachable) {
        notice('reconnecting', null);
        notice('unreachable', `Cannot reach the signaling server at ${e.url}. ${when}`, 'error');
      } else {
        notice('reconnecting', `Lost the connection to the server (${e.code}${e.reason ? ` ${e.reason}` : ''}). ${when}`);
      }
      setState('connecting', 'reconnecting…');
    } else if (e.state === 'resuming' && e.withinMs !== undefined) {
      const why = e.cause === 'drain' ? 'The server is restarting: moving to another one' : `Lost the connection to the server (${e.code}${e.reason ? ` ${e.reason}` : ''}): reconnecting`;
      notice('reconnecting', `${why}… The call goes on meanwhile.`);
    } else if (e.state === 'failed') {
      setState('failed', 'disconnected');
    }
  });
  on('error', (e) => {
    demo.errors.push({ code: e.code, message: e.message });
    if (e.code === 'ice-servers-unavailable') return; // logged; calls on one network need none
    if (e.code === 'resume-failed') {
      return notice('error', 'The connection to the server could not be resumed: a new session starts, and the call with it.', 'info', e.code);
    }
    const auth = ['unauthorized', 'token-expired', 'token-invalid', 'forbidden'].includes(e.code);
    const text = auth ? `Access refused (${e.code}): ${authHelp(e.code, e.message)}` : `Server error ${e.code}: ${e.message}`;
    notice(auth ? 'auth' : 'error', text, 'error', e.code);
  });
  on('cluster-status', (e) => clusterNotice({ connected: e.connected, redis: e.redis }));
  on('left', (e) => {
    const what = e.reason === 'room-closed' ? `An operator closed “${e.room}”` : `An operator removed you from “${e.room}”`;
    notice('removed', `${what} (${e.reason}). Call again to rejoin.`, 'error', e.reason);
    hangUp(true);
  });
  on('peer-joined', (e) => addTile(e.peer));
  on('peer-left', (e) => {
    removeTile(e.peerId);
    if (e.reason !== 'reconnecting' && e.reason !== 'hung-up') {
      notice('peer-left', leftSentence(nameOf(e.peer), e.reason), 'info', e.reason);
      log(`${e.peerId} left: ${e.reason}`);
    }
  });
  on('peer-muted', (e) => showMuted(e.peerId, e.audio, e.video));
  on('peer-presence', (e) => showPresence(e.peerId, e.state));
  on('peer-state', (e) => {
    const tile = tileOf(e.peerId);
    if (tile) {
      tile.dataset.state = e.state;
      /** @type {HTMLElement} */ (tile.querySelector('.state')).textContent = e.state;
    }
    if (demo.peers[e.peerId]) demo.peers[e.peerId].state = e.state;
    log(`${e.peerId}: ${e.state}`);
  });
  on('track', (e) => {
    const video = tileOf(e.peerId)?.querySelector('video');
    if (video && video.srcObject !== e.stream) video.srcObject = e.stream;
  });
  on('channel-open', (e) => {
    if (demo.peers[e.peerId]) demo.peers[e.peerId].channelOpen = true;
    input('chatInput').disabled = input('chatBtn').disabled = false;
  });
  on('message', (e) => {
    demo.messages.push({ from: e.peerId, text: e.text });
    chatLine(nameOf(e.peer), e.text, false, e.peerId);
  });
  on('broadcast', (e) => {
    demo.broadcasts.push({ from: e.peerId, data: e.data });
    if (typeof e.data?.text === 'string') chatLine(`${nameOf(client.peers.get(e.peerId))} (via the server)`, e.data.text, false, e.peerId);
  });
  statsTimer = setInterval(refreshStats, 1000);
}

/** @param {boolean} [keepNotices] */
function hangUp(keepNotices = false) {
  clearInterval(statsTimer);
  demo.client?.close();
  demo.client = null;
  demo.room = null;
  screenTrack?.stop();
  screenTrack = null;
  camera?.getTracks().forEach((t) => t.stop());
  camera = null;
  /** @type {HTMLVideoElement} */ ($('localVideo')).srcObject = null;
  for (const id of Object.keys(demo.peers)) removeTile(id);
  inCallControls(false);
  for (const b of ['micBtn', 'camBtn', 'shareBtn']) input(b).setAttribute('aria-pressed', 'false');
  input('micBtn').textContent = 'Mute microphone';
  input('camBtn').textContent = 'Turn camera off';
  input('shareBtn').textContent = 'Share screen';
  demo.muted = { audio: false, video: false };
  demo.sharing = false;
  $('localBadges').textContent = '';
  input('chatInput').disabled = input('chatBtn').disabled = true;
  if (!keepNotices) for (const kind of Object.keys(demo.notices)) notice(kind, null);
  notice('unreachable', null);
  notice('reconnecting', null);
  clusterNotice(null);
  $('identity').textContent = '';
  setState(demo.state === 'failed' ? 'failed' : 'idle', demo.state === 'failed' ? 'disconnected' : 'idle');
}

/**
 * What to do about a refused access token, in this page's terms: the page takes its token from
 * `token=` in its own address (the node's message names the WebSocket's `access_token`).
 * @param {string} code @param {string} message
 */
function authHelp(code, message) {
  if (code === 'unauthorized') return 'this server requires an access token. Add &token=<token> to this page\'s address (tokens come from POST /v1/tokens; see the README).';
  if (code === 'token-expired') return 'the token in this page\'s address (token=) has expired. Get a new one and open the page with &token=<new token>.';
  if (code === 'token-invalid') return `the token in this page's address (token=) is not valid here: ${message}.`;
  return message;
}

/**
 * Says when the node cannot reach its cluster's Redis (null or `connected`: clears it).
 * @param {{connected: boolean, redis: string|null}|null} status
 */
function clusterNotice(status) {
  if (status && status.connected !== demo.cluster?.connected) log(`this node ${status.connected ? 'reaches' : 'cannot reach'} its cluster's Redis${status.redis ? ` (${status.redis})` : ''}`, !status.connected);
  demo.cluster = status;
  if (!status || status.connected) notice('cluster', null);
  else {
    const where = status.redis ? `Redis at ${status.redis}` : 'its Redis';
    notice('cluster', `This node cannot reach ${where}: calls to people on other nodes will not connect (people on this node can still call). It keeps trying; this notice goes away when it is back.`, 'error', 'cluster-down');
  }
  updateCount();
}

// ---- chat -----------------------------------------------------------------------------------------

/** @param {string} text */
function say(text) {
  if (!text || !demo.client) return 0;
  const reached = demo.client.send(text);
  if (reached === 0) {
    notice('error', 'Nobody is connected to receive that message yet.', 'info');
    return 0;
  }
  demo.sent.push(text);
  chatLine('you', text, true);
  return reached;
}

// ---- wiring ---------------------------------------------------------------------------------------

input('room').value = params.get('room') || 'demo';
input('user').value = params.get('user') || '';
$('joinForm').addEventListener('submit', (ev) => {
  ev.preventDefault();
  call();
});
$('hangupBtn').addEventListener('click', () => hangUp());
$('micBtn').addEventListener('click', () => toggleMute('audio', $('micBtn'), ['Mute microphone', 'Unmute microphone']));
$('camBtn').addEventListener('click', () => toggleMute('video', $('camBtn'), ['Turn camera off', 'Turn camera on']));
$('shareBtn').addEventListener('click', () => toggleShare());
$('chatForm').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (say(input('chatInput').value)) input('chatInput').value = '';
});
$('chatInput').addEventListener('keydown', (ev) => {
  // Enter sends, Shift+Enter starts a new line.
  if (ev.key === 'Enter' && !ev.shiftKey) {
    ev.preventDefault();
    /** @type {HTMLFormElement} */ ($('chatForm')).requestSubmit();
  }
});
if (params.get('autojoin') === '1') call();
