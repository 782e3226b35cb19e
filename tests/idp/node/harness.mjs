// A real authorization server (panva's oidc-provider) and a real DPoP client (panva's
// openid-client), driven by the Python test suite over stdin/stdout, one JSON object a line.
//
// The AS listens on 127.0.0.1 (port 0), issuer http://127.0.0.1:<port>, with client credentials,
// DPoP (on by default in oidc-provider 9), introspection and resource indicators:
//   urn:dpop-verifier:orders   JWT access tokens, aud urn:dpop-verifier:orders
//   urn:dpop-verifier:billing  opaque access tokens (introspected), aud urn:dpop-verifier:billing
//   urn:dpop-verifier:other    JWT access tokens for a resource the verifier does not serve
// Clients: "app" (client_secret_basic, client credentials) asks for tokens; "verifier"
// (client_secret_basic) introspects them. Every HTTP request the AS receives is logged.
//
// Commands (each answered by one line {"id": ..., "ok": true, ...} or {"id", "ok": false, error}):
//   {"op": "key", "name": "k1"}                          a fresh ES256 DPoP key pair for the client
//   {"op": "token", "resource": "...", "key": "k1"}      client credentials grant, DPoP-bound
//                                                        with key k1 (no "key": a Bearer token)
//   {"op": "call", "url": "...", "token": "...", "key": "k1", "method": "GET", "headers": [[n, v]]}
//        fetchProtectedResource with the DPoP handle of k1 (no "key": Authorization: Bearer);
//        the answer lists every HTTP exchange the library made (a nonce challenge is two)
//   {"op": "rotate"}                                     a new signing key, published and used
//                                                        at once (the old one still published)
//   {"op": "requests"}                                   the AS's request log: [[method, path]]
// On start it prints {"ready": true, "issuer": ..., "verifier_secret": ...}.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

import Provider, { errors } from 'oidc-provider';
import * as client from 'openid-client';

// stdout carries the protocol only: the libraries' notices go to stderr.
console.log = console.info = console.warn = console.error;

const RESOURCES = {
  'urn:dpop-verifier:orders': 'jwt',
  'urn:dpop-verifier:billing': 'opaque',
  'urn:dpop-verifier:other': 'jwt',
};
const APP_SECRET = randomBytes(24).toString('base64url');
const VERIFIER_SECRET = randomBytes(24).toString('base64url');

function signingKey(generation) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: `as-key-${generation}`, alg: 'ES256', use: 'sig' };
}

function configuration(keys) {
  return {
    clients: [
      {
        client_id: 'app',
        client_secret: APP_SECRET,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'verifier',
        client_secret: VERIFIER_SECRET,
        grant_types: [],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    scopes: ['read'],
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resource) {
          const format = RESOURCES[resource];
          if (!format) throw new errors.InvalidTarget();
          return {
            scope: 'read',
            audience: resource,
            accessTokenTTL: 300,
            accessTokenFormat: format,
            ...(format === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
          };
        },
      },
    },
  };
}

const log = [];
let generation = 1;
let keys = [signingKey(generation)];
let handler = null;

const server = createServer((req, res) => {
  log.push([req.method, req.url]);
  handler(req, res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

function install() {
  const provider = new Provider(issuer, configuration(keys));
  handler = provider.callback();
}
install();

const config = await client.discovery(new URL(issuer), 'app', APP_SECRET, undefined, {
  execute: [client.allowInsecureRequests],
});
let exchanges = [];
config[client.customFetch] = async (url, options) => {
  const request = { method: options.method, url: String(url), headers: [...new Headers(options.headers)] };
  const response = await fetch(url, options);
  exchanges.push({ request, response: { status: response.status, headers: [...response.headers] } });
  return response;
};

const dpopKeys = new Map();
const handles = new Map();

async function dpopHandle(name) {
  if (name === undefined || name === null) return undefined;
  if (!handles.has(name)) throw new Error(`no key named ${name}`);
  return handles.get(name);
}

const ops = {
  async key({ name }) {
    const pair = await client.randomDPoPKeyPair('ES256');
    dpopKeys.set(name, pair);
    handles.set(name, client.getDPoPHandle(config, pair));
    return {};
  },
  async token({ resource, key }) {
    exchanges = [];
    const tokens = await client.clientCredentialsGrant(
      config,
      { resource, scope: 'read' },
      { DPoP: await dpopHandle(key) },
    );
    return { access_token: tokens.access_token, token_type: tokens.token_type, exchanges };
  },
  async call({ url, token, key, method = 'GET', headers = [] }) {
    exchanges = [];
    try {
      const response = await client.fetchProtectedResource(
        config, token, new URL(url), method, undefined, new Headers(headers),
        { DPoP: await dpopHandle(key) },
      );
      return { status: response.status, body: await response.text(), exchanges };
    } catch (error) {
      return { thrown: { name: error.name, code: error.code ?? '', message: error.message }, exchanges };
    }
  },
  async rotate() {
    generation += 1;
    keys = [signingKey(generation), ...keys];
    install();
    return { kids: keys.map((k) => k.kid) };
  },
  async requests() {
    return { requests: log };
  },
};

function reply(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

reply({ ready: true, issuer, verifier_client_id: 'verifier', verifier_secret: VERIFIER_SECRET, resources: RESOURCES });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let command;
  try {
    command = JSON.parse(line);
    const result = await ops[command.op](command);
    reply({ id: command.id, ok: true, ...result });
  } catch (error) {
    reply({ id: command?.id, ok: false, error: `${error.name}: ${error.message} ${JSON.stringify(error.cause ?? "")}` });
  }
}
server.close();
process.exit(0);
