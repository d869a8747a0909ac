// The test IdP as an OpenID Shared Signals transmitter (SSF 1.0): its metadata at
// /.well-known/ssf-configuration, its own signing key (/ssf/jwks), streams (/ssf/stream: create,
// list, delete; the receiver authenticates with the bearer token users.json names), verification
// (/ssf/verify), push delivery (RFC 8935: each Security Event Token POSTed to the stream's
// endpoint with its authorization header) and poll delivery (RFC 8936: /ssf/poll/{stream}).
// Events are CAEP and RISC, signed as RFC 8417 SETs (`typ: secevent+jwt`).
//
// For tests (--test-endpoints):
//   POST /__test/ssf/emit {event, user? | subject?, payload?, aud?, sign_with?: "foreign",
//                          typ?, resend?: jti}  → {jti, token, deliveries: [{stream_id, status, body}]}
//        `event` is a short name (account-disabled, session-revoked, …) or a type URI;
//        `user` makes an iss_sub subject of that user; `resend` delivers an earlier token again.
//   GET  /__test/ssf/errors  → the setErrs receivers reported when polling
import { generateKeyPairSync, randomUUID } from 'node:crypto';

import { CompactSign, importJWK } from 'jose';

const PUSH = 'urn:ietf:rfc:8935';
const POLL = 'urn:ietf:rfc:8936';
const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const SSF = 'https://schemas.openid.net/secevent/ssf/event-type/';
const SUPPORTED = [
  ...['session-revoked', 'credential-change', 'assurance-level-change', 'token-claims-change'].map((e) => CAEP + e),
  ...['account-disabled', 'account-enabled', 'account-purged', 'credential-compromise', 'sessions-revoked'].map((e) => RISC + e),
  `${SSF}verification`,
];

function typeUri(name) {
  if (name.startsWith('https://')) return name;
  if (name === 'verification') return `${SSF}verification`;
  const caep = ['session-revoked', 'credential-change', 'assurance-level-change', 'token-claims-change'];
  return (caep.includes(name) ? CAEP : RISC) + name;
}

