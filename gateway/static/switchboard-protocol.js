// What the SDK knows of the wire (docs/protocol.md): the subprotocol and version it speaks,
// how it opens a socket, the failures it reports and the close codes it acts on.

/** The WebSocket subprotocol that pins protocol v1. */
export const SUBPROTOCOL = 'switchboard.v1';
/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/** Optional frames (`?notify=`), sent only to clients that ask: `cluster-status` (docs/protocol.md). */
const NOTIFY = 'cluster-status';

/**
 * The SDK's own error codes, for failures no server reports: `unreachable` (no connection
 * could be opened), `disconnected` (the connection dropped while a request waited), `closed`
 * (the client was closed), `protocol-mismatch`, `ice-servers-unavailable` (going on without
 * STUN/TURN), `token` (the token callback failed). Every other code the SDK names is the
 * server's; gateway/tests/sdk_codes.rs holds both to the protocol's list in `shared`, so a new
 * client-side code must be added here, and may not take a server code's name.
 */
export const CLIENT_CODES = Object.freeze(['unreachable', 'disconnected', 'closed', 'protocol-mismatch', 'ice-servers-unavailable', 'token']);

/**
 * A failure the server (or the SDK) reports. `code` is the protocol's stable error code
 * (docs/protocol.md, "Error codes") — `forbidden`, `room-full`, `token-expired`, … — or one of
 * the SDK's own, `CLIENT_CODES`.
 */
export class SwitchboardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{fatal?: boolean, closeCode?: number}} [more]
   */
  constructor(code, message, { fatal = false, closeCode } = {}) {
    super(message);
    this.name = 'SwitchboardError';
    /** The stable error code. */
    this.code = code;
    /** True when the client gave up (no reconnect follows). */
    this.fatal = fatal;
    /** The WebSocket close code that came with it, if any. */
    this.closeCode = closeCode;
  }
}


/** Close codes after which reconnecting cannot help: the token, not the network, is the problem. */
export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_FORBIDDEN = 4403;
/** The close code of a refused resume (after the `error` `resume-failed`). */
export const CLOSE_RESUME_FAILED = 4410;
/** Close codes of a server that ended the session itself: nothing is held for a resume. */
const CLOSE_GOING_AWAY = 1001;
const CLOSE_PROTOCOL_ERROR = 1002;
const CLOSE_INVALID_PAYLOAD = 1007;
const CLOSE_TOO_BIG = 1009;

/**
 * Whether the server may hold the session after its socket closed with `code`, for a resume:
 * after anything but a close that ended it (an abnormal close, 1006, which no server sends,
 * an idle timeout, 4000, a drain's 1012, …). A resume that guessed wrong is refused, and the
 * client starts afresh as it would have anyway.
 * @param {number} code
 */
export function mayResumeAfter(code) {
  return ![CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_PAYLOAD, CLOSE_TOO_BIG, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_RESUME_FAILED].includes(code);
}

/**
 * A WebSocket to `url` speaking v1, asking for the optional frames this SDK handles (unless
 * `url` names its own `notify`), with the access token if there is one. Throws on a bad URL.
 * @param {string} url
 * @param {string|null} token
 */
export function openSocket(url, token) {
  const protocols = [SUBPROTOCOL];
  // A JWT is base64url and dots: a valid subprotocol token (RFC 6455 §4.1), and unlike a
  // query parameter it stays out of access logs.
  if (token) protocols.push(`access_token.${token}`);
  return new WebSocket(withNotify(url), protocols);
}

/** @param {string} url */
function withNotify(url) {
  try {
    const u = new URL(url);
    if (!u.searchParams.has('notify')) u.searchParams.set('notify', NOTIFY);
    return u.toString();
  } catch {
    return url; // WebSocket reports it
  }
}
