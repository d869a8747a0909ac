// The test and demo identity provider: oidc-provider (a certified OpenID Connect provider) with
// in-memory storage, issuing RFC 9068 JWT access tokens (or opaque ones, for introspection) for one
// resource server, the invoicing API.
//
//   node server.mjs --port 9400 [--keys keys.json] [--audience URN] [--alg ES256] [--test-endpoints]
//                   [--gateway https://gateway.example ...]
//   (new keys alone: `node keys.mjs keys.json`, the script beside this one)
//
// Users get tokens through a password grant (no browser needed) that carries their roles, groups
// and MFA facts (`amr`, `acr`, `auth_time`); integration accounts use client credentials with
// scopes. A user's token carries the scopes its client asked for (`scope`; by default every scope
// of the invoicing API, as the web UI's client asks). Test-only grant parameters: `amr` (e.g. "pwd"
// for a login without MFA), `ttl` (seconds),
// `auth_age` (seconds since the login), `alg` (the signing algorithm), `format` ("opaque").
// Users, passwords and clients come from users.json beside this file.
//
// Browser logins: the gateway's web client (`invoiceguard-web`, its secret in users.json) logs
// people in with the authorization code flow and PKCE through a real login page (user name,
// password, and a one-time code for a multi-factor login: `amr` pwd+otp, else pwd), with
// RP-initiated logout and back-channel logout to the gateway. Each `--gateway URL` is a gateway
// origin the client may return to (`URL/.invoiceguard/callback`); the first also receives the
// back-channel logout tokens (`URL/.invoiceguard/backchannel-logout`). When --keys names a file that
// exists its JWK set is used (so two providers can share keys); otherwise new keys are generated and
// written there.
//
// --test-endpoints adds, for tests only, never for the demo:
//   POST /__test/sign    {header, payload, kid?, hmac_with_public_key_of?}  → {token}
//   POST /__test/rotate  {retire?}  new keys in front of the old ones, or instead of them when
//                        `retire` (the provider is rebuilt) → {kids}
//   GET  /__test/stats   → {jwks_fetches}
//   POST /__test/web-client {gateways: [URL, ...]}  the web client's gateway origins instead of
//                        --gateway's (the provider is rebuilt) → {client_id}
//   POST /__test/users/{name} {roles}  the user's roles at the IdP from now on (a mover)
//   POST /__test/ssf/emit, GET /__test/ssf/errors  security events (ssf.mjs)
//
// It is also a Shared Signals transmitter (ssf.mjs): CAEP and RISC events about its users,
// pushed to or polled by the gateway's stream.
import { createPublicKey, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { CompactSign, importJWK } from 'jose';
import Provider, { errors } from 'oidc-provider';

import { newKeys, writeKeys } from './keys.mjs';
import { transmitter } from './ssf.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '9400' },
    host: { type: 'string', default: '127.0.0.1' },
    keys: { type: 'string' },
    audience: { type: 'string', default: 'urn:invoiceguard:invoicing-api' },
    alg: { type: 'string', default: 'ES256' },
    'test-endpoints': { type: 'boolean', default: false },
    gateway: { type: 'string', multiple: true, default: [] },
  },
});

const here = dirname(fileURLToPath(import.meta.url));
const directory = JSON.parse(readFileSync(join(here, 'users.json'), 'utf8'));
const issuer = `http://${args.host}:${args.port}`;
const PASSWORD_GRANT = 'urn:invoiceguard:params:grant-type:password';
const MFA_AMR = ['pwd', 'otp'];
const ACR_PWD = 'urn:invoiceguard:acr:pwd';
const ACR_MFA = 'urn:invoiceguard:acr:mfa';
const ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'];
// The invoicing API's scopes (policies/scopes.cedar): integration clients get some of them, and a
// user's token carries those its client asked for.
const API_SCOPES = [
  'invoices:read', 'invoices:write', 'invoices:approve', 'partners:read', 'partners:write',
  'exports:create', 'reports:read', 'admin', 'audit:read',
];
const SCOPES = ['openid', ...API_SCOPES];

let jwks;
if (args.keys && existsSync(args.keys)) {
  jwks = JSON.parse(readFileSync(args.keys, 'utf8'));
} else {
  jwks = { keys: newKeys() };
  if (args.keys) writeKeys(args.keys, jwks);
}

const WEB_CLIENT_ID = 'invoiceguard-web';
let gatewayOrigins = args.gateway;

