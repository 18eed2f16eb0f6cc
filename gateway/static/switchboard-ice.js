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

/**
 * The ICE servers a client uses: the ones it was given, or fetched before a connection attempt
 * when what it holds is missing or its TURN credentials are about to lapse.
 */
export class IceServers {
  /** In `RTCConfiguration.iceServers` form. @type {RTCIceServer[]} */
  servers;
  #given;
  /** @type {string|null} */
  #url;
  #fetched = false;
  #expiresAt = 0;
  #warned = false;

  /**
   * @param {RTCIceServer[]|undefined} given Use these and fetch nothing.
   * @param {string|null|undefined} url Where to fetch (undefined: this page's origin).
   */
  constructor(given, url) {
    this.#given = !!given;
    this.servers = given ?? [];
    this.#url = url === undefined ? defaultIceServersUrl() : url;
  }

  /**
   * Fetches when needed. Unreachable, the client goes on with host candidates only: two
   * browsers on one network need no STUN/TURN, across NATs calls may fail. Returns what to
   * say about that, once (every attempt tries again), or null.
   * @param {string|null} token
   */
  async refresh(token) {
    const url = this.#url;
    if (this.#given || !url) return null;
    if (this.#fetched && (this.#expiresAt === 0 || this.#expiresAt - 60 > Date.now() / 1000)) return null;
    try {
      const { servers, expiresAt } = await fetchIceServers(url, token);
      this.servers = servers;
      this.#expiresAt = expiresAt;
      this.#fetched = true;
    } catch (e) {
      if (!this.#fetched && !this.#warned) {
        this.#warned = true;
        return `no ICE servers from ${url} (${e}); host candidates only`;
      }
    }
    return null;
  }
}
