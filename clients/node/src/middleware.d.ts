import type { IncomingMessage, ServerResponse } from "node:http";
import type { RequestOptions, VerifierClient, VerifyResponse } from "./index.js";

declare module "node:http" {
  interface IncomingMessage {
    /** The verifier's answer, set by dpopMiddleware on allow. */
    dpop?: VerifyResponse;
  }
}

export declare function dpopMiddleware(
  client: VerifierClient,
  options?: RequestOptions,
): (req: IncomingMessage, res: ServerResponse, next: () => void) => Promise<void>;
