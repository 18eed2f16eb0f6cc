// The demo page's furniture: its state for tests (`window.demo`), log, notices, status, the
// remote tiles with their live statistics, and chat lines. The call itself is demo.js.

export const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
export const input = (/** @type {string} */ id) => /** @type {HTMLInputElement} */ (document.getElementById(id));

/**
 * What tests (and the curious, in the console) read.
 * - `state`: `idle`, `starting`, `connecting`, `waiting` (alone in the room), `in-call`, `failed`
 * - `connection`: the SDK's connection state; `peerId`, `nodeId`, `room`
 * - `peers[id]`: `{name, state, presence, presenceLog, channelOpen, framesDecoded, stats,
 *   muted: {audio, video}}` (stats refreshed each second; `muted` as the peer announced it;
 *   `presence`: its signaling connection, `connected` or `reconnecting`, and every change)
 * - `cluster`: `{connected, redis}` as the node said (null on a lone node)
 * - `messages`: chat received, `{from, text}`; `sent`: chat sent; `broadcasts`: what came
 *   through the server (`client.broadcast`), `{from, data}`
 * - `errors`: `{code, message}` the SDK reported; `notices`: the current notices by kind
 * - `localMedia`: `camera`, `denied`, `unavailable`, `receive-only` or `none`; `sharing`;
 *   `muted.audio`, `muted.video`
 */
export const demo = {
  state: 'idle',
  connection: 'idle',
  /** @type {string|null} */ peerId: null,
  /** @type {string|null} */ nodeId: null,
  /** @type {string|null} */ room: null,
  /** @type {{connected: boolean, redis: string|null}|null} */ cluster: null,
  /** @type {Record<string, any>} */ peers: {},
  /** @type {{from: string, text: string}[]} */ messages: [],
  /** @type {{from: string, data: any}[]} */ broadcasts: [],
  /** @type {string[]} */ sent: [],
  /** @type {{code: string, message: string}[]} */ errors: [],
  /** @type {Record<string, string>} */ notices: {},
  localMedia: 'none',
  sharing: false,
  muted: { audio: false, video: false },
  /** @type {import('./switchboard.js').SwitchboardClient|null} */ client: null,
  // The page's actions, set by demo.js: call(), hangUp(), say(text), toggleShare().
};

// ---- page furniture -----------------------------------------------------------------------------

/** @param {string} text @param {boolean} [error] */
export function log(text, error = false) {
  const line = document.createElement('div');
  if (error) line.className = 'err';
  line.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').append(line);
  line.scrollIntoView({ block: 'nearest' });
  // The browser tests print the pages' consoles when they fail.
  (error ? console.warn : console.log)(`[demo] ${text}`);
}

/**
 * Shows (or with null text, removes) the notice of one kind: `media-denied`, `unreachable`,
 * `reconnecting`, `cluster`, `auth`, `error`, `removed`, `peer-left`, `room-full`, `share`.
 * @param {string} kind @param {string|null} text @param {'warn'|'error'|'info'} [level] @param {string} [code]
 */
export function notice(kind, text, level = 'warn', code = '') {
  let el = /** @type {HTMLElement|null} */ ($('notices').querySelector(`[data-kind="${kind}"]`));
  if (!text) {
    el?.remove();
    delete demo.notices[kind];
    return;
  }
  if (!el) {
    el = document.createElement('div');
    el.className = 'notice';
    el.dataset.kind = kind;
    el.setAttribute('role', level === 'error' ? 'alert' : 'status');
    $('notices').append(el);
  }
  el.dataset.level = level;
  if (code) el.dataset.code = code;
  el.textContent = text;
  demo.notices[kind] = text;
}

/** @param {string} state @param {string} text */
export function setState(state, text) {
  demo.state = state;
  document.body.dataset.callState = state;
  $('status').textContent = text;
}

export function updateCount() {
  const count = $('videos').querySelectorAll('.tile').length;
  $('videos').dataset.count = String(count);
  const n = Object.keys(demo.peers).length;
  if (demo.connection !== 'connected' || !demo.room) return;
  // Cut off from the cluster, the others may be there already, on another node.
  const cut = demo.cluster?.connected === false ? ' (this node is cut off from the other nodes)' : '';
  if (n === 0) setState('waiting', `in “${demo.room}”, waiting for others…${cut}`);
  else setState('in-call', `in a call with ${n} other${n === 1 ? '' : 's'}`);
}

// ---- remote tiles ---------------------------------------------------------------------------------

/** @param {any} peer */
export function nameOf(peer) {
  return peer?.user || peer?.meta?.name || peer?.id || 'someone';
}

/** @param {string} id */
export function tileOf(id) {
  return /** @type {HTMLElement|null} */ ($('videos').querySelector(`[data-peer-id="${CSS.escape(id)}"]`));
}

