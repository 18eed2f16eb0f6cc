// What switchboard.d.ts must refuse. Each `@ts-expect-error` line is a mistake an application
// could make; tsc fails on a directive whose line compiles, so types loose enough to let one
// of them through fail the check as surely as types too tight for example.ts.

import { connect, SwitchboardError, type SwitchboardErrorCode } from '../../static/switchboard.js';

const client = connect({ url: 'ws://localhost:8090/v1/ws' });

// A misspelt event name: the listener gets a plain Event, without the fields.
// @ts-expect-error
client.addEventListener('peer-joind', (e) => e.peerId);
// A field of another event.
// @ts-expect-error
client.addEventListener('peer-joined', (e) => e.stream);
// A wire-form field name where the SDK gives camelCase.
// @ts-expect-error
client.addEventListener('joined', (e) => e.peer_id);
// `resumed` exists only on `connected`, and `delayMs` only on `reconnecting`.
client.addEventListener('connection-state', (e) => {
  // @ts-expect-error
  const gap: number = e.gapMs;
  if (e.state === 'failed') {
    // @ts-expect-error
    const delay: number = e.delayMs;
    return [gap, delay];
  }
  // @ts-expect-error
  return e.state === 'open';
});
// A payload typed wrong: message data may be an ArrayBuffer.
// @ts-expect-error
client.addEventListener('message', (e) => e.data.toUpperCase());
// A listener for one event put on another.
const onTrack = (e: { stream: MediaStream }) => e.stream;
// @ts-expect-error
client.addEventListener('peer-left', onTrack);

// Error codes are a closed set.
// @ts-expect-error
const code: SwitchboardErrorCode = 'room_full';
// @ts-expect-error
new SwitchboardError('nope', 'not a code');

// Options the SDK does not read, or of the wrong type.
// @ts-expect-error
connect({ urls: 'ws://localhost:8090/v1/ws' });
// @ts-expect-error
connect({ reconnect: { baseMs: '250' } });
// @ts-expect-error
connect({ token: 42 });

// Methods: kinds are audio and video; broadcast needs JSON; peers' state is the client's.
// @ts-expect-error
client.setMuted('screen', true);
// @ts-expect-error
client.broadcast(undefined);
// @ts-expect-error
client.peerId = 'mine';
const peer = client.peers.get('x');
// @ts-expect-error
if (peer) peer.muted.audio = true;
// @ts-expect-error
client.on('joined', () => {});

// The server's word on a peer's signaling connection is not an RTCPeerConnectionState.
// @ts-expect-error
client.addEventListener('peer-presence', (e) => e.state === 'failed');
// Only a broken socket's resume says which close broke it.
client.addEventListener('connection-state', (e) => {
  // @ts-expect-error
  if (e.state === 'resuming' && e.cause === 'drain') return e.code;
  return undefined;
});

export { code };
