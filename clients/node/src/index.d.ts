import type { ChannelOptions } from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { IncomingMessage } from "node:http";
import {
  Decision,
  Reason,
  VerifyRequestSchema,
  VerifyResponseSchema,
  type VerifyRequest,
  type VerifyResponse,
} from "../gen/dpop/verifier/v1/verifier_pb.js";

export { Decision, Reason, VerifyRequestSchema, VerifyResponseSchema, VerifyRequest, VerifyResponse };

/** The fields of a VerifyRequest, all optional (for example `{ method, targetUri, dpop: [...] }`). */
export type VerifyRequestInit = MessageInitShape<typeof VerifyRequestSchema>;

export declare const DEFAULT_TIMEOUT_MS: number;

export interface RetryPolicy {
  /** Attempts including the first (default 3). */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
  /** gRPC status codes that are retried (default: UNAVAILABLE only). A deny is never retried. */
  codes: readonly number[];
}

export declare const DEFAULT_RETRY: Readonly<RetryPolicy>;

export interface TlsOptions {
  /** PEM CA bundle; omitted: the system roots. */
  rootCerts?: Buffer;
  /** PEM client certificate chain and key, for mTLS. */
  certChain?: Buffer;
  privateKey?: Buffer;
  /** Name checked against the server certificate instead of the address's host. */
  serverName?: string;
}

export interface VerifierClientOptions {
  tls?: TlsOptions;
  /** Plaintext: only on loopback or inside an mTLS mesh. Exactly one of tls / insecure. */
  insecure?: boolean;
  /** Deadline of one verify() call, retries included (default 2000). */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  channelOptions?: ChannelOptions;
}

/** The verifier gave no answer (after any retries). Treat it as a deny. */
export declare class VerifierError extends Error {
  /** The gRPC status code of the last attempt. */
  readonly code: number;
  readonly details: string;
  readonly attempts: number;
}

export declare class VerifierClient {
  constructor(address: string, options: VerifierClientOptions);
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
  verify(request: VerifyRequest | VerifyRequestInit, options?: { timeoutMs?: number }): Promise<VerifyResponse>;
  close(): void;
}

/** True only for DECISION_ALLOW. */
export declare function isAllowed(response: VerifyResponse): boolean;

/** The www-authenticate and dpop-nonce headers to send back (lower-case names; each may be absent). */
export declare function responseHeaders(response: VerifyResponse): Record<string, string>;

export interface RequestOptions {
  /**
   * The origin the client used, e.g. "https://api.example.com" (behind a proxy), followed by the
   * path prefix the proxy strips if any ("https://api.example.com/api").
   */
  publicOrigin?: string;
  route?: string;
  proofOnly?: boolean;
}

/** `publicOrigin` without a trailing slash; throws a TypeError when it is not http(s)://host[/prefix]. */
export declare function checkPublicOrigin(publicOrigin: string): string;

/**
 * VerifyRequest fields for a node:http IncomingMessage or an Express request (whose
 * `originalUrl`, the path before Express stripped the mount path, is used when present).
 */
export declare function requestFromNodeRequest(
  req: IncomingMessage & { originalUrl?: string },
  options?: RequestOptions,
): VerifyRequestInit;

/** The htu claim for a request URL: without query and fragment (RFC 9449 §4.2). */
export declare function htuFor(url: string): string;

export interface PublicJwk {
  readonly kty: "EC";
  readonly crv: "P-256";
  readonly x: string;
  readonly y: string;
}

/** A client's DPoP key (EC P-256), signing one fresh ES256 proof per request. */
export declare class ProofSigner {
  static readonly alg: "ES256";
  /** A signer with a new random P-256 key. */
  static generate(): Promise<ProofSigner>;
  /** A signer for a private EC P-256 JWK (as returned by privateJwk()). */
  static fromJwk(privateJwk: { kty: string; crv: string; x: string; y: string; d: string }): Promise<ProofSigner>;
  /** The key's RFC 7638 thumbprint: what access tokens are bound to (cnf.jkt). */
  readonly jkt: string;
  readonly publicJwk: PublicJwk;
  privateJwk(): Promise<PublicJwk & { d: string }>;
  /** The DPoP header value for one request; `now` in milliseconds since the epoch. */
  proof(method: string, url: string, options?: { accessToken?: string; nonce?: string; now?: number }): Promise<string>;
  /** The `authorization` and `dpop` headers of a resource request. */
  headers(
    method: string,
    url: string,
    accessToken: string,
    options?: { nonce?: string },
  ): Promise<{ authorization: string; dpop: string }>;
}
