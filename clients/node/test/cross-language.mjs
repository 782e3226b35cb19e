// Cross-language end-to-end check, driven by tests/clients/test_node_client.py (pytest starts the
// verifier and mints the access token in Python). Keys come from Node's WebCrypto and proofs from
// panva's `dpop` package: none of the proof code is ours.
//
// Protocol: prints {"jkt", "jwk"} (the public key) as one JSON line, reads one JSON line
// {"verifier", "token", "deadAddress"} from stdin, runs the scenarios and prints one JSON line of
// results keyed by scenario.
import { once } from "node:events";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { calculateThumbprint, generateProof } from "dpop";
import { VerifierClient, VerifierError, isAllowed } from "@dpop-verifier/client";
import { dpopMiddleware } from "@dpop-verifier/client/middleware";

const { subtle } = globalThis.crypto;
const keypair = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
  "sign",
  "verify",
]);
const jwk = await subtle.exportKey("jwk", keypair.publicKey);
console.log(JSON.stringify({ jkt: await calculateThumbprint(keypair.publicKey), jwk }));

const lines = createInterface({ input: process.stdin });
const [input] = await once(lines, "line");
lines.close();
const { verifier, token, deadAddress } = JSON.parse(input);

const summary = (response) => ({
  allowed: isAllowed(response),
  decision: response.decision,
  reason: response.reasonCode,
  httpStatus: response.httpStatus,
  jkt: response.jkt,
  sub: response.claims?.sub ?? "",
  wwwAuthenticate: response.wwwAuthenticate,
});
const results = {};
const client = new VerifierClient(verifier, { insecure: true });

// 1. The client library, straight to the verifier.
const url = "https://api.test/orders";
const request = {
  method: "GET",
  targetUri: url,
  authorization: [`DPoP ${token}`],
  dpop: [await generateProof(keypair, url, "GET", undefined, token)],
};
results.valid = summary(await client.verify(request));
results.replay = summary(await client.verify(request));
const wrongHtu = await generateProof(keypair, "https://api.test/admin", "GET", undefined, token);
results.wrongHtu = summary(await client.verify({ ...request, dpop: [wrongHtu] }));

// 2. The middleware in front of a node:http server, called with fetch().
const protect = dpopMiddleware(client);
const server = createServer((req, res) =>
  protect(req, res, () => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ sub: req.dpop.claims.sub, jkt: req.dpop.jkt }));
  }),
);
server.listen(0, "127.0.0.1");
await once(server, "listening");
const base = `http://127.0.0.1:${server.address().port}`;
const httpResult = async (response) => ({
  status: response.status,
  wwwAuthenticate: response.headers.get("www-authenticate") ?? "",
  body: await response.json(),
});
const headers = {
  authorization: `DPoP ${token}`,
  dpop: await generateProof(keypair, `${base}/orders`, "POST", undefined, token),
};
const post = () => fetch(`${base}/orders?page=2`, { method: "POST", headers, body: "{}" });
results.httpValid = await httpResult(await post());
results.httpReplay = await httpResult(await post());
results.httpNoCredentials = await httpResult(await fetch(`${base}/orders`));
server.close();

// 3. An unreachable verifier: retried, then a VerifierError; the middleware fails closed.
const dead = new VerifierClient(deadAddress, {
  insecure: true,
  retry: { maxAttempts: 2, initialBackoffMs: 10 },
});
try {
  await dead.verify(request);
  results.unreachable = { error: "none" };
} catch (error) {
  results.unreachable = {
    error: error instanceof VerifierError ? error.name : String(error),
    code: error.code,
    attempts: error.attempts,
  };
}
const closedServer = createServer((req, res) => dpopMiddleware(dead)(req, res, () => res.end()));
closedServer.listen(0, "127.0.0.1");
await once(closedServer, "listening");
const failClosed = await fetch(`http://127.0.0.1:${closedServer.address().port}/orders`, { headers });
results.httpVerifierDown = { status: failClosed.status };
closedServer.close();

dead.close();
client.close();
console.log(JSON.stringify(results));
