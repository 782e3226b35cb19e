// Runs in a fresh npm project that installed the client from its `npm pack` tarball, with express
// and panva's `dpop` (an independent proof implementation), driven by
// tests/clients/test_node_client.py, which starts the verifiers and mints the access tokens.
//
// Protocol: prints {"ours": {jkt, jwk}, "panva": {jkt, jwk}} (the two public keys) as one JSON line,
// reads one JSON line {plain, tls, mtls, dead, ca, clientCert, clientKey, tokens: {ours, panva}},
// runs the scenarios and prints one JSON line of outcomes keyed by scenario.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import express from "express";
import { calculateThumbprint, generateProof } from "dpop";
import { ProofSigner, VerifierClient, VerifierError, isAllowed } from "@dpop-verifier/client";
import { dpopMiddleware } from "@dpop-verifier/client/middleware";

const signer = await ProofSigner.generate();
const { subtle } = globalThis.crypto;
const panva = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
console.log(
  JSON.stringify({
    ours: { jkt: signer.jkt, jwk: signer.publicJwk },
    panva: { jkt: await calculateThumbprint(panva.publicKey), jwk: await subtle.exportKey("jwk", panva.publicKey) },
  }),
);
const lines = createInterface({ input: process.stdin });
const [input] = await once(lines, "line");
lines.close();
const given = JSON.parse(input);
const { tokens } = given;

const results = {};
const outcome = async (client, request) => {
  try {
    const answer = await client.verify(request);
    return {
      allowed: isAllowed(answer),
      reason: answer.reasonCode,
      status: answer.httpStatus,
      jkt: answer.jkt,
      sub: answer.claims?.sub ?? "",
    };
  } catch (error) {
    if (!(error instanceof VerifierError)) throw error;
    return { error: error.name, code: error.code, attempts: error.attempts };
  }
};
const URL_ = "https://api.test/orders";
const request = async (proofSigner = signer, url = URL_) => ({
  method: "GET",
  targetUri: URL_,
  authorization: [`DPoP ${tokens.ours}`],
  dpop: [await proofSigner.proof("GET", url, { accessToken: tokens.ours })],
});

// 1. The client, straight to the verifier: plaintext, TLS, mTLS, no verifier at all.
const plain = new VerifierClient(given.plain, { insecure: true });
const first = await request();
results.valid = await outcome(plain, first);
results.replay = await outcome(plain, first);
results.wrongHtu = await outcome(plain, await request(signer, "https://api.test/admin"));
const restored = await ProofSigner.fromJwk(await signer.privateJwk());
results.restoredSigner = await outcome(plain, await request(restored));
results.panvaProof = await outcome(plain, {
  method: "GET",
  targetUri: URL_,
  authorization: [`DPoP ${tokens.panva}`],
  dpop: [await generateProof(panva, URL_, "GET", undefined, tokens.panva)],
});

const ca = readFileSync(given.ca);
const certificate = { certChain: readFileSync(given.clientCert), privateKey: readFileSync(given.clientKey) };
const fast = { maxAttempts: 2, initialBackoffMs: 10 };
const transports = {
  tls: [given.tls, { tls: { rootCerts: ca, serverName: "localhost" } }],
  tlsWrongServerName: [given.tls, { tls: { rootCerts: ca, serverName: "wrong.test" }, retry: fast }],
  tlsUntrusted: [given.tls, { tls: {}, retry: fast }],
  plaintextToTls: [given.tls, { insecure: true, retry: fast }],
  mtls: [given.mtls, { tls: { rootCerts: ca, ...certificate } }],
  mtlsWithoutCertificate: [given.mtls, { tls: { rootCerts: ca }, retry: fast }],
  unreachable: [given.dead, { insecure: true, retry: fast }],
};
for (const [name, [address, options]] of Object.entries(transports)) {
  const client = new VerifierClient(address, options);
  results[name] = await outcome(client, await request());
  client.close();
}
const endless = new VerifierClient(given.dead, {
  insecure: true,
  timeoutMs: 500,
  retry: { maxAttempts: 10000, initialBackoffMs: 20, maxBackoffMs: 20 },
});
const started = performance.now();
results.deadline = { ...(await outcome(endless, await request())), elapsedMs: performance.now() - started };
endless.close();