// The gateway as a confidential web client of the code flow, for the gateway origins known.
function webClients() {
  if (gatewayOrigins.length === 0) return [];
  const origins = gatewayOrigins.map((url) => url.replace(/\/+$/, ''));
  return [{
    client_id: WEB_CLIENT_ID,
    client_secret: directory.web_client_secret,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: origins.map((origin) => `${origin}/.invoiceguard/callback`),
    post_logout_redirect_uris: origins.map((origin) => `${origin}/.invoiceguard/logged-out`),
    backchannel_logout_uri: `${origins[0]}/.invoiceguard/backchannel-logout`,
    backchannel_logout_session_required: true,
    require_auth_time: true,
    scope: SCOPES.join(' '),
  }];
}

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

function resourceServerInfo(ctx, resource, scope) {
  const { params } = ctx.oidc;
  const alg = params.alg && ALGORITHMS.includes(params.alg) ? params.alg : args.alg;
  const opaque = params.format === 'opaque';
  return {
    scope,
    audience: resource,
    accessTokenFormat: opaque ? 'opaque' : 'jwt',
    accessTokenTTL: 600,
    ...(opaque ? {} : { jwt: { sign: { alg } } }),
  };
}

function buildProvider() {
  const provider = new Provider(issuer, {
    clients: [...directory.clients, ...webClients()],
    findAccount: (ctx, id) => {
      const user = directory.users[id];
      if (!user) return undefined;
      return {
        accountId: id,
        claims: () => ({ sub: id, name: user.name, roles: user.roles, groups: user.groups ?? [] }),
      };
    },
    // The person's roles are in the ID token, which the gateway builds a browser session from.
    claims: { acr: null, amr: null, auth_time: null, iss: null, sid: null, openid: ['sub', 'name', 'roles', 'groups', 'acr', 'amr'] },
    conformIdTokenClaims: false,
    acrValues: [ACR_PWD, ACR_MFA],
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: [directory.web_client_secret] },
    // The gateways this test IdP sends back-channel logouts to listen on loopback, which
    // oidc-provider's SSRF guard refuses; a real IdP reaches its relying parties by name.
    fetch: (url, options) => fetch(url, { ...options, dispatcher: undefined }),
    jwks,
    scopes: SCOPES,
    enabledJWA: { idTokenSigningAlgValues: ALGORITHMS },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => args.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => resourceServerInfo(ctx, resource, SCOPES.join(' ')),
      },
    },
    extraTokenClaims: (ctx, token) => {
      if (!token.accountId) return undefined;
      const user = directory.users[token.accountId];
      const { params } = ctx.oidc;
      const amr = params.amr ? String(params.amr).split(',') : MFA_AMR;
      const authAge = Number.parseInt(params.auth_age ?? '0', 10);
      return {
        roles: user.roles,
        groups: user.groups ?? [],
        name: user.name,
        email: `${token.accountId}@example.test`,
        amr,
        acr: amr.length > 1 ? ACR_MFA : ACR_PWD,
        auth_time: Math.floor(Date.now() / 1000) - authAge,
      };
    },
  });

  // The password grant: the test and demo stand-in for an interactive login, so that a script
  // can obtain a user's token without a browser.
  provider.registerGrantType(PASSWORD_GRANT, async (ctx) => {
    const { client, params } = ctx.oidc;
    const user = directory.users[params.username];
    if (!user || !sameSecret(user.password, params.password)) {
      throw new errors.InvalidGrant('invalid username or password');
    }
    const resource = params.resource || args.audience;
    const asked = params.scope ? String(params.scope).split(' ') : SCOPES;
    const unknown = asked.filter((scope) => !SCOPES.includes(scope));
    if (unknown.length > 0) {
      throw new errors.InvalidScope('unknown scope', unknown.join(' '));
    }
    const scope = asked.join(' ');
    const token = new provider.AccessToken({
      accountId: params.username,
      client,
      gty: 'password',
      scope,
    });
    token.resourceServer = new provider.ResourceServer(resource, resourceServerInfo(ctx, resource, scope));
    if (params.ttl) {
      token.exp = Math.floor(Date.now() / 1000) + Number.parseInt(params.ttl, 10);
    }
    const value = await token.save();
    ctx.body = { access_token: value, token_type: 'Bearer', expires_in: token.expiration };
  }, ['username', 'password', 'resource', 'scope', 'amr', 'ttl', 'auth_age', 'alg', 'format']);

  provider.on('backchannel.error', (ctx, error, client) => {
    console.error(`back-channel logout to ${client.clientId} failed: ${error.message} ${error.cause ?? ""}`);
  });
  provider.on('backchannel.success', (ctx, client) => {
    console.log(`back-channel logout sent to ${client.clientId}`);
  });
  return provider;
}