export function transmitter({ issuer, directory, readJson, reply }) {
  const keyOf = () => ({ ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }), alg: 'ES256' });
  const signing = { ...keyOf(), kid: `ssf-${randomUUID()}`, use: 'sig' };
  const streams = new Map();
  const sent = new Map();
  const setErrors = [];

  const publicJwk = ({ d, ...rest }) => rest;

  function authorized(req) {
    const expected = `Bearer ${directory.ssf_receiver_token}`;
    return req.headers.authorization === expected;
  }

  async function sign(claims, { signWith, typ }) {
    const key = signWith === 'foreign' ? { ...keyOf(), kid: signing.kid } : signing;
    const data = new TextEncoder().encode(JSON.stringify(claims));
    return new CompactSign(data)
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: typ ?? 'secevent+jwt' })
      .sign(await importJWK(key, 'ES256'));
  }

  async function deliver(stream, jti, token) {
    if (stream.delivery.method === POLL) {
      stream.queue.set(jti, token);
      return { stream_id: stream.stream_id, status: 'queued' };
    }
    const headers = { 'content-type': 'application/secevent+jwt', accept: 'application/json' };
    if (stream.delivery.authorization_header) headers.authorization = stream.delivery.authorization_header;
    try {
      const answer = await fetch(stream.delivery.endpoint_url, { method: 'POST', headers, body: token });
      const body = await answer.text();
      return { stream_id: stream.stream_id, status: answer.status, body };
    } catch (error) {
      return { stream_id: stream.stream_id, status: 0, body: String(error) };
    }
  }

  async function emit({ event, user, subject, payload, aud, sign_with: signWith, typ, resend, stream_id: only }) {
    const targets = [...streams.values()].filter((s) => !only || s.stream_id === only);
    if (resend) {
      const token = sent.get(resend);
      const deliveries = await Promise.all(targets.map((s) => deliver(s, resend, token)));
      return { jti: resend, token, deliveries };
    }
    const type = typeUri(event);
    const now = Math.floor(Date.now() / 1000);
    const deliveries = [];
    let last;
    for (const stream of targets) {
      const jti = randomUUID();
      const claims = {
        iss: issuer,
        jti,
        iat: now,
        aud: aud ?? stream.aud,
        sub_id: subject ?? (user ? { format: 'iss_sub', iss: issuer, sub: user } : undefined),
        events: { [type]: { event_timestamp: now, ...(payload ?? {}) } },
      };
      const token = await sign(claims, { signWith, typ });
      sent.set(jti, token);
      last = { jti, token };
      deliveries.push(await deliver(stream, jti, token));
    }
    return { ...last, deliveries };
  }

  function streamView(stream) {
    const { queue, ...view } = stream;
    return view;
  }

  // Answers a transmitter request; false when the request is not one.
  async function handle(req, res) {
    const url = new URL(req.url, issuer);
    if (req.method === 'GET' && url.pathname === '/.well-known/ssf-configuration') {
      reply(res, 200, {
        spec_version: '1_0',
        issuer,
        jwks_uri: `${issuer}/ssf/jwks`,
        delivery_methods_supported: [PUSH, POLL],
        configuration_endpoint: `${issuer}/ssf/stream`,
        verification_endpoint: `${issuer}/ssf/verify`,
        authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6750' }],
      });
      return true;
    }
    if (req.method === 'GET' && url.pathname === '/ssf/jwks') {
      reply(res, 200, { keys: [publicJwk(signing)] });
      return true;
    }
    if (!url.pathname.startsWith('/ssf/')) return false;
    if (!authorized(req)) {
      reply(res, 401, { error: 'invalid_token' });
      return true;
    }
    if (url.pathname === '/ssf/stream') {
      if (req.method === 'GET') {
        reply(res, 200, [...streams.values()].map(streamView));
      } else if (req.method === 'POST') {
        const asked = await readJson(req);
        const method = asked.delivery?.method;
        if (method !== PUSH && method !== POLL) {
          reply(res, 400, { error: 'unsupported delivery method' });
          return true;
        }
        const streamId = randomUUID();
        const delivery = method === PUSH
          ? { method, endpoint_url: asked.delivery.endpoint_url, authorization_header: asked.delivery.authorization_header }
          : { method, endpoint_url: `${issuer}/ssf/poll/${streamId}` };
        const requested = asked.events_requested ?? [];
        const stream = {
          stream_id: streamId,
          iss: issuer,
          aud: directory.ssf_receiver_audience,
          delivery,
          events_supported: SUPPORTED,
          events_requested: requested,
          events_delivered: SUPPORTED.filter((e) => requested.includes(e) || e.startsWith(SSF)),
          description: asked.description,
          queue: new Map(),
        };
        streams.set(streamId, stream);
        reply(res, 201, streamView(stream));
      } else if (req.method === 'DELETE') {
        streams.delete(url.searchParams.get('stream_id'));
        res.writeHead(204).end();
      } else {
        reply(res, 405, { error: 'method not allowed' });
      }
      return true;
    }
    if (req.method === 'POST' && url.pathname === '/ssf/verify') {
      const { stream_id: streamId, state } = await readJson(req);
      if (!streams.has(streamId)) {
        reply(res, 404, { error: 'no such stream' });
        return true;
      }
      res.writeHead(204).end();
      await emit({ event: 'verification', payload: { state }, stream_id: streamId });
      return true;
    }
    const poll = url.pathname.match(/^\/ssf\/poll\/([^/]+)$/);
    if (req.method === 'POST' && poll) {
      const stream = streams.get(poll[1]);
      if (!stream) {
        reply(res, 404, { error: 'no such stream' });
        return true;
      }
      const asked = await readJson(req);
      for (const jti of asked.ack ?? []) stream.queue.delete(jti);
      for (const [jti, err] of Object.entries(asked.setErrs ?? {})) {
        setErrors.push({ jti, ...err });
        stream.queue.delete(jti);
      }
      const max = asked.maxEvents ?? 100;
      const sets = Object.fromEntries([...stream.queue.entries()].slice(0, max));
      reply(res, 200, { sets, moreAvailable: stream.queue.size > Object.keys(sets).length });
      return true;
    }
    reply(res, 404, { error: 'no such endpoint' });
    return true;
  }

  // Answers a test request; false when the request is not one.
  async function handleTest(req, res) {
    if (req.method === 'POST' && req.url === '/__test/ssf/emit') {
      reply(res, 200, await emit(await readJson(req)));
      return true;
    }
    if (req.method === 'GET' && req.url === '/__test/ssf/errors') {
      reply(res, 200, setErrors);
      return true;
    }
    return false;
  }

  return { handle, handleTest };
}
