// A real OpenID Connect provider for devicelink's tests: node-oidc-provider on loopback.
//
//   node provider.mjs [PORT]          (or PORT=... in the environment; 0 picks a free port)
//
// Environment:
//   OIDC_CLIENT_ID       the one registered client (default "devicelink")
//   OIDC_CLIENT_SECRET   its secret: set -> confidential (client_secret_basic or _post);
//                        empty -> public client (token_endpoint_auth_method "none")
//   OIDC_REDIRECT_URIS   the client's redirect URIs, separated by spaces or commas
//   OIDC_TEST_PASSWORD   the test user's password (default "alice-password")
//   OIDC_EXTRA_ACCOUNTS  JSON {"<account id>": {"username", "password", "claims"}}: more
//                        users, with the claims a test chooses (a provider that lets its
//                        users pick their names and addresses)
//   OIDC_ID_TOKEN_CLAIMS "1" puts the profile/email claims in the ID token as well; by
//                        default (oidc-provider's conformIdTokenClaims) they are only at
//                        the userinfo endpoint, and the ID token carries "sub" alone.
//   OIDC_BACKCHANNEL_LOGOUT_URI  the client's backchannel_logout_uri (OpenID Connect
//                        Back-Channel Logout 1.0), with backchannel_logout_session_required
//                        as Keycloak's default (the logout token carries sub and sid)
//   OIDC_SIGNING_JWK     the private RSA JWK (JSON, with its "kid") that signs ID and
//                        logout tokens, so that a test can sign tokens as the provider
//                        would; default: a key generated at start
//
// Prints "listening on http://127.0.0.1:PORT" on stdout once requests can be served; the
// issuer is that URL exactly. PKCE (S256) is required for every authorization request.
//
// Sign-in: GET /interaction/<uid> shows a form (id "login-form") with inputs "username" and
// "password" (labelled "Username", "Password") and a "Sign in" button posting to
// /interaction/<uid>/login; a second form (id "cancel-form", button "Cancel") posts to
// /interaction/<uid>/abort and ends the request with error=access_denied. Consent is
// granted automatically: no page, no button.
//
// Sign-out (RP-initiated logout): GET /session/end shows a form (id "logout-form") with a
// hidden "xsrf" input and a "Sign out" button (name "logout", value "yes") posting to
// /session/end/confirm; the session ends and every client of it with a
// backchannel_logout_uri gets a logout token before the answer (a line "back-channel
// logout <status> <client>" on stdout says how it went).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const ACCOUNTS = new Map([
  ['u-1001', {
    username: 'oidc-alice',
    password: process.env.OIDC_TEST_PASSWORD || 'alice-password',
    claims: {
      preferred_username: 'oidc-alice',
      name: 'Alice Example',
      email: 'alice@example.com',
      email_verified: true,
    },
  }],
  ...Object.entries(JSON.parse(process.env.OIDC_EXTRA_ACCOUNTS || '{}')),
]);

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const clientId = process.env.OIDC_CLIENT_ID || 'devicelink';
const clientSecret = process.env.OIDC_CLIENT_SECRET || '';
const redirectUris = (process.env.OIDC_REDIRECT_URIS || 'http://127.0.0.1:8000/login/oidc/callback')
  .split(/[\s,]+/).filter(Boolean);

const backchannelLogoutUri = process.env.OIDC_BACKCHANNEL_LOGOUT_URI || '';
const signingJwk = process.env.OIDC_SIGNING_JWK ? JSON.parse(process.env.OIDC_SIGNING_JWK) : null;

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Test provider: sign in</title></head>
<body>
  <main>
    <h1>Test provider: sign in</h1>
    ${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
    <form id="login-form" method="post" action="/interaction/${uid}/login">
      <label for="username">Username</label>
      <input id="username" name="username" autocomplete="username" required autofocus>
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required>
      <button type="submit">Sign in</button>
    </form>
    <form id="cancel-form" method="post" action="/interaction/${uid}/abort">
      <button type="submit">Cancel</button>
    </form>
  </main>
</body>
</html>`;
}

// The provider's sign-out confirmation; `form` is oidc-provider's hidden form (its xsrf).
async function logoutSource(ctx, form) {
  ctx.body = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Test provider: sign out</title></head>
<body>
  <main>
    <h1>Test provider: sign out</h1>
    ${form.replace('id="op.logoutForm"', 'id="logout-form"')}
    <button type="submit" form="logout-form" name="logout" value="yes">Sign out</button>
  </main>
</body>
</html>`;
}

function send(res, status, body) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(body);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(provider, req, res, interaction) {
  const { prompt: { details }, params, session: { accountId } } = interaction;
  const grant = interaction.grantId
    ? await provider.Grant.find(interaction.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const consent = interaction.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function interactions(provider, req, res, path) {
  const [, uid, action] = path.match(/^\/interaction\/([\w-]+)(?:\/(login|abort))?$/) ?? [];
  if (!uid) return send(res, 404, 'not found');
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== uid) return send(res, 400, 'interaction mismatch');

  if (req.method === 'GET' && !action) {
    if (interaction.prompt.name === 'login') return send(res, 200, loginPage(uid));
    if (interaction.prompt.name === 'consent') return grantConsent(provider, req, res, interaction);
    return send(res, 400, `unsupported prompt ${escapeHtml(interaction.prompt.name)}`);
  }
  if (req.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === 'login' && interaction.prompt.name === 'login') {
    const form = await readForm(req);
    const entry = [...ACCOUNTS].find(([, a]) => a.username === form.get('username'));
    if (!entry || entry[1].password !== form.get('password')) {
      return send(res, 401, loginPage(uid, 'Wrong username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: entry[0] } }, {
      mergeWithLastSubmission: false,
    });
  }
  return send(res, 405, 'method not allowed');
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      ...(clientSecret
        ? { client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_basic' }
        : { token_endpoint_auth_method: 'none' }),
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      ...(backchannelLogoutUri
        ? { backchannel_logout_uri: backchannelLogoutUri, backchannel_logout_session_required: true }
        : {}),
    }],
    pkce: { required: () => true },
    jwks: {
      keys: [signingJwk
        ? { use: 'sig', alg: 'RS256', ...signingJwk }
        : { ...privateKey.export({ format: 'jwk' }), kid: 'test-rsa-1', use: 'sig', alg: 'RS256' }],
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
    },
    conformIdTokenClaims: process.env.OIDC_ID_TOKEN_CLAIMS !== '1',
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource },
    },
    // Outgoing requests (the logout tokens) go to devicelink on loopback, which
    // oidc-provider's SSRF guard refuses by default: a test provider may reach it.
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
    async findAccount(ctx, id) {
      const account = ACCOUNTS.get(id);
      if (!account) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...account.claims }) };
    },
  });
  provider.on('backchannel.success', (ctx, client) => {
    console.log(`back-channel logout 200 ${client.clientId}`);
  });
  provider.on('backchannel.error', (ctx, error, client) => {
    console.log(`back-channel logout failed ${client.clientId}: ${error.message}`);
  });
  const handle = provider.callback();
  server.on('request', (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    if (!path.startsWith('/interaction/')) return handle(req, res);
    interactions(provider, req, res, path).catch((error) => {
      if (!res.headersSent) send(res, 400, `sign-in failed: ${escapeHtml(error.message)}`);
      else res.end();
    });
  });
  console.log(`listening on ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
