// A node:http API that asks the verifier before serving each request.
//
//   VERIFIER=127.0.0.1:50051 PUBLIC_ORIGIN=https://api.example.com node examples/server.js
//
// Prints "listening on http://HOST:PORT" once ready (PORT=0 picks a free port).
import { createServer } from "node:http";
import { VerifierClient } from "@dpop-verifier/client";
import { dpopMiddleware } from "@dpop-verifier/client/middleware";

const verifier = new VerifierClient(process.env.VERIFIER ?? "127.0.0.1:50051", { insecure: true });
const protect = dpopMiddleware(verifier, { publicOrigin: process.env.PUBLIC_ORIGIN });

const server = createServer((req, res) =>
  protect(req, res, () => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ hello: req.dpop.claims?.sub, jkt: req.dpop.jkt }));
  }),
);
server.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}`);
});
