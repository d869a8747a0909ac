// The test IdP's signing keys: one private JWK per algorithm the gateway accepts, each with a
// fresh key id. Imported by server.mjs; run alone it writes a new set and exits, importing nothing
// but Node's own modules (the tests make one set per test process this way, quickly):
//
//   node keys.mjs keys.json
//
// The file is written beside its final name and renamed into place, so a reader never sees half
// of it.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { argv, exit } from 'node:process';
import { fileURLToPath } from 'node:url';

export function newKeys() {
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

// Writes `jwks` to `path` (owner-only), through a temporary file renamed into place.
export function writeKeys(path, jwks) {
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, JSON.stringify(jwks), { mode: 0o600 });
  renameSync(partial, path);
}

if (argv[1] === fileURLToPath(import.meta.url)) {
  if (argv.length !== 3) {
    console.error('usage: node keys.mjs KEYS.json');
    exit(2);
  }
  writeKeys(argv[2], { keys: newKeys() });
}
