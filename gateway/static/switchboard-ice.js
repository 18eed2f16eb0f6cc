// ICE servers for a Switchboard client: `GET /v1/ice-servers` (docs: the gateway's OpenAPI
// document at /v1/openapi.json), which hands out STUN entries and TURN entries with
// short-lived credentials (coturn's `use-auth-secret` scheme).

/** How long the request may take before the client goes on without it. */
const FETCH_TIMEOUT_MS = 3000;

/** This page's origin + `/v1/ice-servers`, or null off the web (a file:// page). */
export function defaultIceServersUrl() {
  const origin = globalThis.location?.origin;
  return origin && origin.startsWith('http') ? `${origin}/v1/ice-servers` : null;
}

/**
 * Fetches ICE servers in `RTCConfiguration.iceServers` form, with the access token as Bearer
 * credentials when there is one. Throws on any failure (network, status, body, timeout).
 * @param {string} url
 * @param {string|null} token
 * @returns {Promise<{servers: RTCIceServer[], expiresAt: number}>} `expiresAt`: Unix seconds
 *   when the TURN credentials lapse (0 without TURN); fetch again before then.
 */
export async function fetchIceServers(url, token) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : undefined;
    const res = await fetch(url, { headers, signal: abort.signal });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    const servers = (body.ice_servers ?? []).map((/** @type {any} */ s) => ({
      urls: s.urls,
      ...(s.username ? { username: s.username } : {}),
      ...(s.credential ? { credential: s.credential } : {}),
    }));
    return { servers, expiresAt: body.expires_at ?? 0 };
  } finally {
    clearTimeout(timer);
  }
}
