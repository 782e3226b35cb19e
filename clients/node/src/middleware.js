// Ask the verifier before serving a request: a (req, res, next) middleware for node:http and
// Express.
import { isAllowed, requestFromNodeRequest, responseHeaders } from "./index.js";

/**
 * Returns `(req, res, next) => Promise<void>`. On allow it sets `req.dpop` to the verifier's
 * answer (jkt, claims, ...) and calls `next()`; on a deny it answers with the verifier's HTTP
 * status, WWW-Authenticate and DPoP-Nonce headers and an OAuth-style JSON error body; when the
 * verifier cannot be reached it answers 503 (fail closed). Options as for
 * requestFromNodeRequest (publicOrigin, route, proofOnly).
 *
 * With plain node:http:
 *   const protect = dpopMiddleware(client);
 *   http.createServer((req, res) => protect(req, res, () => handler(req, res)));
 */
export function dpopMiddleware(client, options = {}) {
  return async function dpop(req, res, next) {
    let answer;
    try {
      answer = await client.verify(requestFromNodeRequest(req, options));
    } catch {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "temporarily_unavailable" }));
      return;
    }
    if (isAllowed(answer)) {
      req.dpop = answer;
      const nonce = responseHeaders(answer)["dpop-nonce"];
      if (nonce) res.setHeader("dpop-nonce", nonce);
      next();
      return;
    }
    res.writeHead(answer.httpStatus || 401, {
      "content-type": "application/json",
      ...responseHeaders(answer),
    });
    res.end(JSON.stringify({ error: answer.rfcError || "unauthorized" }));
  };
}
