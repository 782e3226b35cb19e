// Call dpop.verifier.v1.VerifierService/Verify from Node.js with @grpc/grpc-js.
//
// Messages are the protobuf-es classes generated into ../gen by scripts/gen-protos; this file
// only wires them to a grpc-js client and adds deadlines, bounded retries and request helpers.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, isMessage, toBinary } from "@bufbuild/protobuf";
import {
  Decision,
  Reason,
  VerifierService,
  VerifyRequestSchema,
  VerifyResponseSchema,
} from "../gen/dpop/verifier/v1/verifier_pb.js";

export { Decision, Reason, VerifyRequestSchema, VerifyResponseSchema };

export const DEFAULT_TIMEOUT_MS = 2000;

export const DEFAULT_RETRY = Object.freeze({
  maxAttempts: 3,
  initialBackoffMs: 50,
  maxBackoffMs: 500,
  multiplier: 2,
  codes: Object.freeze([grpc.status.UNAVAILABLE]),
});

// gRPC's default reconnect backoff (1 s, growing to 120 s) would keep a channel failing fast for
// longer than a whole call may take; these let a retry reach a restarted verifier.
const DEFAULT_CHANNEL_OPTIONS = Object.freeze({
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
});

const VerifierServiceClient = grpc.makeGenericClientConstructor(
  {
    verify: {
      path: `/${VerifierService.typeName}/${VerifierService.method.verify.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (message) => Buffer.from(toBinary(VerifyRequestSchema, message)),
      requestDeserialize: (bytes) => fromBinary(VerifyRequestSchema, bytes),
      responseSerialize: (message) => Buffer.from(toBinary(VerifyResponseSchema, message)),
      responseDeserialize: (bytes) => fromBinary(VerifyResponseSchema, bytes),
    },
  },
  VerifierService.typeName,
);

/** The verifier gave no answer (after any retries). Treat it as a deny. */
export class VerifierError extends Error {
  constructor(code, details, attempts) {
    super(`verifier call failed: ${grpc.status[code] ?? code}: ${details} (attempts: ${attempts})`);
    this.name = "VerifierError";
    this.code = code;
    this.details = details;
    this.attempts = attempts;
  }
}

/**
 * One channel to a verifier. Choose the transport explicitly: `tls: {rootCerts?, certChain?,
 * privateKey?, serverName?}` (Buffers; no rootCerts: the system roots) or `insecure: true` for
 * plaintext on loopback or inside an mTLS mesh. Reuse one client for the life of the process.
 */
export class VerifierClient {
  #client;

  constructor(address, { tls, insecure = false, timeoutMs, retry, channelOptions } = {}) {
    if ((tls === undefined) === !insecure) {
      throw new TypeError("choose exactly one of tls: {...} or insecure: true");
    }
    const credentials = tls
      ? grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null)
      : grpc.credentials.createInsecure();
    const options = { ...DEFAULT_CHANNEL_OPTIONS };
    if (tls?.serverName) options["grpc.ssl_target_name_override"] = tls.serverName;
    this.#client = new VerifierServiceClient(address, credentials, { ...options, ...channelOptions });
    this.timeoutMs = timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retry = { ...DEFAULT_RETRY, ...retry };
  }

  /**
   * The verifier's answer (allow, or deny with a reason) for a VerifyRequest message or a plain
   * object of its fields. Rejects with VerifierError when no answer came within `timeoutMs`
   * (default: the client's), retries included; only `retry.codes` failures are retried, never a
   * deny. A retry may repeat a request whose answer was lost: it is then denied as `replayed`.
   */
  async verify(request, { timeoutMs } = {}) {
    const message = isMessage(request, VerifyRequestSchema)
      ? request
      : create(VerifyRequestSchema, request);
    const deadline = Date.now() + (timeoutMs ?? this.timeoutMs);
    for (let attempt = 1; ; attempt++) {
      if (Date.now() >= deadline) {
        throw new VerifierError(grpc.status.DEADLINE_EXCEEDED, "no time left", attempt - 1);
      }
      try {
        return await this.#call(message, new Date(deadline));
      } catch (error) {
        const code = error.code ?? grpc.status.UNKNOWN;
        const delay = backoff(this.retry, attempt);
        const retryable = this.retry.codes.includes(code) && attempt < this.retry.maxAttempts;
        if (!retryable || Date.now() + delay >= deadline) {
          throw new VerifierError(code, error.details ?? String(error), attempt);
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  close() {
    this.#client.close();
  }

  #call(message, deadline) {
    return new Promise((resolve, reject) => {
      this.#client.verify(message, { deadline }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  }
}

function backoff({ initialBackoffMs, maxBackoffMs, multiplier }, attempt) {
  const base = Math.min(maxBackoffMs, initialBackoffMs * multiplier ** (attempt - 1));
  return base * (0.8 + 0.4 * Math.random());
}

/** True only for DECISION_ALLOW; an unspecified or unknown decision is a deny. */
export function isAllowed(response) {
  return response.decision === Decision.ALLOW;
}

/** The headers to send back: WWW-Authenticate on a deny, DPoP-Nonce when one was issued. */
export function responseHeaders(response) {
  const headers = {};
  if (response.wwwAuthenticate) headers["www-authenticate"] = response.wwwAuthenticate;
  if (response.dpopNonce) headers["dpop-nonce"] = response.dpopNonce;
  return headers;
}

/**
 * `publicOrigin` without a trailing slash; throws a TypeError unless it is `http(s)://host[:port]`,
 * optionally followed by the path prefix a proxy strips, with no query, fragment or user info.
 */
export function checkPublicOrigin(publicOrigin) {
  let url;
  try {
    url = new URL(publicOrigin);
  } catch {
    url = undefined;
  }
  if (
    !url ||
    !["http:", "https:"].includes(url.protocol) ||
    !url.hostname ||
    url.username ||
    url.password ||
    /[?#]/.test(publicOrigin)
  ) {
    throw new TypeError(
      `publicOrigin must look like https://api.example.com[/prefix]: ${JSON.stringify(publicOrigin)}`,
    );
  }
  return publicOrigin.replace(/\/+$/, "");
}

/**
 * VerifyRequest fields for a node:http IncomingMessage or an Express request.
 *
 * The path is Express's `req.originalUrl` when there is one: Express strips the mount path from
 * `req.url` (`app.use("/orders", ...)`, a Router under "/api"), but the proof names the URL the
 * client used. Header values come from `req.rawHeaders`, because `req.headers` silently keeps only
 * the first of duplicate Authorization headers; every value is passed on so the verifier can reject
 * duplicates. Behind a proxy, pass `publicOrigin` ("https://api.example.com", with the path prefix
 * the proxy strips if any): the proof's htu names the URL the client used, which the proxy's
 * forwarded headers must not decide.
 */
export function requestFromNodeRequest(req, { publicOrigin, route = "", proofOnly = false } = {}) {
  const authorization = [];
  const dpop = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase();
    if (name === "authorization") authorization.push(req.rawHeaders[i + 1]);
    else if (name === "dpop") dpop.push(req.rawHeaders[i + 1]);
  }
  const scheme = req.socket?.encrypted ? "https" : "http";
  const origin =
    publicOrigin !== undefined
      ? checkPublicOrigin(publicOrigin)
      : `${scheme}://${req.headers.host ?? req.headers[":authority"]}`;
  return {
    method: req.method,
    targetUri: origin + pathAndQuery(req.originalUrl ?? req.url),
    authorization,
    dpop,
    clientAddress: req.socket?.remoteAddress ?? "",
    route,
    proofOnly,
  };
}

// The request-target in origin form; an absolute-form target (`GET http://host/path`, sent to
// proxies) keeps only its path and query.
function pathAndQuery(target) {
  if (target.startsWith("/")) return target;
  try {
    const url = new URL(target);
    return url.pathname + url.search;
  } catch {
    return `/${target}`; // unusable: the verifier denies it as a URL mismatch
  }
}

export { ProofSigner, htuFor } from "./proof.js";