/** @param {import('./switchboard.js').RemotePeer} peer */
export function addTile(peer) {
  const tile = /** @type {HTMLElement} */ (/** @type {HTMLTemplateElement} */ ($('tileTemplate')).content.firstElementChild?.cloneNode(true));
  tile.dataset.peerId = peer.id;
  if (peer.user) tile.dataset.user = peer.user;
  /** @type {HTMLElement} */ (tile.querySelector('.name')).textContent = nameOf(peer);
  $('videos').append(tile);
  demo.peers[peer.id] = { name: nameOf(peer), state: 'new', presence: 'connected', presenceLog: [], channelOpen: false, framesDecoded: 0, stats: null, muted: { audio: false, video: false } };
  notice('peer-left', null);
  log(`${nameOf(peer)} (${peer.id}) is here; ${peer.initiator ? 'calling' : 'waiting for its call'}`);
  updateCount();
}

/**
 * Shows what a peer muted on its tile (a disabled track still plays, black and silent).
 * @param {string} id @param {boolean} audio @param {boolean} video
 */
export function showMuted(id, audio, video) {
  const tile = tileOf(id);
  if (demo.peers[id]) demo.peers[id].muted = { audio, video };
  if (!tile) return;
  tile.dataset.mutedAudio = String(audio);
  tile.dataset.mutedVideo = String(video);
  /** @type {HTMLElement} */ (tile.querySelector('.badges')).textContent = [audio && 'mic off', video && 'camera off'].filter(Boolean).join(', ');
  log(`${demo.peers[id]?.name ?? id}: ${audio ? 'microphone muted' : 'microphone on'}, ${video ? 'camera off' : 'camera on'}`);
}

/**
 * Shows that a peer's own connection to the server broke and the server holds its place while
 * it comes back (`reconnecting`), or that it came back (`connected`). Its media may go on.
 * @param {string} id @param {'reconnecting'|'connected'} presence
 */
export function showPresence(id, presence) {
  const entry = demo.peers[id];
  if (entry) {
    entry.presence = presence;
    entry.presenceLog.push(presence);
  }
  const tile = tileOf(id);
  if (tile) {
    tile.dataset.presence = presence;
    /** @type {HTMLElement} */ (tile.querySelector('.presence')).textContent = presence === 'reconnecting' ? 'reconnecting…' : '';
  }
  log(`${entry?.name ?? id}: ${presence === 'reconnecting' ? 'lost its connection to the server; reconnecting…' : 'is back'}`);
}

/** Why a peer left, as a sentence (docs/protocol.md, `peer-left` reasons). @param {string} name @param {string} reason */
export function leftSentence(name, reason) {
  switch (reason) {
    case 'left': return `${name} left the call.`;
    case 'disconnected': return `${name} disconnected (their page closed or their network dropped).`;
    case 'timeout': return `${name} lost connection.`;
    case 'slow-consumer': return `${name} was cut off: their connection could not keep up.`;
    case 'shutdown': return `${name}'s server shut down; they may come back in a moment.`;
    case 'node-lost': return `${name}'s server stopped answering; they may come back in a moment.`;
    case 'replaced': return `${name} joined again from another tab or device.`;
    case 'kicked': return `${name} was removed from the call.`;
    case 'room-closed': return `The call was closed; ${name} is gone too.`;
    default: return `${name} left the call (${reason}).`;
  }
}

/** @param {string} id */
export function removeTile(id) {
  tileOf(id)?.remove();
  delete demo.peers[id];
  if (!Object.values(demo.peers).some((p) => p.channelOpen)) input('chatInput').disabled = input('chatBtn').disabled = true;
  updateCount();
}

/** Samples every peer connection and shows it on its tile (and in `demo.peers`). */
export async function refreshStats() {
  const client = demo.client;
  if (!client) return;
  for (const s of await client.getStats()) {
    const entry = demo.peers[s.peerId];
    const tile = tileOf(s.peerId);
    if (!entry || !tile) continue;
    entry.stats = s;
    entry.framesDecoded = s.framesDecoded;
    const set = (/** @type {string} */ k, /** @type {string} */ v) => {
      /** @type {HTMLElement} */ (tile.querySelector(`[data-stat="${k}"]`)).textContent = v;
    };
    set('rtt', s.rttMs === null ? '–' : `${s.rttMs.toFixed(0)} ms`);
    set('in', s.inboundKbps === null ? '–' : `${s.inboundKbps.toFixed(0)} kbit/s`);
    set('out', s.outboundKbps === null ? '–' : `${s.outboundKbps.toFixed(0)} kbit/s`);
    set('path', s.localCandidateType ? `${s.localCandidateType} → ${s.remoteCandidateType}` : '–');
    set('video', s.resolution ? `${s.resolution} · ${s.framesPerSecond.toFixed(0)} fps · ${s.framesDecoded} frames` : '–');
    tile.dataset.framesDecoded = String(s.framesDecoded);
  }
}

// ---- chat -----------------------------------------------------------------------------------------

/** @param {string} who @param {string} text @param {boolean} mine @param {string} [peerId] */
export function chatLine(who, text, mine, peerId) {
  const line = document.createElement('div');
  line.className = mine ? 'me' : '';
  line.dataset.from = mine ? 'me' : peerId || '';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = `${who}: `;
  line.append(from, text);
  $('chat').append(line);
  line.scrollIntoView({ block: 'nearest' });
}
