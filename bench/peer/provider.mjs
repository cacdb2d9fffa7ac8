// The benchmark's peer: node-oidc-provider with the device flow (RFC 8628), in-memory
// storage, one public client. bench/run.py starts it pinned to the server CPU.
//
//   node provider.mjs [PORT]        (0 or nothing: a free port)
//
// Environment:
//   BENCH_CLIENT_ID        the one client, public, allowed only the device_code grant
//                          (default "bench-device")
//   BENCH_DEVICE_CODE_TTL  seconds a device code lives (default 600, oidc-provider's own);
//                          the harness sets it long enough for its pool to outlive the runs
//
// Endpoints (oidc-provider's defaults): POST /device/auth (device authorization),
// POST /token (token), GET /.well-known/openid-configuration.
// Prints "listening on http://127.0.0.1:PORT" on stdout once requests can be served.
//
// Storage: oidc-provider's own MemoryAdapter, with one change: its store. The bundled
// store is an LRU of 1,000 entries (a device code takes two: the code and its user-code
// index), so a pool of tens of thousands of pending codes would be evicted and polls
// would answer invalid_grant. Here the same adapter runs on an unbounded Map with the
// same expiry semantics (an entry read after its maxAge is gone), swept once a minute.
// A Map is the cheapest storage there is: that favours the peer, not devicelink.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const clientId = process.env.BENCH_CLIENT_ID || 'bench-device';
const deviceCodeTtl = Number(process.env.BENCH_DEVICE_CODE_TTL || 600);

class ExpiringMap {
  #entries = new Map();

  constructor() {
    setInterval(() => this.sweep(), 60_000).unref();
  }

  get(key) {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiry !== undefined && entry.expiry <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, { maxAge } = {}) {
    const expiry = typeof maxAge === 'number' && Number.isFinite(maxAge)
      ? Date.now() + maxAge
      : undefined;
    this.#entries.set(key, { value, expiry });
    return this;
  }

  has(key) {
    return this.get(key) !== undefined;
  }

  delete(key) {
    return this.#entries.delete(key);
  }

  sweep() {
    const now = Date.now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiry !== undefined && entry.expiry <= now) this.#entries.delete(key);
    }
  }
}

const store = new ExpiringMap();

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    adapter: (model) => new MemoryAdapter(model, store),
    clients: [{
      client_id: clientId,
      token_endpoint_auth_method: 'none',
      grant_types: [DEVICE_CODE_GRANT],
      response_types: [],
      redirect_uris: [],
    }],
    jwks: {
      keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'bench-rsa-1', use: 'sig', alg: 'RS256' }],
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    ttl: { DeviceCode: deviceCodeTtl },
    // The device flow and nothing else: every feature oidc-provider enables by default
    // is turned off.
    features: {
      deviceFlow: { enabled: true },
      devInteractions: { enabled: false },
      dPoP: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      resourceIndicators: { enabled: false },
      userinfo: { enabled: false },
    },
    async findAccount(ctx, sub) {
      return { accountId: sub, async claims() { return { sub }; } };
    },
  });
  provider.on('server_error', (ctx, error) => {
    console.error('server_error', error);
  });
  server.on('request', provider.callback());
  console.log(`listening on ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
