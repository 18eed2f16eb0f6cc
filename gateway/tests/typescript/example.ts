// An application of the SDK as TypeScript sees it through switchboard.d.ts: every option, event,
// method and property, under "strict". Never run; tsc only checks that the types allow what the
// SDK's users write, and (through `never` in exhaustive switches) that unions hold no member the
// example forgot. misuse.ts is its counterpart: what the types must refuse.

import {
  connect,
  PROTOCOL_VERSION,
  RemotePeer,
  SUBPROTOCOL,
  SwitchboardClient,
  SwitchboardError,
  SwitchboardEvent,
  type ClientErrorCode,
  type CloseCode,
  type ConnectOptions,
  type JoinResult,
  type JsonValue,
  type PeerLeftReason,
  type PeerPresence,
  type PeerStats,
  type ServerErrorCode,
  type SwitchboardErrorCode,
  type SwitchboardEventName,
} from '../../static/switchboard.js';

declare function attach(peerId: string, stream: MediaStream): void;
declare function show(...parts: unknown[]): void;

const version: 1 = PROTOCOL_VERSION;
const subprotocol: 'switchboard.v1' = SUBPROTOCOL;
show(version, subprotocol);

// Every option the SDK reads.
const options: ConnectOptions = {
  url: 'wss://signal.example.com/v1/ws',
  urls: ['wss://node-b.example.com/v1/ws', 'wss://node-c.example.com/v1/ws'],
  token: async () => (await fetch('/token')).text(),
  iceServers: [{ urls: 'stun:stun.example.com:3478' }],
  iceServersUrl: null,
  reconnect: { baseMs: 250, maxMs: 10_000, maxAttempts: 5 },
  log: (line: string) => console.debug(line),
};
const plain: ConnectOptions = { token: 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln', iceServersUrl: '/v1/ice-servers' };
const anonymous: ConnectOptions = { token: null, iceServersUrl: 'https://example.com/v1/ice-servers' };
const noToken: ConnectOptions = { token: () => null };

const client = connect(options);
const other = new SwitchboardClient(plain);
other.open();
new SwitchboardClient(anonymous).close();
new SwitchboardClient(noToken).close();
new SwitchboardClient().close();

client.addEventListener('connection-state', (e) => {
  show(e.url, e.type);
  switch (e.state) {
    case 'connecting':
      return show(e.attempt);
    case 'reconnecting':
      // A close waits `delayMs` before the next attempt; the attempt itself says only its number.
      if (e.delayMs !== undefined) {
        const code: CloseCode = e.code;
        return show(e.attempt, e.delayMs, code === 4410, e.reason, e.unreachable);
      }
      return show(e.attempt);
    case 'connected':
      if (e.resumed) return show(e.peerId, e.nodeId, e.gapMs);
      return show(e.peerId, e.nodeId);
    case 'resuming':
      if (e.withinMs === undefined) return show(e.attempt);
      if (e.cause === 'break') return show(e.withinMs, e.code === 1006 || e.code === 4000, e.reason);
      return show(e.withinMs, e.cause);
    case 'failed':
      return show(e.code, e.reason, e.error.code, e.error.fatal);
    case 'closed':
      return;
    default:
      return unreachable(e);
  }
});
client.addEventListener('joined', (e) => {
  for (const p of e.peers) show(p.peer_id, p.user, p.role, p.meta?.['name']);
  show(e.room, e.peerId);
});
client.addEventListener('left', (e) => {
  const reason: 'kicked' | 'room-closed' = e.reason;
  show(e.room, reason);
});
client.addEventListener('peer-joined', (e) => {
  const peer: RemotePeer = e.peer;
  show(e.peerId === peer.id, peer.user, peer.role, peer.meta, peer.polite, peer.initiator, e.initiator);
});
client.addEventListener('peer-left', (e) => {
  switch (e.reason) {
    case 'left':
    case 'disconnected':
    case 'timeout':
    case 'slow-consumer':
    case 'shutdown':
    case 'replaced':
    case 'node-lost':
    case 'kicked':
    case 'room-closed':
    case 'reconnecting':
    case 'hung-up':
      return show(e.peerId, e.peer.id);
    default:
      return unreachable(e.reason);
  }
});
client.addEventListener('peer-state', (e) => {
  const state: RTCPeerConnectionState = e.state;
  show(e.peerId, state, e.peer.connectionState, e.peer.pc.connectionState);
});
client.addEventListener('peer-presence', (e) => {
  switch (e.state) {
    case 'reconnecting':
    case 'connected':
      return show(e.peerId, e.peer.presence === e.state);
    default:
      return unreachable(e.state);
  }
});
client.addEventListener('peer-muted', (e) => {
  show(e.peerId, e.audio, e.video, e.peer.muted.audio, e.peer.muted.video);
});
client.addEventListener('cluster-status', (e) => {
  show(e.connected, e.redis ?? 'not said', client.cluster?.connected);
});
client.addEventListener('track', (e) => {
  attach(e.peerId, e.stream);
  show(e.track.kind, e.peer.stream === e.stream);
});
client.addEventListener('channel-open', (e) => show(e.peerId, e.channel.label, e.peer.channel?.readyState));
client.addEventListener('channel-close', (e) => show(e.peerId, e.channel.readyState, e.peer.id));
client.addEventListener('message', (e) => {
  const bytes = typeof e.data === 'string' ? e.data.length : e.data.byteLength;
  show(e.peerId, e.peer.id, e.text, bytes);
});
client.addEventListener('broadcast', (e) => {
  const data: JsonValue = e.data;
  show(e.peerId, data);
});
client.addEventListener('error', function (e) {
  const client: SwitchboardClient = this;
  const code: SwitchboardErrorCode = e.code;
  if (e.fatal) show('gave up', client.state);
  if (code === 'token-expired' || code === 'ice-servers-unavailable') show(e.message);
  show(e.error instanceof SwitchboardError, e.error.code, e.error.closeCode);
});
// Listeners come off as they went on; and a plain Event listener still fits any name.
const onMessage = (e: SwitchboardEvent & { text: string }) => show(e.text);
client.addEventListener('message', onMessage);
client.removeEventListener('message', onMessage);
client.addEventListener('joined', { handleEvent: (e: Event) => show(e.type) });

// Every event name, once; a name the map lacks or one missing here fails to compile.
const everyEvent = {
  'connection-state': true,
  joined: true,
  left: true,
  'peer-joined': true,
  'peer-left': true,
  'peer-state': true,
  'peer-presence': true,
  'peer-muted': true,
  'cluster-status': true,
  track: true,
  'channel-open': true,
  'channel-close': true,
  message: true,
  broadcast: true,
  error: true,
} satisfies Record<SwitchboardEventName, true>;
show(everyEvent);

// Properties.
show(client.url, client.state, client.peerId, client.nodeId, client.room, client.iceServers.length);
show(client.limits?.max_message_bytes, client.limits?.max_json_depth, client.cluster?.redis);
for (const [id, peer] of client.peers) show(id, peer.muted, peer.channel, peer.connectionState, peer.presence);

// Methods.
async function call(): Promise<void> {
  const camera = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  await client.setLocalStream(camera);
  try {
    const joined: JoinResult = await client.join('lobby', { name: 'Ann' });
    show(joined.room, joined.peerId, joined.peers.length);
    await other.join('lobby');
    await other.join('lobby', null);
  } catch (e) {
    if (e instanceof SwitchboardError) {
      switch (e.code) {
        case 'forbidden':
        case 'room-full':
        case 'kicked':
        case 'room-closed':
        case 'closed':
          return show(e.code, e.message, e.fatal);
        default:
          show(e.code);
      }
    }
  }
  const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
  const [screenTrack] = screen.getVideoTracks();
  await client.replaceTrack('video', screenTrack ?? null);
  await client.replaceTrack('audio', null);
  client.setMuted('audio', true);
  client.setMuted('video', false);
  const reached: number = client.send('hello everyone');
  client.send(new Uint8Array([1, 2, 3]), 'peer-id');
  client.send(new ArrayBuffer(4));
  client.send(new Blob(['x']));
  const relayed: boolean = client.broadcast({ hello: ['everyone', 1, true, null] });
  client.broadcast(null);
  const stats: PeerStats[] = await client.getStats();
  for (const s of await client.getStats('peer-id')) {
    show(s.peerId, s.connectionState, s.rttMs, s.inboundKbps, s.outboundKbps, s.localCandidateType);
    show(s.remoteCandidateType, s.framesDecoded, s.framesPerSecond, s.resolution, s.packetsLost);
  }
  const peer = client.peers.get('peer-id');
  if (peer) {
    const sample: PeerStats = await peer.stats();
    show(sample, peer.send('direct'));
  }
  show(reached, relayed, stats.length);
  await client.leave();
  client.close();
}
void call();

// The error-code unions, as an application switches over them.
function describe(code: SwitchboardErrorCode): string {
  const client: ClientErrorCode[] = ['unreachable', 'disconnected', 'closed', 'protocol-mismatch', 'ice-servers-unavailable', 'token'];
  const server: ServerErrorCode = 'resume-failed';
  return client.includes(code as ClientErrorCode) ? `sdk: ${code}` : `server: ${code} (e.g. ${server})`;
}
show(describe('room-full'), new SwitchboardError('token', 'the token callback failed', { fatal: true }).closeCode);
const removed: PeerLeftReason = 'hung-up';
const away: PeerPresence = 'reconnecting';
show(away);
show(removed, new SwitchboardEvent('custom', { x: 1 }).type);

function unreachable(x: never): never {
  throw new Error(`unexpected ${String(x)}`);
}
