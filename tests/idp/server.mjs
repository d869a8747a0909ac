// The test and demo identity provider: oidc-provider (a certified OpenID Connect provider) with
// in-memory storage, issuing RFC 9068 JWT access tokens (or opaque ones, for introspection) for one
// resource server, the invoicing API.
//
//   node server.mjs --port 9400 [--keys keys.json] [--audience URN] [--alg ES256] [--test-endpoints]
//   node server.mjs --keys keys.json --keys-only      (writes new keys and exits)
//
// Users get tokens through a password grant (no browser needed) that carries their roles, groups
// and MFA facts (`amr`, `acr`, `auth_time`); integration accounts use client credentials with
// scopes. A user's token carries the scopes its client asked for (`scope`; by default every scope
// of the invoicing API, as the web UI's client asks). Test-only grant parameters: `amr` (e.g. "pwd"
// for a login without MFA), `ttl` (seconds),
// `auth_age` (seconds since the login), `alg` (the signing algorithm), `format` ("opaque").
// Users, passwords and clients come from users.json beside this file. When --keys names a file that
// exists its JWK set is used (so two providers can share keys); otherwise new keys are generated and
// written there.
//
// --test-endpoints adds, for tests only, never for the demo:
//   POST /__test/sign    {header, payload, kid?, hmac_with_public_key_of?}  → {token}
//   POST /__test/rotate  {retire?}  new keys in front of the old ones, or instead of them when
//                        `retire` (the provider is rebuilt) → {kids}
//   GET  /__test/stats   → {jwks_fetches}
import { generateKeyPairSync, createPublicKey, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { CompactSign, importJWK } from 'jose';
import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '9400' },
    host: { type: 'string', default: '127.0.0.1' },
    keys: { type: 'string' },
    audience: { type: 'string', default: 'urn:invoiceguard:invoicing-api' },
    alg: { type: 'string', default: 'ES256' },
    'test-endpoints': { type: 'boolean', default: false },
    'keys-only': { type: 'boolean', default: false },
  },
});

const here = dirname(fileURLToPath(import.meta.url));
const directory = JSON.parse(readFileSync(join(here, 'users.json'), 'utf8'));
const issuer = `http://${args.host}:${args.port}`;
const PASSWORD_GRANT = 'urn:invoiceguard:params:grant-type:password';
const MFA_AMR = ['pwd', 'otp'];
const ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'];
// The invoicing API's scopes (policies/scopes.cedar): integration clients get some of them, and a
// user's token carries those its client asked for.
const API_SCOPES = [
  'invoices:read', 'invoices:write', 'invoices:approve', 'partners:read', 'partners:write',
  'exports:create', 'reports:read', 'admin', 'audit:read',
];
const SCOPES = ['openid', ...API_SCOPES];

function newKeys() {
  const jwk = (type, options) => generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  const kid = (alg) => `${alg.toLowerCase()}-${randomUUID()}`;
  return [
    { ...jwk('ec', { namedCurve: 'P-256' }), alg: 'ES256' },
    { ...jwk('ec', { namedCurve: 'P-384' }), alg: 'ES384' },
    { ...jwk('ed25519'), alg: 'EdDSA' },
    { ...jwk('rsa', { modulusLength: 2048 }), alg: 'RS256' },
    { ...jwk('rsa', { modulusLength: 2048 }), alg: 'PS256' },
  ].map((key) => ({ ...key, kid: kid(key.alg), use: 'sig' }));
}

if (args['keys-only']) {
  writeFileSync(args.keys, JSON.stringify({ keys: newKeys() }), { mode: 0o600 });
  process.exit(0);
}

let jwks;
if (args.keys && existsSync(args.keys)) {
  jwks = JSON.parse(readFileSync(args.keys, 'utf8'));
} else {
  jwks = { keys: newKeys() };
  if (args.keys) writeFileSync(args.keys, JSON.stringify(jwks), { mode: 0o600 });
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
    clients: directory.clients,
    jwks,
    scopes: SCOPES,
    enabledJWA: { idTokenSigningAlgValues: ALGORITHMS },
    features: {
      devInteractions: { enabled: false },
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
        amr,
        acr: amr.length > 1 ? 'urn:invoiceguard:acr:mfa' : 'urn:invoiceguard:acr:pwd',
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

async function testEndpoint(req, res) {
  if (req.method === 'POST' && req.url === '/__test/sign') {
    reply(res, 200, { token: await sign(await readJson(req)) });
  } else if (req.method === 'POST' && req.url === '/__test/rotate') {
    const { retire } = await readJson(req);
    const fresh = newKeys();
    jwks = { keys: retire ? fresh : [...fresh, ...jwks.keys] };
    if (args.keys) writeFileSync(args.keys, JSON.stringify(jwks), { mode: 0o600 });
    provider = buildProvider();
    reply(res, 200, { kids: fresh.map((k) => k.kid) });
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
  provider.callback()(req, res);
}).listen(Number(args.port), args.host, () => {
  console.log(`idp listening on ${issuer}`);
});