// 2. The middleware in Express (mounted on a path, in a Router under /api, at the root, behind a
// proxy that strips /api) and in plain node:http, called over real HTTP with fetch().
const listen = async (handler) => {
  const server = createServer(handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, base: `http://127.0.0.1:${server.address().port}` };
};
const hello = (req, res) => res.json({ sub: req.dpop.claims?.sub, url: req.url, originalUrl: req.originalUrl });
const call = async (url, proofUrl, method = "POST") => {
  const headers = await signer.headers(method, proofUrl, tokens.ours);
  const response = await fetch(url, { method, headers, body: method === "POST" ? "{}" : undefined });
  return {
    status: response.status,
    wwwAuthenticate: response.headers.get("www-authenticate") ?? "",
    body: await response.json(),
  };
};

const mountedApp = express();
mountedApp.use("/orders", dpopMiddleware(plain));
mountedApp.post("/orders/:id", hello);
const router = express.Router();
router.use(dpopMiddleware(plain));
router.post("/items", hello);
mountedApp.use("/api", router);
const mounted = await listen(mountedApp);
results.expressMounted = await call(`${mounted.base}/orders/42?page=2`, `${mounted.base}/orders/42`);
results.expressMountedStripped = await call(`${mounted.base}/orders/42`, `${mounted.base}/42`);
results.expressRouter = await call(`${mounted.base}/api/items`, `${mounted.base}/api/items`);

const rootApp = express();
rootApp.use(dpopMiddleware(plain));
rootApp.post("/orders", hello);
const root = await listen(rootApp);
results.expressRoot = await call(`${root.base}/orders`, `${root.base}/orders`);

const publicOrigin = "https://api.example.com/api";
const proxiedApp = express();
proxiedApp.use(dpopMiddleware(plain, { publicOrigin }));
proxiedApp.post("/orders", hello);
const proxied = await listen(proxiedApp);
results.expressBehindProxy = await call(`${proxied.base}/orders`, `${publicOrigin}/orders`);
results.expressBehindProxyInternalUrl = await call(`${proxied.base}/orders`, `${proxied.base}/orders`);
try {
  dpopMiddleware(plain, { publicOrigin: "https://api.example.com/?x=1" });
  results.badPublicOrigin = "accepted";
} catch (error) {
  results.badPublicOrigin = error.name;
}

const protect = dpopMiddleware(plain);
const nodeHttp = await listen((req, res) =>
  protect(req, res, () => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ sub: req.dpop.claims?.sub }));
  }),
);
const headers = await signer.headers("GET", `${nodeHttp.base}/orders`, tokens.ours);
const get = async () => {
  const response = await fetch(`${nodeHttp.base}/orders?page=2`, { headers });
  return { status: response.status, wwwAuthenticate: response.headers.get("www-authenticate") ?? "", body: await response.json() };
};
results.nodeHttp = await get();
results.nodeHttpReplay = await get();
const anonymous = await fetch(`${nodeHttp.base}/orders`);
results.nodeHttpNoCredentials = { status: anonymous.status, wwwAuthenticate: anonymous.headers.get("www-authenticate") };

const dead = new VerifierClient(given.dead, { insecure: true, retry: fast });
const downApp = express();
downApp.use(dpopMiddleware(dead));
downApp.post("/orders", hello);
const down = await listen(downApp);
results.expressVerifierDown = await call(`${down.base}/orders`, `${down.base}/orders`);

for (const { server } of [mounted, root, proxied, nodeHttp, down]) server.close();
plain.close();
dead.close();
console.log(JSON.stringify(results));
