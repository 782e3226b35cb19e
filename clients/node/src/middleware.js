// Ask the verifier before serving a request: a (req, res, next) middleware for Express and
// node:http.
import { checkPublicOrigin, isAllowed, requestFromNodeRequest, responseHeaders } from "./index.js";

/**
 * Returns `(req, res, next) => Promise<void>`. On allow it sets `req.dpop` to the verifier's
 * answer (jkt, claims, ...), adds a DPoP-Nonce the verifier issued to the response and calls
 * `next()`; on a deny it answers with the verifier's HTTP status, WWW-Authenticate and DPoP-Nonce
 * headers and `{"error": <rfc_error>}`; when the verifier gives no answer it answers 503 (never an
 * allow, and never blamed on the client). Options as for requestFromNodeRequest (publicOrigin,
 * route, proofOnly); a bad publicOrigin throws here, not on the first request.
 *
 * Correct when mounted on a sub-path (`app.use("/orders", dpopMiddleware(client))`, a Router
 * under "/api"): the URL is rebuilt from Express's req.originalUrl.
 *
 * With plain node:http:
 *   const protect = dpopMiddleware(client);
 *   http.createServer((req, res) => protect(req, res, () => handler(req, res)));
 */
export function dpopMiddleware(client, options = {}) {
  if (options.publicOrigin !== undefined) checkPublicOrigin(options.publicOrigin);
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
