// Type-checked by tests/clients/test_node_client.py (tsc --noEmit): the .d.ts files describe
// the package as a TypeScript user sees it.
import { createServer } from "node:http";
import {
  Decision,
  Reason,
  VerifierClient,
  VerifierError,
  isAllowed,
  requestFromNodeRequest,
  responseHeaders,
  type VerifyResponse,
} from "@dpop-verifier/client";
import { dpopMiddleware } from "@dpop-verifier/client/middleware";

const client = new VerifierClient("127.0.0.1:50051", { insecure: true, retry: { maxAttempts: 2 } });

export async function check(token: string, proof: string): Promise<string> {
  try {
    const answer: VerifyResponse = await client.verify(
      { method: "GET", targetUri: "https://api.example.com/orders", authorization: [`DPoP ${token}`], dpop: [proof] },
      { timeoutMs: 500 },
    );
    if (isAllowed(answer) && answer.decision === Decision.ALLOW) return answer.claims?.sub ?? "";
    const replayed: boolean = answer.reason === Reason.REPLAYED;
    return `${answer.reasonCode} ${replayed} ${Object.keys(responseHeaders(answer)).join(",")}`;
  } catch (error) {
    if (error instanceof VerifierError) return `failed ${error.code} after ${error.attempts}`;
    throw error;
  }
}

const protect = dpopMiddleware(client, { publicOrigin: "https://api.example.com" });
createServer((req, res) =>
  protect(req, res, () => {
    const jkt: string | undefined = req.dpop?.jkt;
    res.end(JSON.stringify({ jkt, request: requestFromNodeRequest(req).targetUri }));
  }),
);