let provider = buildProvider();
let jwksFetches = 0;

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// Signs any header and payload: with the private key named by `kid`, or with HMAC-SHA256 keyed by
// a key's public PEM (the classic algorithm-confusion attack).
async function sign({ header, payload, kid, hmac_with_public_key_of: hmacKid }) {
  const data = new TextEncoder().encode(JSON.stringify(payload));
  if (hmacKid) {
    const jwk = jwks.keys.find((k) => k.kid === hmacKid);
    const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    return new CompactSign(data).setProtectedHeader({ alg: 'HS256', kid: hmacKid, ...header }).sign(Buffer.from(pem));
  }
  const jwk = jwks.keys.find((k) => k.kid === kid) ?? jwks.keys[0];
  const key = await importJWK(jwk, jwk.alg);
  return new CompactSign(data).setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, ...header }).sign(key);
}

// The login page: user name, password and (for a multi-factor login) the user's one-time code.
function loginPage(uid, { error, username, mfaAsked }) {
  const escape = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><html lang="en"><meta charset="utf-8"><title>Sign in — test IdP</title>
<style>body{font-family:sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.4rem 0}
.error{color:#a00}</style>
<h1>Sign in</h1>
${mfaAsked ? '<p id="mfa-asked">This operation needs a multi-factor login: enter your one-time code.</p>' : ''}
${error ? `<p class="error" id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label>User name <input id="username" name="username" value="${escape(username)}" autofocus></label>
<label>Password <input id="password" name="password" type="password"></label>
<label>One-time code <input id="otp" name="otp" inputmode="numeric"></label>
<button id="sign-in" type="submit">Sign in</button>
</form></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The login and consent steps of an authorization request. Consent is given for the gateway's
// own client without asking (a first-party application).
async function interaction(req, res) {
  const match = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (match[2] && req.method === 'POST') {
    const form = await readForm(req);
    const username = form.get('username') ?? '';
    const user = directory.users[username];
    if (!user || !sameSecret(user.password, form.get('password') ?? '')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage(uid, { error: 'Wrong user name or password.', username }));
      return;
    }
    const otp = form.get('otp') ?? '';
    const mfa = otp !== '' && sameSecret(user.otp ?? directory.test_otp, otp);
    if (otp !== '' && !mfa) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage(uid, { error: 'Wrong one-time code.', username }));
      return;
    }
    const amr = mfa ? MFA_AMR : ['pwd'];
    await provider.interactionFinished(req, res, {
      login: { accountId: username, amr, acr: mfa ? ACR_MFA : ACR_PWD, remember: false },
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    const mfaAsked = String(params.acr_values ?? '').includes(ACR_MFA);
    res.end(loginPage(uid, { mfaAsked }));
    return;
  }
  const { accountId } = details.session;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const ssf = transmitter({ issuer, directory, readJson, reply });

async function testEndpoint(req, res) {
  const userRoles = req.url.match(/^\/__test\/users\/([^/]+)$/);
  if (await ssf.handleTest(req, res)) {
    // answered
  } else if (req.method === 'POST' && userRoles) {
    const user = directory.users[decodeURIComponent(userRoles[1])];
    if (!user) {
      reply(res, 404, { error: 'no such user' });
      return;
    }
    user.roles = (await readJson(req)).roles;
    reply(res, 200, { roles: user.roles });
  } else if (req.method === 'POST' && req.url === '/__test/sign') {
    reply(res, 200, { token: await sign(await readJson(req)) });
  } else if (req.method === 'POST' && req.url === '/__test/rotate') {
    const { retire } = await readJson(req);
    const fresh = newKeys();
    jwks = { keys: retire ? fresh : [...fresh, ...jwks.keys] };
    if (args.keys) writeKeys(args.keys, jwks);
    provider = buildProvider();
    reply(res, 200, { kids: fresh.map((k) => k.kid) });
  } else if (req.method === 'POST' && req.url === '/__test/web-client') {
    const { gateways } = await readJson(req);
    gatewayOrigins = gateways;
    provider = buildProvider();
    reply(res, 200, { client_id: WEB_CLIENT_ID });
  } else if (req.method === 'GET' && req.url === '/__test/stats') {
    reply(res, 200, { jwks_fetches: jwksFetches });
  } else {
    reply(res, 404, { error: 'no such test endpoint' });
  }
}

createServer((req, res) => {
  if (req.url.startsWith('/jwks')) jwksFetches += 1;
  if (args['test-endpoints'] && req.url.startsWith('/__test/')) {
    testEndpoint(req, res).catch((error) => reply(res, 500, { error: String(error) }));
    return;
  }
  if (req.url.startsWith('/.well-known/ssf-configuration') || req.url.startsWith('/ssf/')) {
    ssf.handle(req, res).catch((error) => reply(res, 500, { error: String(error) }));
    return;
  }
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`login failed: ${error.message}`);
    });
    return;
  }
  provider.callback()(req, res);
}).listen(Number(args.port), args.host, () => {
  console.log(`idp listening on ${issuer}`);
});
