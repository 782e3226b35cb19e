// Type-checked by tests/clients/test_node_client.py (tsc --noEmit): the .d.ts files describe
// the package as a TypeScript user sees it.
import { createServer } from "node:http";
import {
  Decision,
  ProofSigner,
  Reason,
  VerifierClient,
  VerifierError,
  checkPublicOrigin,
  isAllowed,
  requestFromNodeRequest,
  responseHeaders,
  type VerifyResponse,
} from "@dpop-verifier/client";
import { dpopMiddleware } from "@dpop-verifier/client/middleware";

const client = new VerifierClient("127.0.0.1:50051", { insecure: true, retry: { maxAttempts: 2 } });
const origin: string = checkPublicOrigin("https://api.example.com/");

export async function callApi(token: string): Promise<Response> {
  const signer = await ProofSigner.generate();
  const restored = await ProofSigner.fromJwk(await signer.privateJwk());
  const jkt: string = restored.jkt;
  const headers: { authorization: string; dpop: string } = await signer.headers("GET", `${origin}/orders`, token);
  const proof: string = await signer.proof("GET", `${origin}/orders`, { accessToken: token, nonce: jkt });
  return fetch(`${origin}/orders`, { headers: { ...headers, dpop: proof } });
}

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
