// The test and demo identity provider: oidc-provider (a certified OpenID Connect provider) with
// in-memory storage, issuing RFC 9068 JWT access tokens for one resource server (the invoicing API).
//
//   node server.mjs --port 9400 [--keys keys.json] [--audience urn:invoiceguard:invoicing-api] [--alg ES256]
//
// Users get tokens through a password grant (no browser needed) that carries their roles and MFA
// facts (`amr`, `acr`, `auth_time`); integration accounts use client credentials with scopes.
// Test-only grant parameters: `amr` (e.g. "pwd" for a login without MFA) and `ttl` (seconds).
// Users, passwords and clients come from users.json beside this file. When --keys names a file that
// exists its JWK set is used (so two providers can share keys); otherwise new keys are generated and
// written there.
import { generateKeyPairSync, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '9400' },
    host: { type: 'string', default: '127.0.0.1' },
    keys: { type: 'string' },
    audience: { type: 'string', default: 'urn:invoiceguard:invoicing-api' },
    alg: { type: 'string', default: 'ES256' },
  },
});

const here = dirname(fileURLToPath(import.meta.url));
const directory = JSON.parse(readFileSync(join(here, 'users.json'), 'utf8'));
const issuer = `http://${args.host}:${args.port}`;
const PASSWORD_GRANT = 'urn:invoiceguard:params:grant-type:password';
const MFA_AMR = ['pwd', 'otp'];

function newKeys() {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...ec, kid: `es256-${randomUUID()}`, alg: 'ES256', use: 'sig' },
      { ...rsa, kid: `rs256-${randomUUID()}`, alg: 'RS256', use: 'sig' },
    ],
  };
}

function loadKeys(file) {
  if (file && existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const jwks = newKeys();
  if (file) writeFileSync(file, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

const provider = new Provider(issuer, {
  clients: directory.clients,
  jwks: loadKeys(args.keys),
  scopes: ['openid', 'invoices:read', 'invoices:write', 'partners:read', 'exports:create'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => args.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'openid invoices:read invoices:write partners:read exports:create',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: args.alg } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => {
    if (!token.accountId) return undefined;
    const user = directory.users[token.accountId];
    const amr = ctx.oidc.params.amr ? String(ctx.oidc.params.amr).split(',') : MFA_AMR;
    return {
      roles: user.roles,
      name: user.name,
      amr,
      acr: amr.length > 1 ? 'urn:invoiceguard:acr:mfa' : 'urn:invoiceguard:acr:pwd',
      auth_time: Math.floor(Date.now() / 1000),
    };
  },
});

// The password grant: the test and demo stand-in for an interactive login, so that a script can
// obtain a user's token without a browser.
provider.registerGrantType(PASSWORD_GRANT, async (ctx) => {
  const { client, params } = ctx.oidc;
  const user = directory.users[params.username];
  if (!user || !sameSecret(user.password, params.password)) {
    throw new errors.InvalidGrant('invalid username or password');
  }
  const resource = params.resource || args.audience;
  const token = new provider.AccessToken({
    accountId: params.username,
    client,
    gty: 'password',
    scope: 'openid',
  });
  token.resourceServer = new provider.ResourceServer(resource, {
    audience: resource,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    scope: 'openid',
    jwt: { sign: { alg: args.alg } },
  });
  if (params.ttl) {
    token.exp = Math.floor(Date.now() / 1000) + Number.parseInt(params.ttl, 10);
  }
  const value = await token.save();
  ctx.body = {
    access_token: value,
    token_type: 'Bearer',
    expires_in: token.expiration,
  };
}, ['username', 'password', 'resource', 'amr', 'ttl']);

provider.listen(Number(args.port), args.host);
console.log(`idp listening on ${issuer}`);
